"""The command line itself: help, version, lazy imports, usage errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

from scaler import __version__
from tests.support.cli import run_cli

HEAVY = ("boto3", "botocore", "google.cloud", "google.api_core", "clearml", "pyhocon", "moto")


scaler = run_cli


def test_help_lists_the_commands() -> None:
    result = scaler("--help")
    assert result.returncode == 0
    for command in ("run", "validate-config", "providers", "demo", "render-init-script", "console-output"):
        assert command in result.stdout


def test_version() -> None:
    result = scaler("--version")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == f"clearml-scaler {__version__}"
    # then one line per installed plugin (tests/release/test_metadata.py checks them)


def test_help_and_plugin_discovery_import_no_cloud_sdk() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from scaler.cli import app\n"
        "from scaler.host import PluginHost\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "host = PluginHost()\n"
        "assert {'aws', 'gcp'} <= set(host.provider_names()), host.provider_names()\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {[h.split('.')[0] for h in HEAVY]!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported at start-up: {result.stdout}"


def test_usage_errors_are_short_and_non_zero() -> None:
    result = scaler("run", "--provider", "aws")
    assert result.returncode == 2
    assert "missing option '--config'" in result.stderr.lower()
    assert "Traceback" not in result.stderr + result.stdout


def test_providers_table() -> None:
    result = scaler("providers")
    assert result.returncode == 0
    for name, package in (
        ("aws", "clearml-scaler-aws"),
        ("gcp", "clearml-scaler-gcp"),
        ("simulated", "clearml-scaler"),
    ):
        assert name in result.stdout and package in result.stdout
