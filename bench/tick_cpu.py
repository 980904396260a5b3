"""Benchmark (f): CPU time of the scaler's own process per steady tick, at 100 / 1,000 / 10,000 instances.

Two processes, so that the fakes' CPU stays out of the figure:

* this one runs the fake ClearML server (``tests/fakes/clearml_server.py``) and registers one
  worker per instance on it (70 % of them running a task, the rest idle, nothing pending);
* a child process (``bench/tick_cpu.py --child N``) is the scaler: it is set up as ``scaler run``
  sets itself up (the real ``ClearMLSource`` through the real clearml SDK, the fleet identity
  from ``users.get_current_user``, the lease, the tick listeners: poll summary, state file,
  Prometheus metrics), with the built-in ``simulated`` provider holding the N running instances
  in memory (listing them is a loop over a dict: no file, no HTTP), and ticks. Each tick's CPU
  is ``time.process_time()`` of the child (every thread of it), and its parts are the main
  thread's ``time.thread_time()`` inside ClearML reads, the cloud listing, ``decide`` (the
  policy), the lease and the listeners.

A steady tick: every instance has its worker, none idle past ``max_idle_time``, no task
pending: the tick reads and decides, and acts on nothing (checked: a tick that acts, or cannot
read ClearML or the cloud, stops the benchmark). Target: ≤ 0.2 s at 1,000 instances, and linear
to 10,000 (the 10,000 / 1,000 ratio near 10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, clearml_env, emit, parse_args, table, verdict

NAME, PREFIX = "cpu-bench", "cpu"
RESOURCES = 10
BUSY_SHARE = 0.7
TARGET_S = 0.2  # CPU seconds per steady tick at 1,000 instances
WARMUP_TICKS = 2
PARTS = ("clearml", "cloud", "decide", "lease", "listeners")
#: measured with this script on the commit before the tick read ClearML as plain JSON (0b19a03, the
#: SDK building typed objects for every worker and queue entry): CPU seconds per steady tick
BEFORE = {100: 0.025, 1000: 0.203, 10000: 2.190}


def instance_id(i: int) -> str:
    return f"sim-{i + 1:06d}"


def resource_of(i: int) -> str:
    return f"r{i % RESOURCES}"


# -- the scaler's process -------------------------------------------------------------------


_depth: dict[str, int] = {}


def _timed(fn: Callable[..., Any], into: dict[str, float], part: str) -> Callable[..., Any]:
    """``fn``, adding the main thread's CPU inside it to ``into[part]`` (once when one timed call
    of a part makes another, as ``read`` calls ``read_workers``)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _depth[part] = _depth.get(part, 0) + 1
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth[part] -= 1
            if not _depth[part]:
                into[part] += time.thread_time() - started

    return wrapper


def child(n: int, ticks: int, profile: bool) -> None:
    """Set up as ``scaler run`` does, tick, and print one JSON line with the CPU figures."""
    import copy
    import logging

    from scaler.clearml.lease import Lease
    from scaler.clearml.queues import ClearMLSource
    from scaler.config.loading import build_config
    from scaler.default_plugins.simulated import SimInstance, SimulatedCloud, use_cloud
    from scaler.engine import reconciler as reconciler_module
    from scaler.engine.reconciler import Reconciler
    from scaler.host import PluginHost
    from scaler.ops import observers
    from scaler.ops.logs import setup_logging
    from scaler.types import fleet_identity

    setup_logging("WARNING", "text")
    logging.getLogger("clearml").setLevel(logging.ERROR)
    host = PluginHost()
    raw = {
        "scaler": {"name": NAME, "workers_prefix": PREFIX, "max_idle_time": 7200, "polling_interval": 30},
        "simulated": {},
        "resources": [
            {"name": resource_of(r), "queue": f"q{r}", "max_instances": min(1000, max(10, n))} for r in range(RESOURCES)
        ],
    }
    problems = [
        p.render() for p in host.validate(copy.deepcopy(raw), "simulated", ["simulated"]) if p.severity == "error"
    ]
    if problems:
        raise SystemExit(f"bench config invalid: {problems}")
    config = build_config(raw, provider="simulated")
    source = ClearMLSource()
    who = source.whoami()
    if who is None:
        raise SystemExit(f"cannot read the fake ClearML server: {source.last_error}")
    from dataclasses import replace

    config = replace(config, fleet_id=fleet_identity(NAME, who.server, who.company))
    now = time.time()
    cloud = SimulatedCloud(clock=time.time)
    for i in range(n):
        inst = SimInstance(instance_id(i), NAME, resource_of(i), f"tok-{i % RESOURCES}", False, now - 3600)
        inst.state, inst.fleet = "running", config.fleet_id
        cloud.instances[inst.id] = inst
    cloud.counter = n
    use_cloud(cloud)
    lease = Lease(source, NAME, ttl=3 * config.scaler.polling_interval, identity=who)
    loop = Reconciler(config, host, host.provider("simulated"), source, lease=lease)
    metrics = observers.attach(loop, metrics_port=0, metrics_host="127.0.0.1")

    spent = dict.fromkeys(PARTS, 0.0)
    source.read = _timed(source.read, spent, "clearml")  # type: ignore[method-assign]
    source.read_workers = _timed(source.read_workers, spent, "clearml")  # type: ignore[method-assign]
    loop.provider.list_instances = _timed(loop.provider.list_instances, spent, "cloud")  # type: ignore[method-assign]
    reconciler_module.decide = _timed(reconciler_module.decide, spent, "decide")  # type: ignore[attr-defined]
    lease.acquire = _timed(lease.acquire, spent, "lease")  # type: ignore[method-assign]
    loop.listeners = [_timed(fn, spent, "listeners") for fn in loop.listeners]

    def tick() -> Any:
        report = loop.tick()
        busy = sum(stats.get("busy", 0) for stats in report.fleet.values())
        alive = sum(stats.get("alive", 0) for stats in report.fleet.values())
        if report.actions or report.failures() or alive != n or busy != round(n * BUSY_SHARE):
            raise SystemExit(
                f"not a steady tick at {n} instances: actions {report.actions[:3]}, failures {report.failures()}, "
                f"alive {alive}, busy {busy}, errors {dict(report.errors)}"
            )
        return report

    for _ in range(WARMUP_TICKS):
        tick()
    per_tick: list[float] = []
    parts: list[dict[str, float]] = []
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for _ in range(ticks):
        for key in spent:
            spent[key] = 0.0
        started = time.process_time()
        tick()
        per_tick.append(time.process_time() - started)
        parts.append(dict(spent))
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    if metrics is not None:
        metrics.close()
    best = min(range(len(per_tick)), key=lambda k: abs(per_tick[k] - statistics.median(per_tick)))
    print(json.dumps({"n": n, "cpu": statistics.median(per_tick), "ticks": per_tick, "parts": parts[best]}))


# -- the fakes' process ---------------------------------------------------------------------


def measure(n: int, ticks: int, profile: bool = False) -> dict[str, Any]:
    from tests.fakes.clearml_server import FakeClearML

    with tempfile.TemporaryDirectory() as tmp_name, FakeClearML() as fake:
        tmp = Path(tmp_name)
        for q in range(RESOURCES):
            fake.create_queue(f"q{q}")
        busy = round(n * BUSY_SHARE)
        for i in range(n):
            worker = f"{PREFIX}:{resource_of(i)}:{instance_id(i)}"
            fake.register_worker(worker, [f"q{i % RESOURCES}"], timeout=24 * 3600)
            if i < busy:
                fake.enqueue(f"q{i % RESOURCES}")
                fake.take_task(worker)
        env = clearml_env(fake.env(), tmp / "home")
        env["XDG_CACHE_HOME"] = str(tmp / "cache")  # the state file
        env["SCALER_LOAD_PLUGINS"] = ""  # the simulated provider is core's own
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--ticks", str(ticks)]
        if profile:
            cmd.append("--profile")
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600)
        if profile:
            sys.stderr.write(done.stderr)
        if done.returncode != 0:
            raise SystemExit(
                f"the scaler's process failed at {n} instances: {done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    if "--child" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--child", type=int, required=True)
        parser.add_argument("--ticks", type=int, default=5)
        parser.add_argument("--profile", action="store_true")
        child_args = parser.parse_args()
        child(child_args.child, child_args.ticks, child_args.profile)
        return
    profile = "--profile" in sys.argv
    args = parse_args(__doc__.splitlines()[0], [a for a in sys.argv[1:] if a != "--profile"])
    sizes = (20, 200) if args.smoke else (100, 1000, 10000)
    ticks = 2 if args.smoke else 7
    results = {n: measure(n, ticks, profile) for n in sizes}
    rows = []
    for n, result in results.items():
        parts = result["parts"]
        before = BEFORE.get(n) if not args.smoke else None
        rows.append(
            [
                f"{n:,}",
                f"{before:.3f} s" if before else "–",
                f"{result['cpu']:.3f} s",
                f"{result['cpu'] * 1e6 / n:.0f} µs",
                *(f"{parts[p]:.3f}" for p in PARTS),
            ]
        )
    small, large = (sizes[1], sizes[2]) if len(sizes) == 3 else (sizes[0], sizes[1])
    ratio = results[large]["cpu"] / max(results[small]["cpu"], 1e-9)
    out = [
        "## CPU time of a steady tick",
        "",
        "The scaler's own process (`bench/tick_cpu.py`): set up as `scaler run` sets itself up (the real ClearML "
        "source through the clearml SDK, the lease, the poll summary, state file and Prometheus listeners) with "
        "the `simulated` provider holding N running instances in memory; the fake ClearML server, in another "
        f"process, lists one worker per instance ({BUSY_SHARE:.0%} running a task, the rest idle, nothing "
        "pending), so the tick reads and decides and acts on nothing. CPU of one tick is `time.process_time()` "
        f"of the scaler's process (median of {ticks} ticks after {WARMUP_TICKS} warm-up ticks); the parts are "
        "the main thread's CPU inside each step (ClearML reads, the cloud listing, the policy's `decide`, the "
        "lease, the tick listeners). *Before*: the same benchmark on commit 0b19a03, before the large lists "
        "were read as plain JSON (the SDK built a typed object, and parsed every timestamp with dateutil, for each "
        "worker and queue entry).",
        "",
        table(["instances", "before", "CPU per tick", "per instance", *(f"{p} (s)" for p in PARTS)], rows),
        "",
    ]
    figures = [
        [
            f"CPU per tick, {large:,} / {small:,} instances",
            f"{ratio:.1f}",
            f"≈ {large // small} (linear)",
            verdict(ratio <= 1.3 * large / small),
        ]
    ]
    if 1000 in results:
        cpu = results[1000]["cpu"]
        figures.insert(
            0, ["CPU per steady tick at 1,000 instances", f"{cpu:.3f} s", f"≤ {TARGET_S:g} s", verdict(cpu <= TARGET_S)]
        )
    out += [table(["figure", "value", "target", ""], figures, "lrrl"), ""]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
