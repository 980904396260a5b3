"""Every file in examples/ validates, alone and with the example vault where it applies, and the
README's commands work as written from the repository root: the files they name exist (or an
earlier command writes them), their options parse, and the ones that need no server or cloud
run and succeed."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer._click.core import ParameterSource
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.loading import load_config
from scaler.host import PluginHost
from tests.support import REPO
from tests.support.cli import run_cli

EXAMPLES = REPO / "examples"
runner = CliRunner()


def example_files() -> tuple[dict[str, Path], dict[str, Path]]:
    """``({file name: path} of configurations, {provider: path} of vaults)``."""
    configs: dict[str, Path] = {}
    vaults: dict[str, Path] = {}
    for path in sorted(EXAMPLES.glob("*.conf")):
        vault = re.search(r"^auto_scaler\.v1\.(\w+)", path.read_text(), re.M)
        if vault:
            vaults[vault.group(1)] = path
        else:
            configs[path.name] = path
    return configs, vaults


CONFIGS, VAULTS = example_files()


def test_the_examples_are_found() -> None:
    assert {"aws.conf", "gcp.conf"} <= set(CONFIGS) and "aws" in VAULTS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_example_validates_alone(name: str) -> None:
    # no --provider: each example names its cloud by its section
    result = runner.invoke(app, ["validate-config", str(CONFIGS[name])])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and "error" not in result.output, result.output


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_example_validates_with_the_example_vault_of_its_provider(name: str) -> None:
    loaded = load_config(CONFIGS[name], PluginHost(), infer_provider=True)
    assert loaded.config is not None, loaded.problems
    vault = VAULTS.get(loaded.config.provider_name)
    if vault is None:
        pytest.skip(f"no example vault for provider {loaded.config.provider_name}")
    result = runner.invoke(app, ["validate-config", str(CONFIGS[name]), "--vault", str(vault)])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output and "warning" not in result.output, result.output
    merged = load_config(CONFIGS[name], PluginHost(), infer_provider=True, vault_path=vault)
    assert merged.config is not None and merged.vault is not None
    assert merged.vault.matched, "the example vault's match sections should apply to the example fleet"


def test_the_example_vault_moves_the_fleet_and_its_zones_must_follow(tmp_path: Path) -> None:
    # examples/vault.conf's ^dynamic_aws$ section sets eu-west-1 (later wins over its us-east-1);
    # a fleet pinned to us-east-1 zones is then invalid, and said to be
    pinned = tmp_path / "us-east-1.conf"
    pinned.write_text(
        re.sub(r"eu-west-1([bc])", r"us-east-1\1", (EXAMPLES / "aws.conf").read_text()).replace(
            'region = "eu-west-1"', 'region = "us-east-1"'
        )
    )
    assert runner.invoke(app, ["validate-config", str(pinned)]).exit_code == 0
    result = runner.invoke(app, ["validate-config", str(pinned), "--vault", str(VAULTS["aws"])])
    assert result.exit_code == 1
    assert "resources[1].aws.availability_zone: 'us-east-1c' is not a zone of aws.region 'eu-west-1'" in result.output


# -- the README ----------------------------------------------------------------------------------


def readme_commands() -> list[list[str]]:
    """The ``scaler …`` lines of the README's bash blocks, as argument lists (comments dropped)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "scaler":
                commands.append(words[1:])
    return commands


COMMANDS = readme_commands()
#: files a README command writes, so that a later one may name them
WRITTEN = {"init": ["scaler.conf"], "export": ["scaler.json"]}


def test_the_readme_lists_commands() -> None:
    assert len(COMMANDS) >= 10
    assert ["run", "--config", "examples/aws.conf", "--vault", "examples/vault.conf"] in COMMANDS


def test_every_readme_command_parses_and_names_files_that_exist() -> None:
    group = typer.main.get_command(app)
    written: set[str] = set()
    for args in COMMANDS:
        if args[0].startswith("-"):  # an option of `scaler` itself (its callbacks act: not run here)
            assert args[0] in {opt for param in group.params for opt in param.opts}, args
            continue
        ctx = group.make_context("scaler", list(args))
        name, command, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])  # type: ignore[attr-defined]
        assert command is not None, args
        sub = command.make_context(name or "", rest, parent=ctx)  # a usage error raises here
        for key, value in sub.params.items():
            given = sub.get_parameter_source(key) is ParameterSource.COMMANDLINE
            if given and key != "output" and isinstance(value, Path):  # a file it reads
                assert (REPO / value).exists() or str(value) in written, f"{' '.join(args)}: {value} does not exist"
        written.update(WRITTEN.get(name or "", []))


OFFLINE = ("providers", "validate-config", "render-init-script")


@pytest.mark.parametrize("args", [a for a in COMMANDS if a[0] in OFFLINE], ids=lambda a: " ".join(a))
def test_the_readme_commands_that_need_no_server_run_as_written(args: list[str]) -> None:
    # render-init-script writes the agents' ClearML credentials into the script: give it some
    env = {**os.environ, "CLEARML_API_ACCESS_KEY": "READMEACCESSKEY01", "CLEARML_API_SECRET_KEY": "readme-secret"}
    result = run_cli(*args, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower() and "warning" not in result.stderr.lower(), result.stderr
