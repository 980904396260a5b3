"""A tick reads ClearML's large lists (workers, queues) as plain JSON (issue 16).

The real clearml SDK's session sends the SDK's own request to the fake ClearML server, and the
answer is read field by field instead of being turned into the SDK's typed objects (which parsed
every timestamp of every worker with dateutil). What a user sees must not change: the same
workers and pending counts, the same decisions, and a ClearML that cannot be read (an error
answer, garbage, an answer of the wrong shape) still stops every scale-down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.default_plugins.simulated import SimInstance, SimulatedCloud
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from tests.fakes.clearml_server import FakeClearML

PREFIX = "js"
IDLE = 60.0
BUSY_WORKER, IDLE_WORKER = f"{PREFIX}:cpu:sim-000001", f"{PREFIX}:cpu:sim-000002"


def every_worker(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A ``rewrite_answers`` function for ``workers.get_all`` that applies ``change`` to each worker."""

    def rewrite(data: dict[str, Any]) -> dict[str, Any]:
        for worker in data["workers"]:
            change(worker)
        return data

    return rewrite


# -- the reads themselves -----------------------------------------------------------------


def test_workers_are_read_with_their_queues_task_and_last_activity(fake_clearml: FakeClearML) -> None:
    fake_clearml.create_queue("cpu")
    fake_clearml.create_queue("gpu")
    fake_clearml.register_worker(BUSY_WORKER, ["cpu", "gpu"])
    fake_clearml.register_worker(IDLE_WORKER, ["gpu"])
    fake_clearml.enqueue("cpu", name="train resnet")
    task = fake_clearml.take_task(BUSY_WORKER)
    workers = {w.id: w for w in ClearMLSource(timeout=5).read_workers() or []}
    assert set(workers) == {BUSY_WORKER, IDLE_WORKER}
    busy, idle = workers[BUSY_WORKER], workers[IDLE_WORKER]
    assert (busy.task, busy.task_name, busy.queues) == (task, "train resnet", ("cpu", "gpu"))
    assert (idle.task, idle.task_name, idle.queues) == (None, "", ("gpu",))
    assert abs(idle.last_activity - fake_clearml.now()) < 60


def test_the_request_on_the_wire_is_the_sdks_own(fake_clearml: FakeClearML) -> None:
    """Same endpoint and body as the SDK's typed ``get_all`` calls sent before (one call each)."""
    fake_clearml.create_queue("cpu")
    source = ClearMLSource(timeout=5)
    source.read(["cpu"])
    plain = [(name, body) for name, body in fake_clearml.calls if name.endswith(".get_all")]
    fake_clearml.clear_calls()
    client = source.client()
    client.queues.get_all(name="^(cpu)$", only_fields=["id", "name", "entries"], search_hidden=True)
    client.workers.get_all()
    typed = [(name, body) for name, body in fake_clearml.calls if name.endswith(".get_all")]
    assert plain == typed and [name for name, _ in plain] == ["queues.get_all", "workers.get_all"]


@pytest.mark.parametrize(
    "odd",
    [None, "", "yesterday", "2024-13-45T99:00:00", ["a", "list"], True, "MISSING"],
    ids=["null", "empty", "text", "impossible-date", "list", "bool", "missing"],
)
def test_a_worker_with_a_missing_or_odd_timestamp_is_still_read(fake_clearml: FakeClearML, odd: Any) -> None:
    """Only the fields the loop uses are parsed; a timestamp it cannot read is unknown (0), and
    the worker counts as usual (the SDK's typed objects failed the whole read instead)."""
    fake_clearml.register_worker(BUSY_WORKER, ["cpu"])
    fake_clearml.enqueue("cpu")
    fake_clearml.take_task(BUSY_WORKER)
    fake_clearml.register_worker(IDLE_WORKER, ["cpu"])

    def change(worker: dict[str, Any]) -> None:
        for key in ("last_activity_time", "register_time", "last_report_time"):
            if odd == "MISSING":
                worker.pop(key, None)
            else:
                worker[key] = odd

    fake_clearml.rewrite_answers("workers.get_all", every_worker(change))
    source = ClearMLSource(timeout=5)
    workers = {w.id: w for w in source.read_workers() or []}
    assert set(workers) == {BUSY_WORKER, IDLE_WORKER}, source.last_error
    assert workers[BUSY_WORKER].task and workers[IDLE_WORKER].task is None
    assert workers[BUSY_WORKER].last_activity == 0.0 and workers[IDLE_WORKER].last_activity == 0.0


@pytest.mark.parametrize(
    "stamp, expected",
    [
        ("2024-05-01T10:00:00.123456+00:00", 1714557600.123456),
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("2024-05-01T12:00:00+02:00", 1714557600.0),
        ("2024-05-01T10:00:00.12345+00:00", 1714557600.12345),
    ],
)
def test_iso_timestamps_in_the_forms_servers_write_are_read(
    fake_clearml: FakeClearML, stamp: str, expected: float
) -> None:
    fake_clearml.register_worker(IDLE_WORKER, ["cpu"])
    fake_clearml.rewrite_answers("workers.get_all", every_worker(lambda w: w.update(last_activity_time=stamp)))
    (worker,) = ClearMLSource(timeout=5).read_workers() or []
    assert worker.last_activity == pytest.approx(expected)


def test_pending_counts_of_empty_missing_and_busy_queues(fake_clearml: FakeClearML) -> None:
    fake_clearml.create_queue("empty")
    fake_clearml.create_queue("busy")
    fake_clearml.create_queue("no-entries-field")
    for _ in range(3):
        fake_clearml.enqueue("busy")
    fake_clearml.create_queue("other")
    fake_clearml.enqueue("other")  # not configured: not read

    def drop_entries(data: dict[str, Any]) -> dict[str, Any]:
        for queue in data["queues"]:
            if queue["name"] == "no-entries-field":
                del queue["entries"]
        return data

    fake_clearml.rewrite_answers("queues.get_all", drop_entries)
    names = ["empty", "busy", "no-entries-field", "not-created"]
    queues, workers = ClearMLSource(timeout=5).read(names)
    assert queues is not None and workers == []
    assert {name: q.pending for name, q in queues.items()} == {
        "empty": 0,
        "busy": 3,
        "no-entries-field": 0,
        "not-created": 0,
    }
    assert queues["busy"].id == fake_clearml.queues()["busy"]["id"] and queues["not-created"].id == ""


def test_a_thousand_workers_and_a_long_queue_are_one_call_each(fake_clearml: FakeClearML) -> None:
    """The server answers ``workers.get_all`` and ``queues.get_all`` in one page (neither pages
    unless asked): every worker and every entry is counted from one call each."""
    for i in range(1200):
        fake_clearml.register_worker(f"{PREFIX}:cpu:sim-{i:06d}", ["cpu"])
    for _ in range(1500):
        fake_clearml.enqueue("cpu")
    fake_clearml.clear_calls()
    queues, workers = ClearMLSource(timeout=10).read(["cpu"])
    assert queues is not None and queues["cpu"].pending == 1500
    assert workers is not None and len(workers) == 1200 and len({w.id for w in workers}) == 1200
    reads = [name for name, _ in fake_clearml.calls if name != "auth.login"]
    assert reads == ["queues.get_all", "workers.get_all"]


def test_lease_entries_are_read_from_the_same_answer(fake_clearml: FakeClearML) -> None:
    source = ClearMLSource(timeout=5)
    assert source.register_lease("scaler-lease:json", 60, ["holder=abc", "ttl=60"])
    fake_clearml.register_worker(IDLE_WORKER, ["cpu"])
    workers = source.read_workers()
    assert [w.id for w in workers or []] == [IDLE_WORKER]  # a lease is not an agent
    assert source.lease_entries is not None
    (entry,) = source.lease_entries["scaler-lease:json"]
    assert entry.id == "scaler-lease:json" and "holder=abc" in entry.tags
    assert entry.user["id"] == fake_clearml.user["id"] and entry.company["id"] == fake_clearml.company["id"]
    assert entry.no_such_field is None


@pytest.mark.parametrize(
    "fault",
    [
        "error answer",
        "garbage",
        "workers not a list",
        "a worker without an id",
        "a task that is not an entry",
        "queues not a list",
        "no data",
    ],
)
def test_an_unreadable_answer_makes_the_read_fail(fake_clearml: FakeClearML, fault: str) -> None:
    fake_clearml.register_worker(IDLE_WORKER, ["cpu"])
    if fault == "error answer":
        fake_clearml.fail_next("workers.get_all", status=500, msg="injected failure")
    elif fault == "garbage":
        fake_clearml.set_garbage(True)
    elif fault == "workers not a list":
        fake_clearml.rewrite_answers("workers.get_all", lambda data: {"workers": {"oops": 1}})
    elif fault == "a worker without an id":
        fake_clearml.rewrite_answers("workers.get_all", every_worker(lambda w: w.pop("id")))
    elif fault == "a task that is not an entry":
        fake_clearml.rewrite_answers("workers.get_all", every_worker(lambda w: w.update(task=42)))
    elif fault == "queues not a list":
        fake_clearml.rewrite_answers("workers.get_all", every_worker(lambda w: w.update(queues="cpu")))
    elif fault == "no data":
        fake_clearml.rewrite_answers("workers.get_all", lambda data: {})
    source = ClearMLSource(timeout=5)
    assert source.read_workers() is None
    assert source.last_error.startswith("workers.get_all: ")
    if fault == "error answer":
        assert source.last_error == "workers.get_all: APIError: APIError: code 500: injected failure"


# -- what a user notices: the loop ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fleet(fake_clearml: FakeClearML) -> Iterator[tuple[Reconciler, SimulatedCloud, Clock]]:
    """Two running machines of resource ``cpu``, one busy and one idle worker on the fake server."""
    clock = Clock()
    cloud = SimulatedCloud(clock=clock)
    for number in (1, 2):
        inst = SimInstance(f"sim-{number:06d}", "json-fleet", "cpu", "tok", False, clock.now - 3600)
        inst.state = "running"
        cloud.instances[inst.id] = inst
    cloud.counter = 2
    simulated.use_cloud(cloud)
    fake_clearml.register_worker(BUSY_WORKER, ["cpu"])
    fake_clearml.enqueue("cpu")
    fake_clearml.take_task(BUSY_WORKER)
    fake_clearml.register_worker(IDLE_WORKER, ["cpu"])
    raw = {
        "scaler": {"name": "json-fleet", "workers_prefix": PREFIX, "polling_interval": "10s", "max_idle_time": "60s"},
        "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 4}],
    }
    host = PluginHost()
    config = build_config(raw, provider="simulated")
    loop = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=5), clock=clock)
    try:
        yield loop, cloud, clock
    finally:
        simulated.use_cloud(None)


def alive(cloud: SimulatedCloud) -> list[str]:
    return sorted(inst.id for inst in cloud.alive())


def test_odd_timestamps_change_no_decision(
    fleet: tuple[Reconciler, SimulatedCloud, Clock], fake_clearml: FakeClearML
) -> None:
    """The idle machine goes after max_idle_time and the busy one stays, as with well-formed times."""
    loop, cloud, clock = fleet
    fake_clearml.rewrite_answers("workers.get_all", every_worker(lambda w: w.update(last_activity_time="soon")))
    first = loop.tick()
    assert (
        first.clearml_ok
        and not first.actions
        and first.fleet["cpu"]
        == {
            "alive": 2,
            "booting": 0,
            "idle": 1,
            "busy": 1,
        }
    )
    clock.now += IDLE + 10
    second = loop.tick()
    assert second.terminated["idle"] == 1
    assert alive(cloud) == ["sim-000001"]


@pytest.mark.parametrize("fault", ["error answer", "garbage", "wrong shape"])
def test_clearml_unreadable_scales_nothing_down(
    fleet: tuple[Reconciler, SimulatedCloud, Clock], fake_clearml: FakeClearML, fault: str
) -> None:
    loop, cloud, clock = fleet
    assert loop.tick().clearml_ok
    clock.now += IDLE + 10
    if fault == "error answer":
        fake_clearml.fail_next("workers.get_all", status=500, times=3)
    elif fault == "garbage":
        fake_clearml.set_garbage(True)
    else:
        fake_clearml.rewrite_answers("workers.get_all", lambda data: {"workers": None})
    report = loop.tick()
    assert not report.clearml_ok and "the ClearML server could not be read" in report.failures()
    assert not report.terminated and not report.launched and not report.actions
    assert alive(cloud) == ["sim-000001", "sim-000002"]
    fake_clearml.clear_faults()
    assert loop.tick().terminated["idle"] == 1  # readable again: the idle machine goes
    assert alive(cloud) == ["sim-000001"]
