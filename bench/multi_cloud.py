"""Benchmark: one cloud's GPUs out for hours, with and without a second cloud (``scaler simulate``).

The trace ``bench/traces/gpu-outage-two-clouds.json`` is a GPU lab's day in which AWS has no
GPU capacity at all (spot and on-demand) for 4.5 hours; it is replayed by this project's policy
on the AWS-only fleet (``gpu-outage-aws-only.conf``) and on the same fleet with GCP's GPUs
between AWS spot and AWS on-demand (``gpu-outage-two-clouds.conf``), the simulated cloud standing
for both clouds. Reported: task wait, cost, cost ÷ lower bound (each config's own bound: its
queue's cheapest resource), tasks completed, launches per cloud, failed launch calls; as written
and over seeded variations of the trace.
"""

from __future__ import annotations

import statistics
import time

from _common import TRACES, emit, parse_args, table

from scaler.host import PluginHost
from scaler.sim.run import Report, load, simulate

TRACE = TRACES / "gpu-outage-two-clouds.json"
CASES = (
    ("AWS only", TRACES / "gpu-outage-aws-only.conf"),
    ("AWS + GCP", TRACES / "gpu-outage-two-clouds.conf"),
)
SEEDS = (1, 2, 3, 4, 5)


def per_cloud(report: Report) -> str:
    return ", ".join(f"{c.name} {c.launched}" for c in report.clouds()) or "n/a"


def row(label: str, report: Report) -> list[object]:
    return [
        label,
        f"{report.wait_p50:.0f} / {report.wait_p95:.0f} / {report.wait_max:.0f}",
        f"${report.cost:,.2f}",
        f"${report.lower_bound:,.2f}",
        "n/a" if report.ratio is None else f"{report.ratio:.3f}",
        f"{report.completed}/{report.tasks}",
        per_cloud(report),
        sum(report.launch_failures.values()),
        report.peak_fleet,
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    host = PluginHost()
    seeds = SEEDS[:1] if args.smoke else SEEDS
    started = time.perf_counter()
    rows, seeded = [], []
    description = ""
    for label, conf in CASES:
        config, spec = load(host, conf, TRACE)
        description = spec.trace.description
        rows.append(row(label, simulate(config, host, spec)))
        varied = [simulate(config, host, spec, seed=seed) for seed in seeds]
        seeded.append(
            [
                label,
                f"{statistics.mean(r.wait_p95 for r in varied):.0f}",
                f"{max(r.wait_p95 for r in varied):.0f}",
                f"${statistics.mean(r.cost for r in varied):,.2f}",
                f"{statistics.mean(r.ratio or 0.0 for r in varied):.3f}",
                f"{statistics.mean(r.completed for r in varied):.1f}/{varied[0].tasks}",
            ]
        )
    out = [
        "## One cloud's GPUs out for hours: one cloud or two (`scaler simulate`)",
        "",
        description,
        "",
        "The AWS-only fleet (`bench/traces/gpu-outage-aws-only.conf`) and the same fleet with GCP's GPUs "
        "between AWS spot and AWS on-demand (`gpu-outage-two-clouds.conf`), each replayed on "
        "`bench/traces/gpu-outage-two-clouds.json` by this project's policy; the simulated cloud stands for "
        "both clouds (each with its own boot time and outage, prices from each resource's `price_per_hour`). "
        "*lower bound*: each completed task's run time at the cheapest resource of its queue in that config, "
        "so the two configs' bounds differ (GCP spot is cheaper).",
        "",
        "As written:",
        "",
        table(
            [
                "fleet",
                "wait p50 / p95 / max (s)",
                "cost",
                "lower bound",
                "cost ÷ bound",
                "tasks done",
                "launches per cloud",
                "failed launch calls",
                "peak fleet",
            ],
            rows,
        ),
        "",
        f"Over {len(seeds)} seeded variation(s) of the trace (`--seed {', '.join(str(s) for s in seeds)}`):",
        "",
        table(
            ["fleet", "mean wait p95 (s)", "worst wait p95 (s)", "mean cost", "mean cost ÷ bound", "mean tasks done"],
            seeded,
        ),
        "",
        f"_Simulation time for this section: {time.perf_counter() - started:.1f} s._",
    ]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
