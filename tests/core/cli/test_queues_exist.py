"""Issue 14, item 1: a queue named in the configuration that does not exist on the ClearML server.

``scaler run`` creates it at start (``scaler.create_queues = true``, the default) with an INFO line,
or stops naming it (exit 1); ``validate-config --check-clearml`` says so without changing anything.
The real CLI as a subprocess, the real clearml SDK against the fake ClearML server."""

from __future__ import annotations

import os
from pathlib import Path

from scaler.clearml.queues import ClearMLSource
from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli


def write_config(tmp_path: Path, *, create: bool | None = None) -> Path:
    path = tmp_path / "scaler.conf"
    flag = "" if create is None else f"create_queues = {str(create).lower()}"
    path.write_text(
        f"""
        scaler {{ name = "queues-fleet", workers_prefix = "qf", polling_interval = 1s, {flag} }}
        simulated {{ state_file = "{tmp_path / "state.json"}", boot_time = 0s }}
        resources = [
          {{ name = "cpu", queue = "cpu", max_instances = 1 }}
          {{ name = "gpu", queue = "gpuu", max_instances = 1 }}
        ]
        """
    )
    return path


def writes(fake: FakeClearML) -> list[str]:
    return [n for n, _ in fake.calls if n != "auth.login" and not n.split(".")[1].startswith("get")]


def test_source_finds_and_creates_missing_queues(fake_clearml: FakeClearML) -> None:
    fake_clearml.create_queue("cpu")
    source = ClearMLSource(timeout=5)
    assert source.missing_queues(["cpu", "gpuu", "gpuu"]) == ["gpuu"]
    assert source.create_queue("gpuu")
    assert "gpuu" in fake_clearml.queues()
    assert source.missing_queues(["cpu", "gpuu"]) == []
    # created meanwhile by someone else: the server refuses the duplicate, which counts as done
    assert source.create_queue("gpuu")
    assert list(fake_clearml.queues()).count("gpuu") == 1


def test_run_creates_missing_queues_with_an_info_line(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("cpu")
    proc = run_cli("run", "--provider", "simulated", "--config", str(write_config(tmp_path)), "--once")
    assert proc.returncode == 0, proc.stderr
    assert "created queue 'gpuu' on the ClearML server" in proc.stderr
    assert "created queue 'cpu'" not in proc.stderr
    assert {"cpu", "gpuu"} <= set(fake_clearml.queues())
    # the next start finds it: nothing more is created
    fake_clearml.clear_calls()
    proc = run_cli("run", "--provider", "simulated", "--config", str(write_config(tmp_path)), "--once")
    assert proc.returncode == 0, proc.stderr
    assert "created queue" not in proc.stderr
    assert "queues.create" not in [n for n, _ in fake_clearml.calls]


def test_dry_run_only_says_it_would_create(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("cpu")
    proc = run_cli("run", "--provider", "simulated", "--config", str(write_config(tmp_path)), "--once", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "[dry-run] would create queue 'gpuu'" in proc.stderr
    assert "gpuu" not in fake_clearml.queues()
    assert writes(fake_clearml) == []


def test_run_stops_naming_the_missing_queue_when_creation_is_off(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("cpu")
    config = write_config(tmp_path, create=False)
    proc = run_cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 1, proc.stderr
    assert "queue(s) 'gpuu' do not exist on the ClearML server" in proc.stderr
    assert "gpuu" not in fake_clearml.queues()
    assert not (tmp_path / "state.json").exists() or "instances" not in (tmp_path / "state.json").read_text()


def test_check_clearml_reports_missing_queues_without_creating_them(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("cpu")
    proc = run_cli("validate-config", str(write_config(tmp_path)), "--provider", "simulated", "--check-clearml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resources[1].queue: warning: queue 'gpuu' does not exist on the ClearML server" in proc.stdout
    assert "`scaler run` creates it" in proc.stdout

    config = write_config(tmp_path, create=False)
    proc = run_cli("validate-config", str(config), "--provider", "simulated", "--check-clearml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: resources[1].queue: queue 'gpuu' does not exist" in proc.stdout
    assert "gpuu" not in fake_clearml.queues()
    assert writes(fake_clearml) == []


def test_check_clearml_reports_bad_credentials_without_the_secret(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    env = dict(os.environ, CLEARML_API_SECRET_KEY="wrong-secret-4f9a0c1e7b")
    proc = run_cli(
        "validate-config", str(write_config(tmp_path)), "--provider", "simulated", "--check-clearml", env=env
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "clearml: cannot log in to or read the ClearML server" in proc.stdout
    assert "wrong-secret-4f9a0c1e7b" not in proc.stdout + proc.stderr


def test_without_check_clearml_nothing_is_contacted(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    proc = run_cli("validate-config", str(write_config(tmp_path)), "--provider", "simulated")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fake_clearml.calls == []
