"""``scaler run --remote`` keeps secrets on the machine that runs the task: against the fake
ClearML server with the real SDK, nothing the server stores holds a secret value. A secret
written in clear (a typed field, a vault file, free text) stops the upload, naming the field and
the two ways to provide it, unless ``--upload-secrets``; references (``${?VAR}``) resolve on the
agent from its environment or the task owner's ClearML vault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_remote

runner = CliRunner()

GIT_TOKEN = "ghp_remoteGitToken0123456789abcd"
AGENT_SECRET = "agent-secret-7f3e9c1d"
REGISTRY_PASSWORD = "registry-pw-51c0"
S3_SECRET = "s3SECRETvalue9d2e"
VAULT_PASSWORD = "vault-git-pass-2b7a"
ALL = (GIT_TOKEN, AGENT_SECRET, REGISTRY_PASSWORD, S3_SECRET, VAULT_PASSWORD)

BASE = """scaler {{
  name = "remote-fleet"
  workers_prefix = "rem"
  {scaler}
}}
simulated {{ state_file = "{state}", boot_time = 0s }}
resources = [ {{ name = "cpu", queue = "cpu", max_instances = 1 }} ]
"""

REFERENCES = """git { user = "bot", password = ${?SCALER_GIT_TOKEN} }
  agent_credentials { access_key = ${?SCALER_AGENT_ACCESS_KEY}, secret_key = ${?SCALER_AGENT_SECRET_KEY} }
  init_script = "echo \\"$REGISTRY_TOKEN\\" | docker login -u bot --password-stdin registry.example.com"
  extra_clearml_conf = "sdk.aws.s3.secret: ${AWS_SECRET}\\nsdk.aws.s3.region: eu-west-1\""""


def write(tmp_path: Path, scaler: str) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(BASE.format(scaler=scaler, state=tmp_path / "cloud.json"))
    return path


def remote(config: Path, *extra: str) -> tuple[int, str]:
    result = run_remote(config, *extra)
    return result.exit_code, result.output


def stored(fake: FakeClearML) -> str:
    """Everything the server keeps: tasks, the bodies of every call, events, files."""
    return json.dumps(
        [fake.tasks(), fake.calls, fake.events(), {k: v.decode("latin-1") for k, v in fake.files().items()}]
    )


def assert_no_secret(text: str, where: str) -> None:
    for value in ALL:
        assert value not in text, f"{where} holds a secret"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALER_GIT_TOKEN", GIT_TOKEN)
    monkeypatch.setenv("SCALER_AGENT_ACCESS_KEY", "AGENTACCESS1234")
    monkeypatch.setenv("SCALER_AGENT_SECRET_KEY", AGENT_SECRET)


@pytest.mark.parametrize(
    ("scaler", "field", "hint"),
    [
        (f'git {{ user = "bot", password = "{GIT_TOKEN}" }}', "scaler.git.password", "SCALER_GIT_TOKEN"),
        (
            f'agent_credentials {{ access_key = "AGENTACCESS1234", secret_key = "{AGENT_SECRET}" }}',
            "scaler.agent_credentials.secret_key",
            "SCALER_AGENT_SECRET_KEY",
        ),
        (
            f'init_script = "docker login -u bot -p {REGISTRY_PASSWORD} registry.example.com"',
            "scaler.init_script",
            "the argument of -p",
        ),
        (f'extra_clearml_conf = "sdk.aws.s3.secret: {S3_SECRET}"', "scaler.extra_clearml_conf", "'sdk.aws.s3.secret'"),
    ],
    ids=["git token", "agent secret key", "docker login -p", "s3 secret in extra_clearml_conf"],
)
def test_a_secret_in_clear_stops_the_upload(
    fake_clearml: FakeClearML, tmp_path: Path, scaler: str, field: str, hint: str
) -> None:
    fake_clearml.create_queue("services")
    code, output = remote(write(tmp_path, scaler))
    assert code == 1, output
    assert f"{field}: " in output and hint in output
    assert "environment of the clearml-agent" in output and "ClearML vault" in output and "--upload-secrets" in output
    assert "nothing was created" in output
    assert not fake_clearml.tasks()
    assert_no_secret(output, "the refusal")
    assert_no_secret(stored(fake_clearml), "the server")


def test_a_secret_in_a_vault_file_stops_the_upload(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("services")
    vault = tmp_path / "vault.conf"
    vault.write_text(
        f'auto_scaler.v1.simulated {{ git_user = "bot", git_pass = "{VAULT_PASSWORD}",\n'
        f'  extra_vm_bash_script = "docker login --password={REGISTRY_PASSWORD} reg" }}\n'
    )
    code, output = remote(write(tmp_path, ""), "--vault", str(vault))
    assert code == 1, output
    assert f"{vault}: auto_scaler.v1.simulated.git_pass" in output
    assert f"{vault}: auto_scaler.v1.simulated.extra_vm_bash_script: the argument of --password" in output
    assert "instead of a --vault file" in output
    assert not fake_clearml.tasks()
    assert_no_secret(output + stored(fake_clearml), "the refusal or the server")


def test_a_secret_may_reference_only_its_own_variable(
    fake_clearml: FakeClearML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the agent a task's configuration is data: a secret field may name its own variable and
    nothing else (any other would copy the agent's environment into user data). --remote checks
    that before anything is created."""
    fake_clearml.create_queue("services")
    monkeypatch.setenv("MY_TOKEN", GIT_TOKEN)
    code, output = remote(write(tmp_path, 'git { user = "bot", password = ${?MY_TOKEN} }'))
    assert code == 1, output
    assert "${?MY_TOKEN} at 'scaler.git.password' refused" in output
    assert "a secret may name only its own variable there: ${?SCALER_GIT_TOKEN}" in output
    assert not fake_clearml.tasks()
    assert_no_secret(output, "the refusal")


def test_references_are_uploaded_and_nothing_secret_reaches_the_server(
    fake_clearml: FakeClearML, tmp_path: Path, secrets_env: None
) -> None:
    fake_clearml.create_queue("services")
    config = write(tmp_path, REFERENCES)
    code, output = remote(config)
    assert code == 0, output
    [task] = fake_clearml.tasks().values()
    assert task["configuration"]["scaler"]["value"] == config.read_text()  # the references, as written
    assert "secrets: SCALER_AGENT_ACCESS_KEY, SCALER_AGENT_SECRET_KEY, SCALER_GIT_TOKEN, read on the agent" in output
    assert_no_secret(output, "the output")
    assert_no_secret(stored(fake_clearml), "the server")


def test_upload_secrets_stores_them_with_a_warning(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("services")
    config = write(tmp_path, f'git {{ user = "bot", password = "{GIT_TOKEN}" }}')
    code, output = remote(config, "--upload-secrets")
    assert code == 0, output
    assert "warning: --upload-secrets: the task stores 1 secret(s) in clear (scaler.git.password)" in output
    assert_no_secret(output, "the warning")
    [task] = fake_clearml.tasks().values()
    assert GIT_TOKEN in task["configuration"]["scaler"]["value"]  # asked for explicitly


def test_references_resolve_on_the_agent_from_its_environment_and_the_owners_vault(
    fake_clearml: FakeClearML, tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent side: the task's configuration loads (as data) with the secret read from the
    agent's environment, and a field left to the ClearML vault is set by the owner's vault."""
    from scaler.clearml.queues import ClearMLSource
    from scaler.clearml.task import config_from_task
    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    fake_clearml.create_queue("services")
    code, output = remote(write(tmp_path, REFERENCES))
    assert code == 0, output
    [task_id] = fake_clearml.tasks()
    fake_clearml.add_vault(f'auto_scaler.v1.simulated {{ git_pass = "{VAULT_PASSWORD}" }}', "owner's vault")
    monkeypatch.setenv("SCALER_AGENT_SECRET_KEY", "the-agents-own-value")  # the agent's environment, not ours
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from clearml import Task

    config, _ = config_from_task(Task.get_task(task_id=task_id))
    result = load_config(
        config, PluginHost(), provider="simulated", server_vaults=ClearMLSource().read_vaults() or [], from_task=True
    )
    assert result.ok, result.problems
    assert result.config is not None
    assert result.config.scaler.agent_credentials.secret_key.reveal() == "the-agents-own-value"
    assert result.config.scaler.git.password.reveal() == VAULT_PASSWORD  # the owner's vault wins
