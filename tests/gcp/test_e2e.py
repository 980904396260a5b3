"""End to end on GCP: the real reconciler, the real clearml SDK against the fake ClearML
server, the real google-cloud-compute client against the fake Compute Engine server."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import load_config
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.types import TAG_RESOURCE, TAG_SCALER
from scaler_gcp import clients, provider

if TYPE_CHECKING:
    from tests.fakes.clearml_server import FakeClearML
    from tests.fakes.gce_server import FakeGCE

CONFIG = """
scaler {
  name = "gcp-e2e"
  workers_prefix = "dynamic_gcp"
  polling_interval = 30s
  max_idle_time = 5m
  stuck_timeout = 20m
}
gcp { project = "test-proj", operation_timeout = 10s }
resources = [
  {
    name = "Cpu.Small"
    queue = "default"
    max_instances = 2
    gcp {
      machine_type = "e2-standard-4"
      zones = ["us-central1-a", "us-central1-b"]
      image = "projects/debian-cloud/global/images/family/debian-12"
      labels { team = "ml" }
    }
  }
]
"""


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gce(fake_gce: FakeGCE, monkeypatch: pytest.MonkeyPatch) -> FakeGCE:
    monkeypatch.setenv(clients.EMULATOR_ENV, f"127.0.0.1:{fake_gce.port}")
    fake_gce.operation_polls = 1
    provider.reset_memory()
    return fake_gce


def test_enqueue_launch_register_idle_terminate(gce: FakeGCE, fake_clearml: FakeClearML, tmp_path: Path) -> None:
    path = tmp_path / "gcp.conf"
    path.write_text(CONFIG)
    host = PluginHost()
    loaded = load_config(path, host, provider="gcp")
    assert loaded.ok, [p.render() for p in loaded.problems]
    assert loaded.config is not None
    config = loaded.config
    clock = Clock()
    gce.clock = lambda: datetime.fromtimestamp(clock.now, timezone.utc)  # creationTimestamp on the same clock
    reconciler = Reconciler(config, host, host.provider("gcp"), ClearMLSource(timeout=5), clock=clock)

    # a task waits: one machine is launched, labelled, with the rendered init script
    fake_clearml.enqueue("default")
    report = reconciler.tick()
    assert report.launched["Cpu.Small"] == 1, report
    [machine] = gce.instances()
    name = machine["name"]
    assert machine["labels"][TAG_SCALER] == "gcp-e2e"
    assert machine["labels"][TAG_RESOURCE] == "cpu-small"
    assert machine["labels"]["team"] == "ml"
    script = {i["key"]: i["value"] for i in machine["metadata"]["items"]}["startup-script"]
    assert "metadata.google.internal}/computeMetadata/v1/instance/name" in script  # GCE_METADATA_HOST may override
    assert "clearml-agent" in script and "--queue default" in script

    # still booting: nothing more is launched for the same task
    clock.now += 30
    report = reconciler.tick()
    assert not report.launched and len(gce.instances()) == 1

    # the agent comes up with the worker id derived from the instance name and runs the task
    worker = f"dynamic_gcp:Cpu.Small:{name}"
    fake_clearml.register_worker(worker, ["default"])
    assert fake_clearml.take_task(worker)
    clock.now += 30
    report = reconciler.tick()
    assert report.fleet["Cpu.Small"]["busy"] == 1
    assert not report.launched and not report.terminated

    # the task ends; the worker idles, but not yet long enough
    fake_clearml.finish_task(worker)
    clock.now += 30
    report = reconciler.tick()
    assert report.fleet["Cpu.Small"]["idle"] == 1 and not report.terminated
    clock.now += 120
    report = reconciler.tick()
    assert not report.terminated and len(gce.instances()) == 1

    # idle beyond max_idle_time: the machine is deleted in GCE
    clock.now += 5 * 60
    report = reconciler.tick()
    assert report.terminated["idle"] == 1, report
    assert gce.instances() == []
    [delete] = gce.requests.matching("DELETE")
    assert delete.path.endswith(f"/zones/us-central1-a/instances/{name}")

    # the worker lingers on the server for a while: it counts for nothing, nothing is relaunched
    clock.now += 30
    report = reconciler.tick()
    assert not report.launched and not report.terminated and not report.errors


def test_zone_stockout_spills_to_next_zone_within_the_tick(
    gce: FakeGCE, fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    path = tmp_path / "gcp.conf"
    path.write_text(CONFIG)
    host = PluginHost()
    loaded = load_config(path, host, provider="gcp")
    assert loaded.config is not None
    reconciler = Reconciler(loaded.config, host, host.provider("gcp"), ClearMLSource(timeout=5), clock=Clock())
    gce.fail_operation_next("us-central1-a", "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout", times=5)
    fake_clearml.enqueue("default")
    fake_clearml.enqueue("default")
    report = reconciler.tick()
    assert report.launched["Cpu.Small"] == 2 and not report.errors
    assert sorted(i["zone"].rsplit("/", 1)[1] for i in gce.instances()) == ["us-central1-b", "us-central1-b"]


def _reconciler(gce: FakeGCE, tmp_path: Path, text: str = CONFIG) -> tuple[Reconciler, Clock]:
    path = tmp_path / "gcp.conf"
    path.write_text(text)
    host = PluginHost()
    loaded = load_config(path, host, provider="gcp")
    assert loaded.ok and loaded.config is not None, [p.render() for p in loaded.problems]
    clock = Clock()
    gce.clock = lambda: datetime.fromtimestamp(clock.now, timezone.utc)
    return Reconciler(loaded.config, host, host.provider("gcp"), ClearMLSource(timeout=5), clock=clock), clock


def test_stuck_machine_console_is_saved_then_deleted(
    gce: FakeGCE,
    fake_clearml: FakeClearML,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an in-process CLI test may have run setup_logging (propagate = False on "scaler")
    monkeypatch.setattr(logging.getLogger("scaler"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="scaler")
    reconciler, clock = _reconciler(gce, tmp_path)
    fake_clearml.enqueue("default")
    assert reconciler.tick().launched["Cpu.Small"] == 1
    [machine] = gce.instances()
    gce.set_serial_output(machine["name"], "startup-script: pip install failed: no route to host\n")
    clock.now += 21 * 60  # past stuck_timeout, no worker ever registered
    report = reconciler.tick()
    assert report.terminated["stuck"] == 1, report
    assert "no route to host" in caplog.text
    assert machine["name"] not in [i["name"] for i in gce.instances()]


def test_spot_reclaim_requeues_the_task(gce: FakeGCE, fake_clearml: FakeClearML, tmp_path: Path) -> None:
    reconciler, clock = _reconciler(
        gce, tmp_path, CONFIG.replace("max_instances = 2", "max_instances = 2, spot = true")
    )
    task = fake_clearml.enqueue("default")
    assert reconciler.tick().launched["Cpu.Small"] == 1
    [machine] = gce.instances()
    assert machine["scheduling"]["provisioningModel"] == "SPOT"
    worker = f"dynamic_gcp:Cpu.Small:{machine['name']}"
    fake_clearml.register_worker(worker, ["default"])
    assert fake_clearml.take_task(worker) == task
    clock.now += 30
    reconciler.tick()
    gce.preempt(machine["name"])  # instanceTerminationAction DELETE: the VM vanishes
    clock.now += 30
    report = reconciler.tick()
    assert report.requeued == 1, report
    assert fake_clearml.task(task)["status"] == "queued"
