"""``scaler init``: the wizard driven end to end with scripted answers, its flags, and the
no-terminal error. Every file it writes must pass ``validate-config``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from tests.support.cli import run_cli

runner = CliRunner()


def validate(path: Path, provider: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, ["validate-config", str(path), "--provider", provider], env=env)
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.output
    return result.output


def lines(*answers: str) -> str:
    return "\n".join(answers) + "\n"


AWS_ANSWERS = lines(
    "ml-fleet",  # scaler name
    "",  # workers prefix: default
    "eu-west-1",  # region
    "n",  # default credential chain? no: keys
    "AKIAIOSFODNN7EXAMPLE",  # access key id (hidden)
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # secret access key (hidden)
    "",  # instance profile: none
    "ml-bot",  # git user
    "ghp_wizardToken0123456789",  # git token (hidden)
    "",  # docker image: default
    # resource 1
    "gpu-a10",
    "",  # queue: defaults to the resource name
    "g5.xlarge",
    "ami-123",  # invalid AMI: asked again
    "ami-0abcdef1234567890",
    "us-east-1b",  # zone not in the region: asked again
    "eu-west-1b",
    "4",  # disk below the minimum: asked again
    "200",
    "0",  # max instances below 1: asked again
    "3",
    "y",  # spot
    "apt-get install -y htop",  # init script
    "y",  # another resource
    # resource 2
    "gpu-a10",  # duplicate name: asked again
    "cpu",
    "cpu-queue",
    "c6i.large",
    "ami-0abcdef1234567890",
    "",  # zone: any
    "",  # disk: default
    "",  # max instances: default
    "n",  # spot
    "",  # init script: none
    "n",  # no more resources
    "20 minutes",  # idle time
    "1m",  # polling interval
)


def test_wizard_aws_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "aws.conf"
    result = runner.invoke(app, ["init", "--provider", "aws", "--interactive", "-o", str(out)], input=AWS_ANSWERS)
    assert result.exit_code == 0, result.output
    # each bad answer was refused with the schema's message, then asked again
    assert "'us-east-1b' is not a zone of aws.region 'eu-west-1'" in result.output  # the plugin's own check
    assert "must look like ami- followed by 8 or 17 hex digits, got 'ami-123'" in result.output
    assert "must be ≥ 8, got 4" in result.output
    assert "must be ≥ 1, got 0" in result.output
    assert "a resource named 'gpu-a10' already exists" in result.output
    assert f"wrote {out}: valid (provider aws; 2 resource(s): gpu-a10, cpu)" in result.output

    text = out.read_text()
    # secrets: substitutions in the config, values only in the private env file
    for secret in ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ghp_wizardToken0123456789"):
        assert secret not in text
        assert secret not in result.output
    assert "password = ${?SCALER_GIT_TOKEN}" in text
    assert "access_key_id = ${?AWS_ACCESS_KEY_ID}" in text
    assert "# AMI with docker and python3." in text  # commented
    assert "max_idle_time = 20m" in text and "polling_interval = 1m" in text
    env_file = tmp_path / "aws.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    assert env == {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "SCALER_GIT_TOKEN": "ghp_wizardToken0123456789",
    }
    validate(out, "aws", env=env)

    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        config = load_config(out, PluginHost(), provider="aws").config
    assert config is not None
    gpu, cpu = config.resources
    assert (gpu.name, gpu.queue, gpu.max_instances, gpu.spot, gpu.init_script) == (
        "gpu-a10",
        "gpu-a10",
        3,
        True,
        "apt-get install -y htop",
    )
    # the answers, among the defaults core applied to the rest of the section
    answered = ("instance_type", "availability_zone", "ami_id")
    assert {key: gpu.provider[key] for key in answered} == {
        "instance_type": "g5.xlarge",
        "availability_zone": "eu-west-1b",
        "ami_id": "ami-0abcdef1234567890",
    }
    assert gpu.provider["ebs"]["size_gb"] == 200
    assert "aws {" in text and 'instance_type = "g5.xlarge"' in text and "size_gb = 200" in text
    assert "availability_zone" not in text.split('name = "cpu"')[1]  # an empty answer is not written
    assert (cpu.name, cpu.queue, cpu.max_instances, cpu.spot) == ("cpu", "cpu-queue", 2, False)
    assert config.scaler.max_idle_time == 1200 and config.scaler.polling_interval == 60
    assert config.scaler.git.user == "ml-bot"
    assert config.scaler.git.password.reveal() == "ghp_wizardToken0123456789"
    assert config.provider_settings["use_iam_role"] is False


def test_wizard_gcp_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gcp.conf"
    answers = lines(
        "gcp",  # provider (not given as a flag)
        "",
        "",
        "my-ml-project",
        "",
        "",
        "",
        "",  # name, prefix, project, credentials (ADC), git user/token, image
        "l4",
        "gpu",
        "g2-standard-8",
        "us-central1",
        "us-central1-a us-central1-b",  # a region is not a zone: asked again
        "projects/deeplearning-platform-release/global/images/family/common-cu124",
        "",  # disk: default
        "2",  # max instances
        "y",  # spot
        "",  # init script
        "n",  # no more resources
        "",
        "",
    )
    result = runner.invoke(app, ["init", "--interactive", "-o", str(out)], input=answers)
    assert result.exit_code == 0, result.output
    assert "must look like a zone like us-central1-a" in result.output
    validate(out, "gcp")
    text = out.read_text()
    assert 'zones = ["us-central1-a", "us-central1-b"]' in text
    assert not (tmp_path / "gcp.env").exists()  # no secret typed


def test_wizard_flags_only_without_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "sim.conf"
    args = [
        "init",
        "--provider",
        "simulated",
        "-o",
        str(out),
        "--name",
        "flags-fleet",
        "--max-idle-time",
        "5m",
        "--resource",
        "name=cpu,queue=cpu,max_instances=3,cpu_only=true",
        "--resource",
        "name=gpu,queue=gpu,spot=yes,instance_type=sim.gpu",
    ]
    result = runner.invoke(app, args)  # CliRunner's stdin is not a TTY: nothing is asked
    assert result.exit_code == 0, result.output
    validate(out, "simulated")
    text = out.read_text()
    assert 'name = "flags-fleet"' in text and "max_idle_time = 5m" in text and "cpu_only = true" in text


def test_no_terminal_names_every_missing_flag(tmp_path: Path) -> None:
    out = tmp_path / "x.conf"
    proc = run_cli("init", "--provider", "aws", "-o", str(out), "--resource", "name=gpu", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "no terminal to ask on" in proc.stderr
    assert "--resource instance_type=… (resource 1)" in proc.stderr
    assert "--resource image=… (resource 1)" in proc.stderr
    assert not out.exists()

    result = runner.invoke(app, ["init", "-o", str(out)])
    assert result.exit_code == 2
    assert "pass --provider, --resource" in result.output


def test_invalid_flags_are_reported_together(tmp_path: Path) -> None:
    out = tmp_path / "x.conf"
    args = [
        "init",
        "--provider",
        "aws",
        "-o",
        str(out),
        "--set",
        "aws.region=moon-1",
        "--polling-interval",
        "soon",
        "--resource",
        "name=gpu,instance_type=g5.xlarge,image=ami-0abcdef1234567890,disk=2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--set aws.region: must look like a region like us-east-1, got 'moon-1'" in result.output
    assert "--polling-interval: must be a duration like 30s" in result.output
    assert "--resource disk=… (resource 1): must be ≥ 8, got 2" in result.output
    assert not out.exists()


def test_existing_file_needs_force_and_input_end_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x.conf"
    out.write_text("keep me")
    args = ["init", "--provider", "simulated", "-o", str(out), "--resource", "name=cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "pass --force" in result.output
    assert out.read_text() == "keep me"
    result = runner.invoke(
        app, ["init", "--provider", "simulated", "-o", str(tmp_path / "y.conf"), "--interactive"], input="fleet\n"
    )
    assert result.exit_code == 2 and "input ended before every question was answered" in result.output


def test_set_gives_any_setting_by_its_config_path(tmp_path: Path) -> None:
    out = tmp_path / "set.conf"
    args = [
        "init",
        "--provider",
        "aws",
        "-o",
        str(out),
        "--set",
        "aws.region=eu-west-1",
        "--set",
        "aws.use_iam_role=false",
        "--set",
        "aws.endpoint_url=http://127.0.0.1:5000",  # a setting without a question
        "--set",
        "scaler.max_launch_per_tick=3",
        "--set",
        "resources[1].name=gpu",
        "--set",
        "resources[1].aws.instance_type=g5.xlarge",
        "--set",
        "resources[1].aws.ami_id=ami-0abcdef1234567890",
        "--set",
        "resources[1].aws.ebs.size_gb=200",
        "--resource",
        "name=cpu,instance_type=c6i.large,ami_id=ami-0abcdef1234567890,zone=eu-west-1a,max_instances=4",
    ]
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-from-env"}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert 'region = "eu-west-1"' in text and "use_iam_role = false" in text
    assert 'endpoint_url = "http://127.0.0.1:5000"' in text and "max_launch_per_tick = 3" in text
    assert "access_key_id = ${?AWS_ACCESS_KEY_ID}" in text  # asked because use_iam_role is false
    validate(out, "aws", env=env)

    from scaler.config.loading import load_config
    from scaler.host import PluginHost

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        config = load_config(out, PluginHost(), provider="aws").config
    assert config is not None
    cpu, gpu = config.resources  # the first --resource is resources[0]; --set resources[1] adds one
    assert (cpu.name, cpu.max_instances, cpu.provider["instance_type"]) == ("cpu", 4, "c6i.large")
    assert cpu.provider["availability_zone"] == "eu-west-1a"
    assert (gpu.name, gpu.provider["instance_type"], gpu.provider["ebs"]["size_gb"]) == ("gpu", "g5.xlarge", 200)
    assert config.scaler.max_launch_per_tick == 3


def test_set_refuses_secrets_and_unknown_paths(tmp_path: Path) -> None:
    out = tmp_path / "x.conf"
    base = [
        "init",
        "--provider",
        "aws",
        "-o",
        str(out),
        "--resource",
        "name=gpu,instance_type=g5.xlarge,image=ami-0abcdef1234567890",
    ]
    result = runner.invoke(app, [*base, "--set", "aws.secret_access_key=wJalrXUtnFEMI"])
    assert result.exit_code == 2
    assert "--set aws.secret_access_key: aws.secret_access_key is a secret" in result.output
    assert "export AWS_SECRET_ACCESS_KEY=… instead" in result.output
    assert "wJalrXUtnFEMI" not in result.output
    result = runner.invoke(app, [*base, "--set", "aws.regoin=eu-west-1", "--set", "resources[0].aws.ami=x"])
    assert result.exit_code == 2
    assert "--set aws.regoin: no such setting; did you mean 'region'?" in result.output
    assert "--set resources[0].aws.ami: no such setting; did you mean 'ami_id'?" in result.output
    result = runner.invoke(app, [*base, "--set", "aws.region"])
    assert result.exit_code == 2 and "expected path=value" in result.output
    result = runner.invoke(app, ["init", "--provider", "aws", "-o", str(out), "--resource", "name=gpu,flavour=big"])
    assert result.exit_code == 2 and "unknown key 'flavour'; keys: name, queue, max_instances" in result.output
    assert not out.exists()


def test_a_conditional_question_is_skipped_with_its_secret(tmp_path: Path) -> None:
    """With the default credential chain the AWS keys are not asked: not even taken from the environment."""
    out = tmp_path / "chain.conf"
    args = [
        "init",
        "--provider",
        "aws",
        "-o",
        str(out),
        "--resource",
        "name=gpu,instance_type=g5.xlarge,image=ami-0abcdef1234567890",
    ]
    result = runner.invoke(app, args, env={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"})
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "use_iam_role = true" in text and "access_key_id" not in text
