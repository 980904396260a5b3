"""``scaler demo`` tells the truth about its run: its header names the trace once, its virtual
end is the time of its last event, a launch the cloud refused is shown as failed (not as a
launch), consolidations are counted as such, and its figures are ``scaler simulate``'s on the
same inputs (one report for both)."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from scaler.host import PluginHost
from scaler.sim.run import load, simulate
from scaler.sim.world import demo_paths
from tests.support.cli import run_cli

LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] (.*)$")


def seconds(clock: str) -> int:
    h, m, s = (int(part) for part in clock.split(":"))
    return h * 3600 + m * 60 + s


@pytest.fixture(scope="module")
def text() -> str:
    proc = run_cli("demo", env=None, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def timeline(text: str) -> list[tuple[int, str]]:
    return [(seconds(m.group(1)), m.group(2)) for m in map(LINE.match, text.splitlines()) if m]


def row(text: str, figure: str) -> str:
    """A summary row's value (rich may wrap it over lines)."""
    lines = text.split("Summary", 1)[1].splitlines()
    for index, line in enumerate(lines):
        if f"│ {figure} " in line:
            value = line.split("│")[2].strip()
            for more in lines[index + 1 :]:
                cells = more.split("│")
                if len(cells) < 3 or cells[1].strip():
                    break
                value += " " + cells[2].strip()
            return value
    raise AssertionError(f"no row {figure!r} in {text}")


def test_the_header_names_the_trace_once(text: str) -> None:
    first = text.splitlines()[0]
    assert first == "clearml-scaler demo: a morning of a small ML team"
    assert "demo: demo:" not in text


def test_the_virtual_end_is_the_last_event(text: str, timeline: list[tuple[int, str]]) -> None:
    ticks, end = row(text, "ticks / virtual end").split(" / ")
    assert seconds(end) == timeline[-1][0], (end, timeline[-1])
    assert seconds(end) == (int(ticks) - 1) * 30  # a tick every 30 s from 0
    assert "virtual time 04:00:00" not in text  # the horizon is a bound, not the run's length


def test_refused_launches_are_not_shown_as_launches(text: str, timeline: list[tuple[int, str]]) -> None:
    launched = sum(int(m.group(1)) for _, line in timeline if (m := re.match(r"launch (\d+) x ", line)))
    assert launched == int(row(text, "instances launched").split()[0])
    failed = [line for _, line in timeline if line.startswith("launch of ")]
    assert failed and all(" x gpu-spot (spot) failed: out of capacity (" in line for line in failed), failed
    assert row(text, "failed launch calls") == f"capacity (spot): {len(failed)}"
    # during the spot outage (5000 s to 8000 s) no spot launch succeeds
    assert not [
        line for at, line in timeline if 5000 <= at <= 8000 and re.match(r"launch \d+ x gpu-spot \(spot\)", line)
    ]


def test_consolidations_are_counted_as_such(text: str, timeline: list[tuple[int, str]]) -> None:
    kinds = Counter(m.group(1) for _, line in timeline if (m := re.match(r"terminate \S+ \([^,]+, (\w+)\)", line)))
    assert kinds["consolidation"] > 0 and kinds["idle"] > 0
    value = row(text, "instances terminated")
    assert f"consolidation: {kinds['consolidation']}" in value and f"idle: {kinds['idle']}" in value, value


def test_the_demo_and_simulate_share_one_report() -> None:
    demo = run_cli("demo", "--format", "json", timeout=120)
    assert demo.returncode == 0, demo.stderr
    host = PluginHost()
    config, spec = load(host, *demo_paths())
    report: dict[str, Any] = simulate(config, host, spec, "scaler").as_dict()
    assert json.loads(demo.stdout) == report
    assert report["tasks"]["completed"] == report["tasks"]["total"] == 30
    # and `scaler simulate` on the same files says the same waits
    conf, trace = demo_paths()
    cli = run_cli("simulate", "--config", str(conf), "--trace", str(trace), "--format", "json", timeout=120)
    assert json.loads(cli.stdout)["wait_seconds"] == report["wait_seconds"]
