"""Crash/restart chaos of the real ``scaler run --provider aws`` (harness: tests/support/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.ec2 import EC2Proxy
from tests.support.chaos import KILL_MODES, SIZES, make_plan, run_chaos, verdict

# -- the tests ------------------------------------------------------------------------------------

CI_SEEDS = (1, 2, 3, 4)


def test_plans_are_seeded_and_cover_every_kill_mode() -> None:
    assert make_plan(7) == make_plan(7) != make_plan(8)
    modes = {mode for seed in range(1, 51) for _at, mode, _d in make_plan(seed, **SIZES["full"]).kills}
    assert modes == set(KILL_MODES)
    assert {m for _at, m, _d in (k for s in CI_SEEDS for k in make_plan(s).kills)} >= {"launch", "terminate"}


def test_chaos_kill9_and_restart(ec2_proxy: EC2Proxy, tmp_path: Path) -> None:
    runs, world = run_chaos(CI_SEEDS, ec2_proxy, tmp_path, size="small", parallel=len(CI_SEEDS))
    for run in runs:
        print(run.summary())
    problems = verdict(runs, world)
    assert not problems, problems


@pytest.mark.slow
def test_chaos_50_seeds(ec2_proxy: EC2Proxy, tmp_path: Path) -> None:
    runs, world = run_chaos(range(1, 51), ec2_proxy, tmp_path, size="full", parallel=5)
    for run in runs:
        print(run.summary())
    problems = verdict(runs, world)
    assert not problems, problems
