"""The loop's invariants over whole traces, whatever the policy's rules: at every tick no resource
has more live machines than its ``max_instances``, and the fleet stays within
``max_instances_total``; every task completes. Replayed on the traces with the most pressure:
capacity-bound spot fleets with outages and reclaims, and one cloud's GPUs out for hours in a
fleet across clouds."""

from __future__ import annotations

from collections import Counter

import pytest

from scaler.default_plugins import simulated
from scaler.engine.reconciler import TickReport
from scaler.host import PluginHost
from scaler.sim.run import load, run_scaler_policy, vary, with_clouds
from tests.support import REPO

TRACES = REPO / "bench" / "traces"


@pytest.mark.parametrize(
    ("config", "trace", "seed"),
    [
        ("steady-trickle", "steady-trickle", 1),
        ("gpu-outage-two-clouds", "gpu-outage-two-clouds", 2),
        ("gpu-outage-aws-only", "gpu-outage-two-clouds", None),
    ],
)
def test_no_resource_ever_exceeds_max_instances_and_every_task_completes(
    config: str, trace: str, seed: int | None
) -> None:
    host = PluginHost()
    cfg, spec = load(host, TRACES / f"{config}.conf", TRACES / f"{trace}.json")
    limits = {r.name: r.max_instances for r in cfg.resources}
    peak: Counter[str] = Counter()
    breaches: list[str] = []

    def check(report: TickReport) -> None:
        cloud = simulated.active_cloud()
        assert cloud is not None
        alive = Counter(inst.resource for inst in cloud.alive())
        for name, count in alive.items():
            peak[name] = max(peak[name], count)
            if count > limits.get(name, 0):
                breaches.append(f"{name}: {count} live > max_instances {limits.get(name)} at t={report.now:g}")
        total = sum(alive.values())
        if cfg.scaler.max_instances_total and total > cfg.scaler.max_instances_total:
            breaches.append(f"fleet: {total} live > max_instances_total {cfg.scaler.max_instances_total}")

    report = run_scaler_policy(cfg, host, with_clouds(vary(spec, seed), cfg), on_tick=check)
    assert breaches == []
    # the traces do push some resource to its limit (else the check above proves little)
    assert any(peak[name] == limit for name, limit in limits.items()), (dict(peak), limits)
    assert report.completed == report.tasks, (report.completed, report.tasks)
