"""Benchmark (d): resident memory of a running ``scaler run`` managing N instances.

A real ``scaler run --provider simulated`` process (polling every second) manages a simulated
fleet of N running instances kept in a ``simulated.state_file``; the fake ClearML server (in
this process, on loopback) lists one worker per instance, 70 % of them busy. After a few
ticks its RSS is read from ``/proc/<pid>/status`` and, once SIGTERM has stopped it, its peak
RSS from ``os.wait4``. Target: ≤ 120 MB at 1,000 instances.

The N instances are spread round-robin over ten resources (one queue each), as they always
were; each resource's ``max_instances`` is its own share of N (at least 10), since validation
caps ``max_instances`` at 1,000 per resource. What is measured (one process, N instances, N
workers, 70 % busy, nothing pending, so nothing is launched or ended) is the same as when the
cap was N per resource: figures stay comparable with earlier runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import clearml_env, emit, parse_args, table, verdict

from scaler.config.sections import MAX_PER_RESOURCE
from tests.fakes.clearml_server import FakeClearML

TARGET_MB = 120.0
RESOURCES = 10
TICKS = 4
SMOKE_TICKS = 1


def write_fleet(tmp: Path, n: int, fake: FakeClearML) -> Path:
    now = time.time()
    instances = []
    for i in range(n):
        resource = f"r{i % RESOURCES}"
        instances.append(
            {
                "id": f"sim-{i + 1:06d}",
                "scaler": "mem-bench",
                "resource": resource,
                "launch_token": f"tok-{i}",
                "spot": False,
                "launched_at": now - 3600,
                "state": "running",
                "ended_at": 0.0,
                "instance_type": "sim.medium",
                "console": "[0] booted\n",
            }
        )
    state = tmp / "fleet.json"
    state.write_text(json.dumps({"counter": n, "tokens": {}, "instances": instances}))
    for q in range(RESOURCES):
        fake.create_queue(f"q{q}")
    for i, inst in enumerate(instances):
        worker = f"mem:{inst['resource']}:{inst['id']}"
        fake.register_worker(worker, [f"q{i % RESOURCES}"])
        if i % 10 < 7:
            fake.enqueue(f"q{i % RESOURCES}")
            fake.take_task(worker)
    per_resource = max(10, -(-n // RESOURCES))  # each resource's share of the n instances
    if per_resource > MAX_PER_RESOURCE:
        raise SystemExit(f"{n} instances over {RESOURCES} resources exceed max_instances ≤ {MAX_PER_RESOURCE}")
    resources = ",\n".join(
        f'  {{ name = "r{q}", queue = "q{q}", max_instances = {per_resource} }}' for q in range(RESOURCES)
    )
    conf = tmp / "fleet.conf"
    conf.write_text(
        'scaler { name = "mem-bench", workers_prefix = "mem", polling_interval = 1s, max_idle_time = 2h }\n'
        f'simulated {{ state_file = "{state}" }}\nresources = [\n{resources}\n]\n'
    )
    return conf


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def measure(n: int, ticks_wanted: int = TICKS) -> tuple[float, float, float]:
    """(RSS after TICKS ticks, peak RSS, seconds per tick) in MB / s."""
    with tempfile.TemporaryDirectory() as tmp_name, FakeClearML() as fake:
        tmp = Path(tmp_name)
        conf = write_fleet(tmp, n, fake)
        env = clearml_env(fake.env(), tmp / "home")
        scaler = str(Path(sys.executable).with_name("scaler"))
        cmd = [
            scaler,
            "run",
            "--provider",
            "simulated",
            "--config",
            str(conf),
            "--no-server-vault",
            "--log-level",
            "WARNING",
        ]
        fake.clear_calls()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        first_tick = None
        rss = 0.0
        try:
            while True:
                ticks = len(fake.calls_to("queues.get_all"))
                if ticks >= 1 and first_tick is None:
                    first_tick = time.monotonic()
                if ticks >= ticks_wanted:
                    rss = status_kb(proc.pid, "VmRSS") / 1024
                    break
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"scaler run exited early ({proc.returncode}): {err[-800:]}")
                if time.monotonic() - started > 120:
                    raise SystemExit("scaler run did not tick in 120 s")
                time.sleep(0.05)
            per_tick = (time.monotonic() - (first_tick or started)) / max(1, ticks_wanted - 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        return rss, usage.ru_maxrss / 1024, per_tick


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    sizes = (10,) if args.smoke else (0, 1000, 3000)
    rows, results = [], {}
    for n in sizes:
        rss, peak, per_tick = measure(n, SMOKE_TICKS if args.smoke else TICKS)
        results[n] = peak
        rows.append([f"{n:,}", f"{rss:.1f}", f"{peak:.1f}", f"{per_tick:.2f} s"])
    out = [
        "## Memory of a running scaler",
        "",
        f"`scaler run --provider simulated` (a real process) managing N running instances "
        f"(`simulated.state_file`) with one ClearML worker each on the fake ClearML server, polling every "
        f"second; RSS after {TICKS} ticks and peak RSS (`os.wait4`). The tick time includes 1 s of polling "
        "interval and the state file's JSON round trip.",
        "",
        table(["instances", "RSS (MB)", "peak RSS (MB)", "time per tick"], rows),
        "",
    ]
    if 1000 in results:
        out += [
            table(
                ["figure", "value", "target", ""],
                [
                    [
                        "peak RSS at 1,000 instances",
                        f"{results[1000]:.1f} MB",
                        f"≤ {TARGET_MB:g} MB",
                        verdict(results[1000] <= TARGET_MB),
                    ]
                ],
                "lrrl",
            ),
            "",
        ]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
