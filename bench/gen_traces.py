"""Generate heavy-tailed deep-learning traces for ``scaler simulate`` (bench/traces/).

    .venv/bin/python bench/gen_traces.py                # (re)writes the generated traces and configs
    .venv/bin/python bench/gen_traces.py --check        # exit 1 if the files on disk differ
    .venv/bin/python bench/gen_traces.py --out DIR --seed 7 --stats

Each profile below becomes ``<name>.json`` (the trace, format in docs/simulate.md) and
``<name>.conf`` (the scaler config it is replayed with). Everything is drawn from
``random.Random(f"{seed}/{profile}")``: the same seed writes the same bytes.

What the traces reproduce, and from where
-----------------------------------------
Three published characterisations of deep-learning cluster traces:

* Microsoft Philly — Jeon et al., "Analysis of Large-Scale Multi-Tenant GPU Clusters for DNN
  Training Workloads", USENIX ATC 2019 (a two-month trace of a multi-tenant GPU cluster):
  run times from minutes to days, a large share of short jobs that fail or are killed early
  (debugging), and gang-scheduled multi-GPU training runs that are the long tail.
* SenseTime Helios — Hu et al., "Characterization and Prediction of Deep Learning Workloads in
  Large-Scale GPU Datacenters", SC 2021 (4 clusters, April–September 2020, 3.36 M jobs of which
  1.58 M GPU jobs): GPU job durations heavy-tailed (most jobs last minutes, a small share of
  long jobs holds most of the GPU time), submissions with a clear day/night cycle and a quieter
  weekend, many near-identical jobs submitted together by one user (sweeps).
* Alibaba PAI — Weng et al., "MLaaS in the Wild: Workload Analysis and Scheduling in
  Large-Scale Heterogeneous GPU Clusters", NSDI 2022 (a two-month trace of a production
  cluster of over 6,000 GPUs): task run times spanning seconds to days with a median of minutes, a
  daytime submission peak, and tasks fanned out in many instances at once.

The papers publish CDF plots rather than fitted parameters; the targets below are our rounded
reading of the shape they share, not the traces themselves (no trace data is shipped or read
here). Duration of a single GPU task: a mixture of three lognormals, capped at 24 h —

    =========  ======  ==========  =====  ======================================
    component  weight  median      sigma  stands for
    =========  ======  ==========  =====  ======================================
    short      0.55    3 min       1.0    debugging, failed or killed early, eval
    train      0.35    40 min      0.9    a training or fine-tuning run
    long       0.10    6 h         0.7    multi-GPU / long training (up to a day)
    =========  ======  ==========  =====  ======================================

which gives (measured on 200,000 draws; ``tests/core/sim/test_gen_traces.py`` checks them
within the tolerance it states): **median ≈ 9.5 min**, **p90 ≈ 3 h**, about **22 %** of
tasks longer than an hour and about **10 %** longer than 3 h, the longest ≤ 24 h, and the
**longest 10 % of tasks hold ≈ 70 % of the task-hours** (most jobs are short, most GPU time
goes to a few long ones: the finding the three studies share).

Arrivals are a non-homogeneous Poisson process (thinning) with rate

    rate(hour) = daily / 24 × (1 + 0.6 × cos(2π (hour − 15) / 24)) × (0.3 on Saturday/Sunday)

so the afternoon peak is 4× the 03:00 trough (**10:00–18:00 per hour ≈ 3.2× 00:00–06:00**),
and a weekend day carries 0.3 of a weekday. On top of that single tasks arrive:

* hyper-parameter **sweeps** on the GPU queue: working hours only (09:00–19:00), a Poisson
  number per day, 8 to 64 near-identical tasks submitted a few seconds apart (duration = one
  draw of the "train" component × a lognormal factor of sigma 0.25 per task);
* **fan-outs** on the CPU queue: 20 to 80 short preprocessing/evaluation tasks at once;
* **spot outages**: per day, with a probability, the GPU spot market of a resource is gone for
  1 to 3 hours (during the day, when capacity is scarce);
* **spot reclaims**: a Poisson process (per hour) of one spot machine reclaimed; the simulator
  picks which running spot machine with a draw seeded by the trace's ``seed`` (written here:
  the generator's seed).

The traces stay small enough that ``bench/policies.py`` replays each with every policy in a
few seconds (a few hundred tasks; the tick loop, not the task count, dominates).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

TRACES = Path(__file__).resolve().parent / "traces"
DEFAULT_SEED = 16
DAY = 86400.0
HOUR = 3600.0
MINUTE = 60.0

#: (weight, median seconds, sigma) of the single GPU task's duration (see the module docstring)
GPU_MIX: tuple[tuple[float, float, float], ...] = (
    (0.55, 3 * MINUTE, 1.0),
    (0.35, 40 * MINUTE, 0.9),
    (0.10, 6 * HOUR, 0.7),
)
#: CPU tasks (data preparation, evaluation): minutes, rarely an hour or two
CPU_MIX: tuple[tuple[float, float, float], ...] = ((0.8, 4 * MINUTE, 0.8), (0.2, 25 * MINUTE, 0.7))
#: multi-GPU queue: fewer debugging runs, more long ones
LARGE_MIX: tuple[tuple[float, float, float], ...] = (
    (0.35, 5 * MINUTE, 1.0),
    (0.40, 90 * MINUTE, 0.8),
    (0.25, 8 * HOUR, 0.6),
)
MAX_DURATION = 24 * HOUR
MIN_DURATION = 30.0
DIURNAL_AMPLITUDE = 0.6
PEAK_HOUR = 15.0
WEEKEND_FACTOR = 0.3
SWEEP_SIZES = (8, 12, 16, 24, 32, 48, 64)
SWEEP_HOURS = (9.0, 19.0)


@dataclass(frozen=True)
class QueueLoad:
    """Single-task arrivals of one queue: ``daily`` tasks on a weekday, durations from ``mix``."""

    queue: str
    daily: float
    mix: tuple[tuple[float, float, float], ...]
    prefix: str


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    days: int
    first_weekday: int  # 0 = Monday
    config: str  # the scaler config (HOCON) it is replayed with
    resources: dict[str, dict[str, float]]
    loads: tuple[QueueLoad, ...]
    sweeps_per_day: float  # GPU sweeps on a weekday (weekend: × WEEKEND_FACTOR)
    sweep_queue: str
    fanouts_per_day: float  # CPU fan-outs on a weekday
    fanout_queue: str
    spot_resource: str
    outage_chance: float  # per day
    reclaims_per_hour: float
    boot_time: float = 240.0
    jitter: dict[str, float] = field(default_factory=lambda: {"arrival": 30.0, "duration": 0.05, "boot_time": 0.1})


LAB_CONF = """# {name}: generated by bench/gen_traces.py (do not edit; change the generator and run it again).
# A research lab's GPU fleet on spot with an on-demand fallback, a multi-GPU queue and CPU.
scaler {{
  name = "lab"
  workers_prefix = "lab"
  polling_interval = 30s
  max_idle_time = 10m
  stuck_timeout = 20m
}}
simulated {{}}
resources = [
  {{ name = "gpu-spot", queue = "gpu", max_instances = 20, spot = true,
    regular_instance_rollback_timeout = 5m, spot_blackout_period = 30m, price_per_hour = 0.45,
    simulated {{ instance_type = "g5.xlarge" }} }}
  {{ name = "gpu-ondemand", queue = "gpu", max_instances = 8, price_per_hour = 1.006,
    simulated {{ instance_type = "g5.xlarge" }} }}
  {{ name = "gpu-4x", queue = "gpu-large", max_instances = 3, price_per_hour = 5.672,
    simulated {{ instance_type = "g5.12xlarge" }} }}
  {{ name = "cpu", queue = "cpu", max_instances = 16, cpu_only = true, price_per_hour = 0.17,
    simulated {{ instance_type = "c6i.large" }} }}
]
"""

MLAAS_CONF = """# {name}: generated by bench/gen_traces.py (do not edit; change the generator and run it again).
# A shared ML platform's busy weekday: sweeps and fan-outs on spot, on-demand as the fallback.
scaler {{
  name = "mlaas"
  workers_prefix = "mlaas"
  polling_interval = 30s
  max_idle_time = 10m
  stuck_timeout = 20m
}}
simulated {{}}
resources = [
  {{ name = "gpu-spot", queue = "gpu", max_instances = 48, spot = true,
    regular_instance_rollback_timeout = 5m, spot_blackout_period = 30m, price_per_hour = 0.22,
    simulated {{ instance_type = "g4dn.xlarge" }} }}
  {{ name = "gpu-ondemand", queue = "gpu", max_instances = 12, price_per_hour = 0.526,
    simulated {{ instance_type = "g4dn.xlarge" }} }}
  {{ name = "cpu-spot", queue = "cpu", max_instances = 40, spot = true, cpu_only = true,
    regular_instance_rollback_timeout = 5m, spot_blackout_period = 30m, price_per_hour = 0.14,
    simulated {{ instance_type = "c6i.2xlarge" }} }}
]
"""

PROFILES: tuple[Profile, ...] = (
    Profile(
        name="dl-lab-2days",
        description=(
            "Two days of a deep-learning lab, Friday 00:00 to Sunday 00:00 (generated by bench/gen_traces.py "
            "from the Philly, Helios and PAI trace studies): heavy-tailed GPU jobs (most last minutes, a few a "
            "day), day/night arrivals with a quiet Saturday, hyper-parameter sweeps, CPU fan-outs, GPU spot "
            "outages and reclaims. t = 0 is Friday 00:00."
        ),
        days=2,
        first_weekday=4,
        config=LAB_CONF,
        resources={
            "gpu-spot": {"boot_time": 240, "price_per_hour": 0.45, "on_demand_price_per_hour": 1.006},
            "gpu-ondemand": {"boot_time": 240, "price_per_hour": 1.006},
            "gpu-4x": {"boot_time": 300, "price_per_hour": 5.672},
            "cpu": {"boot_time": 90, "price_per_hour": 0.17},
        },
        loads=(
            QueueLoad("gpu", 120, GPU_MIX, "job"),
            QueueLoad("gpu-large", 6, LARGE_MIX, "dist"),
            QueueLoad("cpu", 80, CPU_MIX, "prep"),
        ),
        sweeps_per_day=4,
        sweep_queue="gpu",
        fanouts_per_day=3,
        fanout_queue="cpu",
        spot_resource="gpu-spot",
        outage_chance=0.8,
        reclaims_per_hour=0.15,
    ),
    Profile(
        name="mlaas-weekday",
        description=(
            "A weekday of a shared ML platform, 00:00 to 24:00 (generated by bench/gen_traces.py from the "
            "Philly, Helios and PAI trace studies): many short GPU tasks with a heavy tail, large sweeps and "
            "fan-outs in working hours, a GPU spot outage at the afternoon peak, frequent reclaims. t = 0 is "
            "Wednesday 00:00."
        ),
        days=1,
        first_weekday=2,
        config=MLAAS_CONF,
        resources={
            "gpu-spot": {"boot_time": 180, "price_per_hour": 0.22, "on_demand_price_per_hour": 0.526},
            "gpu-ondemand": {"boot_time": 180, "price_per_hour": 0.526},
            "cpu-spot": {"boot_time": 90, "price_per_hour": 0.14, "on_demand_price_per_hour": 0.34},
        },
        loads=(QueueLoad("gpu", 220, GPU_MIX, "task"), QueueLoad("cpu", 150, CPU_MIX, "etl")),
        sweeps_per_day=9,
        sweep_queue="gpu",
        fanouts_per_day=6,
        fanout_queue="cpu",
        spot_resource="gpu-spot",
        outage_chance=1.0,
        reclaims_per_hour=0.5,
        boot_time=180.0,
    ),
)


# --- the draws ------------------------------------------------------------------------------------


def diurnal(t: float, first_weekday: int) -> float:
    """Relative arrival rate at ``t`` seconds from the start (mean 1 over a weekday)."""
    hour = (t % DAY) / HOUR
    weekday = (first_weekday + int(t // DAY)) % 7
    factor = WEEKEND_FACTOR if weekday >= 5 else 1.0
    return factor * (1 + DIURNAL_AMPLITUDE * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24))


def draw_duration(rng: random.Random, mix: tuple[tuple[float, float, float], ...]) -> float:
    """One duration from the lognormal mixture ``mix``, clamped to [MIN_DURATION, MAX_DURATION]."""
    pick = rng.random()
    component = mix[-1]  # what rounding leaves over belongs to the last component
    for item in mix:
        pick -= item[0]
        if pick <= 0:
            component = item
            break
    _, median, sigma = component
    return min(MAX_DURATION, max(MIN_DURATION, rng.lognormvariate(math.log(median), sigma)))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def arrivals(rng: random.Random, horizon: float, per_day: float, first_weekday: int) -> list[float]:
    """Arrival times of a Poisson process of ``per_day`` events per weekday shaped by :func:`diurnal`."""
    peak = 1 + DIURNAL_AMPLITUDE
    rate = per_day / DAY * peak  # the thinning envelope
    out: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= horizon:
            return out
        if rng.random() * peak <= diurnal(t, first_weekday):
            out.append(t)


def task(at: float, queue: str, duration: float, name: str) -> dict[str, object]:
    return {"at": round(at), "queue": queue, "duration": round(duration), "name": name}


def generate(profile: Profile, seed: int = DEFAULT_SEED) -> dict[str, object]:
    """The trace of ``profile`` for ``seed`` (a JSON-ready dict)."""
    rng = random.Random(f"{seed}/{profile.name}")
    span = profile.days * DAY
    tasks: list[dict[str, object]] = []
    for load in profile.loads:
        for i, at in enumerate(arrivals(rng, span, load.daily, profile.first_weekday)):
            tasks.append(task(at, load.queue, draw_duration(rng, load.mix), f"{load.prefix}-{i + 1:04d}"))
    sweep = fanout = 0
    for day in range(profile.days):
        weekend = (profile.first_weekday + day) % 7 >= 5
        factor = WEEKEND_FACTOR if weekend else 1.0
        for _ in range(poisson(rng, profile.sweeps_per_day * factor)):
            sweep += 1
            start = day * DAY + rng.uniform(*SWEEP_HOURS) * HOUR
            size = rng.choice(SWEEP_SIZES)
            _, median, sigma = GPU_MIX[1]
            base = rng.lognormvariate(math.log(median), sigma)
            at = start
            for k in range(size):
                at += rng.uniform(2, 10)
                length = min(MAX_DURATION, max(MIN_DURATION, base * rng.lognormvariate(0, 0.25)))
                tasks.append(task(at, profile.sweep_queue, length, f"sweep{sweep}-{k + 1:02d}"))
        for _ in range(poisson(rng, profile.fanouts_per_day * factor)):
            fanout += 1
            start = day * DAY + rng.uniform(*SWEEP_HOURS) * HOUR
            size = rng.randint(20, 80)
            for k in range(size):
                length = rng.uniform(2, 8) * MINUTE
                tasks.append(task(start + k, profile.fanout_queue, length, f"fanout{fanout}-{k + 1:02d}"))
    outages = []
    for day in range(profile.days):
        if rng.random() < profile.outage_chance:
            start = day * DAY + rng.uniform(10, 17) * HOUR
            length = rng.uniform(1, 3) * HOUR
            outages.append({"start": int(start), "end": int(start + length), "resource": profile.spot_resource})
    reclaims = [
        {"at": int(at), "resource": profile.spot_resource}
        for at in _uniform_poisson(rng, span, profile.reclaims_per_hour / HOUR)
    ]
    tasks.sort(key=lambda t: (t["at"], str(t["name"])))
    last_end = max(int(t["at"]) + int(t["duration"]) for t in tasks)  # type: ignore[call-overload]
    return {
        "name": profile.name,
        "description": profile.description,
        "generated": {"by": "bench/gen_traces.py", "seed": seed},
        "seed": seed,
        "boot_time": profile.boot_time,
        # room for a long task re-enqueued after a reclaim to run again (a run stops once settled)
        "horizon": int(max(span, last_end) + MAX_DURATION),
        "resources": profile.resources,
        "jitter": profile.jitter,
        "tasks": tasks,
        "preemptions": reclaims,
        "spot_outages": outages,
    }


def _uniform_poisson(rng: random.Random, horizon: float, rate: float) -> list[float]:
    out: list[float] = []
    t = 0.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= horizon:
            break
        out.append(t)
    return out


# --- writing ----------------------------------------------------------------------------------------


def render(trace: dict[str, object]) -> str:
    """The trace as JSON, one task per line (readable diffs, stable bytes)."""
    head = {k: v for k, v in trace.items() if k not in ("tasks", "preemptions", "spot_outages")}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
    for key in ("tasks", "preemptions", "spot_outages"):
        items = trace[key]
        assert isinstance(items, list)
        lines.append(f"  {json.dumps(key)}: [")
        lines += [f"    {json.dumps(item)}," for item in items]
        if items:
            lines[-1] = lines[-1].rstrip(",")
        lines.append("  ]" + ("," if key != "spot_outages" else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def files(profile: Profile, seed: int) -> dict[str, str]:
    return {
        f"{profile.name}.json": render(generate(profile, seed)),
        f"{profile.name}.conf": profile.config.format(name=profile.name),
    }


def duration_stats(durations: list[float]) -> dict[str, float]:
    """The duration figures the module docstring claims (median, p90, tail shares)."""
    single = sorted(durations)
    n = len(single)
    if not n:
        return {}
    top = single[int(n * 0.9) :]
    return {
        "tasks": n,
        "median_min": single[n // 2] / MINUTE,
        "p90_h": single[int(n * 0.9)] / HOUR,
        "over_1h": sum(1 for d in single if d > HOUR) / n,
        "over_3h": sum(1 for d in single if d > 3 * HOUR) / n,
        "max_h": single[-1] / HOUR,
        "top10_share": sum(top) / sum(single),
    }


def day_night_ratio(arrival_times: list[float], first_weekday: int) -> float:
    """Weekday arrivals per hour in 10:00-18:00 over those in 00:00-06:00."""
    day = night = 0
    for at in arrival_times:
        if (first_weekday + int(at // DAY)) % 7 >= 5:
            continue
        hour = (at % DAY) / HOUR
        if 10 <= hour < 18:
            day += 1
        elif hour < 6:
            night += 1
    return (day / 8) / (night / 6) if night else math.inf


def stats(profile: Profile, trace: dict[str, object]) -> dict[str, float]:
    """The docstring's figures measured on one generated trace: durations of the single
    (non-sweep) GPU tasks, the day/night ratio of single-task arrivals."""
    tasks = trace["tasks"]
    assert isinstance(tasks, list)
    singles = [t for t in tasks if not str(t["name"]).startswith(("sweep", "fanout"))]
    figures = duration_stats([float(t["duration"]) for t in singles if t["queue"] == "gpu"])
    figures["day_night_ratio"] = day_night_ratio([float(t["at"]) for t in singles], profile.first_weekday)
    figures["all_tasks"] = len(tasks)
    figures["task_hours"] = sum(float(t["duration"]) for t in tasks) / HOUR
    return figures


NAMES = {p.name for p in PROFILES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TRACES, help="directory to write to (default: bench/traces)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    parser.add_argument("--only", choices=sorted(NAMES), action="append", help="only these profiles")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    parser.add_argument("--stats", action="store_true", help="print the statistics of each generated trace")
    args = parser.parse_args(argv)
    stale = []
    for profile in PROFILES:
        if args.only and profile.name not in args.only:
            continue
        for filename, text in files(profile, args.seed).items():
            path = args.out / filename
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        if args.stats:
            figures = stats(profile, generate(profile, args.seed))
            print(profile.name + ": " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    if stale:
        print("out of date (run bench/gen_traces.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
