"""Issue 14, item 2: the polling results at INFO, as ClearML's autoscaler prints them each poll.

One line whenever the picture changes, the same line again as a heartbeat every few minutes while
it does not. A real :class:`Reconciler` with the real clearml SDK against the fake ClearML server
and the built-in simulated cloud, on a virtual clock."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.ops import observers
from tests.fakes.clearml_server import FakeClearML

RAW = {
    "scaler": {"name": "polls", "workers_prefix": "pl", "polling_interval": "30s", "max_idle_time": "1h"},
    "resources": [
        {"name": "gpu-a", "queue": "gpu", "max_instances": 2},
        {"name": "cpu", "queue": "cpu", "max_instances": 2},
    ],
}


@pytest.fixture
def cloud() -> Iterator[simulated.SimulatedCloud]:
    sim = simulated.SimulatedCloud()
    simulated.use_cloud(sim)
    yield sim
    simulated.use_cloud(None)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.getMessage().startswith("queue gpu:")
    ]
    caplog.clear()
    return out


def test_one_line_when_the_picture_changes_and_a_heartbeat_when_it_does_not(
    fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud, caplog: pytest.LogCaptureFixture
) -> None:
    fake_clearml.create_queue("cpu")
    for _ in range(4):
        fake_clearml.enqueue("gpu")
    clock = Clock()
    config = build_config(RAW, provider="simulated")
    host = PluginHost()
    reconciler = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=5), clock=clock)
    reconciler.listeners.append(observers.PollSummary(config, heartbeat=300))
    with caplog.at_level(logging.INFO, logger="scaler"):
        reconciler.tick()
        # what the tick saw (before its launches): 4 waiting, nothing running yet
        assert lines(caplog) == ["queue gpu: 4 pending; cpu: 0 pending"]
        clock.now += 30
        reconciler.tick()
        assert lines(caplog) == ["queue gpu: 4 pending, 2 booting; cpu: 0 pending"]
        for seconds in (30, 60, 90):  # nothing changes: nothing said
            clock.now += 30
            reconciler.tick()
            assert lines(caplog) == [], seconds
        clock.now += 300
        reconciler.tick()
        assert lines(caplog) == ["queue gpu: 4 pending, 2 booting; cpu: 0 pending (unchanged; alive)"]
        # a machine's agent registers and takes a task: the picture changes
        first = sorted(inst.id for inst in cloud.alive())[0]
        worker = f"pl:gpu-a:{first}"
        fake_clearml.register_worker(worker, ["gpu"])
        fake_clearml.take_task(worker)
        clock.now += 30
        reconciler.tick()
        assert lines(caplog) == ["queue gpu: 3 pending, 1 booting, 1 busy; cpu: 0 pending"]


def test_an_unreadable_clearml_is_part_of_the_line(
    fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config(RAW, provider="simulated")
    host = PluginHost()
    reconciler = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=2))
    reconciler.listeners.append(observers.PollSummary(config))
    fake_clearml.stop()
    with caplog.at_level(logging.INFO, logger="scaler"):
        reconciler.tick()
    assert lines(caplog) == ["queue gpu: ? pending; cpu: ? pending (ClearML unreadable)"]


def test_run_attaches_it(fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud) -> None:
    config = build_config(RAW, provider="simulated")
    host = PluginHost()
    reconciler = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=5), dry_run=True)
    observers.attach(reconciler)
    assert any(isinstance(listener, observers.PollSummary) for listener in reconciler.listeners)
