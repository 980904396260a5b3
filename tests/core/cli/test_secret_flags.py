"""No secret is taken from the command line, where it would stay in the shell history and be
visible to every user in `ps`: `scaler init --git-token` (and a secret given with `--set` or
`--resource`) is refused with the environment variable to export instead, and no option of any
command takes a secret value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer

from scaler.cli import app
from scaler.config.redact import is_secret_name
from tests.support.cli import run_cli

TOKEN = "ghp_flagToken0123456789abcdefXYZ"
RESOURCE = ("--resource", "name=cpu,queue=cpu,max_instances=1")


def init(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, Path]:
    out = tmp_path / "scaler.conf"
    base = {k: v for k, v in os.environ.items() if k != "SCALER_GIT_TOKEN"}
    result = run_cli(
        "init",
        "--provider",
        "simulated",
        "--no-interactive",
        "-o",
        str(out),
        *RESOURCE,
        *args,
        env={**base, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr, out


@pytest.mark.parametrize(
    "args",
    [("--git-token", TOKEN), ("--set", f"scaler.git.password={TOKEN}"), ("--git-token=" + TOKEN,)],
    ids=["--git-token VALUE", "--set scaler.git.password=VALUE", "--git-token=VALUE"],
)
def test_a_secret_flag_is_refused_with_the_variable_to_export(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, output, out = init(tmp_path, *args)
    assert code == 2, output
    assert "scaler.git.password is a secret" in output and "export SCALER_GIT_TOKEN=" in output
    assert "shell history" in output and "`ps`" in output
    assert TOKEN not in output
    assert not out.exists() and not out.with_suffix(".env").exists()


def test_the_secret_comes_from_the_environment_instead(tmp_path: Path) -> None:
    code, output, out = init(tmp_path, "--git-user", "bot", env={"SCALER_GIT_TOKEN": TOKEN})
    assert code == 0, output
    text = out.read_text()
    assert "password = ${?SCALER_GIT_TOKEN}" in text and TOKEN not in text
    assert not out.with_suffix(".env").exists()  # nothing typed: the variable is already where it belongs
    assert TOKEN not in output


def test_or_from_the_hidden_prompt(tmp_path: Path) -> None:
    """Typed at the hidden prompt, the token goes to the private env file, never to the config."""
    out = tmp_path / "scaler.conf"
    answers = "\n".join(["my-fleet", "", "bot", TOKEN, "", "cpu", "", "", "", "n", "n", "", "", "", "", ""]) + "\n"
    result = run_cli(
        "init",
        "--provider",
        "simulated",
        "--interactive",
        "-o",
        str(out),
        input=answers,
        env={k: v for k, v in os.environ.items() if k != "SCALER_GIT_TOKEN"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr and TOKEN not in out.read_text()
    env_file = out.with_suffix(".env")
    assert f"SCALER_GIT_TOKEN={TOKEN}" in env_file.read_text()
    assert env_file.stat().st_mode & 0o077 == 0


def _options() -> list[tuple[str, Any]]:
    """``(command, option)`` of every option of every command (typer's own click)."""
    group = typer.main.get_command(app)
    return [
        (name, param)
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        if getattr(param, "param_type_name", "") == "option"
    ]


def test_no_command_takes_a_secret_value() -> None:
    """Every option whose name says it holds a secret is either a flag (--show-secrets,
    --include-secrets, --upload-secrets) or hidden and refused (--git-token)."""
    secret_valued = [
        f"{command} {param.opts[0]}"
        for command, param in _options()
        if not param.is_flag and any(is_secret_name(opt) for opt in param.opts)
    ]
    assert secret_valued == ["init --git-token"]
    [(_, git_token)] = [(c, p) for c, p in _options() if "--git-token" in p.opts]
    assert git_token.hidden
    help_text = run_cli("init", "--help").stdout
    assert "--git-token" not in help_text


def test_a_script_with_a_password_in_it_is_refused_on_the_command_line(tmp_path: Path) -> None:
    """Free text given on the command line (`--resource init_script=…`, `--set scaler.extra_clearml_conf=…`)
    is refused when it holds what looks like a secret; the same text from a file (@FILE) is taken."""
    script = tmp_path / "login.sh"
    script.write_text(f"docker login -u bot -p {TOKEN} registry.example.com\n")
    for args in (
        ("--set", f"scaler.init_script=docker login -u bot -p {TOKEN} registry.example.com"),
        ("--set", f"scaler.extra_clearml_conf=sdk.aws.s3.secret: {TOKEN}"),
    ):
        code, output, out = init(tmp_path, *args)
        assert code == 2, output
        assert "holds what looks like a secret" in output and "@FILE" in output and "`ps`" in output
        assert TOKEN not in output and not out.exists()
    code, output, out = init(tmp_path, "--set", f"scaler.init_script=@{script}")
    assert code == 0, output
    assert TOKEN not in output
