"""Shared test servers: one set of fakes serves every test (loopback only).

* ``fake_clearml`` — a fake ClearML API server the real clearml SDK talks to;
* ``fake_gce`` — a fake Compute Engine REST server for the real google-cloud-compute client;
* ``ec2_proxy`` / ``aws_env`` — moto's server behind a proxy that adds EC2's idempotency,
  pagination and fault injection, for real boto3.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

# tests are hermetic: no stray installed plugin loads unless a test asks for it
os.environ.setdefault("SCALER_LOAD_PLUGINS", "clearml-scaler-aws,clearml-scaler-gcp")

pytest_plugins = ["tests.fakes.clearml_server", "tests.fakes.gce_server", "tests.fakes.ec2"]


@pytest.fixture(autouse=True)
def _restore_scaler_logger() -> Iterator[None]:
    """In-process CLI runs configure the ``scaler`` logger (no propagation); undo it after each
    test so later tests can read logs with caplog."""
    logger = logging.getLogger("scaler")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
