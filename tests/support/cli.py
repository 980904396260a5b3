"""The one way tests run the real ``scaler`` command line as a subprocess (``python -m scaler.cli``).

``run_cli`` waits for it and asserts that no traceback reached the user (a traceback shown to a
user is a bug, whatever the exit code); ``start_cli`` starts a long-running command (``scaler
run`` without ``--once``) and hands back the process. Both run from the repository root with
the current environment unless told otherwise. Tests reach them through the ``scaler_cli``
fixture (tests/conftest.py) or import them directly in helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support import REPO

COMMAND = (sys.executable, "-m", "scaler.cli")


def _env(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ) if env is None else dict(env)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str = REPO,
    timeout: float = 60,
    input: str | None = None,
    allow_traceback: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``scaler ARGS`` to completion; standard input is empty unless ``input`` is given."""
    proc = subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=_env(env),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if not allow_traceback:
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def start_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | str = REPO, **popen: object
) -> subprocess.Popen[str]:
    """Start ``scaler ARGS`` without waiting (output piped unless ``stdout``/``stderr`` are given)."""
    options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([*COMMAND, *args], cwd=cwd, env=_env(env), text=True, **options)  # type: ignore[call-overload]


def run_remote(config: Path, *extra: str) -> Any:
    """``scaler run --remote`` in process for the simulated provider: creates the scaler's ClearML
    task from ``config`` and enqueues it in 'services'. This checkout is editable, so ``--package``
    says what the agent would install (tests/core/clearml/test_requirements.py). Returns typer's
    ``Result`` (``exit_code``, ``output``)."""
    from typer.testing import CliRunner

    from scaler import __version__
    from scaler.cli import app

    args = ["run", "--remote", "--provider", "simulated", "--config", str(config), "--queue", "services"]
    return CliRunner().invoke(app, [*args, *extra, "--package", f"clearml-scaler=={__version__}"])
