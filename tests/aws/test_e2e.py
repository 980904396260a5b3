"""End to end: the fake ClearML server (real clearml SDK) + moto's EC2 behind the EC2 proxy
(real boto3) + the loop — in process with a fake clock, and as the real ``scaler`` CLI."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import load_config
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import DUMMY_AMI, EC2Proxy, MotoServer
from tests.support.aws import tags_of

SCALER_BIN = Path(sys.executable).parent / "scaler"
FLEET = "e2e-fleet"


def write_config(tmp_path: Path, *, max_idle_time: str = "5m") -> Path:
    path = tmp_path / "aws.conf"
    path.write_text(f"""
scaler {{
  name = "{FLEET}"
  workers_prefix = "dynamic_aws"
  polling_interval = 30s
  max_idle_time = {max_idle_time}
  stuck_timeout = 20m
}}
aws {{ region = "us-east-1", use_iam_role = true }}
resources = [
  {{
    name = "cpu"
    queue = "cpu"
    max_instances = 3
    aws {{ instance_type = "t3.micro", ami_id = "{DUMMY_AMI}", tags = "team=e2e" }}
  }}
]
""")
    return path


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


def alive(moto_ec2: Any) -> list[dict[str, Any]]:
    pages = moto_ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def state_of(moto_ec2: Any, instance_id: str) -> str:
    [res] = moto_ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(res["Instances"][0]["State"]["Name"])


def user_data(moto_ec2: Any, instance_id: str) -> str:
    value = moto_ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(value).decode()


def test_loop_in_process(
    tmp_path: Path, fake_clearml: FakeClearML, moto_ec2: Any, ec2_proxy: EC2Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    host = PluginHost()
    loaded = load_config(write_config(tmp_path), host, provider="aws")
    assert loaded.ok, [p.render() for p in loaded.errors]
    assert loaded.config is not None
    now = [time.time()]
    loop = Reconciler(loaded.config, host, host.provider("aws"), ClearMLSource(timeout=5), clock=lambda: now[0])

    fake_clearml.enqueue("cpu")
    loop.tick()
    [inst] = alive(moto_ec2)
    instance_id = inst["InstanceId"]
    tags = tags_of(inst)
    assert (tags[TAG_SCALER], tags[TAG_RESOURCE], tags["team"]) == (FLEET, "cpu", "e2e")
    assert tags[TAG_LAUNCH_TOKEN]
    script = user_data(moto_ec2, instance_id)
    assert (
        "/latest/meta-data/instance-id" in script and "X-aws-ec2-metadata-token" in script
    )  # the plugin's IMDSv2 part
    assert 'CLEARML_WORKER_ID="${SCALER_WORKERS_PREFIX}:${SCALER_RESOURCE}:${SCALER_INSTANCE_ID}"' in script
    assert "--queue cpu" in script

    now[0] += 30
    loop.tick()  # booting: no second machine for the same task
    assert len(alive(moto_ec2)) == 1

    worker = f"dynamic_aws:cpu:{instance_id}"
    fake_clearml.register_worker(worker, ["cpu"])
    assert fake_clearml.take_task(worker)
    now[0] += 30
    loop.tick()
    fake_clearml.finish_task(worker)
    now[0] += 30
    loop.tick()  # idle from now on
    assert state_of(moto_ec2, instance_id) == "running"
    now[0] += 5 * 60
    report = loop.tick()
    assert report.terminated["idle"] == 1
    assert state_of(moto_ec2, instance_id) in ("shutting-down", "terminated")

    # a machine whose agent never registers is terminated after stuck_timeout, console saved first
    fake_clearml.enqueue("cpu")
    now[0] += 30
    loop.tick()
    [stuck] = alive(moto_ec2)
    now[0] += 21 * 60
    with caplog.at_level(logging.WARNING, logger="scaler"):
        report = loop.tick()
    assert report.terminated["stuck"] == 1
    assert state_of(moto_ec2, stuck["InstanceId"]) in ("shutting-down", "terminated")
    assert "Linux version" in caplog.text  # the console output of the stuck machine, from EC2


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCALER_BIN), *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ), check=False
    )


def test_scaler_run_once_as_a_subprocess(
    tmp_path: Path, fake_clearml: FakeClearML, moto_ec2: Any, ec2_proxy: EC2Proxy
) -> None:
    config = write_config(tmp_path, max_idle_time="0")
    fake_clearml.add_vault('auto_scaler.v1.aws { extra_vm_bash_script = "echo from-the-server-vault" }')
    fake_clearml.enqueue("cpu")

    first = run_cli("run", "--provider", "aws", "--config", str(config), "--once")
    assert first.returncode == 0, first.stderr
    [inst] = alive(moto_ec2)
    instance_id = inst["InstanceId"]
    assert tags_of(inst)[TAG_SCALER] == FLEET
    assert "echo from-the-server-vault" in user_data(moto_ec2, instance_id)

    worker = f"dynamic_aws:cpu:{instance_id}"
    fake_clearml.register_worker(worker, ["cpu"])
    assert fake_clearml.take_task(worker)
    fake_clearml.finish_task(worker)

    second = run_cli("run", "--provider", "aws", "--config", str(config), "--once")
    assert second.returncode == 0, second.stderr
    assert state_of(moto_ec2, instance_id) in ("shutting-down", "terminated")
    assert alive(moto_ec2) == []
    assert ec2_proxy.count("RunInstances") == 1 and ec2_proxy.count("TerminateInstances") == 1

    console = run_cli("console-output", "--provider", "aws", "--config", str(config), instance_id)
    assert console.returncode == 0, console.stderr
    assert console.stdout.startswith("Linux version")
