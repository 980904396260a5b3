"""The policy on tables of cases: observations in, actions out.

Every case is a scenario of one or more ticks. Each tick gives what the loop observed
(pending tasks per queue, workers, owned instances — ``None`` where a source could not be
read) and the actions a user would see: launches (resource, count, market), terminations
(instance, kind), re-enqueued tasks, and the notices logged. The :class:`PolicyState` is
carried from tick to tick exactly as the reconciler does, and a tick may report a launch
outcome back (``then=``) the way the reconciler does after calling the cloud.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.config.loading import build_config
from scaler.config.model import Config
from scaler.engine.fleet import WorkerObs, worker_id
from scaler.engine.policy import (
    Decision,
    Launch,
    Observation,
    PolicyState,
    QueueObs,
    decide,
    record_launch_failure,
    record_launch_success,
    termination_recorded,
)
from scaler.types import Instance, InstanceState

PREFIX = "dyn"

# --- small builders ---------------------------------------------------------------------


def R(name: str, queue: str = "q", max_instances: int = 4, **extra: object) -> dict[str, object]:
    """A raw resource entry."""
    return {"name": name, "queue": queue, "max_instances": max_instances, **extra}


def C(*resources: dict[str, object], fleet_id: str = "", **scaler: object) -> Config:
    """A config from raw dicts, as a user would write it (durations as text); ``fleet_id`` is the
    identity ``scaler run`` sets (empty: none known, the name alone owns)."""
    raw_scaler = {
        "name": "fleet",
        "workers_prefix": PREFIX,
        "polling_interval": "30s",
        "max_idle_time": "10m",
        "stuck_timeout": "20m",
        # each table tests its rules alone: a dearer machine launches as soon as it is needed,
        # unless a case sets spill_delay (the spill-over delay's own cases, test_policy_adaptive.py)
        "spill_delay": "0s",
        **scaler,
    }
    config = build_config({"scaler": raw_scaler, "resources": list(resources) or [R("a")]}, provider="simulated")
    return replace(config, fleet_id=fleet_id)


def M(iid: str, res: str = "a", state: str = "running", at: float = 0.0, token: str = "", fleet: str = "") -> Instance:
    """An instance as listed; ``fleet`` is the identity it is tagged with (empty: none, legacy
    when the config has an identity)."""
    return Instance(iid, res, InstanceState(state), at, token, fleet=fleet)


def W(res: str, iid: str, task: str | None = None, queues: tuple[str, ...] = ("q",), suffix: str = "") -> WorkerObs:
    """A worker of this fleet (``dyn:<res>:<iid>[suffix]``)."""
    return WorkerObs(worker_id(PREFIX, res, iid) + suffix, queues, task)


def obs(
    now: float,
    pending: dict[str, int] | None,
    instances: list[Instance] | None,
    workers: list[WorkerObs] | None,
) -> Observation:
    queues = None if pending is None else {name: QueueObs(name, n) for name, n in pending.items()}
    return Observation(now, queues, workers, instances)


Then = Callable[[Config, PolicyState, Decision, float], None]


def terminated(index: int = 0) -> Then:
    """The reconciler asked the cloud to terminate termination ``index`` of this tick."""

    def apply(config: Config, state: PolicyState, decision: Decision, now: float) -> None:
        termination_recorded(state, [decision.terminations[index].instance_id], now)

    return apply


def fail(kind: str, index: int = 0) -> Then:
    """The cloud answered launch ``index`` of this tick with a failure of ``kind``."""

    def apply(config: Config, state: PolicyState, decision: Decision, now: float) -> None:
        record_launch_failure(state, decision.launches[index], kind, now, config)

    return apply


def succeed(index: int = 0) -> Then:
    def apply(config: Config, state: PolicyState, decision: Decision, now: float) -> None:
        record_launch_success(state, decision.launches[index])

    return apply


@dataclass
class Tick:
    now: float
    pending: dict[str, int] | None = field(default_factory=dict)
    instances: list[Instance] | None = field(default_factory=list)
    workers: list[WorkerObs] | None = field(default_factory=list)
    # expected
    launches: list[tuple[str, int, str]] = field(default_factory=list)  # (resource, count, spot|on-demand)
    terms: list[tuple[str, str]] = field(default_factory=list)  # (instance id, kind), any order
    requeues: list[tuple[str, str]] = field(default_factory=list)  # (task id, queue), any order
    notices: list[str] = field(default_factory=list)  # "level:kind", any order
    says: tuple[str, ...] = ()  # text some notice must contain
    tokens: tuple[str, ...] | None = None  # one label per launch: same label <=> same token in the case
    adopts: tuple[str, ...] = ()  # legacy instances to tag with the fleet identity
    then: Then | None = None


def run_case(config: Config, ticks: list[Tick], state: PolicyState | None = None) -> list[Decision]:
    labels: dict[str, str] = {}
    decisions = []
    for number, tick in enumerate(ticks):
        where = f"tick {number} (now={tick.now})"
        decision = decide(config, obs(tick.now, tick.pending, tick.instances, tick.workers), state)
        decisions.append(decision)
        launches = [(x.resource, x.count, "spot" if x.spot else "on-demand") for x in decision.launches]
        assert launches == tick.launches, where
        assert sorted((t.instance_id, t.kind) for t in decision.terminations) == sorted(tick.terms), where
        for term in decision.terminations:  # console is saved for stuck machines, and only for them
            assert term.capture_console == (term.kind == "stuck"), where
        assert sorted((r.task_id, r.queue) for r in decision.requeues) == sorted(tick.requeues), where
        assert sorted(i.id for i in decision.adoptions) == sorted(tick.adopts), where
        assert sorted(f"{n.level}:{n.kind}" for n in decision.notices) == sorted(tick.notices), where
        for text in tick.says:
            assert any(text in n.message for n in decision.notices), f"{where}: no notice says {text!r}"
        if tick.tokens is not None:
            assert len(tick.tokens) == len(decision.launches), where
            for label, launch in zip(tick.tokens, decision.launches, strict=True):
                assert labels.setdefault(label, launch.token) == launch.token, f"{where}: {label}"
            assert len(set(labels.values())) == len(labels), f"{where}: distinct launches share a token"
        state = decision.state
        if tick.then is not None:
            tick.then(config, state, decision, tick.now)
    return decisions


def cases(*table: tuple[str, Config, list[Tick]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("config", "ticks"), [pytest.param(c, t, id=i) for i, c, t in table])


# --- demand and spill-over ----------------------------------------------------------------

BUSY = "task-busy"

DEMAND = [
    (
        "empty fleet launches one machine per pending task",
        C(R("a")),
        [Tick(100, {"q": 3}, launches=[("a", 3, "on-demand")])],
    ),
    ("nothing pending, nothing launched", C(R("a")), [Tick(100, {"q": 0})]),
    (
        "an idle worker on the queue absorbs one task",
        C(R("a")),
        [Tick(100, {"q": 3}, [M("i1")], [W("a", "i1")], launches=[("a", 2, "on-demand")])],
    ),
    (
        "a booting instance absorbs one task",
        C(R("a")),
        [Tick(100, {"q": 3}, [M("i1", state="pending")], [], launches=[("a", 2, "on-demand")])],
    ),
    (
        "idle and booting (pending or running without worker) both subtract",
        C(R("a", max_instances=8)),
        [
            Tick(
                100,
                {"q": 5},
                [M("i1"), M("i2", state="pending"), M("i3")],
                [W("a", "i1")],
                launches=[("a", 2, "on-demand")],
            )
        ],
    ),
    (
        "busy workers absorb nothing",
        C(R("a")),
        [
            Tick(
                100,
                {"q": 2},
                [M("i1"), M("i2")],
                [W("a", "i1", BUSY), W("a", "i2", "t2")],
                launches=[("a", 2, "on-demand")],
            )
        ],
    ),
    (
        "an idle worker of another queue absorbs nothing",
        C(R("a", "q"), R("b", "r")),
        [Tick(100, {"q": 1, "r": 0}, [M("b1", "b")], [W("b", "b1", queues=("r",))], launches=[("a", 1, "on-demand")])],
    ),
    (
        "demand spills over the queue's resources in config order",
        C(R("a", max_instances=2), R("b", max_instances=3)),
        [Tick(100, {"q": 4}, launches=[("a", 2, "on-demand"), ("b", 2, "on-demand")])],
    ),
    (
        "a full resource is skipped",
        C(R("a", max_instances=2), R("b", max_instances=3)),
        [
            Tick(
                100,
                {"q": 2},
                [M("a1"), M("a2")],
                [W("a", "a1", "t1"), W("a", "a2", "t2")],
                launches=[("b", 2, "on-demand")],
            )
        ],
    ),
    (
        "every resource full: the queue is reported short",
        C(R("a", max_instances=2), R("b", max_instances=3)),
        [
            Tick(
                100,
                {"q": 10},
                launches=[("a", 2, "on-demand"), ("b", 3, "on-demand")],
                notices=["info:queue_short"],
                says=("queue 'q' still needs 5 machines",),
            )
        ],
    ),
    (
        "queues are served independently",
        C(R("a", "q"), R("b", "r")),
        [Tick(100, {"q": 3, "r": 1}, launches=[("a", 3, "on-demand"), ("b", 1, "on-demand")])],
    ),
    (
        "max_instances counts the live instances",
        C(R("a", max_instances=4)),
        [
            Tick(
                100,
                {"q": 5},
                [M("i1"), M("i2"), M("i3")],
                [W("a", "i1", "t1"), W("a", "i2", "t2"), W("a", "i3", "t3")],
                launches=[("a", 1, "on-demand")],
                notices=["info:queue_short"],
                says=("still needs 4 machines",),
            )
        ],
    ),
    (
        "stopping and terminated instances do not count against max_instances",
        C(R("a", max_instances=2)),
        [
            Tick(
                100,
                {"q": 2},
                [M("i1", state="terminated"), M("i2", state="stopping")],
                launches=[("a", 2, "on-demand")],
            )
        ],
    ),
    (
        "max_launch_per_tick limits one tick, the rest follows on the next",
        C(R("a", max_instances=10), max_launch_per_tick=2),
        [
            Tick(
                100,
                {"q": 5},
                launches=[("a", 2, "on-demand")],
                notices=["info:queue_short"],
                says=("max_launch_per_tick",),
            ),
            # the reconciler re-plans within the same tick after a capacity error elsewhere
            Tick(
                100,
                {"q": 5},
                [M("n1", state="pending", at=100), M("n2", state="pending", at=100)],
                notices=["info:queue_short"],
            ),
            Tick(
                130,
                {"q": 5},
                [M("n1", state="pending", at=100), M("n2", state="pending", at=100)],
                launches=[("a", 2, "on-demand")],
                notices=["info:queue_short"],
            ),
        ],
    ),
]


@cases(*DEMAND)
def test_demand(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


# --- fleet-wide caps --------------------------------------------------------------------

CAPS = [
    (
        "max_instances_total holds launches back and says so",
        C(R("a", "q", 10), R("b", "r", 10), max_instances_total=3),
        [
            Tick(
                100,
                {"q": 4, "r": 2},
                [M("a1"), M("a2")],
                [W("a", "a1", "t1"), W("a", "a2", "t2")],
                launches=[("a", 1, "on-demand")],
                notices=["warning:cap", "info:queue_short", "warning:cap"],
                says=("3 launches for queue 'q' held back by max_instances_total = 3",),
            )
        ],
    ),
    (
        "max_instances_total counts orphans and launches of unknown outcome",
        C(R("a", "q", 10), max_instances_total=4),
        [
            Tick(100, {"q": 2}, launches=[("a", 2, "on-demand")], then=fail("unknown")),
            Tick(
                130,
                {"q": 5},
                [M("o1", "old")],
                [W("old", "o1", "t1", queues=("old",))],
                launches=[("a", 2, "on-demand"), ("a", 1, "on-demand")],
                notices=["warning:cap", "info:queue_short"],
                says=("max_instances_total = 4",),
            ),
        ],
    ),
    (
        "max_hourly_cost holds launches back and says so",
        C(R("a", max_instances=10, price_per_hour=1.5), max_hourly_cost=5),
        [
            Tick(
                100,
                {"q": 5},
                [M("a1"), M("a2")],
                [W("a", "a1", "t1"), W("a", "a2", "t2")],
                launches=[("a", 1, "on-demand")],
                notices=["warning:cap", "info:queue_short"],
                says=("held back by max_hourly_cost = 5/h",),
            )
        ],
    ),
    (
        "max_hourly_cost may be reached exactly",
        C(R("a", max_instances=10, price_per_hour=1.5), max_hourly_cost=4.5),
        [
            Tick(
                100,
                {"q": 1},
                [M("a1"), M("a2")],
                [W("a", "a1", "t1"), W("a", "a2", "t2")],
                launches=[("a", 1, "on-demand")],
            )
        ],
    ),
    (
        "max_hourly_cost holding an expensive resource still lets a cheaper one launch",
        C(R("gpu", "gpu", 4, price_per_hour=3), R("cpu", "cpu", 4, price_per_hour=0.5), max_hourly_cost=4),
        [
            Tick(
                100,
                {"gpu": 1, "cpu": 2},
                [M("g1", "gpu")],
                [W("gpu", "g1", "t1", queues=("gpu",))],
                launches=[("cpu", 2, "on-demand")],
                notices=["warning:cap", "info:queue_short"],
                says=("1 launch for queue 'gpu' held back by max_hourly_cost = 4/h",),
            )
        ],
    ),
]


@cases(*CAPS)
def test_caps(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


# --- idle, busy, stuck, orphans -----------------------------------------------------------

TERMINATION = [
    (
        "idle worker: kept just below max_idle_time, terminated at it",
        C(R("a"), max_idle_time="10m"),
        [
            Tick(1000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(1599, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(1600, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "the idle timer restarts after a task",
        C(R("a"), max_idle_time="10m"),
        [
            Tick(0, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(500, {"q": 0}, [M("i1")], [W("a", "i1", "t1")]),
            Tick(600, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(1199, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(1200, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "an idle worker is kept while its queue has pending tasks",
        C(R("a"), max_idle_time="10m"),
        [
            Tick(0, {"q": 1}, [M("i1")], [W("a", "i1")]),
            Tick(10_000, {"q": 1}, [M("i1")], [W("a", "i1")]),
            Tick(10_030, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "an idle worker is kept while another queue it serves has pending tasks",
        C(R("a", "q"), R("b", "r"), max_idle_time="10m"),
        [
            Tick(0, {"q": 0, "r": 0}, [M("i1")], [W("a", "i1", queues=("q", "r"))]),
            Tick(
                10_000,
                {"q": 0, "r": 1},
                [M("i1")],
                [W("a", "i1", queues=("q", "r"))],
                launches=[("b", 1, "on-demand")],
            ),
        ],
    ),
    (
        "a busy worker is never terminated, however old",
        C(R("a"), max_idle_time="10m"),
        [
            Tick(0, {"q": 0}, [M("i1")], [W("a", "i1", "t1")]),
            Tick(1_000_000, {"q": 0}, [M("i1")], [W("a", "i1", "t1")]),
        ],
    ),
    (
        "several agents on one machine (':suffix'): busy if any is busy, terminated when all idle",
        C(R("a"), max_idle_time="10m"),
        [
            Tick(0, {"q": 0}, [M("i1")], [W("a", "i1", suffix=":0"), W("a", "i1", "t1", suffix=":1")]),
            Tick(1000, {"q": 0}, [M("i1")], [W("a", "i1", suffix=":0"), W("a", "i1", suffix=":1")]),
            Tick(1599, {"q": 0}, [M("i1")], [W("a", "i1", suffix=":0"), W("a", "i1", suffix=":1")]),
            Tick(
                1600,
                {"q": 0},
                [M("i1")],
                [W("a", "i1", suffix=":0"), W("a", "i1", suffix=":1")],
                terms=[("i1", "idle")],
            ),
        ],
    ),
    (
        "no worker after stuck_timeout: terminated as stuck, console captured",
        C(R("a"), stuck_timeout="20m"),
        [
            Tick(1199, {"q": 0}, [M("i1", at=0)]),
            Tick(1200, {"q": 0}, [M("i1", at=0)], terms=[("i1", "stuck")]),
        ],
    ),
    (
        "a booting instance absorbs demand until it is declared stuck",
        C(R("a"), stuck_timeout="20m"),
        [
            Tick(1199, {"q": 1}, [M("i1", state="pending", at=0)]),
            Tick(
                1200,
                {"q": 1},
                [M("i1", state="pending", at=0)],
                terms=[("i1", "stuck")],
                launches=[("a", 1, "on-demand")],
            ),
        ],
    ),
    (
        "a worker vanishing from a long-running machine is not 'stuck' before stuck_timeout",
        C(R("a"), stuck_timeout="20m"),
        [
            Tick(5000, {"q": 0}, [M("i1", at=0)], [W("a", "i1", "t1")]),
            Tick(5030, {"q": 0}, [M("i1", at=0)], []),  # e.g. the worker list came back empty once
            Tick(6199, {"q": 0}, [M("i1", at=0)], []),
            Tick(6200, {"q": 0}, [M("i1", at=0)], [], terms=[("i1", "stuck")]),
        ],
    ),
    (
        "orphans = terminate: idle and worker-less orphans go, a busy one waits until idle",
        C(R("a"), orphans="terminate"),
        [
            Tick(
                700,
                {"q": 0},
                [M("o1", "old"), M("o2", "old"), M("o3", "old")],
                [W("old", "o1", queues=("old",)), W("old", "o3", "t3", queues=("old",))],
                terms=[("o1", "orphan"), ("o2", "orphan")],
            ),
            Tick(730, {"q": 0}, [M("o3", "old")], [W("old", "o3", "t3", queues=("old",))]),
            Tick(760, {"q": 0}, [M("o3", "old")], [W("old", "o3", queues=("old",))], terms=[("o3", "orphan")]),
        ],
    ),
    (
        "an orphan younger than orphan_grace is kept (said once), terminated once older",
        C(R("a"), orphan_grace="10m"),
        [
            Tick(100, {"q": 0}, [M("o1", "old", at=0)], [], notices=["info:orphan_grace"], says=("orphan o1",)),
            Tick(599, {"q": 0}, [M("o1", "old", at=0)], []),
            Tick(600, {"q": 0}, [M("o1", "old", at=0)], [], terms=[("o1", "orphan")]),
        ],
    ),
    (
        "orphans = keep: nothing terminated, said once",
        C(R("a"), orphans="keep"),
        [
            Tick(
                100,
                {"q": 0},
                [M("o1", "old"), M("o3", "old")],
                [W("old", "o1", queues=("old",)), W("old", "o3", "t3", queues=("old",))],
                notices=["info:orphans_kept"],
                says=("2 instances of unconfigured resource 'old' kept",),
            ),
            Tick(
                10_000,
                {"q": 0},
                [M("o1", "old"), M("o3", "old")],
                [W("old", "o1", queues=("old",)), W("old", "o3", queues=("old",))],
            ),
        ],
    ),
    (
        "a stopped machine (agent exited, VM shut down) is deleted so its disk stops billing",
        C(R("a")),
        [Tick(100, {"q": 0}, [M("a1", state="stopped"), M("a2")], [W("a", "a2", "t1")], terms=[("a1", "stopped")])],
    ),
    (
        "orphans = keep keeps them all: stopped or never registered",
        C(R("a"), orphans="keep", stuck_timeout="20m"),
        [
            Tick(
                5000,
                {"q": 0},
                [M("o1", "old", "stopped"), M("o2", "old", "running", at=0)],
                [],
                notices=["info:orphans_kept"],
            )
        ],
    ),
    (
        "nothing stopped is deleted while ClearML cannot be read",
        C(R("a")),
        [Tick(100, None, [M("a1", state="stopped")], None, notices=["warning:clearml_unreadable"])],
    ),
    (
        "consolidation: an idle machine of a dearer spill-over resource goes early while the cheaper one has room",
        C(R("cheap", price_per_hour=0.4, max_instances=2), R("dear", price_per_hour=1.0)),
        [
            Tick(100, {"q": 0}, [M("d1", "dear"), M("c1", "cheap")], [W("dear", "d1"), W("cheap", "c1", "t1")]),
            Tick(130, {"q": 0}, [M("d1", "dear"), M("c1", "cheap")], [W("dear", "d1"), W("cheap", "c1", "t1")]),
            Tick(
                160,
                {"q": 0},
                [M("d1", "dear"), M("c1", "cheap")],
                [W("dear", "d1"), W("cheap", "c1", "t1")],
                terms=[("d1", "consolidation")],
            ),
        ],
    ),
    (
        "no consolidation when the cheaper resource is full: the dearer machine waits for max_idle_time",
        C(R("cheap", price_per_hour=0.4, max_instances=1), R("dear", price_per_hour=1.0)),
        [
            Tick(100, {"q": 0}, [M("d1", "dear"), M("c1", "cheap")], [W("dear", "d1"), W("cheap", "c1", "t1")]),
            Tick(400, {"q": 0}, [M("d1", "dear"), M("c1", "cheap")], [W("dear", "d1"), W("cheap", "c1", "t1")]),
            Tick(
                700,
                {"q": 0},
                [M("d1", "dear"), M("c1", "cheap")],
                [W("dear", "d1"), W("cheap", "c1", "t1")],
                terms=[("d1", "idle")],
            ),
        ],
    ),
]


@cases(*TERMINATION)
def test_termination(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


# --- ownership: fleet identity, legacy instances, workers_prefix changes ------------------------

ME = "1111aaaa2222bbbb"  # this fleet's identity (scaler run sets config.fleet_id)

OWNERSHIP = [
    (
        "an instance with this fleet's identity is managed as before (idle, stuck, orphan)",
        C(R("a"), fleet_id=ME, max_idle_time="10m", stuck_timeout="20m"),
        [
            Tick(
                0,
                {"q": 0},
                [M("i1", fleet=ME), M("s1", fleet=ME), M("o1", "old", fleet=ME)],
                [W("a", "i1")],
                notices=["info:orphan_grace"],
            ),
            Tick(
                1200,
                {"q": 0},
                [M("i1", fleet=ME), M("s1", fleet=ME), M("o1", "old", fleet=ME)],
                [W("a", "i1")],
                terms=[("i1", "idle"), ("s1", "stuck"), ("o1", "orphan")],
            ),
        ],
    ),
    (
        "a legacy instance (name only) no worker here names is never touched, however long; said once",
        C(R("a"), fleet_id=ME, stuck_timeout="20m"),
        [
            Tick(
                100,
                {"q": 0},
                [M("l1"), M("l2", "old"), M("l3", state="stopped")],
                [],
                notices=["warning:legacy_unclaimed"] * 3,
                says=("may belong to another deployment",),
            ),
            Tick(1_000_000, {"q": 0}, [M("l1"), M("l2", "old"), M("l3", state="stopped")], []),
        ],
    ),
    (
        "an unclaimed legacy instance counts against max_instances (it may be ours, booting) but absorbs no demand",
        C(R("a", max_instances=2), fleet_id=ME),
        [
            Tick(
                100,
                {"q": 3},
                [M("l1")],
                [],
                launches=[("a", 1, "on-demand")],
                notices=["warning:legacy_unclaimed", "info:queue_short"],
            ),
            Tick(130, {"q": 1}, [M("l1")], [], launches=[("a", 1, "on-demand")]),
        ],
    ),
    (
        "a legacy instance whose worker is on this ClearML server is this fleet's: adopted, then managed",
        C(R("a"), fleet_id=ME, max_idle_time="10m"),
        [
            Tick(0, {"q": 0}, [M("l1")], [W("a", "l1", "t1")], adopts=("l1",)),
            # tagging failed (or the provider cannot tag): still this fleet's, adopted again
            Tick(30, {"q": 0}, [M("l1")], [W("a", "l1")], adopts=("l1",)),
            Tick(60, {"q": 0}, [M("l1", fleet=ME)], [W("a", "l1")]),
            Tick(630, {"q": 0}, [M("l1", fleet=ME)], [W("a", "l1")], terms=[("l1", "idle")]),
        ],
    ),
    (
        "an adopted legacy machine stays this fleet's when its worker is missing from one read",
        C(R("a"), fleet_id=ME, stuck_timeout="20m"),
        [
            Tick(0, {"q": 0}, [M("l1")], [W("a", "l1", "t1")], adopts=("l1",)),
            Tick(30, {"q": 0}, [M("l1")], [], adopts=("l1",)),
            Tick(1230, {"q": 0}, [M("l1")], [], adopts=("l1",), terms=[("l1", "stuck")]),
        ],
    ),
    (
        "an orphan adopted but not tagged yet is not terminated: an orphan goes only with the full identity",
        C(R("a"), fleet_id=ME, orphan_grace="10m"),
        [
            Tick(
                5000,
                {"q": 0},
                [M("o1", "old")],
                [W("old", "o1", queues=("old",))],
                adopts=("o1",),
                notices=["info:orphan_untagged"],
            ),
            Tick(
                5030, {"q": 0}, [M("o1", "old", fleet=ME)], [W("old", "o1", queues=("old",))], terms=[("o1", "orphan")]
            ),
        ],
    ),
    (
        "without a ClearML server (simulator) the scaler's name alone owns: nothing is legacy",
        C(R("a"), stuck_timeout="20m"),
        [Tick(1200, {"q": 0}, [M("s1")], [], terms=[("s1", "stuck")])],
    ),
    (
        "workers_prefix changed: a busy machine registered under the old prefix is busy, not stuck; said once",
        C(R("a"), fleet_id=ME, stuck_timeout="20m", max_idle_time="10m"),
        [
            Tick(
                5000,
                {"q": 0},
                [M("i1", fleet=ME), M("i2", fleet=ME)],
                [WorkerObs("old_prefix:a:i1", ("q",), "t1"), WorkerObs("old_prefix:a:i2", ("q",))],
                notices=["warning:prefix_changed"],
                says=("workers_prefix changed from 'old_prefix' to 'dyn'",),
            ),
            Tick(
                5600,
                {"q": 0},
                [M("i1", fleet=ME), M("i2", fleet=ME)],
                [WorkerObs("old_prefix:a:i1", ("q",), "t1"), WorkerObs("old_prefix:a:i2", ("q",))],
                terms=[("i2", "idle")],
            ),
            Tick(1_000_000, {"q": 0}, [M("i1", fleet=ME)], [WorkerObs("old_prefix:a:i1", ("q",), "t1")]),
        ],
    ),
    (
        "a worker under another prefix naming no instance of this fleet is foreign: not counted, not acted on",
        C(R("a"), fleet_id=ME),
        [Tick(100, {"q": 1}, [], [WorkerObs("other:a:i-9", ("q",))], launches=[("a", 1, "on-demand")])],
    ),
]


@cases(*OWNERSHIP)
def test_ownership(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


def test_terminations_name_their_workers_and_reason() -> None:
    config = C(R("a"), max_idle_time="10m", stuck_timeout="20m")
    workers = [W("a", "i1", suffix=":0"), W("a", "i1", suffix=":1")]
    state = decide(config, obs(0, {"q": 0}, [M("i1"), M("s1", at=0)], workers)).state
    decision = decide(config, obs(1200, {"q": 0}, [M("i1"), M("s1", at=0)], workers), state)
    by_id = {t.instance_id: t for t in decision.terminations}
    assert by_id["i1"].worker_ids == ("dyn:a:i1:0", "dyn:a:i1:1")
    assert "idle for 20m (max_idle_time 10m)" in by_id["i1"].reason
    assert by_id["s1"].worker_ids == ()
    assert "no worker registered 20m after launch (stuck_timeout 20m)" in by_id["s1"].reason


# --- spot, capacity, unknown outcomes ------------------------------------------------------

SPOT_A = R("a", spot=True, regular_instance_rollback_timeout="5m", spot_blackout_period="30m")
BOOTING_A = [M("x1", state="pending", at=1300), M("x2", state="pending", at=1300)]

SPOT = [
    ("a spot resource launches spot", C(SPOT_A), [Tick(100, {"q": 2}, launches=[("a", 2, "spot")])]),
    (
        "spot capacity errors: retried until regular_instance_rollback_timeout, then on-demand and blackout",
        C(SPOT_A),
        [
            Tick(1000, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            # re-plan in the same tick: not retried at once
            Tick(1000, {"q": 2}, notices=["info:queue_short"]),
            Tick(1030, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1299, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(
                1300,
                {"q": 2},
                launches=[("a", 2, "on-demand")],
                notices=["warning:spot_rollback"],
                says=("launching on-demand, spot blackout for 30m",),
                then=succeed(),
            ),
            # during the blackout: on-demand directly, no new notice
            Tick(1330, {"q": 4}, BOOTING_A, launches=[("a", 2, "on-demand")]),
            # blackout over: spot again
            Tick(3100, {"q": 2}, launches=[("a", 2, "spot")]),
        ],
    ),
    (
        "a spot success ends the failing period (no rollback later)",
        C(SPOT_A),
        [
            Tick(1000, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1030, {"q": 2}, launches=[("a", 2, "spot")], then=succeed()),
            Tick(1400, {"q": 2}, launches=[("a", 2, "spot")]),
        ],
    ),
    (
        "rollback timeout 0: falls back at once; blackout resources fill after the others; expiry returns to spot",
        C(R("a", spot=True, regular_instance_rollback_timeout=0, spot_blackout_period="30m"), R("b")),
        [
            Tick(1000, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1000, {"q": 2}, launches=[("b", 2, "on-demand")], notices=["warning:spot_rollback"]),
            Tick(
                1030,
                {"q": 8},
                [M("b1", "b", "pending", 1000), M("b2", "b", "pending", 1000)],
                launches=[("b", 2, "on-demand"), ("a", 4, "on-demand")],
            ),
            Tick(2800, {"q": 2}, launches=[("a", 2, "spot")]),
        ],
    ),
    (
        "on-demand capacity error blocks the resource for a while: demand spills",
        C(R("a"), R("b")),
        [
            Tick(1000, {"q": 2}, launches=[("a", 2, "on-demand")], then=fail("capacity")),
            Tick(1000, {"q": 2}, launches=[("b", 2, "on-demand")]),
            Tick(
                1030,
                {"q": 4},
                [M("b1", "b", "pending", 1000), M("b2", "b", "pending", 1000)],
                launches=[("b", 2, "on-demand")],
            ),
            Tick(
                1060,
                {"q": 6},
                [M(f"b{n}", "b", "pending", 1000) for n in range(1, 5)],
                launches=[("a", 2, "on-demand")],
            ),
        ],
    ),
    (
        "a launch of unknown outcome is re-issued with the same token and counts against max_instances",
        C(R("a", max_instances=5)),
        [
            Tick(100, {"q": 2}, launches=[("a", 2, "on-demand")], tokens=("L1",), then=fail("unknown")),
            Tick(130, {"q": 4}, launches=[("a", 2, "on-demand"), ("a", 2, "on-demand")], tokens=("L1", "L2")),
        ],
    ),
    (
        "an unknown launch fills the resource: only the retry goes out",
        C(R("a", max_instances=3)),
        [
            Tick(
                100,
                {"q": 5},
                launches=[("a", 3, "on-demand")],
                tokens=("L1",),
                notices=["info:queue_short"],
                then=fail("unknown"),
            ),
            Tick(130, {"q": 5}, launches=[("a", 3, "on-demand")], tokens=("L1",), notices=["info:queue_short"]),
        ],
    ),
    (
        "a spot request still pending after the rollback timeout is dropped and on-demand launched instead",
        C(SPOT_A),
        [
            Tick(100, {"q": 1}, launches=[("a", 1, "spot")], then=succeed()),
            Tick(250, {"q": 1}, [Instance("s1", "a", InstanceState.PENDING, 100.0, spot=True)]),
            Tick(
                400,
                {"q": 1},
                [Instance("s1", "a", InstanceState.PENDING, 100.0, spot=True)],
                terms=[("s1", "spot_unfulfilled")],
                launches=[("a", 1, "on-demand")],
                notices=["warning:spot_rollback"],
            ),
        ],
    ),
    (
        "an on-demand fallback machine goes once idle after the blackout, not after max_idle_time",
        C(SPOT_A),
        [
            Tick(100, {"q": 1}, launches=[("a", 1, "spot")], then=fail("capacity")),
            Tick(
                500,
                {"q": 1},
                launches=[("a", 1, "on-demand")],
                notices=["warning:spot_rollback"],
                then=succeed(),
            ),
            Tick(600, {"q": 0}, [M("od1", at=500)], [W("a", "od1")]),  # idle, still in blackout: kept
            Tick(700, {"q": 0}, [M("od1", at=500)], [W("a", "od1")]),
            Tick(2400, {"q": 0}, [M("od1", at=500)], [W("a", "od1", "t9")]),  # busy after the blackout
            Tick(2430, {"q": 0}, [M("od1", at=500)], [W("a", "od1")]),
            Tick(2500, {"q": 0}, [M("od1", at=500)], [W("a", "od1")], terms=[("od1", "consolidation")]),
        ],
    ),
]


@cases(*SPOT)
def test_spot_and_capacity(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


def test_unknown_launch_confirmed_by_the_listing_is_not_retried() -> None:
    config = C(R("a", max_instances=3))
    first = run_case(config, [Tick(100, {"q": 3}, launches=[("a", 3, "on-demand")], then=fail("unknown"))])[0]
    token = first.launches[0].token
    created = [M(f"n{k}", state="pending", at=100, token=token) for k in range(3)]
    decision = decide(config, obs(130, {"q": 3}, created, []), first.state)
    assert decision.launches == []
    assert decision.state.unconfirmed == {}


# --- fail-safe, strays, prefixes -----------------------------------------------------------

IDLE_LONG = [
    Tick(0, {"q": 0}, [M("i1"), M("s1", at=0)], [W("a", "i1")]),
]

FAILSAFE = [
    (
        "queues unreadable: nothing terminated, nothing launched",
        C(R("a")),
        [
            *IDLE_LONG,
            Tick(100_000, None, [M("i1"), M("s1", at=0)], [W("a", "i1")], notices=["warning:clearml_unreadable"]),
        ],
    ),
    (
        "workers unreadable: nothing terminated, nothing launched",
        C(R("a")),
        [*IDLE_LONG, Tick(100_000, {"q": 5}, [M("i1"), M("s1", at=0)], None, notices=["warning:clearml_unreadable"])],
    ),
    (
        "cloud unreadable: nothing launched, nothing terminated",
        C(R("a")),
        [*IDLE_LONG, Tick(100_000, {"q": 5}, None, [W("a", "i1")], notices=["warning:cloud_unreadable"])],
    ),
    (
        "everything unreadable: both said",
        C(R("a")),
        [Tick(100, None, None, None, notices=["warning:cloud_unreadable", "warning:clearml_unreadable"])],
    ),
    (
        "a worker of the fleet's prefix without an instance counts for nothing, said once",
        C(R("a", max_instances=1)),
        [
            Tick(
                100,
                {"q": 1},
                [],
                [W("a", "i-gone")],
                launches=[("a", 1, "on-demand")],
                notices=["info:stray_worker"],
                says=("dyn:a:i-gone",),
            ),
            Tick(130, {"q": 1}, [M("n1", state="pending", at=100)], [W("a", "i-gone")]),
        ],
    ),
    (
        "workers of other prefixes and static workers are ignored",
        C(R("a", max_instances=2)),
        [
            Tick(
                100,
                {"q": 2},
                [M("i1")],
                [
                    WorkerObs("other:a:i7", ("q",)),
                    WorkerObs("dyn2:a:i2", ("q",)),
                    WorkerObs("dyn", ("q",)),
                    WorkerObs("laptop", ("q",)),
                ],
                launches=[("a", 1, "on-demand")],  # i1 counts as booting only
            )
        ],
    ),
]


@cases(*FAILSAFE)
def test_fail_safe_and_strays(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


# --- interrupted tasks, duplicates ---------------------------------------------------------

RUNNING_I1 = Tick(100, {"q": 0}, [M("i1")], [W("a", "i1", "t1")])
DEAD_I1 = [W("a", "i1", "t1")]  # the server keeps listing the dead worker for a while

INTERRUPTED = [
    (
        "machine vanished while running a task: re-enqueued once",
        C(R("a")),
        [
            RUNNING_I1,
            Tick(130, {"q": 0}, [], DEAD_I1, requeues=[("t1", "q")], notices=["info:stray_worker"]),
            Tick(160, {"q": 0}, [], DEAD_I1),
            Tick(190, {"q": 0}, [M("i1", state="terminated")], DEAD_I1),
        ],
    ),
    (
        "machine idle at the last tick took a task and vanished before this one: re-enqueued",
        C(R("a")),
        [
            Tick(100, {"q": 0}, [M("i1")], [W("a", "i1")]),  # idle: no task seen running on it
            Tick(130, {"q": 0}, [], DEAD_I1, requeues=[("t1", "q")], notices=["info:stray_worker"]),
            Tick(160, {"q": 0}, [], DEAD_I1),
        ],
    ),
    (
        "requeue_interrupted_tasks = false: reported, not re-enqueued",
        C(R("a"), requeue_interrupted_tasks=False),
        [
            RUNNING_I1,
            Tick(
                130,
                {"q": 0},
                [],
                DEAD_I1,
                notices=["info:stray_worker", "warning:task_interrupted"],
                says=("task t1 was interrupted",),
            ),
            Tick(160, {"q": 0}, [], DEAD_I1),
        ],
    ),
    (
        "after a restart: a dead worker of an instance listed as terminated",
        C(R("a")),
        [
            Tick(
                100,
                {"q": 0},
                [M("i1", state="terminated")],
                DEAD_I1,
                requeues=[("t1", "q")],
                notices=["info:stray_worker"],
            ),
            Tick(130, {"q": 0}, [M("i1", state="terminated")], DEAD_I1),
        ],
    ),
    (
        "the worker took a task in the instant before its terminate: re-enqueued, the machine is gone",
        C(R("a")),
        [
            Tick(0, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(100_000, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")], then=terminated(0)),
            Tick(100_030, {"q": 0}, [], [W("a", "i1", "t7")], requeues=[("t7", "q")], notices=["info:stray_worker"]),
            Tick(100_060, {"q": 0}, [], [W("a", "i1", "t7")]),  # once
        ],
    ),
    (
        "a worker of our prefix whose machine this fleet never owned: reported, its task left alone",
        C(R("a")),
        [Tick(100, {"q": 0}, [], [W("a", "elsewhere", "t9")], notices=["info:stray_worker"], says=("t9",))],
    ),
    (
        "a task interrupted on two machines in turn is re-enqueued each time",
        C(R("a")),
        [
            RUNNING_I1,
            Tick(130, {"q": 0}, [], DEAD_I1, requeues=[("t1", "q")], notices=["info:stray_worker"]),
            Tick(160, {"q": 0}, [M("i2")], [*DEAD_I1, W("a", "i2", "t1")], notices=["warning:duplicate_task_run"]),
            Tick(
                190,
                {"q": 0},
                [],
                [*DEAD_I1, W("a", "i2", "t1")],
                requeues=[("t1", "q")],
                notices=["info:stray_worker"],
            ),
        ],
    ),
    (
        "a vanished machine's task that another worker already runs is not re-enqueued",
        C(R("a")),
        [
            RUNNING_I1,
            Tick(
                130,
                {"q": 0},
                [M("i2")],
                [*DEAD_I1, W("a", "i2", "t1")],
                notices=["info:stray_worker", "warning:duplicate_task_run"],
            ),
            # the task ends on i2 while the dead worker of i1 still shows it: still not re-enqueued
            Tick(160, {"q": 0}, [M("i1", state="terminated"), M("i2")], [*DEAD_I1, W("a", "i2")]),
        ],
    ),
    (
        "two agents on a vanished machine: both tasks re-enqueued",
        C(R("a")),
        [
            Tick(100, {"q": 0}, [M("i1")], [W("a", "i1", "t1", suffix=":0"), W("a", "i1", "t2", suffix=":1")]),
            Tick(
                130,
                {"q": 0},
                [],
                [W("a", "i1", "t1", suffix=":0"), W("a", "i1", "t2", suffix=":1")],
                requeues=[("t1", "q"), ("t2", "q")],
                notices=["info:stray_worker", "info:stray_worker"],
            ),
        ],
    ),
    (
        "a task run by two workers is warned about once",
        C(R("a")),
        [
            Tick(
                100,
                {"q": 0},
                [M("i1"), M("i2")],
                [W("a", "i1", "t1"), W("a", "i2", "t1")],
                notices=["warning:duplicate_task_run"],
                says=("task t1 is run by 2 workers at once: dyn:a:i1, dyn:a:i2",),
            ),
            Tick(130, {"q": 0}, [M("i1"), M("i2")], [W("a", "i1", "t1"), W("a", "i2", "t1")]),
        ],
    ),
    (
        "warn_duplicate_task_runs = false: silent",
        C(R("a"), warn_duplicate_task_runs=False),
        [Tick(100, {"q": 0}, [M("i1"), M("i2")], [W("a", "i1", "t1"), W("a", "i2", "t1")])],
    ),
]


@cases(*INTERRUPTED)
def test_interrupted_tasks_and_duplicates(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


# --- launch tokens ------------------------------------------------------------------------


def test_launch_tokens_are_deterministic_and_distinct() -> None:
    config = C(R("a", max_instances=2), R("b", max_instances=2))
    seen = obs(100, {"q": 4}, [], [])
    one, two = decide(config, seen, PolicyState()), decide(config, seen, PolicyState())
    assert [x.token for x in one.launches] == [x.token for x in two.launches]
    tokens = [x.token for x in one.launches]
    later = decide(config, obs(130, {"q": 4}, [], []), one.state)
    tokens += [x.token for x in later.launches]
    assert len(tokens) == 4 and len(set(tokens)) == 4
    assert all(uuid.UUID(t).version == 5 for t in tokens)  # GCE requestId must be a UUID


# --- properties ---------------------------------------------------------------------------

NAMES = ["r0", "r1", "r2", "r3"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Config, Observation, PolicyState]:
    n = draw(st.integers(1, 4))
    resources = [
        R(
            NAMES[k],
            draw(st.sampled_from(["q0", "q1", "q2"])),
            draw(st.integers(1, 5)),
            spot=draw(st.booleans()),
            price_per_hour=draw(st.sampled_from([0, 0.5, 1, 2.5])),
            regular_instance_rollback_timeout=draw(st.sampled_from([0, 1, 10])),
        )
        for k in range(n)
    ]
    config = C(
        *resources,
        max_instances_total=draw(st.integers(0, 12)),
        max_hourly_cost=draw(st.sampled_from([0, 2, 5, 10])),
        max_launch_per_tick=draw(st.integers(0, 3)),
        orphans=draw(st.sampled_from(["terminate", "keep"])),
        orphan_grace=draw(st.sampled_from([0, 10])),
        max_idle_time=draw(st.sampled_from([0, 1, 10])),
        stuck_timeout=draw(st.sampled_from([1, 20])),
        fleet_id=draw(st.sampled_from(["", ME])),
    )
    now = 10_000.0
    state = PolicyState()
    instances: list[Instance] = []
    workers: list[WorkerObs] = []
    for res in [*config.resources[:n], None]:
        name = res.name if res else "gone"
        count = draw(st.integers(0, res.max_instances if res else 2))
        for k in range(count):
            iid = f"{name}-{k}"
            inst_state = draw(st.sampled_from(["pending", "running", "running", "stopping", "terminated"]))
            fleet = draw(st.sampled_from([config.fleet_id, config.fleet_id, ""]))  # "": legacy when fleet_id is set
            instances.append(M(iid, name, inst_state, at=draw(st.sampled_from([0.0, now - 30, now])), fleet=fleet))
            for suffix in draw(st.sampled_from([[""], [], [":0", ":1"]])):
                task = draw(st.sampled_from([None, None, f"t-{iid}{suffix}", "t-shared"]))
                prefix = draw(st.sampled_from([PREFIX, PREFIX, "old"]))  # "old": before a workers_prefix change
                queues = (res.queue if res else "old",)
                workers.append(WorkerObs(worker_id(prefix, name, iid) + suffix, queues, task))
        if res is not None and draw(st.booleans()):
            alive = sum(1 for i in instances if i.resource == name and i.state.alive)
            room = res.max_instances - alive
            if room > 0:
                launch = Launch(name, draw(st.integers(1, room)), res.spot, f"tok-{name}", "earlier")
                state.unconfirmed[launch.token] = launch
        if res is not None:
            state.spot_failing_since.update({name: now - 5} if draw(st.booleans()) else {})
            state.blackout_until.update({name: now + 60} if draw(st.booleans()) else {})
            state.capacity_blocked_until.update({name: now + 60} if draw(st.booleans()) else {})
        idle_since = draw(st.sampled_from([None, 0.0, now]))
        if idle_since is not None:
            state.idle_since.update({i.id: idle_since for i in instances if i.resource == name})
    workers.append(W("r0", "ghost", draw(st.sampled_from([None, "t-ghost"]))))
    workers.append(WorkerObs("other:r0:r0-foreign", ("q0",), "t-foreign"))
    pending = {q: draw(st.integers(0, 12)) for q in config.queues}
    seen = Observation(
        now,
        draw(st.sampled_from([None, *[{q: QueueObs(q, p) for q, p in pending.items()}] * 3])),
        draw(st.sampled_from([None, workers, workers, workers])),
        draw(st.sampled_from([None, instances, instances, instances])),
    )
    return config, seen, state


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_invariants(world: tuple[Config, Observation, PolicyState]) -> None:
    config, seen, state = world
    before = state.copy()
    decision = decide(config, seen, state)
    instances = seen.instances or []
    alive = [i for i in instances if i.state.alive]

    if seen.instances is None or seen.queues is None or seen.workers is None:
        assert decision.launches == []
    if seen.queues is None or seen.workers is None:
        assert decision.terminations == []

    # never above max_instances: alive + still-unconfirmed + launched (retries included)
    for res in config.resources:
        launched = sum(x.count for x in decision.launches if x.resource == res.name)
        assert sum(1 for i in alive if i.resource == res.name) + launched <= res.max_instances, res.name

    new = [x for x in decision.launches if x.token not in before.unconfirmed]
    unconfirmed_after = sum(x.count for x in decision.state.unconfirmed.values())
    if config.scaler.max_instances_total and new:
        total = len(alive) + unconfirmed_after + sum(x.count for x in new)
        assert total <= config.scaler.max_instances_total
    price = {r.name: r.price_per_hour for r in config.resources}
    if config.scaler.max_hourly_cost and any(price[x.resource] for x in new):
        cost = sum(price.get(i.resource, 0) for i in alive)
        cost += sum(price[x.resource] * x.count for x in [*decision.state.unconfirmed.values(), *new])
        assert cost <= config.scaler.max_hourly_cost + 1e-9
    if config.scaler.max_launch_per_tick:
        for res in config.resources:
            assert sum(x.count for x in new if x.resource == res.name) <= config.scaler.max_launch_per_tick

    # a machine whose worker runs a task is never terminated, whatever prefix the worker registered under
    def names(worker: str, inst: Instance) -> bool:
        parts = worker.split(":")
        return parts[1:3] == [inst.resource, inst.id] and len(parts) in (3, 4)

    busy = {i.id for i in alive for w in seen.workers or [] if w.task and names(w.id, i)}
    assert not busy & {t.instance_id for t in decision.terminations}
    # a legacy machine (no identity) that no worker here names is never touched: maybe another deployment's
    terminated = {t.instance_id: t for t in decision.terminations}
    if config.fleet_id:
        unclaimed = {
            i.id for i in instances if not i.fleet and not any(names(w.id, i) for w in seen.workers or [])
        } - state.adopted
        assert not unclaimed & set(terminated)
    # an orphan goes only with this fleet's full identity and once older than orphan_grace
    for inst in instances:
        if inst.id in terminated and terminated[inst.id].kind == "orphan":
            assert inst.fleet == config.fleet_id and now_of(seen) - inst.launched_at >= config.scaler.orphan_grace
    # only alive, owned instances are terminated, each once
    ids = [t.instance_id for t in decision.terminations]
    assert len(ids) == len(set(ids)) and set(ids) <= {i.id for i in alive}
    # a task is re-enqueued at most once per decision, never the foreign one
    tasks = [r.task_id for r in decision.requeues]
    assert len(tasks) == len(set(tasks)) and "t-foreign" not in tasks


def now_of(seen: Observation) -> float:
    return seen.now


def test_shifted_state_keeps_every_measured_duration() -> None:
    """After a wall-clock jump the reconciler shifts the state: timers keep what they measured."""
    state = PolicyState(
        idle_since={"i-1": 100.0},
        spot_failing_since={"gpu": 50.0},
        spot_failed_at={"gpu": 90.0},
        blackout_until={"gpu": 400.0},
        capacity_blocked_until={"cpu": 160.0},
        worker_seen={"i-1": 95.0},
        launched_seen={"i-1": 10.0},
        tick_at=100.0,
    )
    moved = state.shifted(-3600.0)
    assert moved.idle_since == {"i-1": 100.0 - 3600} and moved.launched_seen == {"i-1": 10.0 - 3600}
    assert moved.blackout_until["gpu"] - moved.spot_failed_at["gpu"] == 310.0
    assert moved.capacity_blocked_until == {"cpu": 160.0 - 3600} and moved.tick_at == 100.0 - 3600
    assert state.idle_since == {"i-1": 100.0}  # the original is untouched


def test_copy_keeps_every_field_in_its_place_and_shares_no_container() -> None:
    """Every field gets a value no other field has: a copy that swapped two fields (or forgot one
    that a new field added) differs; changing a container of the copy leaves the original alone."""
    launch = Launch("a", 1, False, "tok", "why")
    values: dict[str, object] = {}
    for number, spec in enumerate(fields(PolicyState)):
        sample = getattr(PolicyState(), spec.name)
        if isinstance(sample, dict):
            values[spec.name] = {f"key-{spec.name}": launch if spec.name == "unconfirmed" else float(number)}
        elif isinstance(sample, set):
            values[spec.name] = {f"item-{spec.name}"}
        elif isinstance(sample, (int, float)) and not isinstance(sample, bool):
            values[spec.name] = type(sample)(number + 100)
        else:
            raise AssertionError(f"a PolicyState field of an unexpected type: {spec.name}")
    state = PolicyState(**values)  # type: ignore[arg-type]
    copied = state.copy()
    for spec in fields(PolicyState):
        assert getattr(copied, spec.name) == values[spec.name], spec.name
        container = getattr(copied, spec.name)
        if isinstance(container, (dict, set)):
            assert container is not getattr(state, spec.name), spec.name
            container.clear()
            assert getattr(state, spec.name) == values[spec.name], spec.name
