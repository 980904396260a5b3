"""``--provider`` may be omitted on every command that reads a configuration: each resource runs
on the provider it names or whose section it holds (one fleet may span several clouds, see
tests/core/config/test_multi_cloud.py); with no cloud section at all it is a usage error (exit 2)
and a resource of no clear cloud is an error naming it, said before anything is contacted. ``render-init-script`` never falls back to the simulated provider."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.catalog import Catalog, ProviderChoiceError
from scaler.config.sections import CORE_SECTIONS
from tests.fakes.clearml_server import FakeClearML
from tests.support import REPO
from tests.support.cli import run_cli

runner = CliRunner()

AWS_RESOURCE = 'aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" }'
GCP_RESOURCE = (
    'gcp { machine_type = "n1-standard-4", zones = ["us-central1-a"], '
    'image = "projects/debian-cloud/global/images/family/debian-12" }'
)

NO_CLOUD = 'resources = [ { name = "cpu", queue = "cpu", max_instances = 1 } ]\n'
AMBIGUOUS = f"""
aws {{ region = "us-east-1" }}
gcp {{ project = "my-project" }}
resources = [
  {{ name = "cpu", queue = "cpu", max_instances = 1, {AWS_RESOURCE} }}
  {{ name = "gpu", queue = "gpu", max_instances = 1 }}
]
"""
TOP_AND_RESOURCE = f"""
aws {{ region = "us-east-1" }}
resources = [
  {{ name = "a", queue = "cpu", max_instances = 1, {AWS_RESOURCE} }}
  {{ name = "g", queue = "cpu", max_instances = 1, {GCP_RESOURCE} }}
]
"""


def write(tmp_path: Path, text: str, name: str = "scaler.conf") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


# -- core: the choice itself -----------------------------------------------------------------


def test_the_catalog_chooses_the_one_cloud_section() -> None:
    catalog = Catalog(CORE_SECTIONS, ["aws", "gcp", "simulated"])
    assert catalog.choose_provider({"scaler": {}, "gcp": {}, "resources": []}) == "gcp"
    # a section written only in a resource says it too
    assert catalog.choose_provider({"resources": [{"name": "a", "simulated": {}}]}) == "simulated"
    assert catalog.cloud_sections({"aws": {}, "resources": [{"aws": {}}, {"gcp": {}}]}) == {
        "aws": "aws { }",
        "gcp": "resources[1].gcp",
    }
    with pytest.raises(
        ProviderChoiceError, match=r"holds no cloud section \(aws \{ \}, gcp \{ \} or simulated \{ \}\)"
    ):
        catalog.choose_provider({"resources": [{"name": "a"}]}, "x.conf")
    with pytest.raises(ProviderChoiceError, match=r"pass --provider aws or --provider gcp") as raised:
        catalog.choose_provider({"aws": {}, "gcp": {}})
    assert raised.value.found == ["aws", "gcp"]
    # a key that is no installed provider's is not a cloud section (validation calls it unknown)
    with pytest.raises(ProviderChoiceError):
        catalog.choose_provider({"azure": {}, "resources": []})


# -- validate-config -------------------------------------------------------------------------


def test_validate_config_infers_the_provider_and_checks_its_sections(tmp_path: Path) -> None:
    result = invoke("validate-config", str(REPO / "examples" / "aws.conf"))
    assert result.exit_code == 0, result.output
    assert "valid (provider aws, from its section; 3 resource(s)" in result.output

    # the inferred provider's sections are checked as required, as with --provider aws
    missing = write(
        tmp_path, 'aws { region = "us-east-1" }\nresources = [ { name = "a", queue = "q", max_instances = 1 } ]\n'
    )
    result = invoke("validate-config", str(missing), "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert ("resources[0].aws", "error", "is required for provider 'aws' (with instance_type, ami_id)") in [
        (p["path"], p["severity"], p["message"]) for p in report["problems"]
    ]

    gcp_only_in_resources = write(
        tmp_path, f'resources = [ {{ name = "l4", queue = "q", max_instances = 1, {GCP_RESOURCE} }} ]\n'
    )
    result = invoke("validate-config", str(gcp_only_in_resources), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["provider"] == "gcp"  # written only in a resource, it says so too


def test_validate_config_json_says_which_provider(tmp_path: Path) -> None:
    result = invoke("validate-config", str(REPO / "examples" / "gcp.conf"), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["provider"], report["provider_inferred"]) == ("gcp", True)
    result = invoke("validate-config", str(REPO / "examples" / "gcp.conf"), "--provider", "gcp", "--format", "json")
    assert (json.loads(result.output)["provider"], json.loads(result.output)["provider_inferred"]) == ("gcp", False)


# -- every command: none or several is a usage error, before anything is contacted -----------

COMMANDS = {
    "validate-config": ["validate-config", "{path}"],
    "validate-config-json": ["validate-config", "{path}", "--format", "json"],
    "render-init-script": ["render-init-script", "--config", "{path}", "--resource", "cpu"],
    "console-output": ["console-output", "--config", "{path}", "i-0123456789abcdef0"],
    "status": ["status", "--config", "{path}", "--no-server-vault"],
    "run": ["run", "--config", "{path}", "--once", "--dry-run", "--no-server-vault"],
    "run-remote": ["run", "--config", "{path}", "--remote"],
    "adopt": ["adopt", "--config", "{path}", "--from-prefix", "old"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_cloud_section_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    # nothing may be contacted: a ClearML server that cannot be reached would make it exit 1
    monkeypatch.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
    path = write(tmp_path, NO_CLOUD)
    result = invoke(*(arg.format(path=path) for arg in COMMANDS[command]))
    assert result.exit_code == 2, result.output
    expected = "holds no cloud section (aws { }, gcp { } or simulated { }), so its provider cannot be inferred"
    assert expected in result.output, result.output
    if command == "validate-config-json":
        assert json.loads(result.output)["readable"] is True


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_resource_of_no_clear_cloud_is_named_before_anything_is_contacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # several clouds, and a resource that says neither: the configuration is invalid (exit 1), and says where
    monkeypatch.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
    path = write(tmp_path, AMBIGUOUS)
    result = invoke(*(arg.format(path=path) for arg in COMMANDS[command]))
    assert result.exit_code == 1, result.output
    assert "resources[1].provider" in result.output, result.output
    assert "is required when the configuration holds several clouds (aws, gcp)" in result.output, result.output


@pytest.mark.parametrize("command", ["adopt"])
def test_a_command_of_one_cloud_asks_which_of_a_fleet_across_clouds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
    path = write(tmp_path, TOP_AND_RESOURCE)
    result = invoke(*(arg.format(path=path) for arg in COMMANDS[command]))
    assert result.exit_code == 2, result.output
    assert "its resources run on several providers (aws, gcp)" in result.output, result.output
    assert "pass --provider aws or --provider gcp" in result.output, result.output


# -- render-init-script: the configuration's cloud, never the simulated one --------------------


def test_render_init_script_renders_for_the_configurations_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "AGENTACCESSKEY1234")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "agent-secret")
    result = invoke("render-init-script", "--config", str(REPO / "examples" / "gcp.conf"), "--resource", "l4")
    assert result.exit_code == 0, result.output
    assert "instance identity (GCE metadata server)" in result.output
    assert "instance identity (simulated)" not in result.output
    aws = invoke("render-init-script", "--config", str(REPO / "examples" / "aws.conf"), "--resource", "cpu")
    assert aws.exit_code == 0, aws.output
    assert "instance identity (EC2 metadata, IMDSv2)" in aws.output


# -- run and status, end to end against the fake ClearML server -------------------------------


def simulated_config(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "state.json"
    path = write(
        tmp_path,
        f"""
        scaler {{ name = "inferred", workers_prefix = "inf", polling_interval = 1s, stuck_timeout = 20m }}
        simulated {{ state_file = "{state}", boot_time = 0s }}
        resources = [ {{ name = "cpu", queue = "cpu", max_instances = 2 }} ]
        """,
    )
    return path, state


def test_run_and_status_infer_the_provider(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = simulated_config(tmp_path)
    fake_clearml.enqueue("cpu")
    run = run_cli("run", "--config", str(config), "--once", "--no-server-vault", "--state-file", str(tmp_path / "s"))
    assert run.returncode == 0, run.stderr
    assert "managing 1 resource(s) on simulated" in run.stderr
    launched = json.loads(state.read_text())["instances"]
    assert [i["resource"] for i in launched] == ["cpu"]
    status = run_cli("status", "--config", str(config), "--no-server-vault", "--format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    snapshot = json.loads(status.stdout)
    assert [i["id"] for i in snapshot["instances"]] == [launched[0]["id"]]


def test_import_checks_the_result_for_its_one_cloud(tmp_path: Path) -> None:
    exported = tmp_path / "fleet.json"
    exported.write_text(
        json.dumps({"aws": {"region": "us-east-1"}, "resources": [{"name": "a", "queue": "q", "max_instances": 1}]})
    )
    result = invoke("import", str(exported), "-o", str(tmp_path / "fleet.conf"))
    assert result.exit_code == 1, result.output
    assert "resources[0].aws (line 4): is required for provider 'aws'" in result.output
