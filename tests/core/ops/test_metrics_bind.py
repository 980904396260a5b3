"""``scaler run --metrics-port`` listens on loopback unless told otherwise (issue 12, finding
13): the listening socket, read from the kernel's table, is bound to 127.0.0.1, and the deploy
recipes that need a scrape from outside (the container image, Kubernetes) say 0.0.0.0."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from tests.fakes.clearml_server import FakeClearML
from tests.support import REPO
from tests.support.metrics import free_port, start_metrics_run


def _listening(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_metrics_listen_on_loopback_by_default(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config = tmp_path / "scaler.conf"
    config.write_text(
        f"""
        scaler {{ name = "metrics-bind", workers_prefix = "mb", polling_interval = 1s }}
        simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
        resources = [ {{ name = "cpu", queue = "cpu", max_instances = 1 }} ]
        """
    )
    port = free_port()
    proc = start_metrics_run(config, port, "--dry-run")
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not _listening(port) and proc.poll() is None:
            time.sleep(0.2)
        assert _listening(port) == ["0100007F"], _listening(port)  # 127.0.0.1, little-endian hex
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in output


def test_the_container_recipes_expose_metrics_explicitly() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert '"--metrics-host", "0.0.0.0"' in cmd
    deployment = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
