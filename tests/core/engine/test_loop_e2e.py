"""The whole loop end to end: the real clearml SDK against the fake ClearML API server, the
real reconciler and policy, and the built-in ``simulated`` provider on a controllable clock.

A small helper plays the agents: every running simulated machine registers its worker
``<prefix>:<resource>:<instance id>`` on the fake server, and the workers of machines that
are gone are unregistered (unless a test keeps them, as the real server does for ten minutes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config, load_config
from scaler.default_plugins import simulated
from scaler.default_plugins.simulated import SimInstance, SimulatedCloud
from scaler.engine.fleet import worker_id
from scaler.engine.reconciler import Reconciler, TickReport
from scaler.errors import CapacityError, TransientError
from scaler.host import PluginHost, Provider
from tests.fakes.clearml_server import FakeClearML

PREFIX = "e2e"
START = 1_700_000_000.0
BOOT = 60.0
IDLE = 300.0
POLL = 30.0


class Clock:
    """The scaler's and the simulated cloud's time: moves only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def raw_config(**scaler: Any) -> dict[str, Any]:
    """Two queues: ``gpu`` served by ``gpu-a`` then ``gpu-b`` (spill), ``cpu`` by ``cpu``."""
    return {
        "scaler": {
            "name": "e2e-fleet",
            "workers_prefix": PREFIX,
            # plain numbers are minutes: say seconds explicitly
            "polling_interval": f"{POLL:g}s",
            "max_idle_time": f"{IDLE:g}s",
            "stuck_timeout": "20m",
            **scaler,
        },
        "resources": [
            {"name": "gpu-a", "queue": "gpu", "max_instances": 2},
            {"name": "gpu-b", "queue": "gpu", "max_instances": 3},
            {"name": "cpu", "queue": "cpu", "max_instances": 2},
        ],
    }


@dataclass
class Loop:
    fake: FakeClearML
    clock: Clock
    cloud: SimulatedCloud
    host: PluginHost
    provider: Provider
    raw: dict[str, Any]
    keep_dead_workers: bool = False
    sources: list[ClearMLSource] = field(default_factory=list)

    @property
    def config(self) -> Any:
        return build_config(self.raw, provider="simulated")

    def reconciler(self, *, dry_run: bool = False, config: Any = None) -> Reconciler:
        """A fresh reconciler (fresh in-memory state, fresh SDK client) on the same cloud and server."""
        source = ClearMLSource(timeout=3.0)
        self.sources.append(source)
        return Reconciler(config or self.config, self.host, self.provider, source, clock=self.clock, dry_run=dry_run)

    # -- the agents ------------------------------------------------------------------
    def queue_of(self, resource: str) -> str:
        return next(r["queue"] for r in self.raw["resources"] if r["name"] == resource)

    def agents(self) -> dict[str, SimInstance]:
        """Register a worker per running machine; unregister workers of machines that are gone."""
        self.cloud.step()
        running = {
            worker_id(PREFIX, inst.resource, inst.id): inst
            for inst in self.cloud.instances.values()
            if inst.state == "running"
        }
        known = self.fake.workers()
        if not self.keep_dead_workers:
            for wid in known:
                if wid.startswith(PREFIX + ":") and wid not in running:
                    self.fake.unregister_worker(wid)
        for wid, inst in running.items():
            if wid not in known:
                self.fake.register_worker(wid, [self.queue_of(inst.resource)])
        return running

    def take_all(self) -> dict[str, str]:
        """Every idle live worker takes a task if one waits: worker id -> task id."""
        taken = {}
        for wid in self.agents():
            if self.fake.workers()[wid]["task"] is None:
                task = self.fake.take_task(wid)
                if task:
                    taken[wid] = task
        return taken

    def finish_all(self) -> list[str]:
        return [t for wid in self.agents() if (t := self.fake.finish_task(wid))]

    # -- views of the cloud ------------------------------------------------------------
    def alive(self, resource: str | None = None) -> list[SimInstance]:
        return [i for i in self.cloud.alive() if resource in (None, i.resource)]

    def alive_by_resource(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inst in self.cloud.alive():
            out[inst.resource] = out.get(inst.resource, 0) + 1
        return out


@pytest.fixture
def loop(fake_clearml: FakeClearML, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loop]:
    clock = Clock()
    cloud = SimulatedCloud(clock=clock, boot_time=BOOT)
    simulated.use_cloud(cloud)
    host = PluginHost()
    try:
        yield Loop(fake_clearml, clock, cloud, host, host.provider("simulated"), raw_config())
    finally:
        simulated.use_cloud(None)


def clear_faults(fake: FakeClearML) -> None:
    """Drop armed ``fail_next`` rules (the fake has no public way to disarm them)."""
    with fake._lock:
        fake._fail_rules.clear()


def ok(report: TickReport) -> TickReport:
    """The tick saw both sources and hit no bug."""
    assert report.clearml_ok, report
    assert report.cloud_ok, report
    assert not report.errors.get("bug"), report
    return report


# --- (a) the whole life cycle ---------------------------------------------------------------


def test_full_cycle_launch_in_resource_order_run_idle_terminate(loop: Loop) -> None:
    fake = loop.fake
    for _ in range(4):
        fake.enqueue("gpu")
    fake.enqueue("cpu")
    rec = loop.reconciler()

    report = ok(rec.tick())
    assert report.pending == {"gpu": 4, "cpu": 1}
    # gpu-a first up to its max (2), the rest of gpu spills to gpu-b; cpu on its own resource
    assert dict(report.launched) == {"gpu-a": 2, "gpu-b": 2, "cpu": 1}
    assert loop.alive_by_resource() == {"gpu-a": 2, "gpu-b": 2, "cpu": 1}
    assert [line.split(":")[0] for line in report.actions] == [
        "launch 2 x gpu-a (on-demand)",
        "launch 2 x gpu-b (on-demand)",
        "launch 1 x cpu (on-demand)",
    ]
    assert all(i.state == "pending" for i in loop.alive())

    # still booting: nothing more is launched, nothing terminated
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert not report.launched and not report.terminated
    assert len(loop.alive()) == 5

    # machines boot, agents register and take every task
    loop.clock.advance(BOOT)
    taken = loop.take_all()
    assert len(taken) == 5
    assert all(fake.task(t)["status"] == "in_progress" for t in taken.values())
    report = ok(rec.tick())
    assert not report.launched and not report.terminated
    assert report.pending == {"gpu": 0, "cpu": 0}
    assert sum(s["busy"] for s in report.fleet.values()) == 5

    # work is done: workers go idle, but not for long enough yet
    loop.clock.advance(600)
    finished = loop.finish_all()
    assert sorted(finished) == sorted(taken.values())
    assert all(fake.task(t)["status"] == "completed" for t in finished)
    report = ok(rec.tick())
    assert not report.terminated
    assert sum(s["idle"] for s in report.fleet.values()) == 5

    loop.clock.advance(IDLE - 1)
    assert not ok(rec.tick()).terminated

    # idle beyond max_idle_time: every machine is terminated, in one batch per resource
    loop.clock.advance(2)
    report = ok(rec.tick())
    assert report.terminated == {"idle": 5}
    assert loop.alive() == []
    assert {i.state for i in loop.cloud.instances.values()} <= {"stopping", "terminated"}

    # the fleet is back to zero and stays there
    loop.agents()
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert not report.launched and not report.terminated
    assert sum(s["alive"] for s in report.fleet.values()) == 0
    assert fake.workers() == {}
    assert len(loop.cloud.instances) == 5
    assert all(i.state == "terminated" for i in loop.cloud.instances.values())


def test_idle_worker_is_kept_while_its_queue_has_pending_tasks(loop: Loop) -> None:
    fake = loop.fake
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    loop.take_all()
    loop.clock.advance(60)
    loop.finish_all()
    ok(rec.tick())
    loop.clock.advance(IDLE + 60)
    fake.enqueue("cpu")  # it is about to take this one
    report = ok(rec.tick())
    assert not report.terminated
    assert not report.launched  # the idle worker covers the pending task
    assert len(loop.alive("cpu")) == 1


# --- (b) restart in the middle ---------------------------------------------------------------


def test_restart_rebuilds_from_cloud_and_clearml_without_duplicate_launch(loop: Loop) -> None:
    fake = loop.fake
    for _ in range(3):
        fake.enqueue("gpu")
    first = loop.reconciler()
    assert dict(ok(first.tick()).launched) == {"gpu-a": 2, "gpu-b": 1}
    assert len(loop.alive()) == 3

    # the scaler process dies while the machines boot; a new one starts with empty state
    loop.clock.advance(20)
    second = loop.reconciler()
    report = ok(second.tick())
    assert not report.launched, report.actions
    assert not report.terminated
    assert report.fleet["gpu-a"]["booting"] == 2
    assert report.fleet["gpu-b"]["booting"] == 1
    assert len(loop.alive()) == 3
    assert len(loop.cloud.tokens) == 2  # the two launches of the first process only

    # one machine is up and took a task; another restart still launches nothing
    loop.clock.advance(BOOT)
    running = loop.agents()
    one = sorted(running)[0]
    assert fake.take_task(one)
    third = loop.reconciler()
    report = ok(third.tick())
    assert not report.launched and not report.terminated
    assert len(loop.alive()) == 3

    # more demand after the restart: only the room left is used (max_instances holds)
    for _ in range(10):
        fake.enqueue("gpu")
    report = ok(third.tick())
    assert dict(report.launched) == {"gpu-b": 2}
    assert loop.alive_by_resource() == {"gpu-a": 2, "gpu-b": 3}


def test_restart_restarts_idle_timers_conservatively(loop: Loop) -> None:
    loop.fake.enqueue("cpu")
    first = loop.reconciler()
    ok(first.tick())
    loop.clock.advance(BOOT)
    loop.take_all()
    loop.finish_all()
    ok(first.tick())  # idle from now on
    loop.clock.advance(IDLE - 10)
    second = loop.reconciler()  # restart: the idle timer starts over
    assert not ok(second.tick()).terminated
    loop.clock.advance(20)
    assert not ok(second.tick()).terminated  # the first process would have terminated it now
    loop.clock.advance(IDLE)
    assert ok(second.tick()).terminated == {"idle": 1}
    assert loop.alive() == []


# --- (c) ClearML down -----------------------------------------------------------------------------


def _fleet_of_idle_workers(loop: Loop, rec: Reconciler, tasks: int = 3) -> None:
    for _ in range(tasks):
        loop.fake.enqueue("gpu")
    ok(rec.tick())
    loop.clock.advance(BOOT)
    loop.take_all()
    loop.clock.advance(60)
    loop.finish_all()
    report = ok(rec.tick())
    assert sum(s["idle"] for s in report.fleet.values()) == tasks


@pytest.mark.parametrize("how", ["stop", "down-reset", "500"])
def test_clearml_down_scales_nothing_then_recovers(loop: Loop, how: str) -> None:
    fake = loop.fake
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec)
    before = {i.id: i.state for i in loop.cloud.instances.values()}

    if how == "stop":
        fake.stop()
    elif how == "down-reset":
        fake.set_down(True, mode="reset")
    else:
        fake.fail_next(None, times=1000, status=500)
    launches_before = loop.cloud.calls.count("launch")
    reports = []
    for _ in range(4):
        loop.clock.advance(IDLE)  # well past max_idle_time on every tick
        report = rec.tick()
        reports.append(report)
        assert report.clearml_ok is False
        assert report.cloud_ok is True
        assert not report.errors.get("bug")
        assert not report.launched and not report.terminated and not report.requeued
    assert {i.id: i.state for i in loop.cloud.instances.values()} == before
    assert loop.cloud.calls.count("launch") == launches_before
    assert "terminate" not in loop.cloud.calls

    if how == "stop":
        fake.start()
    elif how == "down-reset":
        fake.set_down(False)
    else:
        clear_faults(fake)

    # back: the loop reads ClearML again; the idle machines go (once idle long enough again
    # at the latest: the outage must not keep them forever)
    terminated = 0
    for _ in range(3):
        report = ok(rec.tick())
        terminated += report.terminated.get("idle", 0)
        assert not report.launched
        if terminated == 3:
            break
        loop.clock.advance(IDLE)
    assert terminated == 3
    assert loop.alive() == []


def test_idle_timers_survive_a_clearml_outage(loop: Loop) -> None:
    """Idle since long before a short outage: terminated on the first tick ClearML is back."""
    fake = loop.fake
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec, tasks=1)
    loop.clock.advance(IDLE - 60)
    assert not ok(rec.tick()).terminated
    fake.stop()
    loop.clock.advance(POLL)
    assert rec.tick().clearml_ok is False
    fake.start()
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert report.terminated == {"idle": 1}, (
        "an instance idle for more than max_idle_time was not terminated once ClearML was back"
    )


def test_clearml_garbage_and_5xx_are_failures_not_crashes(loop: Loop) -> None:
    fake = loop.fake
    fake.enqueue("gpu")
    rec = loop.reconciler()
    fake.set_garbage(True)
    report = rec.tick()
    assert report.clearml_ok is False and not report.launched and not report.errors.get("bug")
    fake.set_garbage(False)
    fake.fail_next("workers.get_all", times=1, status=500)
    report = rec.tick()
    assert report.clearml_ok is False and not report.launched and not report.errors.get("bug")
    report = ok(rec.tick())
    assert dict(report.launched) == {"gpu-a": 1}


def test_revoked_token_relogs_in(loop: Loop) -> None:
    fake = loop.fake
    rec = loop.reconciler()
    ok(rec.tick())
    fake.revoke_tokens()
    fake.enqueue("cpu")
    reports = [rec.tick() for _ in range(2)]
    assert reports[-1].clearml_ok
    assert sum(r.launched["cpu"] for r in reports) == 1
    assert not any(r.errors.get("bug") for r in reports)


def test_slow_clearml_times_out_instead_of_stalling(loop: Loop) -> None:
    fake = loop.fake
    rec = loop.reconciler()
    rec.source = ClearMLSource(timeout=0.5)
    ok(rec.tick())
    fake.enqueue("cpu")
    fake.set_slow(1.5)
    report = rec.tick()
    assert report.clearml_ok is False and not report.launched
    assert report.duration < 3.0
    fake.set_slow(0)
    assert dict(ok(rec.tick()).launched) == {"cpu": 1}


# --- (d) dry run ---------------------------------------------------------------------------------


def test_dry_run_changes_nothing_in_cloud_or_server(loop: Loop) -> None:
    fake = loop.fake
    # a real fleet first: one idle machine past max_idle_time, one machine that vanished mid-task
    for _ in range(2):
        fake.enqueue("cpu")
    real = loop.reconciler()
    ok(real.tick())
    loop.clock.advance(BOOT)
    loop.take_all()
    loop.clock.advance(60)
    running = sorted(loop.agents())
    idle_worker, busy_worker = running
    loop.fake.finish_task(idle_worker)
    interrupted = fake.workers()[busy_worker]["task"]["id"]
    for _ in range(3):
        fake.enqueue("gpu")

    dry = loop.reconciler(dry_run=True)
    ok(dry.tick())  # learns who runs what
    busy_instance = busy_worker.rsplit(":", 1)[1]
    loop.cloud.preempt(busy_instance)
    loop.keep_dead_workers = True
    loop.clock.advance(IDLE + 60)

    cloud_before = {i.id: (i.state, i.ended_at) for i in loop.cloud.instances.values()}
    tokens_before = dict(loop.cloud.tokens)
    tasks_before = {tid: (t["status"], t["queue"]) for tid, t in fake.tasks().items()}
    loop.cloud.calls.clear()
    fake.clear_calls()

    report = ok(dry.tick())
    # the report says what would happen ...
    assert report.actions, report
    assert any(line.startswith("launch 2 x gpu-a") for line in report.actions), report.actions
    assert any(line.startswith("launch 1 x gpu-b") for line in report.actions), report.actions
    assert any(line.startswith("terminate ") and "idle" in line for line in report.actions), report.actions
    assert any(line.startswith(f"requeue task {interrupted}") for line in report.actions), report.actions
    # ... and nothing happened
    assert not report.launched and not report.terminated and report.requeued == 0
    assert loop.cloud.calls == ["list"]
    assert {i.id: (i.state, i.ended_at) for i in loop.cloud.instances.values()} == cloud_before
    assert loop.cloud.tokens == tokens_before
    assert {tid: (t["status"], t["queue"]) for tid, t in fake.tasks().items()} == tasks_before
    endpoints = [name for name, _ in fake.calls]
    assert sorted(endpoints) == ["queues.get_all", "workers.get_all"], endpoints

    # several dry ticks in a row: still nothing
    for _ in range(3):
        loop.clock.advance(POLL)
        assert not dry.tick().launched
    assert loop.cloud.calls.count("launch") == 0 and "terminate" not in loop.cloud.calls
    assert fake.task(interrupted)["status"] == "in_progress"


# --- (e) a machine vanishes while its worker runs a task -------------------------------------------


@pytest.mark.parametrize("dead_worker_listed", [False, True], ids=["worker-gone", "worker-still-listed"])
def test_vanished_machine_task_is_requeued_exactly_once(loop: Loop, dead_worker_listed: bool) -> None:
    fake = loop.fake
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    taken = loop.take_all()
    ((wid, task),) = taken.items()
    report = ok(rec.tick())
    assert report.fleet["cpu"]["busy"] == 1

    instance = wid.rsplit(":", 1)[1]
    loop.cloud.preempt(instance)
    loop.keep_dead_workers = dead_worker_listed  # the real server lists a dead worker ~10 minutes
    loop.agents()
    assert (wid in fake.workers()) is dead_worker_listed
    loop.clock.advance(POLL)
    fake.clear_calls()
    report = ok(rec.tick())
    assert report.requeued == 1, report
    assert fake.task(task)["status"] == "queued"
    assert fake.task(task)["queue"] == "cpu"
    assert fake.pending("cpu") == 1
    assert len(fake.calls_to("tasks.enqueue")) == 1

    # exactly once: later ticks (and the stale worker, if listed) do not re-enqueue again;
    # the task waits again, so one machine is launched for it
    launched = report.launched.copy()
    for _ in range(3):
        loop.clock.advance(POLL)
        report = ok(rec.tick())
        assert report.requeued == 0
        launched.update(report.launched)
    assert dict(launched) == {"cpu": 1}
    assert len(fake.calls_to("tasks.enqueue")) == 1
    assert fake.pending("cpu") == 1

    # the new machine takes the task and runs it to the end
    loop.clock.advance(BOOT)
    taken = loop.take_all()
    assert list(taken.values()) == [task]
    report = ok(rec.tick())
    assert report.requeued == 0
    assert fake.task(task)["status"] == "in_progress"


@pytest.mark.parametrize("failing", ["tasks.get_all", "tasks.stopped", "tasks.enqueue"])
def test_requeue_that_fails_is_retried_next_tick(loop: Loop, failing: str) -> None:
    fake = loop.fake
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    ((wid, task),) = loop.take_all().items()
    ok(rec.tick())
    loop.cloud.preempt(wid.rsplit(":", 1)[1])
    loop.agents()
    loop.clock.advance(POLL)
    fake.fail_next(failing, times=1, status=500)
    report = rec.tick()
    assert report.requeued == 0 and report.errors.get("requeue") == 1
    assert fake.task(task)["queue"] is None
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert report.requeued == 1
    assert fake.task(task)["status"] == "queued" and fake.task(task)["queue"] == "cpu"
    for _ in range(2):
        loop.clock.advance(POLL)
        assert ok(rec.tick()).requeued == 0
    assert fake.pending("cpu") == 1


def test_restart_after_requeue_does_not_interrupt_the_task_again(loop: Loop) -> None:
    """The dead worker is still listed with the old task while a new machine runs it: a
    restarted scaler must not stop and re-enqueue the task a second time."""
    fake = loop.fake
    loop.keep_dead_workers = True
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    ((wid, task),) = loop.take_all().items()
    ok(rec.tick())
    loop.cloud.preempt(wid.rsplit(":", 1)[1])
    loop.clock.advance(POLL)
    assert ok(rec.tick()).requeued == 1
    loop.clock.advance(POLL)
    assert dict(ok(rec.tick()).launched) == {"cpu": 1}
    loop.clock.advance(BOOT)
    taken = loop.take_all()
    assert list(taken.values()) == [task]  # the replacement runs it; the dead worker still lists it
    assert fake.workers()[wid]["task"]["id"] == task

    restarted = loop.reconciler()
    report = ok(restarted.tick())
    assert report.requeued == 0, report.actions
    assert fake.task(task)["status"] == "in_progress"
    assert fake.pending("cpu") == 0
    assert len(fake.calls_to("tasks.enqueue")) == 1


def test_interrupted_task_not_requeued_when_disabled(loop: Loop) -> None:
    fake = loop.fake
    loop.raw = raw_config(requeue_interrupted_tasks=False)
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    ((wid, task),) = loop.take_all().items()
    ok(rec.tick())
    loop.cloud.preempt(wid.rsplit(":", 1)[1])
    loop.agents()
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert report.requeued == 0
    assert fake.calls_to("tasks.enqueue") == []
    assert fake.task(task)["status"] == "in_progress"


def test_dead_and_stray_workers_count_for_nothing(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    """A listed worker whose machine is gone is no capacity; a worker with the fleet's prefix
    but no machine of ours is reported once and never acted on."""
    fake = loop.fake
    loop.keep_dead_workers = True  # as the real server does for ~10 minutes
    fake.enqueue("cpu")
    rec = loop.reconciler()
    ok(rec.tick())
    loop.clock.advance(BOOT)
    ((wid, _task),) = loop.take_all().items()
    fake.finish_task(wid)
    ok(rec.tick())
    loop.cloud.preempt(wid.rsplit(":", 1)[1])  # idle machine gone; its worker still listed, idle
    fake.register_worker(f"{PREFIX}:cpu:i-not-ours", ["cpu"])  # hand-started agent, same prefix
    fake.register_worker("static-worker", ["cpu"])  # someone else's worker on the queue
    caplog.set_level(logging.INFO, logger="scaler")
    for _ in range(2):
        fake.enqueue("cpu")
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    # none of the three idle workers is ours to count: both tasks get a machine
    assert dict(report.launched) == {"cpu": 2}
    assert not report.terminated
    loop.clock.advance(IDLE * 3)
    for _ in range(3):
        report = ok(rec.tick())
        assert not report.terminated and not report.requeued
        loop.clock.advance(POLL)
    assert caplog.text.count("i-not-ours") == 1, caplog.text


# --- (f) calls per tick ------------------------------------------------------------------------------


def test_steady_state_reads_queues_and_workers_once_per_tick(loop: Loop) -> None:
    fake = loop.fake
    for _ in range(3):
        fake.enqueue("gpu")
    rec = loop.reconciler()
    ok(rec.tick())  # login happens here
    loop.clock.advance(BOOT)
    loop.take_all()

    def endpoints() -> list[str]:
        names = [name for name, _ in fake.calls]
        fake.clear_calls()
        return sorted(names)

    endpoints()
    for _ in range(5):  # busy, steady: nothing to do
        loop.clock.advance(POLL)
        report = ok(rec.tick())
        assert not report.launched and not report.terminated
        assert endpoints() == ["queues.get_all", "workers.get_all"]

    loop.finish_all()
    for _ in range(3):  # idle but not long enough: still one read of each
        loop.clock.advance(POLL)
        assert not ok(rec.tick()).terminated
        assert endpoints() == ["queues.get_all", "workers.get_all"]

    # terminating idle machines: one more workers read right before, whatever the count
    loop.clock.advance(IDLE)
    report = ok(rec.tick())
    assert report.terminated == {"idle": 3}
    assert endpoints() == ["queues.get_all", "workers.get_all", "workers.get_all"]
    assert loop.cloud.calls[-3:] == ["list", "terminate", "terminate"]  # one batch per resource

    loop.agents()
    for _ in range(2):  # empty fleet
        loop.clock.advance(POLL)
        ok(rec.tick())
        assert endpoints() == ["queues.get_all", "workers.get_all"]
    # the queue read asks for exactly the configured queues
    loop.clock.advance(POLL)
    ok(rec.tick())
    body = fake.calls_to("queues.get_all")[0]
    assert body["name"] == "^(gpu|cpu)$"


# --- (g) a worker takes a task between observe and terminate ----------------------------------------


def test_worker_that_takes_a_task_before_terminate_is_spared(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = loop.fake
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec, tasks=2)
    loop.clock.advance(IDLE + 1)
    (victim, other) = sorted(loop.agents())

    source = rec.source
    assert isinstance(source, ClearMLSource)
    real_read_workers = source.read_workers
    reads: list[int] = []

    def racing_read_workers() -> Any:
        reads.append(1)
        if len(reads) == 2:  # the re-read right before terminating: a task arrived and was taken
            fake.enqueue("gpu")
            assert fake.take_task(victim)
        return real_read_workers()

    monkeypatch.setattr(source, "read_workers", racing_read_workers)
    report = ok(rec.tick())
    assert len(reads) == 2
    assert report.terminated == {"idle": 1}
    victim_instance = victim.rsplit(":", 1)[1]
    other_instance = other.rsplit(":", 1)[1]
    assert loop.cloud.instances[victim_instance].state == "running"
    assert loop.cloud.instances[other_instance].state in ("stopping", "terminated")
    assert not any(victim_instance in line for line in report.actions)

    # the spared worker runs its task; its idle timer restarts after it
    monkeypatch.setattr(source, "read_workers", real_read_workers)
    loop.clock.advance(POLL)
    assert not ok(rec.tick()).terminated
    fake.finish_task(victim)
    loop.clock.advance(POLL)
    assert not ok(rec.tick()).terminated  # idle again only since now
    loop.clock.advance(IDLE)
    assert ok(rec.tick()).terminated == {"idle": 1}


def test_reread_failure_before_terminate_terminates_nothing(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec, tasks=1)
    loop.clock.advance(IDLE + 1)
    source = rec.source
    assert isinstance(source, ClearMLSource)
    real_read_workers = source.read_workers
    reads: list[int] = []

    def failing_reread() -> Any:
        reads.append(1)
        if len(reads) == 2:  # the server fails right between the observe and the re-read
            loop.fake.fail_next("workers.get_all", times=1, status=500)
        return real_read_workers()

    monkeypatch.setattr(source, "read_workers", failing_reread)
    report = rec.tick()
    assert len(reads) == 2
    assert report.clearml_ok is True
    assert not report.terminated
    assert len(loop.alive()) == 1
    assert "terminate" not in loop.cloud.calls
    loop.clock.advance(POLL)
    assert ok(rec.tick()).terminated == {"idle": 1}


# --- (h) provider failures ------------------------------------------------------------------------------


def test_list_failure_launches_nothing_then_recovers(loop: Loop) -> None:
    loop.fake.enqueue("gpu")
    loop.fake.enqueue("gpu")
    rec = loop.reconciler()
    loop.cloud.fail_next("list", TransientError("throttled", code="RequestLimitExceeded"))
    report = rec.tick()
    assert report.cloud_ok is False and report.clearml_ok is True
    assert report.errors == {"transient": 1}
    assert not report.launched and "launch" not in loop.cloud.calls
    assert loop.alive() == []
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert dict(report.launched) == {"gpu-a": 2}


def test_list_failure_does_not_terminate_idle_machines(loop: Loop) -> None:
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec, tasks=1)
    loop.clock.advance(IDLE + 1)
    loop.cloud.fail_next("list", TransientError("throttled"))
    report = rec.tick()
    assert report.cloud_ok is False and not report.terminated
    assert "terminate" not in loop.cloud.calls
    assert ok(rec.tick()).terminated == {"idle": 1}


def test_transient_launch_failure_retried_with_same_token(loop: Loop) -> None:
    for _ in range(3):
        loop.fake.enqueue("gpu")
    rec = loop.reconciler()
    seen: list[tuple[str, str, int]] = []
    real_launch = loop.cloud.launch

    def recording_launch(scaler: str, resource: str, count: int, token: str, *args: Any, **kw: Any) -> Any:
        seen.append((resource, token, count))
        return real_launch(scaler, resource, count, token, *args, **kw)

    loop.cloud.launch = recording_launch  # type: ignore[method-assign]
    loop.cloud.fail_next("launch", TransientError("timeout talking to the cloud"))
    report = rec.tick()
    assert report.errors.get("transient") == 1
    # gpu-a failed (outcome unknown), gpu-b got its share; nothing else was tried for gpu-a
    assert dict(report.launched) == {"gpu-b": 1}
    assert [(r, c) for r, _, c in seen] == [("gpu-a", 2), ("gpu-b", 1)]
    failed_token = seen[0][1]

    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert dict(report.launched) == {"gpu-a": 2}
    assert seen[2] == ("gpu-a", failed_token, 2)  # the retry reuses the launch token
    assert len(seen) == 3
    assert loop.alive_by_resource() == {"gpu-a": 2, "gpu-b": 1}

    # confirmed: no further launches, no duplicates
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert not report.launched
    assert len(seen) == 3
    assert loop.alive_by_resource() == {"gpu-a": 2, "gpu-b": 1}


def test_launch_accepted_but_answer_lost_makes_no_duplicate(loop: Loop) -> None:
    """The cloud created the machines but the answer timed out: the next tick sees them in
    ``list`` by their launch token and does not launch again."""
    for _ in range(2):
        loop.fake.enqueue("cpu")
    rec = loop.reconciler()
    real_launch = loop.cloud.launch
    tokens: list[str] = []
    lose = [True]

    def lossy_launch(scaler: str, resource: str, count: int, token: str, *args: Any, **kw: Any) -> Any:
        tokens.append(token)
        created = real_launch(scaler, resource, count, token, *args, **kw)
        if lose[0]:
            lose[0] = False
            raise TransientError("read timeout")
        return created

    loop.cloud.launch = lossy_launch  # type: ignore[method-assign]
    report = rec.tick()
    assert report.errors.get("transient") == 1 and not report.launched
    assert len(loop.alive("cpu")) == 2

    for _ in range(3):
        loop.clock.advance(POLL)
        report = ok(rec.tick())
        assert not report.launched
        assert len(loop.alive("cpu")) == 2
    assert len(set(tokens)) == 1
    assert len(loop.cloud.tokens) == 1


def test_transient_retry_after_restart_makes_no_duplicate(loop: Loop) -> None:
    """The launch is retried after a restart (token forgotten): the instances from the
    accepted call are booting and count, so nothing more is launched."""
    for _ in range(2):
        loop.fake.enqueue("cpu")
    rec = loop.reconciler()
    real_launch = loop.cloud.launch

    def lossy_launch(*args: Any, **kw: Any) -> Any:
        real_launch(*args, **kw)
        raise TransientError("read timeout")

    loop.cloud.launch = lossy_launch  # type: ignore[method-assign]
    rec.tick()
    loop.cloud.launch = real_launch  # type: ignore[method-assign]
    assert len(loop.alive("cpu")) == 2
    restarted = loop.reconciler()
    assert not ok(restarted.tick()).launched
    assert len(loop.alive("cpu")) == 2


def test_spot_capacity_error_spills_to_next_resource_in_same_tick(loop: Loop) -> None:
    loop.raw["resources"][0].update(spot=True)
    for _ in range(3):
        loop.fake.enqueue("gpu")
    rec = loop.reconciler()
    loop.cloud.spot_available = False
    report = rec.tick()
    assert report.errors.get("capacity") == 1
    assert dict(report.launched) == {"gpu-b": 3}
    assert loop.alive_by_resource() == {"gpu-b": 3}
    # gpu-a once (spot, failed), gpu-b for its first share, then gpu-b again for the spill
    assert loop.cloud.calls.count("launch") == 3
    assert any("gpu-a (spot)" in line for line in report.actions)
    assert not report.errors.get("bug")


def test_spot_capacity_error_spill_respects_max_instances(loop: Loop) -> None:
    loop.raw["resources"][0].update(spot=True)
    for _ in range(8):
        loop.fake.enqueue("gpu")
    rec = loop.reconciler()
    loop.cloud.fail_next("launch", CapacityError("InsufficientInstanceCapacity", code="InsufficientInstanceCapacity"))
    report = rec.tick()
    assert report.errors.get("capacity") == 1
    assert dict(report.launched) == {"gpu-b": 3}
    # next tick: spot on gpu-a is retried (it may be back) and fills gpu-a; never over max
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert dict(report.launched) == {"gpu-a": 2}
    assert loop.alive_by_resource() == {"gpu-a": 2, "gpu-b": 3}
    assert all(i.spot for i in loop.alive("gpu-a"))
    loop.clock.advance(POLL)
    assert not ok(rec.tick()).launched


def test_on_demand_capacity_error_spills_to_next_resource(loop: Loop) -> None:
    for _ in range(2):
        loop.fake.enqueue("gpu")
    rec = loop.reconciler()
    loop.cloud.capacity = {"gpu-a": 0}
    report = rec.tick()
    assert report.errors.get("capacity") == 1
    assert dict(report.launched) == {"gpu-b": 2}
    assert loop.alive_by_resource() == {"gpu-b": 2}


def test_terminate_failure_is_retried_next_tick(loop: Loop) -> None:
    rec = loop.reconciler()
    _fleet_of_idle_workers(loop, rec, tasks=1)
    loop.clock.advance(IDLE + 1)
    loop.cloud.fail_next("terminate", TransientError("throttled"))
    report = rec.tick()
    assert report.errors.get("transient") == 1 and not report.terminated
    assert len(loop.alive()) == 1
    loop.clock.advance(POLL)
    report = ok(rec.tick())
    assert report.terminated == {"idle": 1}
    assert loop.alive() == []


# --- config from a HOCON file, stuck machines ----------------------------------------------------


def test_loop_from_hocon_file_and_stuck_machine(loop: Loop, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "scaler.conf"
    path.write_text(
        """
        scaler { name = "e2e-fleet", workers_prefix = "e2e", polling_interval = 30s,
                 max_idle_time = 5m, stuck_timeout = 10m }
        resources = [ { name = "cpu", queue = "cpu", max_instances = 1 } ]
        """
    )
    result = load_config(path, loop.host, provider="simulated")
    assert result.ok, [p.render() for p in result.problems]
    config = result.config
    assert config is not None and config.scaler.stuck_timeout == 600
    loop.fake.enqueue("cpu")
    rec = loop.reconciler(config=config)
    assert dict(ok(rec.tick()).launched) == {"cpu": 1}
    # the agent never registers (bad image, say): terminated after stuck_timeout, console logged
    caplog.set_level(logging.WARNING, logger="scaler")
    loop.clock.advance(599)
    assert not ok(rec.tick()).terminated
    loop.clock.advance(2)
    report = ok(rec.tick())
    assert report.terminated == {"stuck": 1}
    assert "console output of stuck instance" in caplog.text
    # the task still waits: a new machine is launched for it (at the latest next tick)
    loop.clock.advance(POLL)
    report2 = ok(rec.tick())
    assert report.launched + report2.launched == {"cpu": 1}
    assert len(loop.alive("cpu")) == 1


def test_a_stuck_machines_console_is_saved_with_its_secrets_masked(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    """The console of a stuck machine goes to the log before it is terminated: the secrets the
    machine was given (git token, the ClearML keys of its clearml.conf) and secrets by shape are
    masked, and terminal control characters are shown, not obeyed."""
    token = "ghp_consoleLeak0123456789abcdefABCD"
    config = build_config(
        {**loop.raw, "scaler": {**loop.raw["scaler"], "git": {"user": "bot", "password": token}}},
        provider="simulated",
    )
    loop.fake.enqueue("cpu")
    rec = loop.reconciler(config=config)
    assert dict(ok(rec.tick()).launched) == {"cpu": 1}
    [machine] = loop.alive("cpu")
    machine.console += (
        f"cloud-init: git clone https://bot:{token}@github.com/org/repo\n"
        f"cloud-init: api.credentials.secret_key: {loop.fake.secret_key}\n"
        "+ docker login -u bot -p registry-pw-19 registry.example.com\n"
        "\x1b[2J\x1b[31mclearml-agent: error\x1b[0m\rcovered\x07\n"
    )
    caplog.set_level(logging.WARNING, logger="scaler")
    loop.clock.advance(1201)
    assert ok(rec.tick()).terminated == {"stuck": 1}
    [saved] = [r.getMessage() for r in caplog.records if "console output of stuck instance" in r.getMessage()]
    for secret in (token, loop.fake.secret_key, "registry-pw-19"):
        assert secret not in saved
    assert "docker login -u bot -p ******** registry.example.com" in saved
    assert "\\x1b[2J\\x1b[31mclearml-agent: error\\x1b[0m\\rcovered\\x07" in saved
    assert not any(ch in saved for ch in "\x1b\r\x07")


def test_an_unchanged_shortage_is_said_once_then_at_debug(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    """A queue waiting at max_instances is a state, not news: INFO once, DEBUG while it lasts."""
    rec = loop.reconciler()
    for _ in range(4):
        loop.fake.enqueue("cpu")  # cpu: max_instances 2
    with caplog.at_level(logging.DEBUG, logger="scaler"):
        for _ in range(3):
            ok(rec.tick())
            loop.clock.advance(POLL)
    short = [r for r in caplog.records if "queue 'cpu' still needs" in r.getMessage()]
    assert [r.levelname for r in short] == ["INFO", "DEBUG", "DEBUG"], [r.getMessage() for r in short]
