"""Crash/restart chaos at full size, outside pytest: ``python bench/chaos.py --seeds 50``.

Starts moto and the EC2 proxy of ``tests/fakes/ec2.py`` on loopback, then runs the seeded
plans of ``tests/aws/test_chaos.py`` (the real ``scaler run --provider aws`` as a subprocess,
``kill -9`` at random points, restarts, a fake ClearML server and agent driver per seed), a
few seeds at a time. Prints one line per seed as it finishes and, for every failed seed, its
plan, the sampled timeline and the tail of the scaler's log. Exit status 1 when any
invariant broke. Nothing here leaves the machine.

    python bench/chaos.py --seeds 50              # seeds 1..50, full size
    python bench/chaos.py --seed 17 --seed 23     # just those (e.g. to replay a failure)
    python bench/chaos.py --seeds 8 --size small  # the CI size
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/chaos.py` puts bench/ first; the packages live one up
    sys.path.insert(0, str(ROOT))

from tests.fakes.ec2 import EC2Proxy, MotoServer  # noqa: E402
from tests.support.chaos import SIZES, SeedRun, run_chaos, verdict  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kill -9 / restart chaos against moto and a fake ClearML server")
    parser.add_argument("--seeds", type=int, default=50, help="run seeds 1..N (default 50)")
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable; overrides --seeds)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="plan size (default full)")
    parser.add_argument("--parallel", type=int, default=5, help="seeds run at once (default 5)")
    parser.add_argument("--workdir", type=Path, help="keep configs, state files and scaler logs here")
    parser.add_argument("--verbose", action="store_true", help="print every seed's full report, not only failures")
    args = parser.parse_args(argv)

    seeds = args.seed or list(range(1, args.seeds + 1))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scaler-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    moto = MotoServer()
    moto.start()
    proxy = EC2Proxy(moto).start()
    started = time.monotonic()

    def show(run: SeedRun) -> None:
        print(run.summary(), flush=True)
        if args.verbose and run.ok:
            print(run.report(log_lines=40), flush=True)

    print(f"chaos: {len(seeds)} seed(s), size {args.size}, {args.parallel} at a time, workdir {workdir}", flush=True)
    try:
        runs, world = run_chaos(seeds, proxy, workdir, size=args.size, parallel=args.parallel, on_result=show)
    finally:
        proxy.close()
        moto.stop()
    problems = verdict(runs, world)
    failed = [run.seed for run in runs if not run.ok]
    races = sum(len(run.races) for run in runs)
    kills = sum(len(run.kill_log) for run in runs)
    print(
        f"\n{len(runs)} seed(s), {kills} kill -9, {races} terminate/take race(s), "
        f"{len(failed)} failed {failed or ''} in {time.monotonic() - started:.0f}s"
    )
    if problems:
        print("\n" + problems)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
