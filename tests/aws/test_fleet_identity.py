"""Two deployments in one AWS account never touch each other's machines.

Two teams, each with its own ClearML server, run the scaler with the default settings (same
``scaler.name``) in one account: moto behind the EC2 proxy, real boto3, two fake ClearML
servers with the real SDK, and the real ``scaler run`` command line. Before fleet identities,
each scaler listed the other's machines as its own (same name tag) and terminated them as
orphans on its first tick. Also: machines tagged by today's scheme (name only) are adopted
(tagged with the identity) only when a worker on the fleet's own ClearML server names them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaler.types import TAG_FLEET, TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import DUMMY_AMI, EC2Proxy, MotoServer
from tests.support.aws import tags_of
from tests.support.cli import run_cli, start_cli

DEFAULT_NAME = "clearml-scaler"
PREFIX = "dynamic_worker"  # the default workers_prefix
RUN_FOR = 20.0  # seconds both scalers run side by side


def write_config(path: Path, resource: str, queue: str) -> Path:
    """The defaults a team would start from: no scaler.name, no workers_prefix."""
    path.write_text(f"""
scaler {{ polling_interval = 1s, max_idle_time = 15m, stuck_timeout = 20m }}
aws {{ region = "us-east-1", use_iam_role = true }}
resources = [
  {{ name = "{resource}", queue = "{queue}", max_instances = 3, aws {{ instance_type = "t3.micro", ami_id = "{DUMMY_AMI}" }} }}
]
""")
    return path


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str], ec2_proxy: EC2Proxy) -> Any:
    return moto_server.client("ec2")


@pytest.fixture
def second_clearml() -> Iterator[FakeClearML]:
    """The other team's ClearML server (same default company id, as two self-hosted servers have)."""
    fake = FakeClearML().start()
    try:
        yield fake
    finally:
        fake.stop()


def running(moto_ec2: Any) -> dict[str, dict[str, str]]:
    """Instance id -> tags of every pending or running instance in the account."""
    pages = moto_ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return {i["InstanceId"]: tags_of(i) for p in pages for r in p["Reservations"] for i in r["Instances"]}


def scaler_args(config: Path, state: Path) -> list[str]:
    return ["run", "--provider", "aws", "--config", str(config), "--state-file", str(state), "--no-server-vault"]


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err
    return err


def test_two_default_named_deployments_in_one_account_never_reap_each_other(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    second_clearml: FakeClearML,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    env_a = dict(os.environ)  # the fake_clearml fixture points the environment at server A
    env_b = {**env_a, **second_clearml.env()}
    config_a = write_config(tmp_path / "a.conf", "cpu", "cpu")
    config_b = write_config(tmp_path / "b.conf", "gpu", "gpu")

    # team B: two tasks, two machines, both busy (their agents report to server B)
    for _ in range(2):
        second_clearml.enqueue("gpu")
    launched = run_cli(*scaler_args(config_b, tmp_path / "b.json"), "--once", env=env_b)
    assert launched.returncode == 0, launched.stderr
    fleet_b = set(running(moto_ec2))
    assert len(fleet_b) == 2
    for instance_id in fleet_b:
        worker = f"{PREFIX}:gpu:{instance_id}"
        second_clearml.register_worker(worker, ["gpu"])
        assert second_clearml.take_task(worker)
    # team A: one task, one machine, still booting (no worker yet)
    fake_clearml.enqueue("cpu")
    launched = run_cli(*scaler_args(config_a, tmp_path / "a.json"), "--once", env=env_a)
    assert launched.returncode == 0, launched.stderr
    fleet_a = set(running(moto_ec2)) - fleet_b
    assert len(fleet_a) == 1
    before = running(moto_ec2)
    identities = {tags[TAG_FLEET] for tags in before.values()}
    assert {tags[TAG_SCALER] for tags in before.values()} == {DEFAULT_NAME} and len(identities) == 2
    ec2_proxy.clear()

    # both run side by side; to each, the other's machines are of an unconfigured resource
    procs = [
        start_cli(*scaler_args(config_a, tmp_path / "a.json"), "--log-level", "INFO", env=env_a),
        start_cli(*scaler_args(config_b, tmp_path / "b.json"), "--log-level", "INFO", env=env_b),
    ]
    time.sleep(RUN_FOR)
    logs = [stop(proc) for proc in procs]

    after = running(moto_ec2)
    assert after == before, f"machines gone: {sorted(set(before) - set(after))}"
    assert ec2_proxy.count("TerminateInstances") == 0 and ec2_proxy.count("RunInstances") == 0
    assert ec2_proxy.count("DescribeInstances") >= 10  # both really ran many ticks
    for log in logs:
        assert "scaler.name is the default 'clearml-scaler'" in log
        assert "fleet identity" in log
        assert " terminate " not in log
    assert all(second_clearml.workers()[f"{PREFIX}:gpu:{i}"]["task"] for i in fleet_b)  # still busy

    # `scaler status` of team A shows team B's machines, as foreign
    status = run_cli("status", "--provider", "aws", "--config", str(config_a), "--no-server-vault", "--format", "json")
    assert status.returncode == 0, status.stderr
    owners = {row["id"]: row["owner"] for row in json.loads(status.stdout)["instances"]}
    assert owners == {**{i: "foreign" for i in fleet_b}, **{i: "own" for i in fleet_a}}


def test_legacy_machines_are_adopted_only_on_evidence(
    tmp_path: Path, fake_clearml: FakeClearML, moto_ec2: Any, ec2_proxy: EC2Proxy
) -> None:
    """Tagged by today's scheme (the name, no identity): the machine whose worker is on this
    ClearML server is tagged with the fleet identity (CreateTags) and kept; the other, maybe
    another deployment's still on an older version, is left alone, and reported."""
    config = write_config(tmp_path / "a.conf", "cpu", "cpu")
    old_tags = {TAG_SCALER: DEFAULT_NAME, TAG_RESOURCE: "cpu", TAG_LAUNCH_TOKEN: "legacy"}
    ours, theirs = ec2_proxy.run_foreign_instances(2, old_tags)
    worker = f"{PREFIX}:cpu:{ours}"
    fake_clearml.register_worker(worker, ["cpu"])
    assert fake_clearml.take_task(worker) is None  # idle: nothing waits
    fake_clearml.enqueue("cpu")
    assert fake_clearml.take_task(worker)  # busy

    first = run_cli(*scaler_args(config, tmp_path / "a.json"), "--once", "--log-level", "INFO")
    assert first.returncode == 0, first.stderr
    tags = running(moto_ec2)
    assert set(tags) == {ours, theirs}
    assert TAG_FLEET in tags[ours] and TAG_FLEET not in tags[theirs]
    assert tags[ours][TAG_LAUNCH_TOKEN] == "legacy"  # the other tags are kept
    assert f"adopt 1 legacy instance(s) of scaler '{DEFAULT_NAME}'" in first.stderr and ours in first.stderr
    assert f"instance {theirs} carries this scaler's name" in first.stderr
    assert ec2_proxy.count("CreateTags") == 1

    ec2_proxy.clear()
    second = run_cli(*scaler_args(config, tmp_path / "a.json"), "--once", "--log-level", "INFO")
    assert second.returncode == 0, second.stderr
    assert ec2_proxy.count("CreateTags") == 0  # adopted once
    assert set(running(moto_ec2)) == {ours, theirs}
