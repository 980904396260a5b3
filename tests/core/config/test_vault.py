"""Vault merging in core: top level, then every matching `match` section in file order."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.loading import load_config, parse_hocon
from scaler.config.vault import merge_vault
from scaler.host import PluginHost
from tests.support import REPO
from tests.support.cli import run_cli

KEYS = {
    "aws_region": "aws.region",
    "custom_launch_spec": "aws.custom_launch_spec",
    "git_user": "scaler.git.user",
    "max_idle_time_min": "scaler.max_idle_time",
}
BASE: dict[str, Any] = {"scaler": {"workers_prefix": "aws_test"}, "aws": {"region": "us-east-1"}}


def vault(text: str) -> dict[str, Any]:
    tree, problems = parse_hocon(textwrap.dedent(text), source="vault")
    assert not problems, problems
    return tree


def merged(text: str, prefix: str = "aws_test", ignore: bool = False):  # type: ignore[no-untyped-def]
    return merge_vault(BASE, vault(text), provider="aws", workers_prefix=prefix, key_map=KEYS, ignore_errors=ignore)


# (id, vault text, workers prefix, expected region, expected scripts, expected matched)
CASES = [
    (
        "no-match",
        'auto_scaler.v1.aws { aws_region = "eu-west-1", match { "^gcp_.*$" { aws_region = "x" } } }',
        "aws_test",
        "eu-west-1",
        [],
        [],
    ),
    (
        "one-match",
        'auto_scaler.v1.aws { match { "^aws_test$" { aws_region = "eu-west-2" } } }',
        "aws_test",
        "eu-west-2",
        [],
        ["^aws_test$"],
    ),
    (
        "several-in-order-later-wins",
        'auto_scaler.v1.aws { match { "^aws_test$" { aws_region = "a-1" }, "^aws_.*$" { aws_region = "b-2" } } }',
        "aws_test",
        "b-2",
        [],
        ["^aws_test$", "^aws_.*$"],
    ),
    (
        "file-order-not-specificity",
        'auto_scaler.v1.aws { match { "^aws_.*$" { aws_region = "b-2" }, "^aws_test$" { aws_region = "a-1" } } }',
        "aws_test",
        "a-1",
        [],
        ["^aws_.*$", "^aws_test$"],
    ),
    (
        "anchors-decide",
        'auto_scaler.v1.aws { match { "^aws$" { aws_region = "x-1" } } }',
        "aws_test",
        "us-east-1",
        [],
        [],
    ),
    (
        "unanchored-search",
        'auto_scaler.v1.aws { match { "test" { aws_region = "t-1" } } }',
        "aws_test",
        "t-1",
        [],
        ["test"],
    ),
    (
        "scripts-accumulate",
        'auto_scaler.v1.aws { extra_vm_bash_script = "echo top", match { "^aws_test$" { extra_vm_bash_script = "echo one" }, '
        '"^aws_.*$" { extra_vm_bash_script = "echo two" } } }',
        "aws_test",
        "us-east-1",
        ["echo top", "echo one", "echo two"],
        ["^aws_test$", "^aws_.*$"],
    ),
    ("no-provider-section", 'auto_scaler.v1.gcp { gcp_project = "x" }', "aws_test", "us-east-1", [], []),
]


@pytest.mark.parametrize(
    ("text", "prefix", "region", "scripts", "matched"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_vault_merge_table(text: str, prefix: str, region: str, scripts: list[str], matched: list[str]) -> None:
    result = merged(text, prefix)
    assert result.raw["aws"]["region"] == region
    assert result.scripts == scripts
    assert result.matched == matched
    assert BASE["aws"]["region"] == "us-east-1"  # the input config is not mutated


def test_nested_values_deep_merge() -> None:
    result = merged(
        "auto_scaler.v1.aws { custom_launch_spec { A { x = 1, y = 1 } }, "
        'match { "aws" { custom_launch_spec { A { y = 2 }, B = 3 } } } }'
    )
    assert result.raw["aws"]["custom_launch_spec"] == {"A": {"x": 1, "y": 2}, "B": 3}


def test_clearml_conf_accumulates_and_core_keys_map() -> None:
    result = merged(
        'auto_scaler.v1.aws { extra_clearml_conf = "a = 1", git_user = "bot", max_idle_time_min = 7, '
        'match { "aws" { extra_clearml_conf = "b = 2" } } }'
    )
    assert result.clearml_conf == ["a = 1", "b = 2"]
    assert result.raw["scaler"]["git"]["user"] == "bot"
    assert result.raw["scaler"]["max_idle_time"] == 7


def test_unknown_vault_key_is_reported_with_suggestion() -> None:
    result = merged('auto_scaler.v1.aws { aws_regoin = "x" }')
    assert [(p.path, p.severity) for p in result.problems] == [("vault.auto_scaler.v1.aws.aws_regoin", "warning")]
    assert "did you mean 'aws_region'?" in result.problems[0].message
    assert "aws_regoin" not in result.raw["aws"]


def test_bad_regex_is_an_error_unless_ignored() -> None:
    text = 'auto_scaler.v1.aws { match { "[unclosed" { aws_region = "x" }, "aws" { aws_region = "ok-1" } } }'
    strict = merged(text)
    assert [p.severity for p in strict.problems] == ["error"]
    assert (
        'match."[unclosed"' in strict.problems[0].path
        and "not a valid regular expression" in strict.problems[0].message
    )
    lenient = merged(text, ignore=True)
    assert [p.severity for p in lenient.problems] == ["warning"]
    assert lenient.raw["aws"]["region"] == "ok-1"  # the good sections still merge


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


CONFIG = """
scaler {
  workers_prefix = "dynamic_aws"
  %s
}
aws { region = "us-east-1" }
resources = [ { name = "gpu", queue = "gpu", max_instances = 1,
                aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } } ]
"""


def test_unparsable_vault_is_an_error_exit_1(tmp_path: Path) -> None:
    config = write(tmp_path, "c.conf", CONFIG % "")
    bad = write(tmp_path, "v.conf", "auto_scaler.v1.aws { aws_region = \n")
    result = CliRunner().invoke(app, ["validate-config", str(config), "--provider", "aws", "--vault", str(bad)])
    assert result.exit_code == 1, result.output
    assert "error: vault" in result.output and "HOCON syntax error" in result.output


def test_unparsable_vault_is_skipped_with_ignore_flag(tmp_path: Path) -> None:
    config = write(tmp_path, "c.conf", CONFIG % "ignore_vault_parsing_errors = true")
    bad = write(tmp_path, "v.conf", "auto_scaler.v1.aws { aws_region = \n")
    result = CliRunner().invoke(app, ["validate-config", str(config), "--provider", "aws", "--vault", str(bad)])
    assert result.exit_code == 0, result.output
    assert "vault ignored (ignore_vault_parsing_errors)" in result.output


def test_vault_file_reaches_the_typed_config(tmp_path: Path) -> None:
    examples = REPO / "examples"
    config = write(tmp_path, "c.conf", CONFIG % "")
    result = load_config(config, PluginHost(), provider="aws", vault_path=examples / "vault.conf")
    assert result.ok, result.problems
    assert result.config is not None
    assert result.config.provider_settings["region"] == "eu-west-1"  # ^dynamic_aws$ matched, later wins
    assert [s.strip() for s in result.config.vault_scripts] == [
        'echo "vault: common setup"',
        'echo "vault: only for the dynamic_aws fleet"',
    ]
    assert result.config.vault_clearml_conf[0].strip() == 'sdk.development.default_output_uri = "s3://ml-artifacts/"'


def test_apply_vault_false_skips_the_vault(tmp_path: Path) -> None:
    examples = REPO / "examples"
    config = write(tmp_path, "c.conf", CONFIG % "apply_vault = false")
    result = load_config(config, PluginHost(), provider="aws", vault_path=examples / "vault.conf")
    assert result.config is not None and result.config.provider_settings["region"] == "us-east-1"
    assert any("apply_vault is false" in p.message for p in result.warnings)


def test_vault_settings_are_validated_like_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, "c.conf", CONFIG % "")
    v = write(tmp_path, "v.conf", 'auto_scaler.v1.aws { aws_region = "nowhere" }')
    result = CliRunner().invoke(app, ["validate-config", str(config), "--provider", "aws", "--vault", str(v)])
    assert result.exit_code == 1
    assert (
        "aws.region (from vault auto_scaler.v1.aws.aws_region): must look like a region like us-east-1, got 'nowhere'"
    ) in result.output


def test_server_vaults_merge_before_the_vault_file(tmp_path: Path, fake_clearml: Any) -> None:
    from scaler.clearml.queues import ClearMLSource

    fake_clearml.add_vault(
        'auto_scaler.v1.aws { git_user = "server-bot", aws_region = "us-west-2", '
        'extra_vm_bash_script = "echo from-server" }',
        "team vault",
    )
    fake_clearml.add_vault('auto_scaler.v1.aws { aws_region = "never" }', "disabled", enabled=False)
    server = ClearMLSource(timeout=5).read_vaults()
    assert server is not None and [name for name, _ in server] == ["server vault team vault"]
    config = write(tmp_path, "c.conf", CONFIG % "")
    local = write(
        tmp_path,
        "v.conf",
        'auto_scaler.v1.aws { aws_region = "eu-central-1", extra_vm_bash_script = "echo from-file" }',
    )
    result = load_config(config, PluginHost(), provider="aws", vault_path=local, server_vaults=server)
    assert result.ok, result.problems
    assert result.config is not None
    assert result.config.scaler.git.user == "server-bot"
    assert result.config.provider_settings["region"] == "eu-central-1"  # the explicit file wins
    assert result.config.vault_scripts == ("echo from-server", "echo from-file")


def test_run_refuses_to_start_without_the_server_vault(tmp_path: Path, fake_clearml: Any) -> None:
    import os

    config = write(tmp_path, "c.conf", 'resources = [ { name = "a", queue = "q", max_instances = 1 } ]')
    fake_clearml.fail_next("users.get_vaults", times=5, status=500)
    env = {**os.environ, **fake_clearml.env(), "HOME": str(tmp_path)}
    result = run_cli("run", "--provider", "simulated", "--config", str(config), "--once", env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot read the ClearML server's vaults" in result.stderr and "--no-server-vault" in result.stderr
    assert "Traceback" not in result.stderr
