"""The top-level ``--help`` lists every command with its whole summary (never cut with "..."),
and shell completion installs and answers (``--install-completion``, ``--show-completion``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer.main

from scaler.cli import app
from scaler.cli.app import summary
from tests.support.cli import run_cli


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def commands() -> dict[str, str]:
    """Each visible command and the summary ``--help`` must show for it."""
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if not command.hidden:
            found[name] = summary(command.help or "")
    return found


def test_every_command_has_a_short_summary() -> None:
    found = commands()
    assert {"run", "validate-config", "status", "demo", "simulate", "import", "console-output"} <= set(found)
    for name, text in found.items():
        assert text.endswith("."), (name, text)
        assert len(text) <= 90, f"{name}: the first sentence of its help is the summary: keep it short ({text!r})"


@pytest.mark.parametrize("columns", ["200", "80", "50"])
def test_top_level_help_shows_each_summary_whole(columns: str) -> None:
    result = run_cli("--help", env=env(COLUMNS=columns))
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands:", 1)[1]
    assert "..." not in listed, listed
    flat = " ".join(listed.split())
    for name, text in commands().items():
        assert f"{name} {text}" in flat, (name, text, listed)
    assert result.stdout.startswith("Usage: scaler ")  # named `scaler` however it is started


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli(
        "--install-completion", "bash", env=env(HOME=str(home), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    )
    assert result.returncode == 0, result.stderr
    script = home / ".bash_completions" / "scaler.sh"
    assert "_SCALER_COMPLETE=complete_bash" in script.read_text()
    assert "complete -o default -F _scaler_completion scaler" in script.read_text()
    assert f"source '{script}'" in (home / ".bashrc").read_text()


@pytest.mark.parametrize(
    ("shell", "expected"),
    [("bash", "complete -o default"), ("zsh", "#compdef scaler"), ("fish", "complete --command scaler")],
)
def test_show_completion_prints_the_script(shell: str, expected: str) -> None:
    result = run_cli("--show-completion", shell, env=env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and "_SCALER_COMPLETE" in result.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("scaler valid", ["validate-config"]),
        ("scaler run --pro", ["--project", "--provider"]),
        ("scaler status --provider ", ["aws", "gcp", "simulated"]),
        ("scaler render-init-script --provider si", ["simulated"]),
    ],
)
def test_completion_answers(words: str, expected: list[str]) -> None:
    """What bash's completion function asks the command (the installed script runs exactly this)."""
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = run_cli(env=env(_SCALER_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword))
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == expected
