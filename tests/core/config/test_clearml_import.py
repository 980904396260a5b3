"""``scaler import`` of ClearML's own autoscaler configuration: ``aws_autoscaler.yaml`` (YAML or
the same structure as JSON) and the task of the autoscaler (``--from-task``, against the fake
ClearML server, the task written through the real SDK as ClearML's example writes it).

Every input key is accounted for in the report; the imported configuration is checked value by
value, validates, keeps its secrets in a private env file, and renders for each resource what
ClearML's own driver (``clearml.automation.aws_driver.AWSDriver``) would have put on the machine:
the agent's queue, the docker image, git credentials, the extra clearml.conf and the
pre-execution script."""

from __future__ import annotations

import copy
import json
import re
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.catalog import path_str
from scaler.config.clearml_import import (
    MAX_NODES,
    document_from_task,
    guess_provider,
    import_clearml,
    parse_text,
    report_lines,
)
from scaler.config.loading import load_config
from scaler.config.model import Config
from scaler.errors import ConfigError
from scaler.host import PluginHost
from tests.fakes.clearml_server import FakeClearML

runner = CliRunner()

KEY_ID = "AKIAEXAMPLEKEY123456"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GIT_TOKEN = "ghp_exampletoken1234567890"
SECRETS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "SCALER_GIT_TOKEN": GIT_TOKEN}
SCRIPT = 'echo "setting up"\napt-get install -y htop\n'
EXTRA_CONF = 'sdk.aws.s3.region = "us-east-1"\nagent.package_manager.pip_version = "<24"\n'

#: aws_autoscaler.yaml as ClearML's example writes it (yaml.safe_dump of its two dicts), with every
#: key ClearML's ScalerConfig, CloudDriver and AWSDriver read; queue aws_cpu reuses aws4gpu
EXAMPLE: dict[str, Any] = {
    "hyper_params": {
        "cloud_credentials_key": KEY_ID,
        "cloud_credentials_secret": SECRET_KEY,
        "cloud_credentials_token": "",
        "cloud_credentials_region": "us-east-1",
        "cloud_provider": "",
        "use_credentials_chain": False,
        "use_iam_instance_profile": True,
        "iam_arn": "arn:aws:iam::123456789012:instance-profile/clearml-agents",
        "iam_name": "clearml-agents",
        "git_user": "ml-bot",
        "git_pass": GIT_TOKEN,
        "default_docker_image": "nvidia/cuda:11.8.0-runtime-ubuntu22.04",
        "max_idle_time_min": 20,
        "polling_interval_time_min": 0.5,
        "max_spin_up_time_min": 30,
        "workers_prefix": "dynamic_worker",
        "tags": "env=prod,owner=ml",
    },
    "configurations": {
        "resource_configurations": {
            "aws4gpu": {
                "instance_type": "g4dn.4xlarge",
                "is_spot": False,
                "availability_zone": "us-east-1b",
                "ami_id": "ami-04c0416d6bd8e4b1f",
                "ebs_device_name": "/dev/sda1",
                "ebs_volume_size": 100,
                "ebs_volume_type": "gp3",
                "key_name": "my-key",
                "security_group_ids": ["sg-0123456789abcdef0"],
                "tags": "team=ml",
            },
            "aws4gpu_spot": {
                "instance_type": "g4dn.xlarge",
                "is_spot": True,
                "availability_zone": "us-east-1c",
                "ami_id": "ami-04c0416d6bd8e4b1f",
                "ebs_device_name": "/dev/sda1",
                "ebs_volume_size": 200,
                "ebs_volume_type": "gp2",
                "ebs_snapshot_id": "snap-0123456789abcdef0",
                "subnet_id": "subnet-0123456789abcdef0",
                "enable_monitoring": True,
                "extra_configurations": {"MetadataOptions": {"HttpPutResponseHopLimit": 3}},
            },
            "cpu_small": {
                "instance_type": "t3.large",
                "is_spot": False,
                "availability_zone": "us-east-1a",
                "ami_id": "ami-04c0416d6bd8e4b1f",
                "cpu_only": True,
                "key_name": "",
                "security_group_ids": [],
            },
            "never_used": {"instance_type": "t3.micro", "is_spot": False, "ami_id": "ami-04c0416d6bd8e4b1f"},
        },
        "queues": {
            "aws4gpu": [["aws4gpu", 3], ["aws4gpu_spot", 2]],
            "aws_cpu": [["cpu_small", 5], ["aws4gpu", 1]],
        },
        "extra_clearml_conf": EXTRA_CONF,
        "extra_trains_conf": "",
        "extra_vm_bash_script": SCRIPT,
        "docker_force_pull": False,
    },
}

#: (name, queue, max_instances, the ClearML resource it comes from) in spill-over order
RESOURCES = [
    ("aws4gpu", "aws4gpu", 3, "aws4gpu"),
    ("aws4gpu_spot", "aws4gpu", 2, "aws4gpu_spot"),
    ("cpu_small", "aws_cpu", 5, "cpu_small"),
    ("aws4gpu_aws_cpu", "aws_cpu", 1, "aws4gpu"),  # the second use of aws4gpu: a resource of its own
]


def fleet_value(config: Config, what: str) -> Any:
    """A value of the loaded configuration by a short name of the table below."""
    aws = config.provider_settings
    return {
        "access_key_id": aws["access_key_id"].reveal(),
        "secret_access_key": aws["secret_access_key"].reveal(),
        "session_token": aws["session_token"].reveal(),
        "region": aws["region"],
        "use_iam_role": aws["use_iam_role"],
        "iam_instance_profile": aws["iam_instance_profile"],
        "git_user": config.scaler.git.user,
        "git_pass": config.scaler.git.password.reveal(),
        "docker": config.scaler.default_docker_image,
        "max_idle_time": config.scaler.max_idle_time,
        "polling_interval": config.scaler.polling_interval,
        "stuck_timeout": config.scaler.stuck_timeout,
        "workers_prefix": config.scaler.workers_prefix,
        "name": config.scaler.name,
        "init_script": config.scaler.init_script,
        "extra_clearml_conf": config.scaler.extra_clearml_conf,
    }[what]


#: hyper-parameter (or configuration key) -> (value in the loaded configuration, expected)
FLEET_TABLE = [
    ("cloud_credentials_key", "access_key_id", KEY_ID),
    ("cloud_credentials_secret", "secret_access_key", SECRET_KEY),
    ("cloud_credentials_token", "session_token", ""),  # empty: the default
    ("cloud_credentials_region", "region", "us-east-1"),
    ("use_credentials_chain", "use_iam_role", False),
    ("iam_arn", "iam_instance_profile", "arn:aws:iam::123456789012:instance-profile/clearml-agents"),
    ("git_user", "git_user", "ml-bot"),
    ("git_pass", "git_pass", GIT_TOKEN),
    ("default_docker_image", "docker", "nvidia/cuda:11.8.0-runtime-ubuntu22.04"),
    ("max_idle_time_min", "max_idle_time", 20 * 60.0),
    ("polling_interval_time_min", "polling_interval", 30.0),
    ("max_spin_up_time_min", "stuck_timeout", 30 * 60.0),
    ("workers_prefix", "workers_prefix", "dynamic_worker"),
    ("workers_prefix", "name", "dynamic_worker"),
    ("extra_vm_bash_script", "init_script", SCRIPT),
    ("extra_clearml_conf", "extra_clearml_conf", EXTRA_CONF),
]

#: ClearML resource key -> (where in a resource, expected per ClearML resource)
RESOURCE_TABLE: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("instance_type", ("aws", "instance_type"), {"aws4gpu": "g4dn.4xlarge", "aws4gpu_spot": "g4dn.xlarge"}),
    ("is_spot", ("spot",), {"aws4gpu": False, "aws4gpu_spot": True, "cpu_small": False}),
    ("availability_zone", ("aws", "availability_zone"), {"aws4gpu": "us-east-1b", "cpu_small": "us-east-1a"}),
    ("ami_id", ("aws", "ami_id"), {"aws4gpu": "ami-04c0416d6bd8e4b1f"}),
    ("ebs_device_name", ("aws", "ebs", "device"), {"aws4gpu": "/dev/sda1"}),
    ("ebs_volume_size", ("aws", "ebs", "size_gb"), {"aws4gpu": 100, "aws4gpu_spot": 200}),
    ("ebs_volume_type", ("aws", "ebs", "type"), {"aws4gpu": "gp3", "aws4gpu_spot": "gp2"}),
    ("ebs_snapshot_id", ("aws", "ebs", "snapshot_id"), {"aws4gpu_spot": "snap-0123456789abcdef0", "aws4gpu": ""}),
    ("key_name", ("aws", "key_name"), {"aws4gpu": "my-key", "cpu_small": ""}),
    ("security_group_ids", ("aws", "security_group_ids"), {"aws4gpu": ["sg-0123456789abcdef0"], "cpu_small": []}),
    ("subnet_id", ("aws", "subnet_id"), {"aws4gpu_spot": "subnet-0123456789abcdef0", "aws4gpu": ""}),
    # the fleet's tags (hyper_params.tags) come first, then the resource's own
    ("tags", ("aws", "tags"), {"aws4gpu": "env=prod,owner=ml,team=ml", "cpu_small": "env=prod,owner=ml"}),
    ("cpu_only", ("cpu_only",), {"cpu_small": True, "aws4gpu": False}),
    ("enable_monitoring", ("aws", "monitoring"), {"aws4gpu_spot": True, "aws4gpu": False}),
    (
        "extra_configurations",
        ("aws", "custom_launch_spec"),
        {"aws4gpu_spot": {"MetadataOptions": {"HttpPutResponseHopLimit": 3}}, "aws4gpu": {}},
    ),
]


def resource_value(config: Config, name: str, where: tuple[str, ...]) -> Any:
    resource = config.resource(name)
    assert resource is not None, name
    if where[0] == "aws":
        node: Any = resource.provider
        for step in where[1:]:
            node = node[step]
        return node
    return getattr(resource, where[0])


def input_keys(document: dict[str, Any]) -> list[str]:
    """Every key of the input as the report names it."""
    hyper, confs = document["hyper_params"], document["configurations"]
    keys = [f"hyper_params.{key}" for key in hyper]
    for key, value in confs.items():
        if key == "queues":
            keys += [f"configurations.queues.{queue}" for queue in value]
        elif key == "resource_configurations":
            used = {name for pairs in confs["queues"].values() for name, _ in pairs}
            for name, conf in value.items():
                base = f"configurations.resource_configurations.{name}"
                keys += [f"{base}.{k}" for k in conf] if name in used else [base]
        else:
            keys.append(f"configurations.{key}")
    return keys


def read_env_file(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            found[name] = shlex.split(value)[0]
    return found


def import_file(tmp_path: Path, text: str, *args: str) -> tuple[Any, Path]:
    source = tmp_path / "aws_autoscaler.yaml"
    source.write_text(text)
    output = tmp_path / "scaler.conf"
    result = runner.invoke(app, ["import", str(source), "-o", str(output), *args])
    return result, output


def load(output: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Config:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_config(output, PluginHost(), provider="aws")
    assert loaded.ok, [p.render() for p in loaded.errors]
    assert loaded.config is not None
    return loaded.config


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_the_example_yaml_imports_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    text = yaml.safe_dump(EXAMPLE) if form == "yaml" else json.dumps(EXAMPLE, indent=2)
    result, output = import_file(tmp_path, text)  # no --provider: the keys say aws
    assert result.exit_code == 0, result.output
    assert f"imported {tmp_path / 'aws_autoscaler.yaml'} to {output}: valid (provider aws, 4 resource(s))" in (
        result.output
    )

    # secrets: never in the configuration, in a private env file beside it, named in the report
    written = output.read_text()
    for value in SECRETS.values():
        assert value not in written and value not in result.stdout
    for name in SECRETS:
        assert f"${{?{name}}}" in written
    env_file = tmp_path / "scaler.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert read_env_file(env_file) == SECRETS
    assert f"secrets: {env_file} (mode 600)" in result.output

    # the report accounts for every key of the input, each on its own line
    report = result.output.splitlines()
    for key in input_keys(EXAMPLE):
        assert any(line.strip().startswith(key) for line in report), f"{key} is not in the report"
    for line in (
        "hyper_params.max_idle_time_min → scaler.max_idle_time (20 min → 20m)",
        "hyper_params.polling_interval_time_min → scaler.polling_interval (0.5 min → 30s)",
        "hyper_params.git_pass → scaler.git.password (${?SCALER_GIT_TOKEN}, value in the env file)",
        "hyper_params.iam_name: not needed: iam_arn sets aws.iam_instance_profile too and comes first",
        "configurations.resource_configurations.never_used: not needed: no queue uses it",
        "configurations.docker_force_pull: not needed: ClearML's autoscaler does not read it",
        "configurations.resource_configurations.aws4gpu.is_spot → resources[0].spot, resources[3].spot",
    ):
        assert any(text.strip().startswith(line) for text in report), line
    assert "20m" in written and "30s" in written  # minutes became durations

    # value by value, loaded as `scaler run` loads it (secrets from the env file)
    config = load(output, read_env_file(env_file), monkeypatch)
    for key, what, expected in FLEET_TABLE:
        assert fleet_value(config, what) == expected, (key, what)
    assert [(r.name, r.queue, r.max_instances) for r in config.resources] == [r[:3] for r in RESOURCES]
    origin = {name: source for name, _, _, source in RESOURCES}
    for key, where, expected in RESOURCE_TABLE:
        for clearml_name, value in expected.items():
            for name in (n for n, s in origin.items() if s == clearml_name):
                assert resource_value(config, name, where) == value, (key, name, where)


def test_every_declared_clearml_key_is_in_the_table_and_the_migration_guide() -> None:
    """The keys the example YAML covers are every key a plugin declares (so a new declaration
    gets a row here), and docs/migrating-from-clearml.md maps each of them."""
    host = PluginHost()
    catalog = host.catalog()
    declared = {k for f in catalog.inline_fields for k in f.clearml}
    section = catalog.section("aws")
    assert section is not None

    def walk(fields: Any) -> None:
        for item in fields:
            declared.update(item.clearml)
            walk(item.fields)

    walk(section.resource_fields)
    assert declared == {key for key, _, _ in RESOURCE_TABLE}
    hyper = set(EXAMPLE["hyper_params"])
    guide = (Path(__file__).resolve().parents[3] / "docs" / "migrating-from-clearml.md").read_text()
    for key in sorted(
        declared | hyper | set(EXAMPLE["configurations"]) | {"extra_trains_conf", "aws_credentials_key_id"}
    ):
        assert re.search(rf"`{key}[`.:]", guide), f"docs/migrating-from-clearml.md does not map {key}"


def clearml_user_data(document: dict[str, Any], source: str, queue: str) -> str:
    """What ClearML's own AWS driver puts in the user data of a machine of ``source`` for ``queue``."""
    from clearml.automation.aws_driver import AWSDriver

    driver = AWSDriver.from_config(copy.deepcopy(document))
    conf = document["configurations"]["resource_configurations"][source]
    prefix = f"{document['hyper_params']['workers_prefix']}:{source}:{conf['instance_type']}"
    return str(driver.gen_user_data(prefix, queue, "", conf.get("cpu_only", False)))


def hocon(text: str) -> Any:
    from pyhocon import ConfigFactory

    return ConfigFactory.parse_string(text)


def test_each_resource_renders_what_clearmls_driver_would(
    tmp_path: Path, fake_clearml: FakeClearML, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scaler.clearml.queues import server_info
    from scaler.engine.render import render_clearml_conf, render_init_script
    from scaler.types import RenderContext

    monkeypatch.delenv("CLEARML_AUTOSCALER_GIT_USER", raising=False)
    monkeypatch.delenv("CLEARML_AUTOSCALER_GIT_PASSWORD", raising=False)
    result, output = import_file(tmp_path, yaml.safe_dump(EXAMPLE), "--provider", "aws")
    assert result.exit_code == 0, result.output
    config = load(output, read_env_file(tmp_path / "scaler.env"), monkeypatch)
    host = PluginHost()
    context = RenderContext(server_info())
    for name, queue, _, source in RESOURCES:
        theirs = clearml_user_data(EXAMPLE, source, queue)
        resource = config.resource(name)
        assert resource is not None
        ours = render_init_script(host, config, resource, context)
        conf = hocon(render_clearml_conf(host, config, resource, context))
        # the agent: same queue, same docker image
        assert f"--queue '{queue}'" in theirs and f"--queue {shlex.quote(queue)}" in ours
        image = EXAMPLE["hyper_params"]["default_docker_image"]
        assert f"--docker '{image}'" in theirs and f"--docker {shlex.quote(image)}" in ours
        # clearml.conf: git credentials and the extra configuration, value by value
        their_conf = hocon(theirs.split("cat << EOF >> ~/clearml.conf\n", 1)[1].split("\nEOF\n", 1)[0])
        for key in ("agent.git_user", "agent.git_pass", "sdk.aws.s3.region", "agent.package_manager.pip_version"):
            assert conf.get(key) == their_conf.get(key), (name, key)
        assert conf.get("agent.git_pass") == GIT_TOKEN
        # the server and the agent's credentials: environment there, clearml.conf here
        for variable, key in (
            ("CLEARML_API_HOST", "api.api_server"),
            ("CLEARML_WEB_HOST", "api.web_server"),
            ("CLEARML_FILES_HOST", "api.files_server"),
        ):
            assert f"export {variable}={conf.get(key)}\n" in theirs, (name, variable)
        assert f"export CLEARML_API_ACCESS_KEY='{conf.get('api.credentials.access_key')}'" in theirs
        assert f"export CLEARML_API_SECRET_KEY='{conf.get('api.credentials.secret_key')}'" in theirs
        # the pre-execution script runs before the agent, on both
        assert SCRIPT.strip() in theirs and SCRIPT.strip() in ours
        assert ours.index(SCRIPT.strip()) < ours.index("clearml-agent --config-file")
        # cpu_only hides the GPUs on both
        hidden = EXAMPLE["configurations"]["resource_configurations"][source].get("cpu_only", False)
        assert ("NVIDIA_VISIBLE_DEVICES=none" in theirs) == hidden == ("NVIDIA_VISIBLE_DEVICES=none" in ours)


def test_a_secret_inside_a_script_makes_the_configuration_private(tmp_path: Path) -> None:
    document = copy.deepcopy(EXAMPLE)
    document["configurations"]["extra_vm_bash_script"] = f"git config --global credential.token {GIT_TOKEN}\n"
    result, output = import_file(tmp_path, yaml.safe_dump(document))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert "scaler.init_script hold(s) a secret's value in clear" in result.output


def test_the_older_extra_trains_conf_is_appended(tmp_path: Path) -> None:
    document = copy.deepcopy(EXAMPLE)
    document["configurations"]["extra_trains_conf"] = 'sdk.development.default_output_uri = "s3://bucket"\n'
    result, output = import_file(tmp_path, yaml.safe_dump(document))
    assert result.exit_code == 0, result.output
    assert "configurations.extra_trains_conf → scaler.extra_clearml_conf (its former name" in result.output
    text = output.read_text()
    assert text.index("sdk.aws.s3.region") < text.index("default_output_uri")


def test_what_clearml_does_not_know_is_reported_not_dropped(tmp_path: Path) -> None:
    document = copy.deepcopy(EXAMPLE)
    document["hyper_params"]["spot_max_bid"] = 3
    document["configurations"]["resource_configurations"]["aws4gpu"]["gpu_count"] = 4
    document["configurations"]["budget"] = {"x": 1}
    document["configurations"]["queues"]["broken"] = [["no_such_resource", 2], "garbage"]
    result, _ = import_file(tmp_path, yaml.safe_dump(document))
    assert result.exit_code == 0, result.output
    for line in (
        "hyper_params.spot_max_bid: not supported",
        "configurations.resource_configurations.aws4gpu.gpu_count: not supported: no setting of provider 'aws'",
        "configurations.budget: not supported",
        "configurations.queues.broken[0]: not supported: resource 'no_such_resource' is not in",
        "configurations.queues.broken[1]: not supported: must be [resource, max instances]",
    ):
        assert line in result.output, line


def test_unreadable_and_hostile_documents(tmp_path: Path) -> None:
    source = str(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="not JSON, and not YAML either"):
        parse_text("hyper_params: [unclosed", source)
    with pytest.raises(ConfigError, match="larger than"):
        parse_text("a: " + "x" * (1024 * 1024), source)
    with pytest.raises(ConfigError, match="holds a"):
        parse_text("a: !!binary aGVsbG8=", source)
    with pytest.raises(ConfigError):
        parse_text("a: !!python/object/apply:os.system ['true']", source)  # the safe loader builds no objects
    laughs = "a: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']\n"
    for n in range(ord("b"), ord("k")):
        laughs += f"{chr(n)}: &{chr(n)} [" + ", ".join([f"*{chr(n - 1)}"] * 9) + "]\n"
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES}"):
        parse_text(laughs, source)
    with pytest.raises(ConfigError, match="deeper"):
        parse_text("[" * 200 + "]" * 200, source)
    # a document of another shape is not taken for ClearML's
    result, _ = import_file(tmp_path, "just: a mapping\n")
    assert result.exit_code == 2 and "not ClearML's autoscaler configuration" in result.output


def test_the_provider_is_guessed_from_the_keys_or_asked_for(tmp_path: Path) -> None:
    catalog = PluginHost().catalog()
    assert guess_provider(EXAMPLE, catalog) == "aws"
    bare = {"hyper_params": {"max_idle_time_min": 5}, "configurations": {}}
    assert guess_provider(bare, catalog) is None
    result, _ = import_file(tmp_path, yaml.safe_dump(bare))
    assert result.exit_code == 2 and "pass --provider" in result.output
    imported = import_clearml(bare, catalog, "simulated")
    assert path_str(("scaler", "max_idle_time")) == "scaler.max_idle_time"
    assert imported.tree["scaler"]["max_idle_time"] == "5m" and not imported.secrets
    assert any(line.startswith("  hyper_params.max_idle_time_min → ") for line in report_lines(imported))


# -- --from-task: the task as ClearML's example writes it, through the real SDK -------------------


@pytest.mark.parametrize("stored", ["connect_configuration", "set_configuration_object"])
def test_from_task_reads_the_autoscaler_task(
    tmp_path: Path, fake_clearml: FakeClearML, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    from clearml import Task

    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    conf = copy.deepcopy(EXAMPLE)
    task: Any = Task.create(project_name="DevOps", task_name="AWS Auto-Scaler", task_type="service")
    task.connect(conf["hyper_params"])  # hyper-parameters, section General, every value as text and its type
    task.connect({"run": True, "remote": False}, name="Args")  # the example's command line: not a setting
    if stored == "connect_configuration":
        task.connect_configuration(conf["configurations"])  # configuration object General, as HOCON text
    else:  # the newer example: the object General holds JSON
        task.set_configuration_object(name="General", config_text=json.dumps(conf["configurations"], indent=2))
    assert fake_clearml.task(task.id)["hyperparams"]["General"]["max_idle_time_min"]["value"] == "20"

    output = tmp_path / "scaler.conf"
    result = runner.invoke(app, ["import", "--from-task", task.id, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"imported task {task.id} ('AWS Auto-Scaler') to {output}: valid (provider aws, 4 resource(s))" in (
        result.output
    )
    report = result.output.splitlines()
    for key in input_keys(EXAMPLE):
        assert any(line.strip().startswith(key) for line in report), f"{key} is not in the report"
    assert any(line.strip().startswith("hyper-parameters Args/") for line in report)
    assert GIT_TOKEN not in output.read_text()
    env_file = tmp_path / "scaler.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    config = load(output, read_env_file(env_file), monkeypatch)
    for key, what, expected in FLEET_TABLE:
        assert fleet_value(config, what) == expected, (key, what)
    assert [(r.name, r.queue, r.max_instances) for r in config.resources] == [r[:3] for r in RESOURCES]
    for key, where, expected in RESOURCE_TABLE:
        for clearml_name, value in expected.items():
            assert resource_value(config, clearml_name, where) == value, (key, clearml_name)


def test_from_task_refuses_what_it_cannot_use(tmp_path: Path, fake_clearml: FakeClearML) -> None:
    result = runner.invoke(app, ["import", "--from-task", "no-such-task", "-o", str(tmp_path / "x.conf")])
    assert result.exit_code == 1 and "has no task no-such-task" in result.output
    empty = fake_clearml.create_task("something else")
    result = runner.invoke(app, ["import", "--from-task", empty, "-o", str(tmp_path / "x.conf")])
    assert result.exit_code == 1 and "holds no ClearML autoscaler configuration" in result.output
    result = runner.invoke(app, ["import", "file.yaml", "--from-task", empty])
    assert result.exit_code == 2 and "one of them" in result.output


def test_a_task_configuration_is_data() -> None:
    """HOCON in a task is read as data: an include or a substitution is refused, never resolved."""
    hyper = {"General": {"max_idle_time_min": ("7", "int"), "git_user": ("", "")}}
    for text in ('include file("/etc/passwd")', 'extra_vm_bash_script = ${HOME}"'):
        with pytest.raises(ConfigError, match="cannot be read as data"):
            document_from_task(hyper, {"General": (text, "dictionary")})
    document, entries = document_from_task(hyper, {"General": ('queues { q = [["r", 1]] }', "dictionary")})
    assert document == {
        "hyper_params": {"max_idle_time_min": 7, "git_user": None},
        "configurations": {"queues": {"q": [["r", 1]]}},
    }
    assert entries == []
