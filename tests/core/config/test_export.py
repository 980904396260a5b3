"""``scaler export`` / ``scaler import``: secrets never leave masked, and the round trip keeps
every non-secret setting (durations included)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.loading import load_config
from scaler.host import PluginHost
from tests.support import REPO

runner = CliRunner()

SECRETS = {
    "SCALER_GIT_TOKEN": "ghp_exportTokenAAAA1111",
    "AWS_ACCESS_KEY_ID": "AKIAEXPORTEXAMPLE0001",
    "AWS_SECRET_ACCESS_KEY": "exportSecretKey/abcdefghij0123456789",
    "MY_AGENT_SECRET": "agent-secret-xyz-42",
}
LITERAL_SECRET = "literal-session-token-77"

CONFIG = """
scaler {
  name = "export-fleet"
  workers_prefix = "exp"
  polling_interval = 45            # plain numbers are minutes
  max_idle_time = "90 seconds"
  stuck_timeout = 1h
  git { user = "bot", password = ${?SCALER_GIT_TOKEN} }
  agent_credentials { access_key = "agent-access", secret_key = ${?MY_AGENT_SECRET} }
  # the token also appears inside a script: masked there too
  init_script = "echo ghp_exportTokenAAAA1111 > /dev/null"
  max_hourly_cost = 12.5
}
aws {
  region = "eu-west-1"
  use_iam_role = false
  access_key_id = ${?AWS_ACCESS_KEY_ID}
  secret_access_key = ${?AWS_SECRET_ACCESS_KEY}
  session_token = "literal-session-token-77"
  custom_launch_spec { "MetadataOptions" { HttpEndpoint = "enabled" } }
}
resources = [
  { name = "gpu", queue = "gpu", max_instances = 4, spot = true, regular_instance_rollback_timeout = 2h,
    spot_blackout_period = 0s, price_per_hour = 1.006, extra_agent_args = ["--gpus", "all"],
    aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890", availability_zone = "eu-west-1b",
          ebs { size_gb = 150, type = "gp3" }, subnet_ids = ["subnet-0123456789abcdef0"], tags = "team=ml" } }
  { name = "cpu", queue = "cpu", max_instances = 10, cpu_only = true,
    init_script = \"\"\"
apt-get install -y htop
echo "done"
\"\"\"
    aws { instance_type = "c6i.large", ami_id = "ami-0abcdef1234567890" } }
]
"""


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return SECRETS


def export(path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    result = runner.invoke(app, ["export", str(path), *extra])
    assert result.exit_code == 0, result.output
    return result.stdout, json.loads(result.stdout)


CATALOG = PluginHost().catalog()


def without_secrets(value: Any, path: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict):
        return {k: without_secrets(v, (*path, k)) for k, v in value.items() if not CATALOG.is_secret((*path, k))}
    if isinstance(value, list):
        return [without_secrets(v, (*path, i)) for i, v in enumerate(value)]
    return value


def load(path: Path, provider: str = "aws") -> Any:
    result = load_config(path, PluginHost(), provider=provider)
    assert result.ok, [p.render() for p in result.errors]
    return result.config


def test_export_masks_every_secret(tmp_path: Path, secrets_env: dict[str, str]) -> None:
    path = tmp_path / "scaler.conf"
    path.write_text(CONFIG)
    load(path)  # a valid configuration
    text, document = export(path)
    for secret in [*secrets_env.values(), LITERAL_SECRET]:
        assert secret not in text
    config = document["config"]
    assert config["scaler"]["git"]["password"] == "********"
    assert config["aws"]["session_token"] == "********"
    assert config["scaler"]["init_script"] == "echo ******** > /dev/null"
    assert config["scaler"]["agent_credentials"]["access_key"] == "********"  # secrets even when literal
    assert document["secrets"] == "masked"
    assert document["env"]["scaler.git.password"] == "SCALER_GIT_TOKEN"
    assert document["env"]["scaler.agent_credentials.secret_key"] == "MY_AGENT_SECRET"  # the file's own variable
    # durations in the form that reads back the same
    assert config["scaler"]["polling_interval"] == "45m"
    assert config["scaler"]["max_idle_time"] == "90s"
    assert config["scaler"]["stuck_timeout"] == "1h"
    assert config["resources"][0]["spot_blackout_period"] == "0s"

    with_secrets, document = export(path, "--include-secrets")
    assert secrets_env["SCALER_GIT_TOKEN"] in with_secrets and document["secrets"] == "included"
    out = tmp_path / "with-secrets.json"
    result = runner.invoke(app, ["export", str(path), "--include-secrets", "-o", str(out)])
    assert result.exit_code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_round_trip_keeps_every_non_secret_setting(tmp_path: Path, secrets_env: dict[str, str]) -> None:
    original = tmp_path / "scaler.conf"
    # (a secret pasted into another setting is masked there on export and cannot come back)
    original.write_text(CONFIG.replace("echo ghp_exportTokenAAAA1111", "echo hello"))
    _, first = export(original)
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(first))

    imported = tmp_path / "imported.conf"
    result = runner.invoke(app, ["import", str(exported), "-o", str(imported), "--provider", "aws"])
    assert result.exit_code == 0, result.output
    assert f"imported {exported} to {imported}: valid" in result.output
    text = imported.read_text()
    for secret in [*secrets_env.values(), LITERAL_SECRET]:
        assert secret not in text
    assert "password = ${?SCALER_GIT_TOKEN}" in text
    assert "secret_key = ${?MY_AGENT_SECRET}" in text
    assert "session_token = ${?AWS_SESSION_TOKEN}" in text
    assert "# EC2 instance type." in text  # commented like a hand-written file

    _, second = export(imported)
    # lossless: exporting the import gives the same document, except the two secrets the original
    # held in clear: they are read from (unset) environment variables now
    assert second["env"] == first["env"]
    assert without_secrets(second["config"]) == without_secrets(first["config"])
    assert second["config"]["scaler"]["git"] == first["config"]["scaler"]["git"]
    assert "session_token" not in second["config"]["aws"]

    before, after = load(original), load(imported)
    assert after.scaler.polling_interval == before.scaler.polling_interval == 45 * 60
    assert after.scaler.max_idle_time == 90
    # every non-secret setting is the same (secrets come from the environment, as in the original)
    assert after.resources == before.resources
    assert [r.provider for r in after.resources] == [r.provider for r in before.resources]
    assert after.scaler.git == before.scaler.git
    assert after.scaler.agent_credentials.secret_key == before.scaler.agent_credentials.secret_key
    same = {k: v for k, v in vars(after.scaler).items() if k not in ("agent_credentials",)}
    assert same == {k: v for k, v in vars(before.scaler).items() if k not in ("agent_credentials",)}
    masked_settings = {"session_token"}
    assert {k: v for k, v in after.provider_settings.items() if k not in masked_settings} == {
        k: v for k, v in before.provider_settings.items() if k not in masked_settings
    }


@pytest.mark.parametrize("example", ["aws.conf", "gcp.conf"])
def test_examples_round_trip(tmp_path: Path, example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/sa.json")
    source = REPO / "examples" / example
    _, first = export(source)
    imported = tmp_path / example
    result = runner.invoke(app, ["import", "-", "-o", str(imported)], input=json.dumps(first))
    assert result.exit_code == 0, result.output
    _, second = export(imported)
    assert second == first
    provider = example.split(".")[0]
    assert load(imported, provider).resources == load(source, provider).resources
    if example == "gcp.conf":  # a non-secret substitution stays one
        assert "credentials_file = ${?GOOGLE_APPLICATION_CREDENTIALS}" in imported.read_text()


def test_import_with_secrets_in_clear(
    tmp_path: Path, secrets_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tmp_path / "scaler.conf"
    original.write_text(CONFIG)
    _, document = export(original, "--include-secrets")
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(document))

    # without --include-secrets: the values are dropped, read from the environment instead
    kept_out = tmp_path / "env.conf"
    result = runner.invoke(app, ["import", str(exported), "-o", str(kept_out)])
    assert result.exit_code == 0, result.output
    assert "scaler.git.password was in the export in clear; written as ${?SCALER_GIT_TOKEN}" in result.output
    assert secrets_env["SCALER_GIT_TOKEN"] not in kept_out.read_text()

    clear = tmp_path / "clear.conf"
    result = runner.invoke(app, ["import", str(exported), "-o", str(clear), "--include-secrets"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(clear.stat().st_mode) == 0o600
    for name in SECRETS:
        monkeypatch.delenv(name)
    config = load(clear)
    assert config.scaler.git.password.reveal() == secrets_env["SCALER_GIT_TOKEN"]
    assert config.provider_settings["secret_access_key"].reveal() == secrets_env["AWS_SECRET_ACCESS_KEY"]

    result = runner.invoke(app, ["import", str(exported), "-o", str(clear)])
    assert result.exit_code == 1 and "pass --force" in result.output


def test_import_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else", "config": {}}')
    result = runner.invoke(app, ["import", str(bad)])
    assert result.exit_code == 1 and "not a clearml-scaler export" in result.output
    bad.write_text("not json")
    result = runner.invoke(app, ["import", str(bad)])
    assert result.exit_code == 2 and "not JSON" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "missing.conf")])
    assert result.exit_code == 2 and "does not exist" in result.output


FREE_TEXT = """
scaler {
  name = "free-text"
  init_script = "docker login -u bot -p registry-pw-31 reg.example.com\\napt-get install -y htop"
  extra_clearml_conf = "sdk.aws.s3.secret: s3-secret-42\\nsdk.aws.s3.region: eu-west-1"
}
resources = [ { name = "cpu", queue = "cpu", max_instances = 1 } ]
"""


def test_export_masks_secrets_inside_free_text_and_import_says_so(tmp_path: Path) -> None:
    """A password inside a script or a key inside a clearml.conf snippet is masked like a typed
    secret; importing such an export says which setting lost its secret."""
    path = tmp_path / "scaler.conf"
    path.write_text(FREE_TEXT)
    text, document = export(path)
    assert "registry-pw-31" not in text and "s3-secret-42" not in text
    scaler = document["config"]["scaler"]
    assert scaler["init_script"] == "docker login -u bot -p ******** reg.example.com\napt-get install -y htop"
    assert scaler["extra_clearml_conf"] == "sdk.aws.s3.secret: ********\nsdk.aws.s3.region: eu-west-1"
    _, included = export(path, "--include-secrets")
    assert "s3-secret-42" in included["config"]["scaler"]["extra_clearml_conf"]
    exported = tmp_path / "export.json"
    exported.write_text(text)
    result = runner.invoke(app, ["import", str(exported), "-o", str(tmp_path / "back.conf")])
    assert result.exit_code == 0, result.output
    for setting in ("scaler.init_script", "scaler.extra_clearml_conf"):
        assert f"warning: {setting} holds text the export masked (********)" in result.output
