"""bench/gen_traces.py: the committed heavy-tailed traces are exactly what the seeded generator
writes, and what it draws has the shape its docstring claims (the published statistics of the
Philly, Helios and PAI cluster-trace studies, as the generator reads them)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from scaler.host import PluginHost
from scaler.sim.run import load
from tests.support import REPO

TRACES = REPO / "bench" / "traces"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_traces", REPO / "bench" / "gen_traces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_traces"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_committed_traces_are_what_the_generator_writes(gen: ModuleType) -> None:
    assert len(gen.PROFILES) >= 2
    for profile in gen.PROFILES:
        for name, text in gen.files(profile, gen.DEFAULT_SEED).items():
            assert (TRACES / name).read_text(encoding="utf-8") == text, f"{name}: run bench/gen_traces.py"
    assert gen.main(["--check"]) == 0


def test_the_generator_is_deterministic_and_seeded(gen: ModuleType, tmp_path: Path) -> None:
    profile = gen.PROFILES[0]
    assert gen.files(profile, 3) == gen.files(profile, 3)
    assert gen.files(profile, 3) != gen.files(profile, 4)
    assert gen.main(["--out", str(tmp_path), "--seed", "3"]) == 0
    assert (tmp_path / f"{profile.name}.json").read_text(encoding="utf-8") == gen.files(profile, 3)[
        f"{profile.name}.json"
    ]
    assert gen.main(["--out", str(tmp_path), "--check"]) == 1  # seed 3 on disk, the default asked


def test_duration_mixture_has_the_documented_heavy_tail(gen: ModuleType) -> None:
    rng = random.Random(1)
    figures = gen.duration_stats([gen.draw_duration(rng, gen.GPU_MIX) for _ in range(50_000)])
    # the docstring: median ≈ 9.5 min, p90 ≈ 3 h, ≈ 22 % > 1 h, ≈ 10 % > 3 h, top 10 % ≈ 70 % of task-hours
    assert 8.5 <= figures["median_min"] <= 10.5
    assert 2.6 <= figures["p90_h"] <= 3.5
    assert 0.19 <= figures["over_1h"] <= 0.25
    assert 0.08 <= figures["over_3h"] <= 0.12
    assert 0.64 <= figures["top10_share"] <= 0.75
    assert figures["max_h"] <= 24


def test_arrivals_follow_the_day(gen: ModuleType) -> None:
    rng = random.Random(2)
    times = gen.arrivals(rng, 5 * gen.DAY, 2000, 0)  # Monday to Friday
    assert 2.8 <= gen.day_night_ratio(times, 0) <= 3.6  # the docstring: ≈ 3.2
    weekend = gen.arrivals(rng, 7 * gen.DAY, 2000, 0)
    per_day = [sum(1 for t in weekend if d * gen.DAY <= t < (d + 1) * gen.DAY) for d in range(7)]
    assert max(per_day[5:]) < 0.45 * min(per_day[:5])  # a weekend day: 0.3 of a weekday


def test_generated_traces_replay_with_their_configs(gen: ModuleType) -> None:
    host = PluginHost()
    spans = {}
    for profile in gen.PROFILES:
        config, spec = load(host, TRACES / f"{profile.name}.conf", TRACES / f"{profile.name}.json")
        trace = spec.trace
        names = [t.name for t in trace.tasks]
        assert trace.description and trace.seed == gen.DEFAULT_SEED
        assert any(n.startswith("sweep") for n in names) and any(n.startswith("fanout") for n in names)
        assert trace.preemptions and trace.spot_outages
        assert {t.queue for t in trace.tasks} == set(config.queues)
        for resource in config.resources:
            assert resource.name in spec.boot_times and resource.name in spec.prices
        assert len(trace.tasks) < 1000  # small enough for bench/policies.py to replay with every policy
        spans[profile.name] = trace.tasks[-1].at - trace.tasks[0].at
    assert max(spans.values()) >= 1.8 * gen.DAY  # one lasts two days
