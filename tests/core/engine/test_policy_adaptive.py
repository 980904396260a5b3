"""The adaptive rules of the policy on trace snippets: what the scaler learnt so far (arrivals per
queue, boot times, run times of tasks like the running ones) and the decision expected at each
tick. ``idle_policy = adaptive`` (the default) ends an idle machine once its queue's next task is
not due within two boot times; the free-up rule leaves a pending task to a busy worker expected to
finish within one boot time. See docs/how-it-works.md."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from scaler.engine.fleet import WorkerObs, worker_id
from scaler.engine.policy import PolicyState, decide
from scaler.types import Instance
from tests.core.engine.test_policy import PREFIX, C, M, R, Tick, W, obs, run_case

BOOT = 120.0  # boot time the snippets say the resources took


@dataclass(frozen=True)
class Snippet:
    """What the scaler observed before the first tick of a case."""

    arrivals: tuple[float, ...] = ()  # times a task arrived in queue q
    boots: tuple[str, ...] = ("a",)  # resources seen booting (in BOOT seconds)
    runs: tuple[tuple[str, float], ...] = ()  # (task name, run time) of tasks of queue q that ended
    running: tuple[tuple[str, str, float], ...] = ()  # (task id, task name, started at) running now
    spot_failing: tuple[str, ...] = ()  # resources whose spot market is in blackout
    watched: float | None = None  # when the scaler first read queue q (None: at the case's first tick)

    def state(self) -> PolicyState:
        state = PolicyState()
        state.arrivals["q"] = tuple((at, 1) for at in self.arrivals)
        state.last_pending["q"] = 0
        for resource in self.boots:
            state.boot_times[resource] = (BOOT,)
        for name, took in self.runs:
            for key in (f"q\x00{name}", f"q\x00{name.rsplit('-', 1)[0]}*", "q"):  # name, family, queue
                state.durations[key] = (*state.durations.get(key, ()), took)
        for task, name, at in self.running:
            state.task_seen[task] = ("q", at, name, "b1")
        for resource in self.spot_failing:
            state.blackout_until[resource] = 1e9
        if self.watched is not None:
            state.watched_since["q"] = self.watched
        return state


def Spot(iid: str, res: str = "a") -> Instance:
    """A running spot instance of this fleet."""
    return replace(M(iid, res), spot=True)


def Wt(res: str, iid: str, task: str, name: str) -> WorkerObs:
    return WorkerObs(worker_id(PREFIX, res, iid), ("q",), task, name)


def SPILL(**settings: str):
    """A queue with a cheap resource full at 2 machines and a dearer one to spill to."""
    return C(R("a", max_instances=2, price_per_hour=0.2), R("b", price_per_hour=0.5), **settings)


EVERY_10M = tuple(float(t) for t in range(0, 3601, 600))  # a task every 10 minutes until 1:00:00

#: run times for the spill-over patience cases: at 25m, each of 4 ran longer; 1 ended within 2m more
#: (25% < 80%: the free-up rule does not count it), 2 within 4m more (2 boots): 50% per worker; five short
#: runs make a short run of the queue (1m40s) shorter than 2 boots, so the window is the 2 boots
PATIENCE_RUNS = (
    ("r-1", 1600.0),
    ("r-2", 1700.0),
    ("r-3", 1800.0),
    ("r-4", 1900.0),
    *((f"quick-{i}", 100.0) for i in range(5)),
)
#: a queue of long runs, 26m40s to 33m20s
LONG_RUNS = tuple((f"r-{i}", 1600.0 + 100 * i) for i in range(5))
RUNNING_2 = (("t1", "job-1", 0), ("t2", "job-2", 0))  # the tasks of BUSY_2, seen running since 0
BUSY_2 = [Wt("a", "b1", "t1", "job-1"), Wt("a", "b2", "t2", "job-2")]

CASES = [
    (
        "adaptive idle: a task every 10m, boot 2m: kept while the next one is due within 4m, ended when not",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [
            Tick(3630, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),  # next due in ~9m30s
        ],
    ),
    (
        "adaptive idle: kept when the next task is due soon (8m since the last arrival)",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [
            Tick(4080, {"q": 0}, [M("i1")], [W("a", "i1")]),  # due in ~2m: kept
            Tick(4110, {"q": 0}, [M("i1")], [W("a", "i1")]),  # due in ~1m30s: kept
        ],
    ),
    (
        "adaptive idle: no task for longer than any gap seen: ended at once",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")])],
    ),
    (
        "adaptive idle: of two idle machines only the first is due a task; the spot one is kept, the "
        "on-demand fallback goes (a consolidation: spot works)",
        C(R("a", spot=True), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [
            Tick(
                4080,
                {"q": 0},
                [Spot("i1"), M("od1")],
                [W("a", "i1"), W("a", "od1")],
                terms=[("od1", "consolidation")],
            )
        ],
    ),
    (
        "adaptive idle: no evidence yet (too few arrivals): kept until max_idle_time",
        C(R("a"), max_idle_time="10m"),
        Snippet(arrivals=(0.0, 600.0)),
        [
            Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5600, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "adaptive idle: a sparse queue (2 arrivals in 83m watched: next due in ~28m, boot 2m): ended at once",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=(0.0, 600.0), watched=0.0),
        [
            Tick(
                5000,
                {"q": 0},
                [M("i1")],
                [W("a", "i1")],
                terms=[("i1", "idle")],
            )
        ],
    ),
    (
        "adaptive idle: too few arrivals over less than 1h watched (a restart): kept until max_idle_time",
        C(R("a"), max_idle_time="10m"),
        Snippet(arrivals=(0.0, 600.0), watched=2000.0),
        [
            Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5600, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "adaptive idle: no boot time seen for the resource: kept until max_idle_time",
        C(R("a"), max_idle_time="10m"),
        Snippet(arrivals=EVERY_10M, boots=()),
        [
            Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5600, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "min_idle_time is a floor: not ended before it, whatever the arrivals say",
        C(R("a"), max_idle_time="30m", min_idle_time="5m"),
        Snippet(arrivals=EVERY_10M),
        [
            Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5270, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5300, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "idle_policy = fixed: every idle machine stays max_idle_time",
        C(R("a"), max_idle_time="10m", idle_policy="fixed"),
        Snippet(arrivals=EVERY_10M),
        [
            Tick(5000, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5570, {"q": 0}, [M("i1")], [W("a", "i1")]),
            Tick(5600, {"q": 0}, [M("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "adaptive idle never ends a machine while a queue it serves has pending tasks",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [Tick(5000, {"q": 1}, [M("i1")], [W("a", "i1")])],
    ),
    (
        "adaptive idle scales nothing down while ClearML cannot be read",
        C(R("a"), max_idle_time="30m"),
        Snippet(arrivals=EVERY_10M),
        [Tick(5000, None, [M("i1")], None, notices=["warning:clearml_unreadable"])],
    ),
    (
        "adaptive idle keeps an idle spot machine while its spot market fails (its replacement would be on-demand)",
        C(R("a", spot=True), max_idle_time="10m"),
        Snippet(arrivals=EVERY_10M, spot_failing=("a",)),
        [
            Tick(5000, {"q": 0}, [Spot("i1")], [W("a", "i1")]),
            Tick(5600, {"q": 0}, [Spot("i1")], [W("a", "i1")], terms=[("i1", "idle")]),
        ],
    ),
    (
        "free-up: a task that usually runs 27m has run 25m (boot 2m): the pending task waits for its worker",
        C(R("a")),
        Snippet(runs=(("train-1", 1600.0), ("train-2", 1620.0), ("train-3", 1610.0)), running=(("t9", "train-9", 0),)),
        [
            Tick(
                1500,
                {"q": 1},
                [M("b1")],
                [Wt("a", "b1", "t9", "train-9")],
                notices=["info:free_up"],
                says=("t9 (train-9) has run 25m of a usual 27m",),
            ),
            # five minutes later than usual it still runs: a machine is launched after all
            Tick(1950, {"q": 1}, [M("b1")], [Wt("a", "b1", "t9", "train-9")], launches=[("a", 1, "on-demand")]),
        ],
    ),
    (
        "free-up: one busy worker about to finish covers one of two pending tasks",
        C(R("a")),
        Snippet(runs=(("train-1", 1600.0), ("train-2", 1620.0), ("train-3", 1610.0)), running=(("t9", "train-9", 0),)),
        [
            Tick(
                1500,
                {"q": 2},
                [M("b1")],
                [Wt("a", "b1", "t9", "train-9")],
                launches=[("a", 1, "on-demand")],
                notices=["info:free_up"],
            )
        ],
    ),
    (
        "free-up: no discount when runs like it are spread (a heavy tail): a machine is launched",
        C(R("a")),
        Snippet(runs=(("job-1", 1600.0), ("job-2", 9000.0), ("job-3", 40000.0)), running=(("t9", "job-9", 0),)),
        [Tick(1500, {"q": 1}, [M("b1")], [Wt("a", "b1", "t9", "job-9")], launches=[("a", 1, "on-demand")])],
    ),
    (
        "free-up: no discount without the resource's boot time",
        C(R("a")),
        Snippet(
            boots=(),
            runs=(("train-1", 1600.0), ("train-2", 1620.0), ("train-3", 1610.0)),
            running=(("t9", "train-9", 0),),
        ),
        [Tick(1500, {"q": 1}, [M("b1")], [Wt("a", "b1", "t9", "train-9")], launches=[("a", 1, "on-demand")])],
    ),
    (
        "spill-over patience: the cheap resource is full, its 2 workers each ~50% likely done within 2 boots: "
        "1 of 2 pending tasks is left to them, the dearer resource launches 1; later they run on: it launches",
        SPILL(),
        Snippet(runs=PATIENCE_RUNS, running=RUNNING_2),
        [
            Tick(
                1500,
                {"q": 2},
                [M("b1"), M("b2")],
                BUSY_2,
                launches=[("b", 1, "on-demand")],
                notices=["info:spill_patience"],
                says=(
                    "queue 'q': 1 pending task left to busy workers instead of launching dearer 'b': 2 busy, "
                    "~1.0 expected to finish within 2 x the boot time (2m)",
                ),
            ),
            # 1900 s in, only one run like theirs lasted that long: no evidence, the second machine is launched
            Tick(
                1900,
                {"q": 2},
                [M("b1"), M("b2"), M("n1", "b", state="pending", at=1500)],
                BUSY_2,
                launches=[("b", 1, "on-demand")],
            ),
        ],
    ),
    (
        "spill-over patience does not count twice a worker the free-up rule already counted (~1.7 expected, 1 of "
        "them freeing): 1 of 3 pending tasks left, the dearer resource launches 2",
        SPILL(),
        Snippet(
            runs=(
                ("train-1", 1600.0),
                ("train-2", 1620.0),
                ("train-3", 1610.0),
                *PATIENCE_RUNS,
                *((f"quick-{i}", 100.0) for i in range(5, 10)),  # a short run of the queue stays short
            ),
            running=(("t1", "train-9", 0), ("t2", "job-2", 0)),
        ),
        [
            Tick(
                1500,
                {"q": 3},
                [M("b1"), M("b2")],
                [Wt("a", "b1", "t1", "train-9"), Wt("a", "b2", "t2", "job-2")],
                launches=[("b", 2, "on-demand")],
                notices=["info:free_up"],
            )
        ],
    ),
    (
        "spill-over patience holds nothing back when the next resource is no dearer",
        C(R("a", max_instances=2, price_per_hour=0.2), R("b", price_per_hour=0.2)),
        Snippet(runs=PATIENCE_RUNS, running=RUNNING_2),
        [Tick(1500, {"q": 2}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 2, "on-demand")])],
    ),
    (
        "spill-over patience: a spot resource in blackout would launch on-demand: 1 of 2 left to its busy workers",
        C(R("a", spot=True, price_per_hour=0.2)),
        Snippet(runs=PATIENCE_RUNS, running=RUNNING_2, spot_failing=("a",)),
        [
            Tick(
                1500,
                {"q": 2},
                [Spot("b1"), Spot("b2")],
                BUSY_2,
                launches=[("a", 1, "on-demand")],
                notices=["info:spill_patience"],
                says=("instead of launching on-demand 'a'",),
            )
        ],
    ),
    (
        "spill-over patience: heavy-tailed runs (~0.5 expected within the window, 27m here, in all): the dearer "
        "resource launches 2",
        SPILL(),
        Snippet(
            runs=(("r-1", 1600.0), ("r-2", 9000.0), ("r-3", 40000.0), ("r-4", 90000.0)),
            running=RUNNING_2,
        ),
        [Tick(1500, {"q": 2}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 2, "on-demand")])],
    ),
    (
        "spill-over patience counts machines still booting: the cheap resource is full of 3 machines up in ~1m10s, "
        "3 of 4 of the queue's runs end within the 2m50s left of 2 boots: 2 of 3 pending tasks are left to them",
        C(R("a", max_instances=3, price_per_hour=0.2), R("b", price_per_hour=0.5)),
        Snippet(runs=(("r-1", 60.0), ("r-2", 90.0), ("r-3", 100.0), ("r-4", 5000.0))),
        [
            Tick(
                1500,
                {"q": 6},
                [M(f"n{i}", state="pending", at=1450) for i in (1, 2, 3)],
                [],
                launches=[("b", 1, "on-demand")],
                notices=["info:spill_patience"],
                says=(
                    "queue 'q': 2 pending tasks left to busy workers instead of launching dearer 'b': 0 busy and 3 "
                    "booting, ~2.2 expected to finish within 2 x the boot time (2m)",
                ),
            )
        ],
    ),
    (
        "spill-over patience: machines still booting, heavy-tailed queue runs (none ends within the window, 30m "
        "here): the dearer resource launches all 3",
        C(R("a", max_instances=3, price_per_hour=0.2), R("b", price_per_hour=0.5)),
        Snippet(runs=(("r-1", 2000.0), ("r-2", 9000.0), ("r-3", 40000.0))),
        [
            Tick(
                1500,
                {"q": 6},
                [M(f"n{i}", state="pending", at=1450) for i in (1, 2, 3)],
                [],
                launches=[("b", 3, "on-demand")],
            )
        ],
    ),
    (
        "spill-over patience on a queue of long runs (27m to 33m, boot 2m): the window is as long as a short run of "
        "the queue, 27m: both busy workers are expected within it, so both pending tasks are left to them",
        SPILL(),
        Snippet(
            runs=LONG_RUNS,
            running=RUNNING_2,
        ),
        [
            Tick(
                1500,
                {"q": 2},
                [M("b1"), M("b2")],
                BUSY_2,
                notices=["info:spill_patience"],
                says=(
                    "queue 'q': 2 pending tasks left to busy workers instead of launching dearer 'b': 2 busy, "
                    "~2.0 expected to finish within 27m, as long as a short run of the queue",
                ),
            ),
        ],
    ),
    (
        "spill-over patience on a queue of long runs with max_spill_wait = 0: the window stays 2 boots, within "
        "which each busy worker is ~40% likely done (~0.8 in all): the dearer resource launches 2",
        SPILL(max_spill_wait="0s"),
        Snippet(runs=LONG_RUNS, running=RUNNING_2),
        [Tick(1500, {"q": 2}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 2, "on-demand")])],
    ),
    (
        "spill-over patience on a queue of long runs with max_spill_wait = 5m: the window is 5m, within which "
        "each busy worker is ~60% likely done (~1.2 in all): 1 pending task left, the dearer resource launches 1",
        SPILL(max_spill_wait="5m"),
        Snippet(runs=LONG_RUNS, running=RUNNING_2),
        [
            Tick(
                1500,
                {"q": 2},
                [M("b1"), M("b2")],
                BUSY_2,
                launches=[("b", 1, "on-demand")],
                notices=["info:spill_patience"],
                says=("~1.2 expected to finish within max_spill_wait 5m (a short run of the queue takes 27m)",),
            )
        ],
    ),
    (
        "spill-over patience: no boot time seen for the queue's resources: nothing held back",
        SPILL(),
        Snippet(boots=(), runs=PATIENCE_RUNS, running=RUNNING_2),
        [Tick(1500, {"q": 2}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 2, "on-demand")])],
    ),
    (
        "spill-over delay: the cheap resource is full and a task waits: the pricier resource launches only once "
        "the shortage has lasted spill_delay (15m), counted from its first tick",
        SPILL(spill_delay="15m"),
        Snippet(),
        [
            Tick(
                1000,
                {"q": 1},
                [M("b1"), M("b2")],
                BUSY_2,
                notices=["info:spill_delay"],
                says=(
                    "queue 'q': 1 pending task wait for cheaper machines: short of them for 0s of spill_delay 15m "
                    "before launching pricier 'b' (0.5/h)",
                ),
            ),
            Tick(
                1600,
                {"q": 2},
                [M("b1"), M("b2")],
                BUSY_2,
                notices=["info:spill_delay"],
                says=("2 pending tasks wait for cheaper machines: short of them for 10m of spill_delay 15m",),
            ),
            Tick(1900, {"q": 2}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 2, "on-demand")]),
        ],
    ),
    (
        "spill-over delay: a shortage that ends (a busy worker took the task) starts afresh next time: "
        "the pricier resource waits 15m from the new shortage's start",
        SPILL(spill_delay="15m"),
        Snippet(),
        [
            Tick(1000, {"q": 1}, [M("b1"), M("b2")], BUSY_2, notices=["info:spill_delay"]),
            Tick(1500, {"q": 0}, [M("b1"), M("b2")], BUSY_2),
            Tick(1600, {"q": 1}, [M("b1"), M("b2")], BUSY_2, notices=["info:spill_delay"], says=("for 0s of",)),
            Tick(1900, {"q": 1}, [M("b1"), M("b2")], BUSY_2, notices=["info:spill_delay"], says=("for 5m of",)),
            Tick(2500, {"q": 1}, [M("b1"), M("b2")], BUSY_2, launches=[("b", 1, "on-demand")]),
        ],
    ),
    (
        "spill-over delay: the cheap resource has room for one of two pending tasks: it launches one at once, "
        "the other waits for cheaper machines",
        SPILL(spill_delay="15m"),
        Snippet(),
        [
            Tick(
                1000,
                {"q": 2},
                [M("b1")],
                [Wt("a", "b1", "t1", "job-1")],
                launches=[("a", 1, "on-demand")],
                notices=["info:spill_delay"],
                says=("queue 'q': 1 pending task wait for cheaper machines",),
            )
        ],
    ),
    (
        "spill-over delay: a pricier resource first in config order, a cheaper one after it with room: "
        "no shortage of cheaper machines, the first launches at once",
        C(R("a", price_per_hour=0.5), R("b", price_per_hour=0.2), spill_delay="15m"),
        Snippet(),
        [Tick(1000, {"q": 1}, [], [], launches=[("a", 1, "on-demand")])],
    ),
    (
        "spill-over delay: the cheap spot resource is in blackout: its own on-demand fallback (same price "
        "list) is not delayed, the pricier resource is; with spill_delay = 0 it launches at once",
        C(R("a", price_per_hour=0.2, spot=True), R("b", price_per_hour=0.5), spill_delay="15m"),
        Snippet(spot_failing=("a",)),
        [
            Tick(
                1000,
                {"q": 1},
                [],
                [],
                notices=["info:spill_delay"],
                says=("before launching pricier 'b' (0.5/h)",),
            )
        ],
    ),
    (
        "spill-over delay = 0 (as before it existed): the pricier resource launches in the shortage's first tick",
        C(R("a", price_per_hour=0.2, spot=True), R("b", price_per_hour=0.5), spill_delay="0s"),
        Snippet(spot_failing=("a",)),
        [Tick(1000, {"q": 1}, [], [], launches=[("b", 1, "on-demand")])],
    ),
]


@pytest.mark.parametrize(("config", "snippet", "ticks"), [pytest.param(c, s, t, id=i) for i, c, s, t in CASES])
def test_adaptive(config, snippet: Snippet, ticks: list[Tick]) -> None:
    run_case(config, ticks, snippet.state())


def test_the_evidence_is_learnt_from_observations() -> None:
    """Boot time (launch → worker), arrivals (pending + tasks started since the last tick) and run
    times (first seen running → gone from a machine still there) come from the ticks themselves."""
    config = C(R("a"))
    state = decide(config, obs(0, {"q": 0}, [], [])).state
    state = decide(config, obs(30, {"q": 2}, [], []), state).state
    assert state.arrivals["q"] == ((30, 2),)
    decision = decide(
        config, obs(60, {"q": 2}, [M("i1", at=60, state="pending"), M("i2", at=60, state="pending")], []), state
    )
    state = decision.state
    state = decide(
        config, obs(90, {"q": 2}, [M("i1", at=60, state="pending"), M("i2", at=60, state="pending")], []), state
    ).state
    running = [Wt("a", "i1", "t1", "train-1"), Wt("a", "i2", "t2", "train-2")]
    state = decide(config, obs(210, {"q": 1}, [M("i1", at=60), M("i2", at=60)], running), state).state
    assert state.boot_times["a"] == (150.0, 150.0)
    assert state.arrivals["q"] == ((30, 2), (210, 1))  # 2 → 1 pending while 2 started: one more arrived
    done = [W("a", "i1"), Wt("a", "i2", "t2", "train-2")]
    state = decide(config, obs(1410, {"q": 1}, [M("i1", at=60), M("i2", at=60)], done), state).state
    assert state.durations["q\x00train-1"] == (1200.0,)
    assert state.durations["q\x00train*"] == (1200.0,)
    assert state.durations["q"] == (1200.0,)
    assert "t2" in state.task_seen and "t1" not in state.task_seen


def test_the_log_line_says_why_an_idle_machine_goes_early() -> None:
    config = C(R("a"), max_idle_time="30m")
    decision = decide(config, obs(3630, {"q": 0}, [M("i1")], [W("a", "i1")]), Snippet(arrivals=EVERY_10M).state())
    assert [t.reason for t in decision.terminations] == [
        "worker idle for 0s and queue 'q' expects its next task in ~10m, more than 2 x its boot time (2m): "
        "ending it before max_idle_time 30m (idle_policy adaptive)"
    ]


def test_the_log_line_says_why_an_idle_machine_of_a_sparse_queue_goes_early() -> None:
    config = C(R("a"), max_idle_time="30m")
    state = Snippet(arrivals=(0.0, 600.0), watched=0.0).state()
    decision = decide(config, obs(5000, {"q": 0}, [M("i1")], [W("a", "i1")]), state)
    assert [t.reason for t in decision.terminations] == [
        "worker idle for 0s and queue 'q' had 2 arrivals in the last 83m (a sparse queue) and expects its next "
        "task in ~28m, more than 2 x its boot time (2m): ending it before max_idle_time 30m (idle_policy adaptive)"
    ]
