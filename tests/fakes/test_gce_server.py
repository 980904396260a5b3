"""The real google-cloud-compute client against tests/fakes/gce_server.py (offline)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.future import polling
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

if TYPE_CHECKING:
    from tests.fakes.gce_server import FakeGCE

# The fixtures fake_gce_server (session) and fake_gce (reset per test) come from tests/conftest.py.

PROJECT = "test-proj"
ZONE = "us-central1-a"
FAST_POLLING = polling.DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.01)


def _kw(fake: FakeGCE) -> dict[str, Any]:
    return {
        "credentials": AnonymousCredentials(),
        "transport": "rest",
        "client_options": {"api_endpoint": fake.url},
    }


def make_instances_client(fake: FakeGCE) -> compute_v1.InstancesClient:
    """InstancesClient whose insert/delete(...).result() polls the fake too."""
    client = compute_v1.InstancesClient(**_kw(fake))
    ops = compute_v1.ZoneOperationsClient(**_kw(fake))
    # The transport builds its ZoneOperationsClient lazily WITHOUT client_options
    # (-> https://compute.googleapis.com); pre-seed the cache it reads from.
    client._transport._extended_operations_services["zone_operations"] = ops
    return client


def instance_body(name: str, **labels: str) -> compute_v1.Instance:
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/g2-standard-8",
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image="projects/deeplearning-platform-release/global/"
                    "images/family/common-cu124-debian-11-py310",
                    disk_size_gb=100,
                ),
            )
        ],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT")],
            )
        ],
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value="#!/bin/bash\necho hi")]),
        labels={"scaler-name": "s1", **labels},
        scheduling=compute_v1.Scheduling(
            provisioning_model="SPOT",
            instance_termination_action="DELETE",
            on_host_maintenance="TERMINATE",
        ),
        guest_accelerators=[
            compute_v1.AcceleratorConfig(
                accelerator_type=f"zones/{ZONE}/acceleratorTypes/nvidia-l4",
                accelerator_count=1,
            )
        ],
        service_accounts=[
            compute_v1.ServiceAccount(
                email="default",
                scopes=["https://www.googleapis.com/auth/cloud-platform"],
            )
        ],
    )


def insert(client: compute_v1.InstancesClient, name: str, zone: str = ZONE, **labels: str) -> Any:
    return client.insert(project=PROJECT, zone=zone, instance_resource=instance_body(name, **labels))


# ------------------------------------------------------------------ operations


def test_operations_client_trap_is_real(fake_gce: FakeGCE) -> None:
    client = compute_v1.InstancesClient(**_kw(fake_gce))
    assert client._transport._host == fake_gce.url
    # The lazily built operations client ignores client_options:
    ops_host = client._transport._zone_operations_client._transport._host
    assert ops_host == "https://compute.googleapis.com"
    assert make_instances_client(fake_gce)._transport._zone_operations_client._transport._host == fake_gce.url


def test_insert_result_polls_the_fake(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 1  # insert answers RUNNING, first poll answers DONE
    client = make_instances_client(fake_gce)
    op = insert(client, "w-1")
    assert op.status == compute_v1.Operation.Status.RUNNING
    assert op.result(timeout=10) is None
    assert op.done()
    polls = fake_gce.requests.matching("GET", r"/zones/us-central1-a/operations/")
    assert len(polls) == 1
    [stored] = fake_gce.instances(PROJECT)
    assert stored["status"] == "RUNNING"
    assert stored["id"].isdigit()
    assert stored["labels"] == {"scaler-name": "s1"}
    assert stored["metadata"]["items"][0] == {
        "key": "startup-script",
        "value": "#!/bin/bash\necho hi",
    }
    assert stored["scheduling"]["provisioningModel"] == "SPOT"
    assert stored["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert stored["guestAccelerators"][0]["acceleratorType"].endswith("/zones/us-central1-a/acceleratorTypes/nvidia-l4")
    assert stored["serviceAccounts"][0]["email"] == "default"
    assert stored["machineType"] == (
        "https://www.googleapis.com/compute/v1/projects/test-proj/zones/us-central1-a/machineTypes/g2-standard-8"
    )
    assert stored["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    # The raw body the client sent is in the request log (camelCase JSON).
    [post] = fake_gce.requests.matching("POST", r"/instances$")
    assert post.body["disks"][0]["initializeParams"]["diskSizeGb"] == "100"


def test_default_operation_is_done_in_insert_answer(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    op = insert(client, "w-1")
    assert op.done()
    op.result()
    assert not fake_gce.requests.matching("GET", r"/operations/")


def test_multi_poll_operation(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 3
    op = insert(make_instances_client(fake_gce), "w-1")
    op.result(timeout=10, polling=FAST_POLLING)
    assert len(fake_gce.requests.matching("GET", r"/operations/")) == 3


def test_insert_unary_and_wait_with_public_api_only(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 2
    client = compute_v1.InstancesClient(**_kw(fake_gce))
    ops = compute_v1.ZoneOperationsClient(**_kw(fake_gce))
    op = client.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance_body("w-1"))
    waits = 0
    while op.status != compute_v1.Operation.Status.DONE:
        op = ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
        waits += 1
    assert waits == 2
    assert not op.error.errors
    assert op.operation_type == "insert"
    assert op.target_link.endswith("/instances/w-1")


def test_failed_operation_raises_with_gce_code(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 1
    fake_gce.fail_operation_next(
        r"us-central1-.*",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone 'projects/test-proj/zones/us-central1-a' does not have enough "
        "resources available to fulfill the request.  Try a different zone, or try "
        "again later.",
    )
    client = make_instances_client(fake_gce)
    op = insert(client, "w-1")  # insert itself does not raise
    with pytest.raises(gexc.ServiceUnavailable) as info:
        op.result(timeout=10)
    exc = info.value
    assert exc.code == 503
    assert exc.message == "SERVICE UNAVAILABLE"
    assert [e.code for e in exc.errors] == ["ZONE_RESOURCE_POOL_EXHAUSTED"]
    assert "does not have enough resources" in exc.errors[0].message
    assert exc.response.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in str(exc)
    assert fake_gce.instances() == []
    # Next insert in the zone succeeds.
    insert(client, "w-1").result(timeout=10)
    assert len(fake_gce.instances()) == 1


@pytest.mark.parametrize(
    ("code", "exc_type", "status"),
    [
        ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", gexc.ServiceUnavailable, 503),
        ("QUOTA_EXCEEDED", gexc.Forbidden, 403),
    ],
)
def test_failed_operation_codes(
    fake_gce: FakeGCE, code: str, exc_type: type[gexc.GoogleAPICallError], status: int
) -> None:
    fake_gce.fail_operation_next("europe-west4-a", code, "nope")
    client = make_instances_client(fake_gce)
    insert(client, "w-0").result()  # us-central1-a: unaffected
    op = client.insert(
        project=PROJECT,
        zone="europe-west4-a",
        instance_resource=_in_zone(instance_body("w-1"), "europe-west4-a"),
    )
    assert op.done()  # operation_polls=0: the answer already carries the error
    exc = op.exception()
    assert isinstance(exc, exc_type)
    assert isinstance(exc, gexc.GoogleAPICallError)
    assert exc.code == status
    assert exc.errors[0].code == code


def test_failed_operation_via_unary_does_not_raise(fake_gce: FakeGCE) -> None:
    fake_gce.fail_operation_next(ZONE, "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout")
    client = compute_v1.InstancesClient(**_kw(fake_gce))
    op = client.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance_body("w-1"))
    assert op.status == compute_v1.Operation.Status.DONE
    assert op.http_error_status_code == 503
    assert op.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"


def _in_zone(body: compute_v1.Instance, zone: str) -> compute_v1.Instance:
    body.machine_type = f"zones/{zone}/machineTypes/g2-standard-8"
    body.guest_accelerators[0].accelerator_type = f"zones/{zone}/acceleratorTypes/nvidia-l4"
    return body


def test_quota_limit(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    fake_gce.quota_limit(1, metric="NVIDIA_L4_GPUS")
    insert(client, "w-1").result()
    with pytest.raises(gexc.Forbidden) as info:
        insert(client, "w-2").result()
    assert info.value.errors[0].code == "QUOTA_EXCEEDED"
    assert "NVIDIA_L4_GPUS" in info.value.errors[0].message
    fake_gce.quota_limit(1, in_operation=False)
    with pytest.raises(gexc.Forbidden) as info2:
        insert(client, "w-2")
    assert info2.value.errors[0]["reason"] == "quotaExceeded"
    assert info2.value.errors[0]["domain"] == "usageLimits"


# ------------------------------------------------------------------ instances


def test_request_id_idempotency(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    rid = str(uuid.uuid4())
    req = {
        "project": PROJECT,
        "zone": ZONE,
        "instance_resource": instance_body("w-1"),
        "request_id": rid,
    }
    op1 = client.insert(request=req)
    op2 = client.insert(request=req)
    assert op1.name == op2.name
    assert len(fake_gce.instances()) == 1
    assert fake_gce.requests.matching("POST")[0].query["requestId"] == rid
    # Same name without requestId: 409 -> Conflict (NOT AlreadyExists).
    with pytest.raises(gexc.Conflict) as info:
        insert(client, "w-1")
    assert not isinstance(info.value, gexc.AlreadyExists)
    assert info.value.errors[0]["reason"] == "alreadyExists"
    # requestId must be a UUID (strict mode).
    with pytest.raises(gexc.BadRequest):
        client.insert(request={**req, "request_id": "w-1-attempt-1"})


def test_insert_validation(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    body = instance_body("w-1")
    body.scheduling.on_host_maintenance = "MIGRATE"
    with pytest.raises(gexc.BadRequest, match="live migration"):
        client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    body = instance_body("w-1")
    body.machine_type = f"zones/{ZONE}/machineTypes/a3-megagpu-8g"
    with pytest.raises(gexc.BadRequest, match="does not exist"):
        client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    body = instance_body("w-1")
    body.disks[0].initialize_params.source_image = "projects/debian-cloud/global/images/family/debian-99"
    with pytest.raises(gexc.NotFound):
        client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    with pytest.raises(gexc.BadRequest, match="Label"):
        insert(client, "w-1", Owner="Bob")
    with pytest.raises(gexc.BadRequest, match="regex"):
        insert(client, "W_1")
    with pytest.raises(gexc.NotFound):
        client.insert(
            project=PROJECT,
            zone="mars-north1-a",
            instance_resource=_in_zone(instance_body("w-1"), "mars-north1-a"),
        )
    assert fake_gce.instances() == []


def test_get_status_transitions(fake_gce: FakeGCE) -> None:
    fake_gce.booting_reads = 2
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    seen = [client.get(project=PROJECT, zone=ZONE, instance="w-1").status for _ in range(3)]
    assert seen == ["PROVISIONING", "STAGING", "RUNNING"]
    stored = fake_gce.instance("w-1")
    assert stored is not None and stored["lastStartTimestamp"]
    # Pinned status and back-dated creation time (e.g. for idle/age logic).
    fake_gce.update_instance("w-1", {"status": "STAGING", "creationTimestamp": "2020-01-01T00:00:00.000-08:00"})
    for _ in range(2):
        got = client.get(project=PROJECT, zone=ZONE, instance="w-1")
        assert (got.status, got.creation_timestamp) == ("STAGING", "2020-01-01T00:00:00.000-08:00")


def test_list_filter_and_pagination(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    for i in range(5):
        insert(client, f"w-{i}", role="gpu" if i % 2 == 0 else "cpu").result()
    fake_gce.add_instance(
        PROJECT,
        ZONE,
        {"name": "other", "labels": {"scaler-name": "s2"}, "machineType": "x"},
    )
    pager = client.list(
        request={
            "project": PROJECT,
            "zone": ZONE,
            "filter": 'labels.scaler-name = "s1"',
            "max_results": 2,
        }
    )
    names = [i.name for i in pager]
    assert names == ["w-0", "w-1", "w-2", "w-3", "w-4"]
    lists = fake_gce.requests.matching("GET", r"/zones/us-central1-a/instances$")
    assert len(lists) == 3
    assert [bool(r.query.get("pageToken")) for r in lists] == [False, True, True]
    assert lists[0].query["maxResults"] == "2"
    both = client.list(
        request={
            "project": PROJECT,
            "zone": ZONE,
            "filter": '(labels.scaler-name = "s1") AND (labels.role = "gpu")',
        }
    )
    assert [i.name for i in both] == ["w-0", "w-2", "w-4"]
    with pytest.raises(gexc.BadRequest):
        list(client.list(request={"project": PROJECT, "zone": ZONE, "filter": "(("}))


def test_aggregated_list_filter_and_pagination(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    for i, zone in enumerate(["us-central1-a", "us-central1-b", "europe-west4-a"] * 2):
        client.insert(
            project=PROJECT,
            zone=zone,
            instance_resource=_in_zone(instance_body(f"w-{i}"), zone),
        ).result()
    fake_gce.add_instance(PROJECT, "us-central1-c", {"name": "foreign", "labels": {"scaler-name": "s2"}})
    found: dict[str, list[str]] = {}
    pager = client.aggregated_list(
        request={
            "project": PROJECT,
            "filter": 'labels.scaler-name = "s1"',
            "max_results": 4,
        }
    )
    for scope, scoped in pager:
        for inst in scoped.instances:
            found.setdefault(scope, []).append(inst.name)
    assert found == {
        "zones/us-central1-a": ["w-0", "w-3"],
        "zones/us-central1-b": ["w-1", "w-4"],
        "zones/europe-west4-a": ["w-2", "w-5"],
    }
    assert len(fake_gce.requests.matching("GET", r"/aggregated/instances$")) == 2
    # Zones without results on a page answer with a warning, like GCE.
    page = client.aggregated_list(request={"project": PROJECT, "filter": 'name = "w-0"'})
    scopes = dict(page)
    assert scopes["zones/us-central1-c"].warning.code == "NO_RESULTS_ON_PAGE"
    assert [i.name for i in scopes["zones/us-central1-a"].instances] == ["w-0"]


def test_delete_and_second_delete_not_found(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 1
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    client.delete(project=PROJECT, zone=ZONE, instance="w-1").result(timeout=10)
    assert fake_gce.instances() == []
    with pytest.raises(gexc.NotFound) as info:
        client.delete(project=PROJECT, zone=ZONE, instance="w-1")
    assert info.value.code == 404
    assert info.value.errors[0]["reason"] == "notFound"
    with pytest.raises(gexc.NotFound):
        client.get(project=PROJECT, zone=ZONE, instance="w-1")


def test_delete_with_stopping_phase(fake_gce: FakeGCE) -> None:
    fake_gce.stopping_reads = 1
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    client.delete(project=PROJECT, zone=ZONE, instance="w-1").result()
    assert client.get(project=PROJECT, zone=ZONE, instance="w-1").status == "STOPPING"
    with pytest.raises(gexc.NotFound):
        client.get(project=PROJECT, zone=ZONE, instance="w-1")


def test_preempt(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    body = instance_body("w-2")
    body.scheduling.instance_termination_action = "STOP"
    client.insert(project=PROJECT, zone=ZONE, instance_resource=body).result()
    fake_gce.preempt("w-1")
    fake_gce.preempt("w-2")
    assert [(i["name"], i["status"]) for i in fake_gce.instances()] == [("w-2", "TERMINATED")]
    ops = compute_v1.ZoneOperationsClient(**_kw(fake_gce))
    preempted = ops.list(
        request={
            "project": PROJECT,
            "zone": ZONE,
            "filter": 'operationType = "compute.instances.preempted"',
        }
    )
    assert sorted(o.target_link.rsplit("/", 1)[1] for o in preempted) == ["w-1", "w-2"]


def test_serial_port_output(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    fake_gce.set_serial_output("w-1", "boot\n")
    fake_gce.append_serial_output("w-1", "clearml-agent started\n")
    out = client.get_serial_port_output(request={"project": PROJECT, "zone": ZONE, "instance": "w-1", "port": 1})
    assert out.contents == "boot\nclearml-agent started\n"
    assert (out.start, out.next_) == (0, len(out.contents))
    more = client.get_serial_port_output(
        request={"project": PROJECT, "zone": ZONE, "instance": "w-1", "port": 1, "start": 5}
    )
    assert more.contents == "clearml-agent started\n"
    assert fake_gce.requests.matching("GET", "serialPort$")[0].query["port"] == "1"


# ------------------------------------------------------------------ catalogue


def test_catalogue(fake_gce: FakeGCE) -> None:
    images = compute_v1.ImagesClient(**_kw(fake_gce))
    img = images.get_from_family(project="debian-cloud", family="debian-12")
    assert img.name.startswith("debian-12") and img.status == "READY"
    fake_gce.add_image("debian-cloud", "debian-12-bookworm-v20990101", "debian-12")
    newest = images.get_from_family(project="debian-cloud", family="debian-12")
    assert newest.name == "debian-12-bookworm-v20990101"
    assert images.get(project="debian-cloud", image=newest.name).family == "debian-12"
    assert images.get_from_family(project="deeplearning-platform-release", family="common-cu124").name
    with pytest.raises(gexc.NotFound):
        images.get_from_family(project="debian-cloud", family="debian-99")

    mts = compute_v1.MachineTypesClient(**_kw(fake_gce))
    g2 = mts.get(project=PROJECT, zone=ZONE, machine_type="g2-standard-8")
    assert (g2.guest_cpus, g2.memory_mb) == (8, 32768)
    assert g2.accelerators[0].guest_accelerator_type == "nvidia-l4"
    fake_gce.add_machine_type("asia-east1-a", "n2-standard-2", guest_cpus=2, memory_mb=8192)
    assert mts.get(project=PROJECT, zone="asia-east1-a", machine_type="n2-standard-2").guest_cpus == 2
    with pytest.raises(gexc.NotFound):
        mts.get(project=PROJECT, zone="europe-west4-a", machine_type="n2-standard-2")

    accs = compute_v1.AcceleratorTypesClient(**_kw(fake_gce))
    t4 = accs.get(project=PROJECT, zone=ZONE, accelerator_type="nvidia-tesla-t4")
    assert t4.maximum_cards_per_instance == 4
    fake_gce.add_accelerator_type(ZONE, "nvidia-h100-80gb", max_per_instance=8)
    assert accs.get(project=PROJECT, zone=ZONE, accelerator_type="nvidia-h100-80gb").name
    with pytest.raises(gexc.NotFound):
        accs.get(project=PROJECT, zone="europe-west4-a", accelerator_type="nvidia-h100-80gb")


# ------------------------------------------------------------------ faults and retries


def test_fail_next_403(fake_gce: FakeGCE) -> None:
    fake_gce.fail_next(
        "POST",
        r"/instances$",
        403,
        "forbidden",
        "Required 'compute.instances.create' permission for 'projects/test-proj/zones/us-central1-a/instances/w-1'",
    )
    client = make_instances_client(fake_gce)
    with pytest.raises(gexc.Forbidden) as info:
        insert(client, "w-1")
    exc = info.value
    assert exc.code == 403
    assert exc.errors[0]["reason"] == "forbidden"
    assert "compute.instances.create" in exc.message
    assert exc.reason is None  # only set when details carry a google.rpc.ErrorInfo
    insert(client, "w-1").result()  # fault consumed


def test_fail_next_with_error_info_details(fake_gce: FakeGCE) -> None:
    fake_gce.fail_next(
        "GET",
        r"/instances/w-1$",
        403,
        "forbidden",
        "denied",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "compute.googleapis.com",
                "metadata": {"permission": "compute.instances.get"},
            }
        ],
    )
    client = make_instances_client(fake_gce)
    with pytest.raises(gexc.Forbidden) as info:
        client.get(project=PROJECT, zone=ZONE, instance="w-1")
    assert info.value.reason == "IAM_PERMISSION_DENIED"
    assert info.value.domain == "compute.googleapis.com"


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    try:
        return fn(), time.monotonic() - t0
    except Exception as exc:
        return exc, time.monotonic() - t0


def test_default_retries_measured(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()

    def get() -> Any:
        return client.get(project=PROJECT, zone=ZONE, instance="w-1")

    # get/list/aggregatedList/zoneOperations.get: default Retry on 503 and 504.
    fake_gce.requests.clear()
    fake_gce.fail_next("GET", r"/instances/w-1$", 503, "backendError", "try later", times=3)
    result, elapsed = _timed(get)
    assert result.name == "w-1"
    assert len(fake_gce.requests) == 4
    print(f"\nGET 503 x3 -> retried, 4 requests, {elapsed:.2f}s")

    # 429 is not retried by default.
    fake_gce.requests.clear()
    fake_gce.fail_next("GET", r"/instances/w-1$", 429, "rateLimitExceeded", "slow down")
    result, elapsed = _timed(get)
    assert isinstance(result, gexc.TooManyRequests)
    assert len(fake_gce.requests) == 1
    print(f"GET 429 -> TooManyRequests after 1 request, {elapsed:.3f}s")

    # insert/delete have no default retry: 503 surfaces at once.
    fake_gce.requests.clear()
    fake_gce.fail_next("POST", r"/instances$", 503, "backendError", "try later")
    result, elapsed = _timed(lambda: insert(client, "w-2"))
    assert isinstance(result, gexc.ServiceUnavailable)
    assert len(fake_gce.requests) == 1
    print(f"POST 503 -> ServiceUnavailable after 1 request, {elapsed:.3f}s")


def test_explicit_retry_for_insert(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    fake_gce.fail_next("POST", r"/instances$", 429, "rateLimitExceeded", "slow", times=2)
    fake_gce.fail_next("POST", r"/instances$", 503, "backendError", "later")
    retry = gretry.Retry(
        predicate=gretry.if_exception_type(gexc.TooManyRequests, gexc.ServiceUnavailable, gexc.InternalServerError),
        initial=0.01,
        maximum=0.05,
        multiplier=2,
        timeout=5,
    )
    # With retries on a create, always send a requestId so a retry of a request
    # that did reach GCE replays the operation instead of creating twice / 409.
    op = client.insert(
        request={
            "project": PROJECT,
            "zone": ZONE,
            "instance_resource": instance_body("w-1"),
            "request_id": str(uuid.uuid4()),
        },
        retry=retry,
    )
    op.result()
    assert len(fake_gce.requests.matching("POST")) == 4
    assert len(fake_gce.instances()) == 1


def test_fail_next_on_operation_poll(fake_gce: FakeGCE) -> None:
    fake_gce.operation_polls = 1
    fake_gce.fail_next("GET", r"/operations/", 503, "backendError", "flaky")
    op = insert(make_instances_client(fake_gce), "w-1")
    op.result(timeout=10, polling=FAST_POLLING)
    assert len(fake_gce.requests.matching("GET", "/operations/")) == 2


def test_request_log_and_reset(fake_gce: FakeGCE) -> None:
    client = make_instances_client(fake_gce)
    insert(client, "w-1").result()
    assert fake_gce.requests[0].method == "POST"
    fake_gce.operation_polls = 5
    fake_gce.reset()
    assert len(fake_gce.requests) == 0
    assert fake_gce.instances() == []
    assert fake_gce.operation_polls == 0


def test_filter_language() -> None:
    from tests.fakes.gce_server import compile_filter

    res = {
        "name": "w-1",
        "status": "RUNNING",
        "labels": {"a": "b", "c": "d"},
        "scheduling": {"preemptible": True},
    }
    cases = {
        'labels.a = "b"': True,
        "labels.a = b": True,
        '(labels.a = "b") AND (labels.c = "d")': True,
        '(labels.a = "b") (labels.c = "x")': False,
        '(labels.a = "x") OR (labels.c = "d")': True,
        'labels.a != "b"': False,
        "labels.zz:*": False,
        "labels.a:*": True,
        "NOT labels.a = b": False,
        "name eq 'w-.*'": True,
        "name ne w-.*": False,
        "scheduling.preemptible = true": True,
        "status = RUNNING": True,
        "": True,
    }
    for text, expected in cases.items():
        assert compile_filter(text)(res) is expected, text
