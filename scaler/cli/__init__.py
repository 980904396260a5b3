"""The ``scaler`` command line: one module per command group, each a thin adapter over core."""

from scaler.cli import adopt, check, config, run, sim, status
from scaler.cli.app import app, main

__all__ = ["adopt", "app", "check", "config", "main", "run", "sim", "status"]
