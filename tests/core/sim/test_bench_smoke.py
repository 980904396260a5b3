"""Every benchmark script runs in ``--smoke`` mode (tiny sizes); the figures are not asserted,
only that each script finishes and prints its table. ``bench/run_all.py`` assembles a page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

BENCHES = ("policies", "multi_cloud", "decide", "startup", "memory", "tick_cpu", "api_calls")


@pytest.mark.parametrize("name", BENCHES)
def test_bench_script_runs_in_smoke_mode(name: str, tmp_path: Path) -> None:
    section = tmp_path / f"{name}.md"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / f"{name}.py"),
            "--smoke",
            "--markdown",
            str(section),
            "--img-dir",
            str(tmp_path / "img"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    text = section.read_text()
    assert text.startswith("## ") and "| ---" in text
    assert text.strip() in result.stdout


def test_run_all_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke", "--only", "decide", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = out.read_text()
    assert page.startswith("# Performance") and "Machine:" in page and "## Decision time per tick" in page
