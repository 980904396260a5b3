"""``scaler run --metrics-port`` as a subprocess, and its /metrics page: the one way the metrics
tests start a scaler that serves metrics and wait for its ticks."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.cli import start_cli


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_metrics_run(
    config: Path, port: int, *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``scaler run --provider simulated --config CONFIG --no-server-vault --metrics-port PORT
    EXTRA``, its output (standard error included) piped to ``proc.stdout``."""
    return start_cli(
        "run",
        "--provider",
        "simulated",
        "--config",
        str(config),
        "--no-server-vault",
        "--metrics-port",
        str(port),
        *extra,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def metrics_text(port: int) -> str:
    """The /metrics page on ``port`` ("" while nothing answers there)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def scrape_after_ticks(port: int, ticks: int = 2, timeout: float = 60) -> str:
    """The /metrics page once it counts ``ticks`` ticks, or the last one read when ``timeout``
    seconds have passed first."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = metrics_text(port)
        found = re.search(r"^scaler_ticks_total (\S+)$", text, re.M)
        if found and float(found.group(1)) >= ticks:
            break
        time.sleep(0.2)
    return text
