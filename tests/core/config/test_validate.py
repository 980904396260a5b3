"""`scaler validate-config`: every problem at once, with its path, exit 0/1/2, no traceback."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from tests.support import REPO

EXAMPLES = REPO / "examples"
runner = CliRunner()

AWS_RESOURCE = 'aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" }'
GCP_RESOURCE = 'gcp { machine_type = "n1-standard-4", zones = ["us-central1-a"], image = "projects/debian-cloud/global/images/family/debian-12" }'


def without_lines(text: str) -> str:
    return re.sub(r" \(line \d+\)", "", text)


def validate(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "scaler.conf"
    path.write_text(textwrap.dedent(text))
    result = runner.invoke(app, ["validate-config", str(path), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def aws(resource: str = "", scaler: str = "", aws_section: str = "", extra: str = "") -> str:
    resource = resource or f'{{ name = "gpu", queue = "gpu", max_instances = 2, {AWS_RESOURCE} }}'
    return f"scaler {{ {scaler} }}\naws {{ {aws_section} }}\nresources = [ {resource} ]\n{extra}"


def res(body: str, aws_body: str = "") -> str:
    aws_part = f'aws {{ instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" {aws_body} }}'
    return f'{{ name = "gpu", queue = "gpu", max_instances = 2, {aws_part} {body} }}'


# (id, config text, expected "path: message" line fragment)
INVALID = [
    (
        "typo-suggestion",
        aws(scaler="max_idel_time = 15m"),
        "scaler.max_idel_time (line 1): unknown key 'max_idel_time'; did you mean 'max_idle_time'?",
    ),
    (
        "bad-duration",
        aws(scaler="polling_interval = soon"),
        "scaler.polling_interval (line 1): must be a duration like 30s, 15m, 2h or a number of minutes, got 'soon'",
    ),
    (
        "negative-total",
        aws(scaler="max_instances_total = -3"),
        "scaler.max_instances_total (line 1): must be ≥ 0, got -3",
    ),
    ("negative-cost", aws(scaler="max_hourly_cost = -1.5"), "scaler.max_hourly_cost (line 1): must be ≥ 0, got -1.5"),
    (
        "orphans-choice",
        aws(scaler="orphans = delete"),
        "scaler.orphans (line 1): must be one of terminate, keep, got 'delete'",
    ),
    ("bool-type", aws(scaler="apply_vault = maybe"), "scaler.apply_vault (line 1): must be true or false, got 'maybe'"),
    (
        "name-pattern",
        aws(scaler='name = "my fleet!"'),
        "scaler.name (line 1): must look like letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit), got 'my fleet!'",
    ),
    (
        "prefix-colon",
        aws(scaler='workers_prefix = "a:b"'),
        "scaler.workers_prefix (line 1): must look like text without ':' or spaces, got 'a:b'",
    ),
    (
        "stuck-too-short",
        aws(scaler="stuck_timeout = 10s"),
        "scaler.stuck_timeout (line 1): must be at least 1m, got 10s",
    ),
    (
        "git-not-object",
        aws(scaler='git = "me"'),
        "scaler.git (line 1): must be an object ({ key = value }), got a string",
    ),
    (
        "unknown-top",
        aws(extra="azure { }"),
        "azure (line 4): unknown key 'azure'; valid keys: aws, gcp, resources, scaler, simulated",
    ),
    ("top-typo", aws(extra="resorces = []"), "resorces (line 4): unknown key 'resorces'; did you mean 'resources'?"),
    (
        "missing-resources",
        "scaler { }\naws { }\n",
        "resources: is required: a list of { name, queue, max_instances, <provider> { ... } }",
    ),
    (
        "resources-not-list",
        "aws { }\nresources = 3\n",
        "resources (line 2): must be a list of resource objects, got a number",
    ),
    ("empty-resources", "aws { }\nresources = []\n", "resources (line 2): must list at least one resource"),
    ("resource-not-object", aws(resource='"gpu"'), "resources[0]: must be an object, got a string"),
    (
        "missing-queue",
        aws(resource=f'{{ name = "gpu", max_instances = 2, {AWS_RESOURCE} }}'),
        'resources[0].queue: is required (e.g. queue = "gpu")',
    ),
    (
        "empty-queue",
        aws(resource=f'{{ name = "gpu", queue = "  ", max_instances = 2, {AWS_RESOURCE} }}'),
        "resources[0].queue: must not be empty",
    ),
    (
        "zero-max",
        aws(resource=f'{{ name = "gpu", queue = "gpu", max_instances = 0, {AWS_RESOURCE} }}'),
        "resources[0].max_instances: must be ≥ 1, got 0",
    ),
    (
        "fraction-max",
        aws(resource=f'{{ name = "gpu", queue = "gpu", max_instances = 2.5, {AWS_RESOURCE} }}'),
        "resources[0].max_instances: must be a whole number, got 2.5",
    ),
    (
        "duplicate-names",
        aws(resource=f"{res('')}, {res('')}"),
        "resources[1].name: duplicate resource name 'gpu' (also resources[0])",
    ),
    (
        "resource-typo",
        aws(resource=res("max_instance = 3")),
        "resources[0].max_instance: unknown key 'max_instance'; did you mean 'max_instances'?",
    ),
    (
        "missing-aws-section",
        aws(resource='{ name = "gpu", queue = "gpu", max_instances = 2 }'),
        "resources[0].aws: is required for provider 'aws' (with instance_type, ami_id)",
    ),
    (
        "ami-format",
        aws(resource=res("", ', ami_id = "ami-12"').replace('ami_id = "ami-0abcdef1234567890" ,', "")),
        "resources[0].aws.ami_id: must look like ami- followed by 8 or 17 hex digits, got 'ami-12'",
    ),
    (
        "sg-format",
        aws(resource=res("", ', security_group_ids = ["sg-xyz"]')),
        "resources[0].aws.security_group_ids[0]: must look like sg- followed by 8 or 17 hex digits, got 'sg-xyz'",
    ),
    (
        "subnet-format",
        aws(resource=res("", ', subnet_ids = ["subnet-1"]')),
        "resources[0].aws.subnet_ids[0]: must look like subnet- followed by 8 or 17 hex digits, got 'subnet-1'",
    ),
    (
        "ebs-size",
        aws(resource=res("", ", ebs { size_gb = 4 }")),
        "resources[0].aws.ebs.size_gb (line 3): must be ≥ 8, got 4",
    ),
    (
        "ebs-type",
        aws(resource=res("", ', ebs { type = "gp9" }')),
        "resources[0].aws.ebs.type (line 3): must be one of gp3, gp2, io1, io2, st1, sc1, standard, got 'gp9'; did you mean 'gp3'?",
    ),
    (
        "tags-syntax",
        aws(resource=res("", ', tags = "team=ml,oops"')),
        "resources[0].aws.tags (line 3): must be comma-separated key=value pairs like 'team=ml,env=prod'; item 2 is 'oops'",
    ),
    (
        "tags-reserved",
        aws(resource=res("", ', tags = "aws:x=1"')),
        "resources[0].aws.tags (line 3): tag key 'aws:x' uses the reserved 'aws:' prefix",
    ),
    (
        "instance-type",
        aws(resource=res("", "").replace('"g5.xlarge"', '"huge"')),
        "resources[0].aws.instance_type: must look like an instance type like g5.xlarge, got 'huge'",
    ),
    (
        "region",
        aws(aws_section='region = "mars-1"'),
        "aws.region (line 2): must look like a region like us-east-1, got 'mars-1'",
    ),
    (
        "az",
        aws(resource=res("", ', availability_zone = "us-east-1"')),
        "resources[0].aws.availability_zone (line 3): must look like a zone like us-east-1b, got 'us-east-1'",
    ),
    (
        "launch-spec",
        aws(aws_section='custom_launch_spec = "x"'),
        "aws.custom_launch_spec (line 2): must be an object ({ key = value }), got a string",
    ),
    ("syntax", "scaler { name = \n", "scaler.conf (line 2): HOCON syntax error"),
    (
        "missing-env",
        "scaler { git { password = ${SCALER_TEST_UNSET_TOKEN} } }\n",
        "scaler.conf (line 1): ${SCALER_TEST_UNSET_TOKEN} is not set: export SCALER_TEST_UNSET_TOKEN in the environment or write "
        "${?SCALER_TEST_UNSET_TOKEN} to make it optional",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_reports_path_and_message(tmp_path: Path, text: str, expected: str) -> None:
    code, output = validate(tmp_path, text, "--provider", "aws")
    assert code == 1, output
    assert without_lines(expected) in without_lines(output), output


GCP_INVALID = [
    (
        "zone",
        f'{{ name = "l4", queue = "gpu", max_instances = 1, {GCP_RESOURCE.replace("us-central1-a", "uscentral1")} }}',
        "resources[0].gcp.zones[0]: must look like a zone like us-central1-a, got 'uscentral1'",
    ),
    (
        "machine-type",
        f'{{ name = "l4", queue = "gpu", max_instances = 1, {GCP_RESOURCE.replace("n1-standard-4", "N1_BIG")} }}',
        "resources[0].gcp.machine_type: must look like a machine type like n1-standard-4 or g2-standard-8, got 'N1_BIG'",
    ),
    (
        "no-zones",
        '{ name = "l4", queue = "gpu", max_instances = 1, ' + GCP_RESOURCE.replace('["us-central1-a"]', "[]") + " }",
        "resources[0].gcp.zones: must not be empty",
    ),
    (
        "label",
        '{ name = "l4", queue = "gpu", max_instances = 1, gcp { machine_type = "n1-standard-4", '
        'zones = ["us-central1-a"], image = "x", labels { Team = "ML" } } }',
        "resources[0].gcp.labels: label key 'Team' must start with a lowercase letter",
    ),
]


@pytest.mark.parametrize(("resource", "expected"), [(c[1], c[2]) for c in GCP_INVALID], ids=[c[0] for c in GCP_INVALID])
def test_invalid_gcp_config(tmp_path: Path, resource: str, expected: str) -> None:
    code, output = validate(
        tmp_path, f'gcp {{ project = "my-ml-project" }}\nresources = [ {resource} ]\n', "--provider", "gcp"
    )
    assert code == 1, output
    assert without_lines(expected) in without_lines(output), output


def test_problems_carry_the_line_of_a_unique_key(tmp_path: Path) -> None:
    text = (
        "scaler {\n  name = ok\n  max_idel_time = 15m\n}\naws {}\nresources = [\n"
        + res("", ", ebs { size_gb = 4 }")
        + "\n]\n"
    )
    code, output = validate(tmp_path, text, "--provider", "aws")
    assert code == 1
    assert "scaler.max_idel_time (line 3): unknown key" in output
    assert "resources[0].aws.ebs.size_gb (line 7): must be ≥ 8, got 4" in output


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = aws(
        scaler="max_idel_time = 1m, orphans = x, polling_interval = zz",
        resource=res("spot = perhaps", ", ebs { size_gb = 1 }"),
    )
    code, output = validate(tmp_path, text, "--provider", "aws", "--format", "json")
    assert code == 1
    report = json.loads(output)
    paths = {p["path"] for p in report["problems"]}
    assert {
        "scaler.max_idel_time",
        "scaler.orphans",
        "scaler.polling_interval",
        "resources[0].spot",
        "resources[0].aws.ebs.size_gb",
    } <= paths
    assert report["valid"] is False and report["errors"] == len(report["problems"])


def test_idle_shorter_than_polling_is_a_warning_not_an_error(tmp_path: Path) -> None:
    code, output = validate(tmp_path, aws(scaler="polling_interval = 2m, max_idle_time = 30s"), "--provider", "aws")
    assert code == 0, output
    assert "scaler.max_idle_time (line 1): warning: 30s is shorter than polling_interval (2m)" in output


def test_an_idle_floor_above_the_idle_limit_is_a_warning(tmp_path: Path) -> None:
    code, output = validate(tmp_path, aws(scaler="min_idle_time = 30m, max_idle_time = 15m"), "--provider", "aws")
    assert code == 0, output
    assert "scaler.min_idle_time" in output and "warning: 30m is longer than max_idle_time (15m)" in output


@pytest.mark.parametrize(("name", "provider"), [("aws.conf", "aws"), ("gcp.conf", "gcp")])
def test_shared_examples_are_valid(name: str, provider: str) -> None:
    result = runner.invoke(app, ["validate-config", str(EXAMPLES / name), "--provider", provider])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate-config", str(tmp_path / "missing.conf")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    result = runner.invoke(app, ["validate-config", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.output


def test_unknown_provider_lists_installed(tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text(aws())
    from scaler.errors import PluginError

    result = runner.invoke(app, ["validate-config", str(path), "--provider", "azure"])
    assert isinstance(result.exception, PluginError)
    assert "unknown provider 'azure'; installed providers: aws, gcp, simulated" in str(result.exception)


def test_includes_and_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "common.conf").write_text('scaler { workers_prefix = "from_include" }\n')
    monkeypatch.setenv("SCALER_GIT_TOKEN", "tok-123")
    code, output = validate(
        tmp_path, 'include "common.conf"\n' + aws(scaler="git { password = ${?SCALER_GIT_TOKEN} }"), "--provider", "aws"
    )
    assert code == 0, output
    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    config = load_config(tmp_path / "scaler.conf", PluginHost(), provider="aws").config
    assert config is not None
    assert config.scaler.workers_prefix == "from_include"
    assert config.scaler.git.password.reveal() == "tok-123"
    assert "tok-123" not in repr(config.scaler)


@pytest.mark.parametrize(
    ("literal", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("5", 300), ('"90s"', 90), ("1.5", 90), ("1d", 86400)],
)
def test_durations(tmp_path: Path, literal: str, seconds: float) -> None:
    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    path = tmp_path / "d.conf"
    path.write_text(aws(scaler=f"max_idle_time = {literal}"))
    config = load_config(path, PluginHost(), provider="aws").config
    assert config is not None and config.scaler.max_idle_time == seconds


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    path = tmp_path / "d.conf"
    path.write_text(aws())
    config = load_config(path, PluginHost(), provider="aws").config
    assert config is not None
    s = config.scaler
    assert (s.polling_interval, s.max_idle_time, s.stuck_timeout) == (30, 900, 1200)
    assert s.orphans == "terminate" and s.requeue_interrupted_tasks and s.apply_vault and s.warn_duplicate_task_runs
    assert s.max_instances_total == 0 and s.max_hourly_cost == 0
    r = config.resources[0]
    assert (r.spot, r.cpu_only, r.regular_instance_rollback_timeout, r.spot_blackout_period) == (
        False,
        False,
        600,
        1800,
    )
