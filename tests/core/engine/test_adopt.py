"""``scaler adopt``'s decisions (scaler/engine/adopt.py), on the built-in simulated provider:
which machines of ClearML's autoscaler are taken over and which are left, and why; then the
loop treats an adopted machine as its own (its worker keeps ClearML's id form)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.default_plugins.simulated import SimInstance, SimulatedCloud
from scaler.engine.adopt import ADOPTED, ALREADY, LEFT, WOULD_ADOPT, AdoptError, adopt, adoption_token
from scaler.engine.fleet import WorkerObs, join
from scaler.host import PluginHost, Provider
from scaler.types import TAG_FLEET, TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, InstanceState

FLEET_ID = "0123456789abcdef"
PREFIX = "dynamic_worker"


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    sim = SimulatedCloud(boot_time=0)
    simulated.use_cloud(sim)
    yield sim
    simulated.use_cloud(None)


@pytest.fixture
def provider() -> Provider:
    return PluginHost().provider("simulated")


def config() -> Any:
    raw = {
        "scaler": {"name": "migrated", "workers_prefix": PREFIX},
        "simulated": {"boot_time": "0s"},
        "resources": [
            {"name": "gpu", "queue": "gpu", "max_instances": 2},
            {"name": "cpu", "queue": "cpu", "max_instances": 1},
        ],
    }
    return replace(build_config(raw, provider="simulated"), fleet_id=FLEET_ID)


def machine(cloud: SimulatedCloud, instance_id: str, *, state: str = "running", **tags: str) -> None:
    """A machine of the simulated cloud that clearml-scaler did not launch (no tags: ClearML's)."""
    cloud.instances[instance_id] = SimInstance(
        id=instance_id,
        scaler=tags.get("scaler", ""),
        resource=tags.get("resource", ""),
        launch_token=tags.get("token", ""),
        spot=False,
        launched_at=0.0,
        state=state,
        instance_type=tags.get("type", "g4dn.xlarge"),
        fleet=tags.get("fleet", ""),
    )


def worker(resource: str, instance_id: str, *, task: str | None = None, kind: str = "g4dn.xlarge") -> WorkerObs:
    return WorkerObs(f"{PREFIX}:{resource}:{kind}:{instance_id}", queues=(resource,), task=task)


def test_adopt_takes_over_what_maps_and_leaves_the_rest(cloud: SimulatedCloud, provider: Provider) -> None:
    cfg = config()
    machine(cloud, "sim-busy")
    machine(cloud, "sim-idle", type="t3.large")
    machine(cloud, "sim-unmapped")
    machine(cloud, "sim-stopped", state="terminated")
    machine(cloud, "sim-other", scaler="someone-else", resource="gpu", token="t", fleet="fedcba9876543210")
    workers = [
        worker("gpu", "sim-busy", task="task-1"),
        worker("cpu", "sim-idle", kind="t3.large"),
        worker("old_gpu", "sim-unmapped"),
        worker("gpu", "sim-stopped"),
        worker("gpu", "sim-other"),
        worker("gpu", "sim-elsewhere"),  # not in this cloud (another region)
        WorkerObs(f"{PREFIX}:gpu:sim-0"),  # clearml-scaler's own form: not ClearML's
        WorkerObs("static-agent:gpu"),  # another prefix: ignored
    ]

    dry = adopt(cfg, provider, workers, PREFIX, dry_run=True)
    assert [o.instance_id for o in dry.of(WOULD_ADOPT)] == ["sim-busy", "sim-idle"]
    assert cloud.instances["sim-busy"].scaler == ""  # nothing tagged

    report = adopt(cfg, provider, workers, PREFIX)
    assert {o.instance_id: (o.resource, o.busy) for o in report.of(ADOPTED)} == {
        "sim-busy": ("gpu", True),
        "sim-idle": ("cpu", False),
    }
    left = {o.instance_id: o.reason for o in report.of(LEFT)}
    assert left["sim-unmapped"] == "no mapping: resource 'old_gpu' is not in the configuration"
    assert left["sim-stopped"] == "not running (terminated)"
    assert "another scaler's machine" in left["sim-other"]
    assert left["sim-elsewhere"].startswith("not found by provider 'simulated'")
    assert report.other_workers == [f"{PREFIX}:gpu:sim-0"]
    assert "static-agent:gpu" not in " ".join(o.render() for o in report.outcomes)

    # the ownership tags a launch writes, from the same hook the reconciler uses
    busy = cloud.instances["sim-busy"]
    assert (busy.scaler, busy.resource, busy.fleet) == ("migrated", "gpu", FLEET_ID)
    assert busy.launch_token == adoption_token(cfg, "gpu")
    assert cfg.tags_for("gpu", busy.launch_token) == {
        TAG_SCALER: "migrated",
        TAG_FLEET: FLEET_ID,
        TAG_RESOURCE: "gpu",
        TAG_LAUNCH_TOKEN: busy.launch_token,
    }
    other = cloud.instances["sim-other"]
    assert (other.scaler, other.fleet) == ("someone-else", "fedcba9876543210")  # untouched
    assert cloud.instances["sim-unmapped"].scaler == ""

    # adopting again changes nothing
    again = adopt(cfg, provider, workers, PREFIX)
    assert [o.instance_id for o in again.of(ALREADY)] == ["sim-busy", "sim-idle"] and not again.of(ADOPTED)

    # the loop now sees them as its own, joined with their ClearML-form workers
    instances = provider.list_instances(cfg)
    fleet = join(PREFIX, instances, workers, FLEET_ID)
    assert sorted(fleet.alive_ids()) == ["sim-busy", "sim-idle"]
    assert [w.id for w in fleet.workers_of["sim-idle"]] == [f"{PREFIX}:cpu:t3.large:sim-idle"]
    assert [w.task for w in fleet.workers_of["sim-busy"]] == ["task-1"]
    assert not fleet.renamed


def test_over_max_instances_is_a_warning_and_a_mismatched_type_a_note(
    cloud: SimulatedCloud, provider: Provider
) -> None:
    cfg = config()
    for n in range(2):
        machine(cloud, f"sim-cpu-{n}", type="t3.large")
    report = adopt(
        cfg,
        provider,
        [worker("cpu", "sim-cpu-0", kind="t3.large"), worker("cpu", "sim-cpu-1", kind="c5.large")],
        PREFIX,
    )
    assert len(report.of(ADOPTED)) == 2
    assert report.warnings == [
        "resource 'cpu' has 2 machines, more than its max_instances (1): nothing is launched for it until fewer run"
    ]
    [noted] = [o for o in report.of(ADOPTED) if o.instance_id == "sim-cpu-1"]
    assert noted.reason == "its worker id says c5.large, the machine is t3.large"
    assert cloud.instances["sim-cpu-0"].state == "running"
    assert provider.list_instances(cfg)[0].state is InstanceState.RUNNING


def test_adopt_needs_a_provider_that_can_and_a_fleet_identity(cloud: SimulatedCloud, provider: Provider) -> None:
    with pytest.raises(AdoptError, match="fleet identity"):
        adopt(replace(config(), fleet_id=""), provider, [], PREFIX)

    class Mute:
        name = "mute"

        def implements(self, hook: str) -> bool:
            return hook != "scaler_describe_instances"

    with pytest.raises(AdoptError, match="does not implement scaler_describe_instances"):
        adopt(config(), Mute(), [], PREFIX)  # type: ignore[arg-type]
