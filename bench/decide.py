"""Benchmark (b): decision + bookkeeping time of one tick (``scaler.engine.policy.decide``) for a
fleet over 100 queues, in steady state (the policy's state carried from tick to tick).

The fleet: 100 queues with two resources each (spot first, on-demand second); every instance
has a registered worker, 70 % busy, 30 % idle; every fourth queue has pending tasks (so the
launch planning runs too). Target: ≤ 20 ms at 1,000 instances, growth no worse than linear.
"""

from __future__ import annotations

import statistics
import time

from _common import emit, parse_args, table, verdict

from scaler.config.loading import build_config
from scaler.config.model import Config
from scaler.engine.policy import Observation, PolicyState, QueueObs, WorkerObs, decide
from scaler.types import Instance, InstanceState

QUEUES = 100
TARGET_MS = 20.0


def make_config(queues: int, per_resource: int) -> Config:
    resources = []
    for q in range(queues):
        resources.append(
            {"name": f"q{q}-spot", "queue": f"q{q}", "max_instances": per_resource, "spot": True, "price_per_hour": 0.4}
        )
        resources.append({"name": f"q{q}-od", "queue": f"q{q}", "max_instances": per_resource, "price_per_hour": 1.0})
    raw = {
        "scaler": {"name": "bench", "workers_prefix": "bench", "max_idle_time": 3600},
        "simulated": {},
        "resources": resources,
    }
    return build_config(raw, provider="simulated")


def observation(config: Config, n: int, now: float) -> Observation:
    resources = [r.name for r in config.resources]
    instances, workers = [], []
    for i in range(n):
        resource = resources[i % len(resources)]
        queue = resource.rsplit("-", 1)[0]
        inst = Instance(
            f"i-{i:08x}", resource, InstanceState.RUNNING, now - 3600, f"tok-{i}", resource.endswith("spot")
        )
        instances.append(inst)
        busy = i % 10 < 7
        workers.append(
            WorkerObs(
                f"bench:{resource}:{inst.id}", (queue,), f"task-{i}" if busy else None, f"task {i}" if busy else "", now
            )
        )
    queues = {f"q{q}": QueueObs(f"q{q}", 3 if q % 4 == 0 else 0, f"id-q{q}") for q in range(QUEUES)}
    return Observation(now, queues, workers, instances)


def measure(n: int, repeats: int) -> tuple[float, float]:
    config = make_config(QUEUES, max(4, 2 * n // (2 * QUEUES) + 4))
    obs = observation(config, n, 100_000.0)
    state = PolicyState()
    state = decide(config, obs, state).state  # warm-up: timers and running tasks recorded
    times = []
    for k in range(repeats):
        tick = Observation(obs.now + 30 * (k + 1), obs.queues, obs.workers, obs.instances)
        started = time.perf_counter()
        state = decide(config, tick, state).state
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    sizes = (10, 100) if args.smoke else (100, 1000, 3000, 10000)
    repeats = 2 if args.smoke else 7
    rows, results = [], {}
    for n in sizes:
        median, best = measure(n, repeats)
        results[n] = median
        rows.append([f"{n:,}", f"{median:.2f}", f"{best:.2f}", f"{median / n * 1000:.1f}"])
    out = [
        "## Decision time per tick (`scaler.engine.policy.decide`)",
        "",
        f"{QUEUES} queues × 2 resources, every instance with a worker (70 % busy), pending tasks on every fourth "
        f"queue; median of {repeats} steady-state ticks.",
        "",
        table(["instances", "median ms", "best ms", "µs per instance"], rows),
        "",
    ]
    if not args.smoke:
        at_1k = results[1000]
        growth = results[10000] / results[1000]
        out += [
            table(
                ["figure", "value", "target", ""],
                [
                    [
                        "decide at 1,000 instances",
                        f"{at_1k:.2f} ms",
                        f"≤ {TARGET_MS:g} ms",
                        verdict(at_1k <= TARGET_MS),
                    ],
                    [
                        "time ×10,000 ÷ time ×1,000",
                        f"{growth:.1f}×",
                        "≈ 10× (linear; ≤ 12× for noise)",
                        verdict(growth <= 12),
                    ],
                ],
                "lrrl",
            ),
            "",
        ]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
