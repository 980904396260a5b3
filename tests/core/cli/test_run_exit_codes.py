"""Issue 14, item 8: ``scaler run --once`` (with or without ``--dry-run``) exits 1 when it could not
do its job, so cron and CI can gate on it: ClearML unreadable, the cloud unreadable, the lease held
by another scaler, the server's vault unreadable. The real CLI as a subprocess, the real clearml SDK
against the fake ClearML server, the built-in simulated provider keeping its fleet in a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.clearml.lease import Lease
from scaler.clearml.queues import ClearMLSource
from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli

NAME = "exit-fleet"


def write_config(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "cloud.json"
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""
        scaler {{ name = "{NAME}", workers_prefix = "ex", polling_interval = 5s }}
        simulated {{ state_file = "{state}", boot_time = 0s }}
        resources = [ {{ name = "cpu", queue = "cpu", max_instances = 2 }} ]
        """
    )
    return path, state


def run_once(config: Path, *extra: str) -> tuple[int, str]:
    proc = run_cli("run", "--provider", "simulated", "--config", str(config), "--once", *extra)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("dry_run", [False, True], ids=["once", "once-dry-run"])
def test_a_tick_that_did_its_job_exits_0(fake_clearml: FakeClearML, tmp_path: Path, dry_run: bool) -> None:
    config, _ = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    code, err = run_once(config, *(["--dry-run"] if dry_run else []))
    assert code == 0, err


@pytest.mark.parametrize("dry_run", [False, True], ids=["once", "once-dry-run"])
def test_clearml_unreadable_in_the_tick_exits_1(fake_clearml: FakeClearML, tmp_path: Path, dry_run: bool) -> None:
    config, _ = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    fake_clearml.fail_next("workers.get_all", times=10, status=500)
    code, err = run_once(config, *(["--dry-run"] if dry_run else []))
    assert code == 1, err
    assert "the tick could not do its job: the ClearML server could not be read" in err


def test_clearml_down_from_the_start_exits_1(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.stop()
    code, err = run_once(config, "--no-server-vault")
    assert code == 1, err
    assert "ClearML" in err
    assert not state.exists() or '"instances": []' in state.read_text() or "instances" not in state.read_text()


@pytest.mark.parametrize("dry_run", [False, True], ids=["once", "once-dry-run"])
def test_cloud_unreadable_exits_1(fake_clearml: FakeClearML, tmp_path: Path, dry_run: bool) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    state.write_text("{not json")  # the simulated cloud cannot be listed
    code, err = run_once(config, *(["--dry-run"] if dry_run else []))
    assert code == 1, err
    assert "the cloud could not be listed" in err


def test_lease_held_by_another_scaler_exits_1(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    source = ClearMLSource(timeout=5)
    holder = Lease(source, NAME, ttl=15)  # ttl: 3 x polling_interval, as a scaler's
    assert holder.acquire().ok
    try:
        code, err = run_once(config)
    finally:
        holder.release()
    assert code == 1, err
    assert "another scaler of this fleet holds the lease" in err
    assert not state.exists() or "cpu" not in state.read_text()
    # a dry run does not take the lease: it does its job
    code, err = run_once(config, "--dry-run")
    assert code == 0, err


def test_server_vault_unreadable_exits_1(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    fake_clearml.fail_next("users.get_vaults", times=3, status=500)
    code, err = run_once(config)
    assert code == 1, err
    assert "cannot read the ClearML server's vaults" in err
