"""Spot reclaims in the simulator: a seeded draw picks the victim among the resource's running
spot machines, and the work a reclaim strands is reported (ClearML's autoscaler never
re-enqueues it; this project's policy does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scaler.errors import ConfigError
from scaler.host import PluginHost
from scaler.sim import run as sim_run
from scaler.sim.run import SimTrace, load, render_text, simulate, vary
from scaler.sim.trace import make_world
from scaler.sim.world import Trace, VirtualClock, World

MACHINES = 8


def victims(seed: int | None, reclaims: int = 3) -> list[str]:
    """Launch 8 spot machines (ids sim-000001 … in launch order, the first the oldest), let them
    boot, then replay ``reclaims`` reclaims one minute apart; the machines taken, in order."""
    data: dict[str, object] = {
        "name": "reclaims",
        "horizon": 3600,
        "tasks": [],
        "preemptions": [{"at": 600 + 60 * k, "resource": "gpu-spot"} for k in range(reclaims)],
    }
    if seed is not None:
        data["seed"] = seed
    clock = VirtualClock(0.0)
    world = World(Trace.from_dict(data), "sim", clock, {"gpu-spot": "gpu"})
    world.cloud.boot_time = 60
    for k in range(MACHINES):
        clock.now = float(k)  # launched one second apart: sim-000001 is the oldest
        world.cloud.launch("sim", "gpu-spot", 1, f"token-{k}", spot=True)
    world.cloud.launch("sim", "gpu-spot", 1, "on-demand", spot=False)  # never a reclaim's victim
    world.advance(3600)
    assert world.preempted == len(world.reclaimed) == reclaims
    return world.reclaimed


def test_the_same_seed_takes_the_same_machines() -> None:
    assert victims(5) == victims(5)
    assert victims(None) == victims(0)  # no seed in the trace: the fixed default


def test_the_victim_is_drawn_not_always_the_oldest() -> None:
    firsts = {victims(seed, reclaims=1)[0] for seed in range(20)}
    assert len(firsts) >= 4  # eight candidates, twenty seeds: the draw spreads
    assert firsts != {"sim-000001"}
    for seed in range(5):
        taken = victims(seed, reclaims=3)
        assert len(set(taken)) == 3  # a reclaimed machine is gone: never taken twice
        assert all(int(i.rsplit("-", 1)[1]) <= MACHINES for i in taken)  # spot machines only


def test_a_reclaim_takes_only_running_machines() -> None:
    clock = VirtualClock(0.0)
    trace = Trace.from_dict({"name": "booting", "horizon": 600, "preemptions": [{"at": 30, "resource": "gpu-spot"}]})
    world = World(trace, "sim", clock, {"gpu-spot": "gpu"})
    world.cloud.boot_time = 60
    world.cloud.launch("sim", "gpu-spot", 2, "t", spot=True)
    world.advance(600)
    assert world.reclaimed == [] and world.preempted == 0  # both still booting at t = 30


def test_seed_must_be_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "tasks": [], "seed": "seven"}))
    with pytest.raises(ConfigError, match=r"bad\.json: trace seed: must be an integer, got 'seven'"):
        SimTrace.load(path)


def test_vary_reseeds_the_reclaims() -> None:
    spec = SimTrace.from_dict({"name": "t", "tasks": [{"at": 0, "queue": "q", "duration": 60}], "seed": 3})
    assert spec.trace.seed == 3
    assert vary(spec, None).trace.seed == 3
    assert vary(spec, 1).trace.seed == vary(spec, 1).trace.seed != vary(spec, 2).trace.seed


# --- stranded work --------------------------------------------------------------------------

STRAND_CONF = """
scaler { name = "strand", workers_prefix = "strand", polling_interval = 30s, max_idle_time = 5m, stuck_timeout = 20m }
simulated {}
resources = [ { name = "gpu-spot", queue = "gpu", max_instances = 2, spot = true, price_per_hour = 1.0 } ]
"""
# Two one-hour tasks on two spot machines; at t = 1800 both run (ours from t ≈ 90, ClearML's from
# t ≈ 360) and a reclaim takes one of them, whichever the draw picks: one task loses its machine.
STRAND_TRACE = {
    "name": "strand",
    "horizon": 4 * 3600,
    "resources": {"gpu-spot": {"boot_time": 60, "price_per_hour": 0.5}},
    "tasks": [{"at": 0, "queue": "gpu", "duration": 3600, "count": 2, "name": "train"}],
    "preemptions": [{"at": 1800, "resource": "gpu-spot"}],
    "seed": 11,
}


@pytest.fixture
def strand(tmp_path: Path) -> tuple[Path, Path]:
    conf, trace = tmp_path / "strand.conf", tmp_path / "strand.json"
    conf.write_text(STRAND_CONF)
    trace.write_text(json.dumps(STRAND_TRACE))
    return conf, trace


def test_clearml_strands_the_reclaimed_task_and_the_report_counts_its_hours(strand: tuple[Path, Path]) -> None:
    host = PluginHost()
    config, spec = load(host, *strand)
    theirs = simulate(config, host, spec, "clearml")
    assert (theirs.preempted, theirs.requeued, theirs.completed, theirs.stranded) == (1, 0, 1, 1)
    assert theirs.stranded_task_hours == pytest.approx(1.0)
    assert theirs.dropped_lower_bound == pytest.approx(0.5)  # 1 task-hour at the queue's cheapest $0.50/h
    assert theirs.lower_bound == pytest.approx(0.5)  # the bound counts the completed task only
    assert theirs.unfinished == 0
    tasks = theirs.as_dict()["tasks"]
    assert (tasks["stranded"], tasks["stranded_task_hours"], tasks["dropped_lower_bound"]) == (1, 1.0, 0.5)
    text = render_text(theirs)
    assert "1 stranded (1.0 task-h): at least $0.50 to run again" in text

    ours = simulate(config, host, spec, "scaler")
    assert (ours.preempted, ours.requeued, ours.completed, ours.stranded, ours.failed) == (1, 1, 2, 0, 0)
    assert (ours.stranded_task_hours, ours.dropped_lower_bound) == (0.0, 0.0)
    assert ours.lower_bound == pytest.approx(1.0)  # both tasks done: 2 task-hours at $0.50
    assert "work dropped (stranded, failed) │ none" in render_text(ours)


def test_a_stranded_task_waits_until_the_end_of_the_run(strand: tuple[Path, Path]) -> None:
    # ClearML's stranded task was never served to its end: it waits from its arrival (t = 0) to the
    # end of the run, so dropping it cannot make the waits look shorter
    host = PluginHost()
    config, spec = load(host, *strand)
    theirs = simulate(config, host, spec, "clearml")
    assert theirs.stranded == 1
    assert theirs.wait_max == pytest.approx(theirs.end, abs=60)  # it arrived in the first minute
    ours = simulate(config, host, spec, "scaler")
    assert ours.wait_max < 1800  # the re-enqueued task waited only for a new machine


REQUEUE_CONF = """
scaler { name = "order", workers_prefix = "order", polling_interval = 30s, max_idle_time = 30m }
simulated {}
resources = [ { name = "gpu", queue = "gpu", max_instances = 1, spot = true, price_per_hour = 1.0 } ]
"""


def test_a_reenqueued_task_goes_to_the_back_of_its_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one machine; task A runs, B and C wait; A's machine is reclaimed: A is re-enqueued behind B
    # and C (ClearML's tasks.enqueue appends), so B then C run before A's second attempt
    conf, trace = tmp_path / "order.conf", tmp_path / "order.json"
    conf.write_text(REQUEUE_CONF)
    trace.write_text(
        json.dumps(
            {
                "name": "order",
                "horizon": 6 * 3600,
                "resources": {"gpu": {"boot_time": 60}},
                "tasks": [
                    {"at": 0, "queue": "gpu", "duration": 1200, "name": "A"},
                    {"at": 10, "queue": "gpu", "duration": 600, "name": "B"},
                    {"at": 20, "queue": "gpu", "duration": 600, "name": "C"},
                ],
                "preemptions": [{"at": 600, "resource": "gpu"}],
            }
        )
    )
    worlds: list[Any] = []

    def keep(*args: Any, **kwargs: Any) -> Any:
        worlds.append(make_world(*args, **kwargs))
        return worlds[-1]

    monkeypatch.setattr(sim_run, "make_world", keep)
    host = PluginHost()
    config, spec = load(host, conf, trace)
    report = sim_run.run_scaler_policy(config, host, spec)
    assert (report.completed, report.requeued) == (3, 1)
    started = {t.name: t.started for t in worlds[0].queue.tasks.values()}
    assert started["B"] < started["C"] < started["A"], started
