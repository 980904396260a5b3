"""Benchmark (c): start-up time of ``scaler --help`` and ``scaler validate-config`` as a
ratio to ``python -c pass`` measured in the same run (so a slow machine shows in both).

Each command runs ``repeats`` times as a fresh process (after one unmeasured warm-up run that
fills the OS file cache); the median wall time is reported. Target: ``--help`` ≤ 0.3 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from _common import ROOT, emit, parse_args, run, table, verdict

HELP_TARGET = 0.3


def timed(cmd: list[str], repeats: int, warm_up: bool = True) -> float:
    env = {
        **os.environ,
        "SCALER_LOAD_PLUGINS": os.environ.get("SCALER_LOAD_PLUGINS", "clearml-scaler-aws,clearml-scaler-gcp"),
    }
    if warm_up:
        run(cmd, env=env)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = run(cmd, env=env)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return statistics.median(times)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 1 if args.smoke else 11
    scaler = str(Path(sys.executable).with_name("scaler"))
    config = str(ROOT / "bench" / "traces" / "research-day.conf")
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("scaler --help", [scaler, "--help"]),
        ("scaler validate-config research-day.conf", [scaler, "validate-config", config]),
        (
            "scaler validate-config examples/aws.conf --provider aws",
            [scaler, "validate-config", str(ROOT / "examples" / "aws.conf"), "--provider", "aws"],
        ),
    ]
    if args.smoke:
        commands = commands[:2]
    results = {label: timed(cmd, repeats, warm_up=not args.smoke) for label, cmd in commands}
    base = results["python -c pass"]
    rows = [[label, f"{seconds * 1000:.0f} ms", f"{seconds / base:.1f}×"] for label, seconds in results.items()]
    help_s = results["scaler --help"]
    out = [
        "## Start-up time",
        "",
        f"Median of {repeats} fresh processes each (after a warm-up run); ratio to `python -c pass` in the same run.",
        "",
        table(["command", "wall time", "÷ python -c pass"], rows),
        "",
        table(
            ["figure", "value", "target", ""],
            [["scaler --help", f"{help_s:.3f} s", f"≤ {HELP_TARGET} s", verdict(help_s <= HELP_TARGET)]],
            "lrrl",
        ),
        "",
    ]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
