"""The gcp provider plugin through the Provider wrapper, with the real google-cloud-compute
client talking to the fake Compute Engine server (tests/fakes/gce_server.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from scaler.config.loading import build_config
from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.host import PluginHost, Provider
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, InstanceState
from scaler_gcp import clients, provider
from scaler_gcp.naming import NAME_RE, image_ref, instance_name, label_value, request_id

if TYPE_CHECKING:
    from scaler.config.model import Config
    from tests.fakes.gce_server import FakeGCE

PROJECT = "test-proj"
ZONE_A, ZONE_B = "us-central1-a", "us-central1-b"
SCRIPT = "#!/bin/bash\necho 'hello from the init script'\n"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.fixture(scope="module")
def prov(host: PluginHost) -> Provider:
    return host.provider("gcp")


@pytest.fixture
def gce(fake_gce: FakeGCE, monkeypatch: pytest.MonkeyPatch) -> FakeGCE:
    """The fake, reached through SCALER_GCP_EMULATOR_HOST; operations need one poll."""
    monkeypatch.setenv(clients.EMULATOR_ENV, f"127.0.0.1:{fake_gce.port}")
    monkeypatch.setattr(clients, "RETRY_INITIAL", 0.01)
    monkeypatch.setattr(clients, "RETRY_MAXIMUM", 0.05)
    fake_gce.operation_polls = 1
    provider.reset_memory()
    return fake_gce


def gcp_resource(
    name: str = "gpu", queue: str = "q", max_instances: int = 4, resource_spot: bool = False, **gcp: Any
) -> dict[str, Any]:
    """A resource dict; keyword arguments go to its ``gcp`` section."""
    section = {"machine_type": "n1-standard-4", "zones": [ZONE_A, ZONE_B], "image": IMAGE, **gcp}
    return {"name": name, "queue": queue, "max_instances": max_instances, "spot": resource_spot, "gcp": section}


def make_config(host: PluginHost, *resources: dict[str, Any], name: str = "gcp-test", **top: Any) -> Config:
    raw = {
        "scaler": {"name": name, "workers_prefix": "dyn_gcp"},
        "gcp": {"project": PROJECT, **top},
        "resources": list(resources) or [gcp_resource()],
    }
    errors = [p for p in host.validate(raw, "gcp", host.provider_names()) if p.severity == "error"]
    assert not errors, [p.render() for p in errors]
    return build_config(raw, provider="gcp")


def inserts(fake: FakeGCE) -> list[Any]:
    return fake.requests.matching("POST", r"/instances$")


def token() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------ launch: the insert body


def test_every_resource_setting_reaches_the_insert_body(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    res = gcp_resource(
        "GPU.L4",
        machine_type="g2-standard-8",
        zones=[ZONE_B],
        disk_size_gb=200,
        disk_type="pd-ssd",
        accelerator_type="nvidia-l4",
        accelerator_count=2,
        service_account="agents@test-proj.iam.gserviceaccount.com",
        scopes=["https://www.googleapis.com/auth/devstorage.read_only"],
        network="ml-net",
        subnetwork="ml-sub",
        external_ip=False,
        labels={"team": "ml", TAG_SCALER: "spoofed"},
        network_tags=["clearml-agent", "ssh"],
        metadata={"enable-oslogin": True, "startup-script": "overridden?"},
    )
    config = make_config(host, res, name="Fleet.One")
    tok = token()
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, tok, False)

    [post] = inserts(gce)
    assert post.path == f"/compute/v1/projects/{PROJECT}/zones/{ZONE_B}/instances"
    assert post.query["requestId"] == request_id(tok, 0, ZONE_B)
    uuid.UUID(post.query["requestId"])
    body = post.body
    assert body["name"] == inst.id == instance_name("Fleet.One", "GPU.L4", tok, 0)
    assert body["machineType"] == f"zones/{ZONE_B}/machineTypes/g2-standard-8"
    [disk] = body["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"] == {
        "sourceImage": IMAGE,
        "diskSizeGb": "200",
        "diskType": f"zones/{ZONE_B}/diskTypes/pd-ssd",
    }
    assert body["guestAccelerators"] == [
        {"acceleratorType": f"projects/{PROJECT}/zones/{ZONE_B}/acceleratorTypes/nvidia-l4", "acceleratorCount": 2}
    ]
    assert body["scheduling"] == {
        "provisioningModel": "STANDARD",
        "onHostMaintenance": "TERMINATE",
        "automaticRestart": True,
    }
    assert body["serviceAccounts"] == [
        {
            "email": "agents@test-proj.iam.gserviceaccount.com",
            "scopes": ["https://www.googleapis.com/auth/devstorage.read_only"],
        }
    ]
    assert body["networkInterfaces"] == [
        {"network": "global/networks/ml-net", "subnetwork": "regions/us-central1/subnetworks/ml-sub"}
    ]
    assert body["tags"] == {"items": ["clearml-agent", "ssh"]}
    # user labels merged, ours win; values sanitised
    assert body["labels"] == {"team": "ml", TAG_SCALER: "fleet-one", TAG_RESOURCE: "gpu-l4", TAG_LAUNCH_TOKEN: tok}
    items = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert items == {
        "install-nvidia-driver": "True",  # GPUs: Deep Learning VM images install the driver
        "enable-oslogin": "TRUE",
        "startup-script": SCRIPT,  # ours win over user metadata
        TAG_SCALER: "Fleet.One",
        TAG_RESOURCE: "GPU.L4",
        TAG_LAUNCH_TOKEN: tok,
    }

    assert (inst.resource, inst.state, inst.zone, inst.instance_type, inst.spot, inst.launch_token) == (
        "GPU.L4",
        InstanceState.PENDING,
        ZONE_B,
        "g2-standard-8",
        False,
        tok,
    )
    assert abs(inst.launched_at - time.time()) < 60
    # the operation was polled (not already DONE in the insert answer)
    assert gce.requests.matching("GET", rf"/zones/{ZONE_B}/operations/")
    stored = gce.instance(inst.id)
    assert stored is not None and stored["labels"][TAG_SCALER] == "fleet-one"


def test_defaults_external_ip_and_no_service_account(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    body = inserts(gce)[0].body
    assert body["networkInterfaces"] == [
        {"network": "global/networks/default", "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}
    ]
    assert "serviceAccounts" not in body and "guestAccelerators" not in body and "tags" not in body
    assert "install-nvidia-driver" not in {i["key"] for i in body["metadata"]["items"]}
    assert body["scheduling"]["onHostMaintenance"] == "MIGRATE"  # no GPU: live migration is fine
    assert body["disks"][0]["initializeParams"]["diskType"] == f"zones/{ZONE_A}/diskTypes/pd-balanced"
    assert body["disks"][0]["initializeParams"]["diskSizeGb"] == "100"


@pytest.mark.parametrize(
    ("spot_arg", "gcp_spot", "model"),
    [
        (True, None, "SPOT"),
        (False, None, "STANDARD"),  # the policy's decision wins over resource.spot = true
        (True, False, "STANDARD"),  # gcp.spot = false forbids spot for this resource
    ],
)
def test_spot_follows_the_launch_decision(
    gce: FakeGCE, host: PluginHost, prov: Provider, spot_arg: bool, gcp_spot: bool | None, model: str
) -> None:
    extra: dict[str, Any] = {} if gcp_spot is None else {"spot": gcp_spot}
    config = make_config(host, gcp_resource(resource_spot=True, **extra))
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), spot_arg)
    sched = inserts(gce)[0].body["scheduling"]
    assert sched["provisioningModel"] == model
    assert inst.spot is (model == "SPOT")
    if model == "SPOT":
        assert sched["instanceTerminationAction"] == "DELETE"
        assert sched["onHostMaintenance"] == "TERMINATE" and sched["automaticRestart"] is False
    else:
        assert "instanceTerminationAction" not in sched
    [listed] = prov.list_instances(config)
    assert listed.spot is (model == "SPOT")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (IMAGE, IMAGE),
        (
            "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v20250610",
            "projects/debian-cloud/global/images/debian-12-bookworm-v20250610",
        ),
        ("global/images/family/ours", f"projects/{PROJECT}/global/images/family/ours"),
        ("family/ours", f"projects/{PROJECT}/global/images/family/ours"),
        ("our-image-v1", f"projects/{PROJECT}/global/images/our-image-v1"),
    ],
)
def test_image_forms(gce: FakeGCE, host: PluginHost, prov: Provider, image: str, expected: str) -> None:
    gce.add_image(PROJECT, "our-image-v1", "ours")
    config = make_config(host, gcp_resource(image=image))
    prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert inserts(gce)[0].body["disks"][0]["initializeParams"]["sourceImage"] == expected


def test_several_instances_are_inserted_before_any_wait(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    tok = token()
    created = prov.launch(config, config.resources[0], 3, SCRIPT, tok, False)
    assert [i.id for i in created] == [instance_name("gcp-test", "gpu", tok, i) for i in range(3)]
    assert len({i.id for i in created}) == 3
    log = [(r.method, "op" if "/operations/" in r.path else "ins") for r in gce.requests]
    assert log[:3] == [("POST", "ins")] * 3  # all inserts first, then the polls
    assert len({r.query["requestId"] for r in inserts(gce)}) == 3


# ------------------------------------------------------------------ launch: zones and errors


@pytest.mark.parametrize("code", ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"])
def test_capacity_error_falls_back_to_the_next_zone(gce: FakeGCE, host: PluginHost, prov: Provider, code: str) -> None:
    config = make_config(host, gcp_resource(resource_spot=True))
    gce.fail_operation_next(
        ZONE_A,
        code,
        f"The zone 'projects/{PROJECT}/zones/{ZONE_A}' does not have enough "
        "resources available to fulfill the request.",
        times=2,
    )
    tok = token()
    created = prov.launch(config, config.resources[0], 2, SCRIPT, tok, True)
    assert [i.zone for i in created] == [ZONE_B, ZONE_B]
    assert [(r.path.split("/")[-2]) for r in inserts(gce)] == [ZONE_A, ZONE_A, ZONE_B, ZONE_B]
    # a new requestId in the next zone (GCE would replay the failed one otherwise)
    ids = [r.query["requestId"] for r in inserts(gce)]
    assert len(set(ids)) == 4
    assert {i["zone"].rsplit("/", 1)[1] for i in gce.instances()} == {ZONE_B}
    # terminate knows the zone from the launch
    gce.requests.clear()
    prov.terminate(config, [i.id for i in created])
    assert not gce.requests.matching("GET", r"/aggregated/")
    assert gce.instances() == []


def test_partial_capacity_returns_what_was_had(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host, gcp_resource(zones=[ZONE_A]))
    gce.fail_operation_next(ZONE_A, "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout")  # the first insert only
    created = prov.launch(config, config.resources[0], 2, SCRIPT, token(), False)
    assert len(created) == 1 and created[0].id.endswith("-1")


def test_capacity_in_every_zone_raises_capacity_error(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host, gcp_resource(resource_spot=True))
    gce.fail_operation_next(r"us-central1-[ab]", "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout", times=10)
    with pytest.raises(CapacityError) as info:
        prov.launch(config, config.resources[0], 2, SCRIPT, token(), True)
    assert info.value.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert ZONE_A in str(info.value) and ZONE_B in str(info.value) and "spot" in str(info.value)
    assert len(inserts(gce)) == 4 and gce.instances() == []


@pytest.mark.parametrize("in_operation", [True, False])
def test_quota_error(gce: FakeGCE, host: PluginHost, prov: Provider, in_operation: bool) -> None:
    config = make_config(host)
    gce.quota_limit(0, metric="CPUS", in_operation=in_operation)
    with pytest.raises(QuotaError, match="CPUS"):
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert len(inserts(gce)) == 1  # a quota is not a zone's capacity: no next zone


def test_permission_denied_names_the_permission_and_principal(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    gce.fail_next(
        "POST",
        r"/instances$",
        403,
        "forbidden",
        f"Required 'compute.instances.create' permission for 'projects/{PROJECT}/zones/{ZONE_A}/instances/x'",
    )
    with pytest.raises(AuthError) as info:
        prov.launch(config, config.resources[0], 3, SCRIPT, token(), False)
    text = str(info.value)
    assert "compute.instances.create" in text and "anonymous credentials" in text and PROJECT in text
    assert len(inserts(gce)) == 1  # the same call is not repeated for the other machines, nor in zone B
    # a 403 without the permission in the message still says which one the call needs
    gce.fail_next("POST", r"/instances$", 403, "forbidden", "Forbidden")
    with pytest.raises(AuthError, match=r"compute\.instances\.create"):
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    # a 401 makes google-auth refresh the token; anonymous credentials cannot, real ones then get 401
    gce.fail_next("POST", r"/instances$", 401, "authError", "Invalid Credentials")
    with pytest.raises(AuthError, match="anonymous credentials"):
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)


def test_operation_permission_error_is_auth(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host, gcp_resource(service_account="x@test-proj.iam.gserviceaccount.com"))
    gce.fail_operation_next(
        ZONE_A,
        "PERMISSION_DENIED",
        "Required 'iam.serviceAccounts.actAs' permission for 'projects/-/serviceAccounts/x'",
        http_status=403,
    )
    with pytest.raises(AuthError, match=r"iam\.serviceAccounts\.actAs"):
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)


def test_bad_request_is_a_provider_error_with_gce_message(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host, gcp_resource(machine_type="n9-mega-1"))
    with pytest.raises(ProviderError) as info:
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert type(info.value) is ProviderError
    assert "n9-mega-1" in str(info.value) and "does not exist" in str(info.value)


def test_throttling_and_5xx_on_insert_are_retried(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    gce.fail_next("POST", r"/instances$", 429, "rateLimitExceeded", "slow down", times=2)
    gce.fail_next("POST", r"/instances$", 503, "backendError", "try later")
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    posts = inserts(gce)
    assert len(posts) == 4
    assert len({p.query["requestId"] for p in posts}) == 1  # the same request, replayable
    assert [i["name"] for i in gce.instances()] == [inst.id]


def test_persistent_5xx_is_transient(
    gce: FakeGCE, host: PluginHost, prov: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients, "RETRY_DEADLINE", 0.3)
    config = make_config(host)
    gce.fail_next("POST", r"/instances$", 503, "backendError", "backend down", times=1000)
    with pytest.raises(TransientError, match="backend down"):
        prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert len(inserts(gce)) >= 2


def test_repeated_launch_token_creates_nothing_new(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    tok = token()
    first = prov.launch(config, config.resources[0], 2, SCRIPT, tok, False)
    again = prov.launch(config, config.resources[0], 2, SCRIPT, tok, False)
    assert [i.id for i in again] == [i.id for i in first]
    assert len(gce.instances()) == 2
    # a fresh process (no memory) retrying the same decision: still nothing new
    provider.reset_memory()
    third = prov.launch(config, config.resources[0], 2, SCRIPT, tok, False)
    assert [i.id for i in third] == [i.id for i in first]
    assert len(gce.instances()) == 2


def test_retry_after_zone_fallback_does_not_duplicate(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    """A retried launch starts where the first attempt got to, not in a zone that now has room."""
    config = make_config(host)
    gce.fail_operation_next(ZONE_A, "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout")
    tok = token()
    [first] = prov.launch(config, config.resources[0], 1, SCRIPT, tok, False)
    assert first.zone == ZONE_B
    [again] = prov.launch(config, config.resources[0], 1, SCRIPT, tok, False)  # zone A has room now
    assert (again.id, again.zone) == (first.id, ZONE_B)
    assert len(gce.instances()) == 1


def test_409_on_our_own_name_is_success(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    """The machine exists (e.g. the first attempt's requestId expired): fetch and return it."""
    config = make_config(host)
    tok = token()
    name = instance_name("gcp-test", "gpu", tok, 0)
    gce.add_instance(
        PROJECT,
        ZONE_A,
        {
            "name": name,
            "machineType": f"zones/{ZONE_A}/machineTypes/n1-standard-4",
            "labels": {TAG_SCALER: "gcp-test", TAG_RESOURCE: "gpu", TAG_LAUNCH_TOKEN: tok},
            "metadata": {
                "items": [
                    {"key": TAG_SCALER, "value": "gcp-test"},
                    {"key": TAG_RESOURCE, "value": "gpu"},
                    {"key": TAG_LAUNCH_TOKEN, "value": tok},
                ]
            },
        },
        status="STAGING",
    )
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, tok, False)
    assert (inst.id, inst.zone, inst.state, inst.launch_token) == (name, ZONE_A, InstanceState.PENDING, tok)
    assert len(gce.instances()) == 1


def test_409_on_a_foreign_machine_is_an_error(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host, gcp_resource(zones=[ZONE_A]))
    tok = token()
    gce.add_instance(
        PROJECT,
        ZONE_A,
        {"name": instance_name("gcp-test", "gpu", tok, 0), "labels": {TAG_LAUNCH_TOKEN: "another-token"}},
    )
    with pytest.raises(ProviderError, match="already exists"):
        prov.launch(config, config.resources[0], 1, SCRIPT, tok, False)


def test_slow_operation_does_not_block_past_the_deadline(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    gce.operation_polls = 1000
    config = make_config(host, operation_timeout="1s")
    started = time.monotonic()
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert time.monotonic() - started < 3
    assert inst.state is InstanceState.PENDING
    assert len(gce.requests.matching("GET", r"/operations/")) >= 2  # polled with short delays
    assert [i.id for i in prov.list_instances(config)] == [inst.id]


def test_operation_poll_errors_are_ridden_out(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    gce.fail_next("GET", r"/operations/", 503, "backendError", "flaky")
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert inst.state is InstanceState.PENDING
    assert len(gce.requests.matching("GET", r"/operations/")) == 2


# ------------------------------------------------------------------ list


def _seed(
    fake: FakeGCE,
    name: str,
    zone: str = ZONE_A,
    *,
    scaler: str | None = "gcp-test",
    resource: str = "gpu",
    meta: bool = True,
    status: str = "RUNNING",
    **fields: Any,
) -> None:
    labels = {TAG_RESOURCE: label_value(resource), TAG_LAUNCH_TOKEN: "t-" + name}
    items = [{"key": TAG_RESOURCE, "value": resource}, {"key": TAG_LAUNCH_TOKEN, "value": "t-" + name}]
    if scaler is not None:
        labels[TAG_SCALER] = label_value(scaler)
        items.append({"key": TAG_SCALER, "value": scaler})
    body = {"name": name, "machineType": f"zones/{zone}/machineTypes/n1-standard-4", "labels": labels, **fields}
    if meta:
        body["metadata"] = {"items": items}
    fake.add_instance(PROJECT, zone, body, status=status)


def test_list_owns_by_label_maps_fields_and_paginates(
    gce: FakeGCE, host: PluginHost, prov: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(host, gcp_resource("GPU.L4"), gcp_resource("cpu"), name="Fleet.One")
    _seed(gce, "a-running", scaler="Fleet.One", resource="GPU.L4", scheduling={"provisioningModel": "SPOT"})
    gce.update_instance("a-running", {"creationTimestamp": "2024-05-01T10:00:00.000-07:00"})
    _seed(gce, "b-provisioning", ZONE_B, scaler="Fleet.One", resource="cpu", status="PROVISIONING")
    _seed(gce, "c-staging", "europe-west4-a", scaler="Fleet.One", status="STAGING")
    _seed(gce, "d-stopping", scaler="Fleet.One", status="STOPPING")
    _seed(gce, "e-terminated", scaler="Fleet.One", status="TERMINATED")
    _seed(gce, "f-labels-only", scaler="Fleet.One", resource="GPU.L4", meta=False)
    _seed(gce, "x-other-scaler", scaler="other")
    _seed(gce, "x-no-scaler", scaler=None)
    _seed(gce, "x-same-label-other-name", scaler="fleet-one")  # label collides, exact name differs
    monkeypatch.setattr(provider, "PAGE_SIZE", 2)

    found = {i.id: i for i in prov.list_instances(config)}

    assert sorted(found) == ["a-running", "b-provisioning", "c-staging", "d-stopping", "e-terminated", "f-labels-only"]
    a = found["a-running"]
    assert (a.resource, a.state, a.spot, a.zone, a.instance_type, a.launch_token) == (
        "GPU.L4",
        InstanceState.RUNNING,
        True,
        ZONE_A,
        "n1-standard-4",
        "t-a-running",
    )
    assert a.launched_at == pytest.approx(1714582800.0)
    assert found["b-provisioning"].state is InstanceState.PENDING and found["b-provisioning"].zone == ZONE_B
    assert found["c-staging"].state is InstanceState.PENDING
    assert found["d-stopping"].state is InstanceState.STOPPING
    assert found["e-terminated"].state is InstanceState.STOPPED  # shut down from inside: deleted by the policy
    assert found["f-labels-only"].resource == "GPU.L4"  # label gpu-l4 mapped back to the configured name
    assert not found["b-provisioning"].spot
    pages = gce.requests.matching("GET", r"/aggregated/instances$")
    assert len(pages) >= 4  # 9 matching the label at 2 per page
    assert not pages[0].query.get("pageToken") and all(p.query.get("pageToken") for p in pages[1:])
    assert {p.query["filter"] for p in pages} == {f'labels.{TAG_SCALER} = "fleet-one"'}
    assert {p.query["maxResults"] for p in pages} == {"2"}


def test_list_errors(gce: FakeGCE, host: PluginHost, prov: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(host)
    gce.fail_next("GET", r"/aggregated/instances$", 403, "forbidden", "Forbidden")
    with pytest.raises(AuthError, match=r"compute\.instances\.list"):
        prov.list_instances(config)
    monkeypatch.setattr(clients, "RETRY_DEADLINE", 0.2)
    gce.fail_next("GET", r"/aggregated/instances$", 503, "backendError", "down", times=1000)
    with pytest.raises(TransientError):
        prov.list_instances(config)


def test_list_retries_throttling(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    _seed(gce, "w-1")
    gce.fail_next("GET", r"/aggregated/instances$", 429, "rateLimitExceeded", "slow down")
    assert [i.id for i in prov.list_instances(config)] == ["w-1"]


# ------------------------------------------------------------------ terminate


def test_terminate_is_batched_idempotent_and_tolerates_gone(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    created = prov.launch(config, config.resources[0], 3, SCRIPT, token(), False)
    ids = [i.id for i in created]
    gce.operation_polls = 5  # deletes stay RUNNING: terminate must not wait for them
    gce.requests.clear()
    prov.terminate(config, [*ids, "never-existed"])
    deletes = gce.requests.matching("DELETE")
    assert sorted(r.path.rsplit("/", 1)[1] for r in deletes) == sorted(ids)
    assert not gce.requests.matching("GET", r"/operations/")
    assert gce.instances() == []
    prov.terminate(config, ids)  # already gone: success


def test_terminate_without_memory_looks_the_zone_up(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    _seed(gce, "w-b", ZONE_B)
    _seed(gce, "w-eu", "europe-west4-a")
    provider.reset_memory()
    prov.terminate(config, ["w-b", "w-eu"])
    assert len(gce.requests.matching("GET", r"/aggregated/instances$")) == 1
    assert sorted(r.path for r in gce.requests.matching("DELETE")) == [
        f"/compute/v1/projects/{PROJECT}/zones/europe-west4-a/instances/w-eu",
        f"/compute/v1/projects/{PROJECT}/zones/{ZONE_B}/instances/w-b",
    ]
    assert gce.instances() == []


def test_terminate_errors_do_not_stop_the_batch(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    created = prov.launch(config, config.resources[0], 2, SCRIPT, token(), False)
    gce.fail_next(
        "DELETE",
        created[0].id + "$",
        403,
        "forbidden",
        "Required 'compute.instances.delete' permission for 'projects/test-proj/zones/x/instances/y'",
    )
    with pytest.raises(AuthError, match=r"compute\.instances\.delete"):
        prov.terminate(config, [i.id for i in created])
    assert [i["name"] for i in gce.instances()] == [created[0].id]  # the other one went


def test_terminate_retries_5xx(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    gce.fail_next("DELETE", r"/instances/", 503, "backendError", "later")
    prov.terminate(config, [inst.id])
    assert gce.instances() == []


# ------------------------------------------------------------------ console output


def test_console_output(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert prov.console_output(config, inst.id) == ""
    gce.set_serial_output(inst.id, "booting\nclearml-agent started\n")
    assert prov.console_output(config, inst.id) == "booting\nclearml-agent started\n"
    [req] = gce.requests.matching("GET", r"serialPort$")[-1:]
    assert req.query["port"] == "1"
    provider.reset_memory()  # found through the list when the zone is not known
    assert "clearml-agent started" in prov.console_output(config, inst.id)
    with pytest.raises(ProviderError, match="not one of this scaler"):
        prov.console_output(config, "no-such-machine")
    gce.fail_next("GET", r"serialPort$", 403, "forbidden", "Forbidden")
    with pytest.raises(AuthError, match=r"compute\.instances\.getSerialPortOutput"):
        prov.console_output(config, inst.id)


# ------------------------------------------------------------------ check cloud


def test_check_cloud_ok(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(
        host, gcp_resource(machine_type="g2-standard-8", accelerator_type="nvidia-l4", accelerator_count=1)
    )
    assert prov.check_cloud(config) == []
    assert not inserts(gce)  # creates nothing


def test_check_cloud_catches_bad_settings(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    gce.add_accelerator_type(ZONE_A, "nvidia-h100-80gb", max_per_instance=8)  # not in zone B
    config = make_config(
        host,
        gcp_resource(machine_type="n9-mega-1"),
        gcp_resource("img", image="projects/debian-cloud/global/images/family/debian-99"),
        gcp_resource("acc", accelerator_type="nvidia-h100-80gb", accelerator_count=1),
        gcp_resource("many", accelerator_type="nvidia-tesla-t4", accelerator_count=8),
        gcp_resource("zone", zones=[ZONE_A, "mars-north1-a"]),
    )
    problems = {(p.path, p.severity): p.message for p in prov.check_cloud(config)}
    assert set(problems) == {
        ("resources[0].gcp.machine_type", "error"),
        ("resources[1].gcp.image", "error"),
        ("resources[2].gcp.accelerator_type", "error"),
        ("resources[3].gcp.accelerator_count", "error"),
        ("resources[4].gcp.zones[1]", "error"),
    }
    assert "n9-mega-1" in problems[("resources[0].gcp.machine_type", "error")]
    assert "debian-99" in problems[("resources[1].gcp.image", "error")]
    assert ZONE_B in problems[("resources[2].gcp.accelerator_type", "error")]
    assert "at most 4" in problems[("resources[3].gcp.accelerator_count", "error")]


def test_check_cloud_reports_missing_permission(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    gce.fail_next("GET", r"/machineTypes/", 403, "forbidden", "Forbidden", times=5)
    problems = prov.check_cloud(config)
    assert [(p.path, p.severity) for p in problems] == [("gcp", "error")]
    assert "compute.machineTypes.get" in problems[0].message


# ------------------------------------------------------------------ endpoint and credentials


def test_api_endpoint_is_used_by_every_client(
    fake_gce: FakeGCE, host: PluginHost, prov: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the emulator variable: real credential lookup (stubbed) and gcp.api_endpoint."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.delenv(clients.EMULATOR_ENV, raising=False)
    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (AnonymousCredentials(), PROJECT))
    fake_gce.operation_polls = 1
    provider.reset_memory()
    config = make_config(
        host, gcp_resource(accelerator_type="nvidia-tesla-t4", accelerator_count=1), api_endpoint=fake_gce.url
    )
    [inst] = prov.launch(config, config.resources[0], 1, SCRIPT, token(), False)
    assert [i.id for i in prov.list_instances(config)] == [inst.id]
    prov.console_output(config, inst.id)
    prov.check_cloud(config)
    prov.terminate(config, [inst.id])
    paths = " ".join(r.path for r in fake_gce.requests)
    for part in (
        "/operations/",
        "/aggregated/instances",
        "/serialPort",
        "/global/images/family/",
        "/machineTypes/",
        "/acceleratorTypes/",
        "/zones/us-central1-b",
    ):
        assert part in paths
    assert fake_gce.requests.matching("DELETE")


def test_project_comes_from_credentials_file(
    fake_gce: FakeGCE, host: PluginHost, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    monkeypatch.delenv(clients.EMULATOR_ENV, raising=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "from-the-key",
                "private_key_id": "abc",
                "private_key": pem,
                "client_email": "scaler@from-the-key.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    raw = {
        "scaler": {"name": "s"},
        "gcp": {"credentials_file": str(path), "api_endpoint": fake_gce.url},
        "resources": [gcp_resource()],
    }
    config = build_config(raw, provider="gcp")
    session = clients.session_for(config)
    assert session.project == "from-the-key"
    assert "scaler@from-the-key.iam.gserviceaccount.com" in session.principal
    assert session.client_kwargs["client_options"] == {"api_endpoint": fake_gce.url}
    assert "PRIVATE" not in session.principal
    assert clients.session_for(config) is session  # cached


def test_credential_problems_are_auth_errors(
    host: PluginHost, prov: Provider, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    monkeypatch.delenv(clients.EMULATOR_ENV, raising=False)
    missing = make_config(host, credentials_file=str(tmp_path / "nope.json"))
    with pytest.raises(AuthError, match=r"does not exist"):
        prov.list_instances(missing)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nsecretstuff"}')
    with pytest.raises(AuthError, match="not a usable service account") as info:
        prov.list_instances(make_config(host, credentials_file=str(garbage)))
    assert "secretstuff" not in str(info.value)

    def no_adc(scopes: Any = None) -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_adc)
    with pytest.raises(AuthError, match="no Google credentials"):
        prov.list_instances(make_config(host, api_endpoint="http://127.0.0.1:9"))


# ------------------------------------------------------------------ validation and naming (no I/O)


def test_validation_of_gcp_sections(host: PluginHost) -> None:
    raw: dict[str, Any] = {
        "scaler": {"name": "s"},
        "gcp": {"project": "test-proj", "operation_timeout": "2m", "endpoint": "x"},
        "resources": [
            gcp_resource("a", image="not a valid image!"),
            gcp_resource("b", accelerator_type="nvidia-l4"),
            gcp_resource("c", accelerator_count=2),
            gcp_resource("d", spot=True),
            gcp_resource("e", network_tags=["Bad_Tag"], labels={"Team": "x"}),
        ],
    }
    problems = {p.path: p for p in host.validate(raw, "gcp", host.provider_names())}
    assert "api_endpoint" in problems["gcp.endpoint"].message
    assert "image family" in problems["resources[0].gcp.image"].message
    assert "resources[1].gcp.accelerator_count" in problems
    assert "resources[2].gcp.accelerator_type" in problems
    assert problems["resources[3].gcp.spot"].severity == "warning"
    assert "resources[4].gcp.network_tags" in problems and "resources[4].gcp.labels" in problems
    raw["resources"] = [gcp_resource()]
    del raw["gcp"]["endpoint"]
    assert [p for p in host.validate(raw, "gcp", host.provider_names()) if p.severity == "error"] == []
    assert clients.settings_of(build_config(raw, provider="gcp")).operation_timeout == 120


@pytest.mark.parametrize(
    ("scaler", "resource"),
    [
        ("gcp-test", "gpu"),
        ("Fleet.One", "GPU.L4"),
        ("9lives", "_x_"),
        ("a" * 63, "b" * 63),
        ("---", "..."),
        ("UPPER", "ünïcode"),
    ],
)
def test_instance_names_are_valid_and_deterministic(scaler: str, resource: str) -> None:
    tok = token()
    names = [instance_name(scaler, resource, tok, i) for i in (0, 1, 999)]
    for name in names:
        assert NAME_RE.fullmatch(name) and len(name) <= 63, name
    assert len(set(names)) == 3
    assert names == [instance_name(scaler, resource, tok, i) for i in (0, 1, 999)]
    assert instance_name(scaler, resource, token(), 0) != names[0]


def test_label_values_and_request_ids() -> None:
    assert label_value("Fleet.One") == "fleet-one"
    assert label_value("x" * 80) == "x" * 63
    assert re.fullmatch(r"[a-z0-9_-]*", label_value("Ä b/c"))
    tok = token()
    assert request_id(tok, 0, ZONE_A) == request_id(tok, 0, ZONE_A)
    assert len({request_id(tok, 0, ZONE_A), request_id(tok, 1, ZONE_A), request_id(tok, 0, ZONE_B)}) == 3
    assert image_ref("family/f", "p").path == "projects/p/global/images/family/f"
    with pytest.raises(ValueError):
        image_ref("projects/p/images/x", "p")


def test_plugin_import_does_not_load_google() -> None:
    code = (
        "import sys, scaler_gcp.plugin; "
        "loaded = [m for m in sys.modules if m.startswith(('google', 'grpc', 'proto'))]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_error_info_permission_and_403_rate_limit(gce: FakeGCE, host: PluginHost, prov: Provider) -> None:
    config = make_config(host)
    _seed(gce, "w-1")
    # GCE's 403 rateLimitExceeded is throttling, not a missing permission: retried
    gce.fail_next("GET", r"/aggregated/instances$", 403, "rateLimitExceeded", "Rate Limit Exceeded")
    assert [i.id for i in prov.list_instances(config)] == ["w-1"]
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": "compute.googleapis.com",
        "metadata": {"permission": "compute.instances.list"},
    }
    gce.fail_next("GET", r"/aggregated/instances$", 403, "forbidden", "denied", details=[info])
    with pytest.raises(AuthError, match=r"needs compute\.instances\.list"):
        prov.list_instances(config)
