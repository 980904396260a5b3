"""One fleet across clouds (issue 18), as the configuration says it: each resource runs on its
provider (its ``provider`` key, its one provider subsection, the configuration's one cloud),
every cloud section is checked, a provider's hooks see only its own resources and settings,
and ``--provider`` restricts a run to one cloud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.loading import load_config
from scaler.host import PluginHost
from tests.support import REPO

EXAMPLE = REPO / "examples" / "multi-cloud.conf"
runner = CliRunner()

TWO_CLOUDS = """
scaler { name = "ml-fleet", workers_prefix = "ml", max_instances_total = 5 }
aws { region = "us-east-1" }
gcp { project = "my-ml-project" }
resources = [
  { name = "aws-spot", queue = "gpu", max_instances = 2, spot = true,
    aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } }
  { name = "gcp-spot", queue = "gpu", max_instances = 2, spot = true, provider = gcp,
    gcp { machine_type = "g2-standard-8", zones = ["us-central1-a"], image = "projects/debian-cloud/global/images/family/debian-12" } }
  { name = "aws-od", queue = "gpu", max_instances = 1,
    aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } }
  %s
]
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "fleet.conf"
    path.write_text(TWO_CLOUDS % extra)
    return path


def test_each_resource_runs_on_its_provider_and_each_provider_sees_only_its_own(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path), PluginHost(), infer_provider=True)
    config = loaded.config
    assert config is not None, [p.render() for p in loaded.problems]
    assert config.provider_names == ("aws", "gcp") and config.multi_cloud
    assert [(r.name, r.provider_name) for r in config.resources] == [
        ("aws-spot", "aws"),
        ("gcp-spot", "gcp"),
        ("aws-od", "aws"),
    ]
    assert config.resource("gcp-spot").provider["machine_type"] == "g2-standard-8"  # type: ignore[union-attr]
    # what a hook of each provider is given
    aws, gcp = config.for_provider("aws"), config.for_provider("gcp")
    assert [r.name for r in aws.resources] == ["aws-spot", "aws-od"]
    assert aws.provider_name == "aws" and aws.provider_settings["region"] == "us-east-1"
    assert [r.name for r in gcp.resources] == ["gcp-spot"]
    assert gcp.provider_name == "gcp" and gcp.provider_settings["project"] == "my-ml-project"
    assert "region" not in gcp.provider_settings
    # fleet-wide settings stay the fleet's
    assert aws.scaler.max_instances_total == gcp.scaler.max_instances_total == 5
    # the queue is filled in config order, across clouds
    assert [r.name for r in config.resources_for_queue("gpu")] == ["aws-spot", "gcp-spot", "aws-od"]


def test_the_example_fleet_across_clouds_validates() -> None:
    result = runner.invoke(app, ["validate-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "providers aws, gcp" in result.output
    assert "a10-aws-spot (aws), l4-gcp-spot (gcp), a10-aws (aws)" in result.output
    out = json.loads(runner.invoke(app, ["validate-config", str(EXAMPLE), "--format", "json"]).output)
    assert out["valid"] and out["providers"] == ["aws", "gcp"] and out["provider"] is None


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (
            '{ name = "nowhere", queue = "gpu", max_instances = 1 }',
            "resources[3].provider",
            "is required when the configuration holds several clouds (aws, gcp): write provider = aws or provider = gcp",
        ),
        (
            '{ name = "azure", queue = "gpu", max_instances = 1, provider = azure }',
            "resources[3].provider",
            "unknown provider 'azure'; installed providers:",
        ),
        (
            '{ name = "both", queue = "gpu", max_instances = 1, aws { instance_type = "g5.xlarge" }, '
            'gcp { machine_type = "g2-standard-8" } }',
            "resources[3]",
            "holds the sections of several providers (aws, gcp); a resource runs on one cloud",
        ),
        (
            '{ name = "mixed", queue = "gpu", max_instances = 1, provider = gcp, '
            'gcp { machine_type = "g2-standard-8" }, aws { instance_type = "g5.xlarge" } }',
            "resources[3].aws",
            "this resource runs on 'gcp' (its provider), not 'aws'",
        ),
        (
            '{ name = "bare-gcp", queue = "gpu", max_instances = 1, provider = gcp }',
            "resources[3].gcp",
            "is required for provider 'gcp'",
        ),
        (
            '{ name = "gcp-spot", queue = "cpu", max_instances = 1, provider = gcp, gcp { machine_type = "e2-small" } }',
            "resources[3].name",
            "",
        ),
    ],
)
def test_a_resource_whose_cloud_is_unclear_or_wrong_is_an_error_naming_it(
    tmp_path: Path, extra: str, path: str, message: str
) -> None:
    loaded = load_config(write(tmp_path, extra), PluginHost(), infer_provider=True)
    assert loaded.config is None
    found = [p for p in loaded.errors if p.path == path]
    assert found, [p.render() for p in loaded.problems]
    assert message in found[0].message, found[0].message


def test_every_cloud_section_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace('project = "my-ml-project"', 'project = "x"'))
    result = runner.invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 1, result.output
    assert "gcp.project" in result.output


def test_provider_option_restricts_the_run_to_one_cloud(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path), PluginHost(), provider="gcp", infer_provider=True)
    assert loaded.config is not None, [p.render() for p in loaded.problems]
    assert [r.name for r in loaded.config.resources] == ["gcp-spot"]
    assert loaded.config.provider_names == ("gcp",) and not loaded.config.multi_cloud
    assert loaded.dropped == ["aws-spot (aws)", "aws-od (aws)"]
    # a provider none of the resources runs on is an error, not an empty fleet
    wrong = load_config(write(tmp_path), PluginHost(), provider="simulated", infer_provider=True)
    assert wrong.config is None
    assert any("no resource runs on provider 'simulated'" in p.message for p in wrong.errors)


def test_a_configuration_of_one_cloud_runs_wholly_on_the_given_provider(tmp_path: Path) -> None:
    # scaler simulate of an AWS configuration: every resource on the simulated cloud, as before
    single = tmp_path / "aws.conf"
    single.write_text((REPO / "examples" / "aws.conf").read_text())
    loaded = load_config(single, PluginHost(), provider="simulated")
    assert loaded.config is not None, [p.render() for p in loaded.problems]
    assert {r.provider_name for r in loaded.config.resources} == {"simulated"}
    assert loaded.dropped == []


def test_each_machine_boots_with_its_own_clouds_script_and_vault_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "AGENTACCESSKEY0001")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "AGENTSECRETKEY00000001")
    vault = tmp_path / "vault.conf"
    vault.write_text(
        'auto_scaler.v1.aws { extra_vm_bash_script = "echo only-on-aws" }\n'
        'auto_scaler.v1.gcp { extra_vm_bash_script = "echo only-on-gcp" }\n'
    )
    scripts = {}
    for name in ("aws-spot", "gcp-spot"):
        result = runner.invoke(
            app,
            ["render-init-script", "--config", str(write(tmp_path)), "--resource", name, "--vault", str(vault)],
        )
        assert result.exit_code == 0, result.output
        scripts[name] = result.output
    assert "EC2 metadata" in scripts["aws-spot"] and "GCE metadata" not in scripts["aws-spot"]
    assert "GCE metadata" in scripts["gcp-spot"] and "EC2 metadata" not in scripts["gcp-spot"]
    assert "echo only-on-aws" in scripts["aws-spot"] and "only-on-gcp" not in scripts["aws-spot"]
    assert "echo only-on-gcp" in scripts["gcp-spot"] and "only-on-aws" not in scripts["gcp-spot"]


def test_a_broken_vault_is_said_once_for_a_fleet_across_clouds(tmp_path: Path) -> None:
    vault = tmp_path / "vault.conf"
    vault.write_text("auto_scaler.v1.aws { extra_vm_bash_script = \n")
    loaded = load_config(write(tmp_path), PluginHost(), infer_provider=True, vault_path=vault)
    assert loaded.config is None
    said = [p for p in loaded.errors if p.path == "vault"]
    assert len(said) == 1, [p.render() for p in loaded.problems]
