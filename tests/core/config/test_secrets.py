"""Secret hygiene: distinctive secret values never appear in any output, log or file the
scaler writes for humans, and the scaler's own cloud credentials never reach user data."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.clearml_server import FakeClearML
from tests.support import REPO
from tests.support.cli import run_cli

SECRETS = {
    "SCALER_GIT_TOKEN": "ghp_GITSECRET7d1f0c9a",
    "SCALER_AGENT_ACCESS_KEY": "AGENTACCESS5b2e",
    "SCALER_AGENT_SECRET_KEY": "agent-secret-88e4a1",
    "TEST_AWS_SECRET": "awsSECRETkey0f3b9e1c",
}
CLEARML_SECRET = "clearml-scaler-own-secret-4c1d"

CONFIG = """
scaler {
  name = "secret-fleet"
  workers_prefix = "sec"
  polling_interval = 5s
  git { user = "bot", password = ${?SCALER_GIT_TOKEN} }
  agent_credentials { access_key = ${?SCALER_AGENT_ACCESS_KEY}, secret_key = ${?SCALER_AGENT_SECRET_KEY} }
}
aws { region = "us-east-1", access_key_id = "AKIATESTONLY", secret_access_key = ${?TEST_AWS_SECRET} }
simulated { state_file = "%(state)s", boot_time = 0s }
resources = [ { name = "cpu", queue = "cpu", max_instances = 2,
                aws { instance_type = "t3.micro", ami_id = "ami-0123456789abcdef0" } } ]
"""


@pytest.fixture
def clearml() -> Iterator[FakeClearML]:
    server = FakeClearML(access_key="SCALEROWNACCESS", secret_key=CLEARML_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, clearml: FakeClearML) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "AWS_"))}
    return {
        **base,
        **SECRETS,
        **clearml.env(),
        "HOME": str(tmp_path),
        "CLEARML_CONFIG_FILE": str(tmp_path / "none.conf"),
        "SCALER_LOAD_PLUGINS": "clearml-scaler-aws,clearml-scaler-gcp",
    }


def scaler(env: dict[str, str], *args: str) -> str:
    """Output of ``scaler ARGS`` (a debug log may show a plugin's traceback: checked per test)."""
    result = run_cli(*args, env=env, timeout=120, allow_traceback=True)
    return result.stdout + result.stderr


def assert_clean(text: str, where: str) -> None:
    for value in [*SECRETS.values(), CLEARML_SECRET]:
        assert value not in text, f"{where} shows a secret"


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "fleet.conf"
    path.write_text(CONFIG % {"state": tmp_path / "sim.json"} + extra)
    return path


def test_run_with_debug_logs_shows_no_secret(tmp_path: Path, env: dict[str, str], clearml: FakeClearML) -> None:
    clearml.enqueue("cpu")
    path = write_config(tmp_path)
    out = scaler(env, "run", "--provider", "simulated", "--config", str(path), "--once", "--log-level", "DEBUG")
    assert "launch 1 x cpu" in out  # it really ran a tick and launched
    assert_clean(out, "scaler run --log-level DEBUG")
    assert_clean(
        scaler(
            env, "run", "--provider", "simulated", "--config", str(path), "--once", "--dry-run", "--log-format", "json"
        ),
        "scaler run --dry-run --log-format json",
    )


def test_status_export_and_state_file_show_no_secret(tmp_path: Path, env: dict[str, str], clearml: FakeClearML) -> None:
    clearml.enqueue("cpu")
    path = write_config(tmp_path)
    state = tmp_path / "state.json"
    out = scaler(env, "run", "--provider", "simulated", "--config", str(path), "--once", "--state-file", str(state))
    assert "launch 1 x cpu" in out
    assert_clean(state.read_text(), "the state file")
    for fmt in ("text", "json"):
        shown = scaler(
            env, "status", "--provider", "simulated", "--config", str(path), "--state-file", str(state), "--format", fmt
        )
        assert "launch 1 x cpu" in shown  # the last action, read from the state file
        assert_clean(shown, f"scaler status --format {fmt}")
    exported = tmp_path / "fleet.json"
    assert_clean(scaler(env, "export", str(path), "-o", str(exported)), "scaler export")
    assert "secret_access_key" in exported.read_text()  # the key is exported, its value masked
    assert_clean(exported.read_text(), "the exported file")


def test_crash_traceback_in_debug_logs_shows_no_secret(tmp_path: Path, env: dict[str, str]) -> None:
    """A bug inside a tick is logged with its traceback; the secrets of the config are not in it."""
    path = write_config(tmp_path)
    (tmp_path / "sim.json").write_text("{ not json")  # the simulated cloud's state file is corrupt
    out = scaler(env, "run", "--provider", "simulated", "--config", str(path), "--once", "--log-level", "DEBUG")
    assert "Traceback" in out and "JSONDecodeError" in out  # the plugin's traceback, for whoever debugs it
    assert "scaler stopped; the fleet is left as it is" in out  # and the loop went on to a clean stop
    assert_clean(out, "a failing tick's debug log")


def test_validate_config_errors_show_no_secret(tmp_path: Path, env: dict[str, str]) -> None:
    path = write_config(
        tmp_path, "scaler.git.password_typo = ${?SCALER_GIT_TOKEN}\nscaler.orphans = ${?TEST_AWS_SECRET}\n"
    )
    out = scaler(env, "validate-config", str(path), "--provider", "aws", "--format", "json")
    assert "unknown key 'password_typo'" in out
    assert_clean(out, "validate-config errors")


def test_render_init_script_masks_unless_asked(tmp_path: Path, env: dict[str, str]) -> None:
    path = write_config(tmp_path)
    masked = scaler(env, "render-init-script", "--config", str(path), "--provider", "aws", "--resource", "cpu")
    assert "clearml-agent" in masked and "********" in masked
    assert_clean(masked, "render-init-script")
    shown = scaler(
        env, "render-init-script", "--config", str(path), "--provider", "aws", "--resource", "cpu", "--show-secrets"
    )
    assert SECRETS["SCALER_GIT_TOKEN"] in shown and SECRETS["SCALER_AGENT_SECRET_KEY"] in shown
    # the machine gets the agents' ClearML keys, never the scaler's own cloud credentials
    assert SECRETS["TEST_AWS_SECRET"] not in shown and "AKIATESTONLY" not in shown
    assert CLEARML_SECRET not in shown  # dedicated agent credentials replace the scaler's own


def test_demo_and_providers_show_no_secret(env: dict[str, str], tmp_path: Path) -> None:
    """The demo runs a fleet whose git token and agent keys come from the environment (so they
    reach the rendered init scripts) and prints its timeline and summary; `providers` runs with
    the same secrets in its environment. Both succeed and neither shows a secret."""
    demo = (REPO / "scaler" / "sim" / "data" / "demo.conf").read_text()
    config = tmp_path / "demo.conf"
    config.write_text(
        demo.replace(
            'workers_prefix = "demo"',
            'workers_prefix = "demo"\n  git { user = "bot", password = ${?SCALER_GIT_TOKEN} }\n'
            "  agent_credentials { access_key = ${?SCALER_AGENT_ACCESS_KEY}, "
            "secret_key = ${?SCALER_AGENT_SECRET_KEY} }",
        )
    )
    assert "SCALER_GIT_TOKEN" in config.read_text()
    for args in (["demo", "--config", str(config)], ["demo", "--config", str(config), "--format", "json"]):
        result = run_cli(*args, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "gpu-spot" in result.stdout and "cpu" in result.stdout  # it ran the fleet it was given
        assert_clean(result.stdout + result.stderr, " ".join(args[:1] + args[3:]))
    result = run_cli("providers", env=env)
    assert result.returncode == 0 and "simulated" in result.stdout, result.stderr
    assert_clean(result.stdout + result.stderr, "providers")


def test_secret_repr_and_format_are_masked() -> None:
    from scaler.types import Secret

    secret = Secret(SECRETS["SCALER_GIT_TOKEN"])
    assert_clean(f"{secret} {secret!r} {[secret]} {dict(a=secret)} {secret:>20}", "Secret formatting")
    assert secret.reveal() == SECRETS["SCALER_GIT_TOKEN"]


def test_user_data_sent_to_aws_holds_no_cloud_credentials(ec2_proxy: Any, aws_env: Any, tmp_path: Path) -> None:
    import base64

    from scaler.config.loading import load_config
    from scaler.engine.render import render_init_script
    from scaler.host import PluginHost
    from scaler.types import RenderContext, Secret, ServerInfo

    for key, value in SECRETS.items():
        os.environ[key] = value
    try:
        path = write_config(
            tmp_path,
            textwrap.dedent("""
            aws { access_key_id = "testing", secret_access_key = "testing" }
        """),
        )
        host = PluginHost()
        config = load_config(path, host, provider="aws").config
        assert config is not None
        resource = config.resources[0]
        script = render_init_script(
            host,
            config,
            resource,
            RenderContext(ServerInfo("http://api", access_key=Secret("A"), secret_key=Secret(CLEARML_SECRET))),
        )
        host.provider("aws").launch(config, resource, 1, script, "11111111-2222-3333-4444-555555555555", False)
    finally:
        for key in SECRETS:
            os.environ.pop(key, None)
    sent = [r for r in ec2_proxy.requests if r.get("Action") == "RunInstances"]
    assert sent, "RunInstances reached the proxy"
    user_data = base64.b64decode(sent[-1]["UserData"])
    if user_data[:2] == b"\x1f\x8b":
        import gzip

        user_data = gzip.decompress(user_data)
    text = user_data.decode()
    assert "clearml-agent" in text
    assert "testing" not in text.replace("testing-", "")  # the scaler's AWS keys stay out of user data


# --- validation messages quote no secret -------------------------------------------------------

AWS_LIKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_a_secret_pasted_into_the_wrong_field_is_not_quoted(tmp_path: Path, env: dict[str, str]) -> None:
    """A value that looks like a key or a token is described, not quoted, wherever it was written;
    a secret of the configuration is masked in any message (here a plugin's own check would
    quote it); ordinary wrong values are still quoted, so the message still helps."""
    path = write_config(
        tmp_path,
        f'aws.region = "{AWS_LIKE_SECRET}"\n'
        'scaler.git.password = "plain-pw-4242"\n'
        'scaler.orphans = "plain-pw-4242"\n'
        'scaler.polling_interval = "AKIAIOSFODNN7EXAMPLE"\n'
        'scaler.apply_vault = "maybe"\n',
    )
    out = scaler(env, "validate-config", str(path), "--provider", "aws")
    assert "aws.region (line" in out and "got a string of 40 characters" in out
    assert "must be one of terminate, keep, got '********'" in out
    assert "scaler.polling_interval" in out and "got a string of 20 characters" in out
    assert "must be true or false, got 'maybe'" in out  # nothing secret about it
    for value in (AWS_LIKE_SECRET, "plain-pw-4242", "AKIAIOSFODNN7EXAMPLE"):
        assert value not in out


def test_a_wrong_value_in_a_secret_field_is_never_quoted() -> None:
    from scaler.config.fields import Field, check_section

    schema = (
        Field("api_token", "choice", choices=("a", "b")),  # secret by its name
        Field("password", "secret", pattern=r"[a-z]+"),
        Field("mode", "choice", choices=("fast", "slow")),
    )
    problems = check_section(
        {"api_token": "tok-short", "password": "Hunter2!", "mode": "docker login -p s3cr3t"}, schema, "x"
    ).problems
    messages = {p.path: p.message for p in problems}
    assert messages["x.api_token"] == "must be one of a, b, got a string of 9 characters"
    assert messages["x.password"].endswith("got a string of 8 characters")
    assert "got 'docker login -p ********'" in messages["x.mode"]  # quoted, its secret masked
    assert not any(s in str(messages) for s in ("tok-short", "Hunter2!", "s3cr3t"))


# --- what others wrote, shown to a person: console output, status ------------------------------


def test_console_output_and_status_mask_secrets_and_escape_control_characters(
    tmp_path: Path, env: dict[str, str], clearml: FakeClearML
) -> None:
    """A machine's console and the recorded actions are text the scaler did not write: the
    secrets the machine was given are masked, terminal escapes are shown, not obeyed."""
    import json

    clearml.enqueue("cpu")
    path = write_config(tmp_path)
    state = tmp_path / "state.json"
    out = scaler(env, "run", "--provider", "simulated", "--config", str(path), "--once", "--state-file", str(state))
    assert "launch 1 x cpu" in out
    cloud = json.loads((tmp_path / "sim.json").read_text())
    [machine] = cloud["instances"]
    machine["console"] += (
        f"cloud-init: git clone https://bot:{SECRETS['SCALER_GIT_TOKEN']}@github.com/org/repo\n"
        f"cloud-init: secret_key: {SECRETS['SCALER_AGENT_SECRET_KEY']}\n"
        "+ docker login -u bot -p registry-pw-7781 registry.example.com\n"
        "\x1b]0;owned\x07\x1b[2Jcleared\rover\n"
    )
    (tmp_path / "sim.json").write_text(json.dumps(cloud))
    shown = scaler(env, "console-output", machine["id"], "--provider", "simulated", "--config", str(path))
    assert "docker login -u bot -p ******** registry.example.com" in shown
    assert "\\x1b]0;owned\\x07\\x1b[2Jcleared\\rover" in shown and "\x1b" not in shown
    assert "registry-pw-7781" not in shown
    assert_clean(shown, "console-output")

    recorded = json.loads(state.read_text())
    recorded["actions"].append(
        {"at": recorded["actions"][-1]["at"], "action": f"note {SECRETS['SCALER_GIT_TOKEN']} \x1b[31mred\x1b[0m"}
    )
    state.write_text(json.dumps(recorded))
    for fmt in ("text", "json"):
        status = scaler(
            env, "status", "--provider", "simulated", "--config", str(path), "--state-file", str(state), "--format", fmt
        )
        assert "launch 1 x cpu" in status
        assert "\x1b" not in status and "red" in status
        assert_clean(status, f"status --format {fmt}")
