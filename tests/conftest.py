"""Shared test servers: one set of fakes serves every test (loopback only).

* ``fake_clearml`` — a fake ClearML API server the real clearml SDK talks to;
* ``fake_gce`` — a fake Compute Engine REST server for the real google-cloud-compute client;
* ``ec2_proxy`` / ``aws_env`` — moto's server behind a proxy that adds EC2's idempotency,
  pagination and fault injection, for real boto3.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

# tests are hermetic: no stray installed plugin loads unless a test asks for it
os.environ.setdefault("SCALER_LOAD_PLUGINS", "clearml-scaler-aws,clearml-scaler-gcp")
# nor does the width of the terminal the tests were started from (pytest-xdist's workers set
# COLUMNS=80): a command's output is laid out as when piped, unless a test sets COLUMNS itself
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

pytest_plugins = ["tests.fakes.clearml_server", "tests.fakes.gce_server", "tests.fakes.ec2"]


def _build_cli_once() -> None:
    """typer's ``CliRunner.invoke`` rebuilds the click command from the app on every call
    (~65 ms for our eleven commands, most of the fuzz tests' time); a click command is
    reusable, so build it once per app."""
    import typer.testing

    build = typer.testing._get_command
    built: dict[int, object] = {}

    def cached(app: object) -> object:
        if id(app) not in built:
            built[id(app)] = build(app)  # type: ignore[arg-type]
        return built[id(app)]

    typer.testing._get_command = cached  # type: ignore[assignment]


_build_cli_once()


@pytest.fixture
def scaler_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``scaler`` command line as a subprocess (see tests/support/cli.py)."""
    from tests.support.cli import run_cli

    return run_cli


@pytest.fixture(autouse=True)
def _restore_scaler_logger() -> Iterator[None]:
    """In-process CLI runs configure the ``scaler`` logger (no propagation); undo it after each
    test so later tests can read logs with caplog."""
    logger = logging.getLogger("scaler")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
