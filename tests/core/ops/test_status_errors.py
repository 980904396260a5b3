"""Issue 14, item 10: ``scaler status`` says why ClearML or the cloud is unreadable, secrets masked.

The real CLI as a subprocess, the real clearml SDK against the fake ClearML server, the simulated
provider keeping its fleet in a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli

SECRET = "wrong-secret-9d2e41c07a"


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""
        scaler {{ name = "why-fleet", workers_prefix = "wf", polling_interval = 5s }}
        simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
        resources = [ {{ name = "cpu", queue = "cpu", max_instances = 1 }} ]
        """
    )
    return path


def status(config: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = run_cli(
        "status", "--config", str(config), "--provider", "simulated", "--no-server-vault", *extra, env=env, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_rejected_credentials_are_the_reason_and_the_secret_is_not_shown(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    env = dict(os.environ, CLEARML_API_SECRET_KEY=SECRET)
    code, out, err = status(config, env=env)
    assert code == 1, err
    assert "error: the ClearML server could not be read: pending tasks and workers are unknown (" in out
    # the reason is the SDK's own: a refused login
    line = next(x for x in out.splitlines() if x.startswith("error: the ClearML server"))
    assert "login" in line.lower() or "401" in line or "unauthorized" in line.lower(), line
    assert SECRET not in out + err

    code, out, err = status(config, "--format", "json", env=env)
    snap = json.loads(out)
    assert not snap["clearml_ok"] and snap["clearml_error"] and SECRET not in out + err


def test_cloud_unreadable_is_explained(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "cloud.json").write_text("{not json")
    code, out, err = status(config, "--format", "json")
    assert code == 1, err
    snap = json.loads(out)
    assert snap["clearml_ok"] and not snap["cloud_ok"]
    assert snap["cloud_error"] and snap["cloud_error"].split(":")[0] in snap["errors"][-1]
    assert any(e.startswith("the cloud could not be listed (") for e in snap["errors"])
