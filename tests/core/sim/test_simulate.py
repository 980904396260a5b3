"""``scaler simulate``: determinism, the lower bound, hand-computed figures, both policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scaler.errors import ConfigError
from scaler.host import PluginHost
from scaler.sim.run import SimTrace, load, render_text, require_matplotlib, simulate, vary
from scaler.sim.world import demo_paths
from tests.support import REPO
from tests.support.cli import run_cli

TRACES = REPO / "bench" / "traces"

TINY_CONF = """
scaler { name = "tiny", workers_prefix = "tiny", polling_interval = 30s, max_idle_time = 1m, stuck_timeout = 20m }
simulated {}
resources = [ { name = "cpu", queue = "cpu", max_instances = 2, price_per_hour = 1.0 } ]
"""
TINY_TRACE = {
    "name": "tiny",
    "boot_time": 999,  # the resource's own boot time below must win
    "horizon": 7200,
    "resources": {"cpu": {"boot_time": 60, "price_per_hour": 3.0}},  # the trace's price wins over the config's
    "tasks": [{"at": 0, "queue": "cpu", "duration": 600}],
    "clearml_policy": {"max_idle_time": 300},
}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    conf, trace = tmp_path / "tiny.conf", tmp_path / "tiny.json"
    conf.write_text(TINY_CONF)
    trace.write_text(json.dumps(TINY_TRACE))
    return conf, trace


def test_tiny_trace_scaler_policy_exact_figures(host: PluginHost, tiny: tuple[Path, Path]) -> None:
    # Worked by hand. The world moves in 5 s steps; the loop ticks every 30 s from t = 0.
    # t=0    tick: nothing has arrived yet (arrivals are applied by the world's steps).
    # t=5    step: the task arrives (arrived = 5).
    # t=30   tick: 1 pending, 0 idle, 0 booting → launch 1 x cpu (on-demand), launched_at = 30.
    # t=90   step: 90 − 30 ≥ boot 60 → running; its agent registers and takes the task: wait = 90 − 5 = 85 s.
    # t=690  step: 90 + 600 → the task completes; tick at 690 sees the worker idle (idle_since = 690).
    # t=750  tick: idle 60 s ≥ max_idle_time 1m, nothing pending → terminate (ended_at = 750);
    #        every task is done and no machine is alive: the run stops after 26 ticks (0, 30, …, 750).
    # instance-hours = (750 − 30) / 3600 = 0.2 h; cost = 0.2 × $3.00 = $0.60 (the trace's price).
    # lower bound    = 600 s = 1/6 h × $3.00 (cheapest resource of queue cpu) = $0.50; ratio = 1.2.
    config, spec = load(host, *tiny)
    report = simulate(config, host, spec, "scaler")
    [row] = report.resources
    assert (row.name, row.price_per_hour, row.boot_time) == ("cpu", 3.0, 60.0)
    assert (row.launched_spot, row.launched_on_demand) == (0, 1)
    assert row.instance_hours == pytest.approx(0.2)
    assert report.cost == pytest.approx(0.60)
    assert report.lower_bound == pytest.approx(0.50)
    assert report.ratio == pytest.approx(1.2)
    assert (report.wait_p50, report.wait_p95, report.wait_max) == (85.0, 85.0, 85.0)
    assert (report.tasks, report.completed, report.requeued, report.stranded) == (1, 1, 0, 0)
    assert dict(report.launches) == {"demand (on-demand)": 1}
    assert dict(report.terminations) == {"idle": 1}
    assert (report.ticks, report.end, report.peak_fleet, report.never_used) == (26, 750.0, 1, 0)


def test_tiny_trace_clearml_policy_exact_figures(host: PluginHost, tiny: tuple[Path, Path]) -> None:
    # ClearML's loop: ticks at 0, then sleeps 5 min after each pass; idle time 5 min (the trace's
    # clearml_policy), a launch blocks 15 s (wait_until_running).
    # t=0     pass: nothing queued → sleep → t=300.
    # t=300   pass: 1 entry → spin up (launched_at = 300), blocks until 315 → sleep → t=615.
    # t=360   step: booted, takes the task: wait = 360 − 5 = 355 s; it completes at 960.
    # t=615   pass: worker busy (registered: leaves spun_workers); t=915: still busy.
    # t=1215  pass: first seen idle; its timestamp = last activity = 1215.
    # t=1515  pass: idle 300 s, not > 300 (auto_scaler.py:359) → kept.
    # t=1815  pass: idle 600 s > 300 → spin down (ended_at = 1815) → sleep → t=2115: settled, stop.
    # 7 passes; instance-hours = (1815 − 300) / 3600 = 0.420833 h; cost = × $3 = $1.2625; bound $0.50.
    config, spec = load(host, *tiny)
    report = simulate(config, host, spec, "clearml")
    assert report.resources[0].instance_hours == pytest.approx(1515 / 3600)
    assert report.cost == pytest.approx(1.2625)
    assert report.lower_bound == pytest.approx(0.50)
    assert report.ratio == pytest.approx(2.525)
    assert report.wait_p95 == 355.0
    assert dict(report.launches) == {"demand (on-demand)": 1}
    assert dict(report.terminations) == {"idle": 1}
    assert (report.ticks, report.end, report.polling_interval) == (7, 2115.0, 300.0)


@pytest.mark.parametrize("policy", ["scaler", "clearml"])
def test_same_seed_same_report(host: PluginHost, policy: str) -> None:
    config, spec = load(host, *demo_paths())
    first = simulate(config, host, spec, policy, seed=7).as_dict(timeline=True)
    again = simulate(config, host, spec, policy, seed=7).as_dict(timeline=True)
    assert first == again
    assert first["seed"] == 7
    other = simulate(config, host, spec, policy, seed=8).as_dict(timeline=True)
    assert other != first  # the seed does vary the trace


def test_vary_is_deterministic_and_bounded() -> None:
    spec = SimTrace.load(demo_paths()[1])
    assert vary(spec, None) is spec
    a, b = vary(spec, 3), vary(spec, 3)
    assert a == b and a.seed == 3
    for before, after in zip(
        sorted(spec.trace.tasks, key=lambda t: t.name), sorted(a.trace.tasks, key=lambda t: t.name), strict=True
    ):
        assert abs(after.at - before.at) <= 60 + 1e-9 or after.at == 0
        assert abs(after.duration / before.duration - 1) <= 0.1 + 1e-9


@pytest.mark.parametrize("policy", ["scaler", "clearml"])
@pytest.mark.parametrize("case", ["demo", "nightly-sweep"])
@pytest.mark.parametrize("seed", [None, 1, 2])
def test_lower_bound_never_above_cost(host: PluginHost, policy: str, case: str, seed: int | None) -> None:
    paths = demo_paths() if case == "demo" else (TRACES / f"{case}.conf", TRACES / f"{case}.json")
    config, spec = load(host, *paths)
    report = simulate(config, host, spec, policy, seed)
    assert report.lower_bound > 0
    assert report.lower_bound <= report.cost + 1e-9
    for row in report.resources:
        assert row.lower_bound <= row.cost + 1e-9, row
        assert row.task_hours <= row.instance_hours + 1e-9, row


def test_reference_traces_load_with_their_configs(host: PluginHost) -> None:
    names = sorted(p.stem for p in TRACES.glob("*.json"))
    assert {"research-day", "nightly-sweep", "steady-trickle", "dl-lab-2days", "mlaas-weekday"} <= set(names)
    for name in names:
        config, spec = load(host, TRACES / f"{name}.conf", TRACES / f"{name}.json")
        assert spec.trace.tasks and spec.trace.description
        for resource in config.resources:  # every resource's cloud behaviour is in the trace (or its cloud's)
            cloud = spec.clouds.get(spec.resource_clouds.get(resource.name, ""))
            assert resource.name in spec.boot_times or (cloud is not None and cloud.boot_time is not None)
            assert resource.name in spec.prices or (spec.clouds and resource.price_per_hour > 0)


def test_policies_differ_where_clearml_has_no_rule(host: PluginHost) -> None:
    # the demo has a spot reclaim: we re-enqueue the task, ClearML leaves it "running" forever
    config, spec = load(host, *demo_paths())
    ours, theirs = simulate(config, host, spec, "scaler"), simulate(config, host, spec, "clearml")
    assert (ours.requeued, ours.stranded, ours.completed) == (1, 0, ours.tasks)
    assert (theirs.requeued, theirs.stranded, theirs.completed) == (0, 1, theirs.tasks - 1)
    assert theirs.stranded_task_hours == pytest.approx(1500 / 3600)  # a 25-minute train-resnet run
    assert (ours.stranded_task_hours, ours.dropped_lower_bound) == (0.0, 0.0)
    assert "spot request not fulfilled (waiter gave up)" in theirs.launch_failures  # the spot outage
    text = render_text(theirs)
    assert "policy clearml" in text and "cost ÷ bound" in text


def test_bad_trace_and_policy_are_clear_errors(host: PluginHost, tiny: tuple[Path, Path], tmp_path: Path) -> None:
    conf, _ = tiny
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json: cannot be read"):
        load(host, conf, broken)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY_TRACE, "clearml_policy": {"polling": 1}}))
    with pytest.raises(ConfigError, match="unknown key"):
        load(host, conf, bad)
    config, spec = load(host, *tiny)
    with pytest.raises(ConfigError, match="unknown policy"):
        simulate(config, host, spec, "nope")


def test_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"clearml-scaler\[plot\]"):
        require_matplotlib()


def test_cli_simulate_json_and_plot(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    conf, trace = tiny
    png = tmp_path / "out.png"
    cmd = [
        "simulate",
        "--config",
        str(conf),
        "--trace",
        str(trace),
        "--format",
        "json",
        "--plot",
        str(png),
        "--seed",
        "1",
    ]
    result = run_cli(*cmd, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["policy"] == "scaler" and data["seed"] == 1 and data["tasks"]["completed"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run_cli(*cmd[:-6], "--policy", "clearml", timeout=120)
    assert text.returncode == 0, text.stderr
    assert "policy clearml" in text.stdout and "Per resource" in text.stdout
