"""Taking over the fleet of ClearML's own autoscaler, end to end: moto behind the EC2 proxy
(real boto3), the fake ClearML server (real clearml SDK) and the real command line.

Three machines launched the way ClearML's autoscaler launches them (its tags only, none of
ours), each with its agent registered as ``<prefix>:<resource>:<instance type>:<instance id>``:
one busy, one idle, one of a resource the new configuration does not have; a fourth worker
names a machine of another region. ``scaler import`` writes the configuration from ClearML's
YAML, ``scaler adopt`` tags the two that map, and a real ``scaler run`` then terminates the
idle one after ``max_idle_time``, keeps the busy one, and never touches the unmapped one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from scaler.types import TAG_FLEET, TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import DUMMY_AMI, EC2Proxy, MotoServer
from tests.support.aws import describe, tags_of
from tests.support.cli import run_cli, start_cli

PREFIX = "dynamic_worker"

#: ClearML's aws_autoscaler.yaml of the old fleet; old_gpu is no longer in it
CLEARML_YAML = {
    "hyper_params": {
        "cloud_credentials_key": "",
        "cloud_credentials_secret": "",
        "cloud_credentials_region": "us-east-1",
        "use_credentials_chain": True,
        "git_user": "",
        "git_pass": "",
        "default_docker_image": "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "max_idle_time_min": 15,
        "polling_interval_time_min": 5,
        "max_spin_up_time_min": 30,
        "workers_prefix": PREFIX,
    },
    "configurations": {
        "resource_configurations": {
            "gpu": {"instance_type": "g4dn.xlarge", "is_spot": False, "ami_id": DUMMY_AMI, "tags": "team=ml"},
            "cpu": {"instance_type": "t3.large", "is_spot": False, "ami_id": DUMMY_AMI, "tags": "team=ml"},
        },
        "queues": {"gpu": [["gpu", 2]], "cpu": [["cpu", 2]]},
        "extra_clearml_conf": "",
        "extra_vm_bash_script": "",
    },
}


def clearml_machine(moto_server: MotoServer, resource: str, instance_type: str, region: str = "us-east-1") -> str:
    """A machine as ClearML's AWS driver launches it: its resource's tags, nothing of ours."""
    ec2 = moto_server.client("ec2", region=region)
    found = ec2.run_instances(
        ImageId=DUMMY_AMI,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "ml"}]}],
    )
    return str(found["Instances"][0]["InstanceId"])


def state_of(moto_server: MotoServer, instance_id: str) -> str:
    [found] = describe(moto_server.client("ec2"), [instance_id])
    return str(found["State"]["Name"])


def write_config(tmp_path: Path) -> Path:
    source = tmp_path / "aws_autoscaler.yaml"
    source.write_text(yaml.safe_dump(CLEARML_YAML))
    output = tmp_path / "scaler.conf"
    imported = run_cli("import", str(source), "-o", str(output))
    assert imported.returncode == 0, imported.stderr
    assert "valid (provider aws, 2 resource(s))" in imported.stderr
    # the new fleet decides every second and lets a machine idle for 3 seconds
    text = output.read_text().replace("polling_interval = 5m", "polling_interval = 1s")
    output.write_text(text.replace("max_idle_time = 15m", "max_idle_time = 3s"))
    return output


def test_adopt_then_run_manages_the_old_fleet(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    moto_server: MotoServer,
    aws_env: dict[str, str],
    ec2_proxy: EC2Proxy,
) -> None:
    busy = clearml_machine(moto_server, "gpu", "g4dn.xlarge")
    idle = clearml_machine(moto_server, "cpu", "t3.large")
    unmapped = clearml_machine(moto_server, "old_gpu", "p3.2xlarge")
    elsewhere = clearml_machine(moto_server, "cpu", "t3.large", region="us-west-2")
    for queue in ("gpu", "cpu", "old_gpu"):
        fake_clearml.create_queue(queue)
    workers = {
        busy: f"{PREFIX}:gpu:g4dn.xlarge:{busy}",
        idle: f"{PREFIX}:cpu:t3.large:{idle}",
        unmapped: f"{PREFIX}:old_gpu:p3.2xlarge:{unmapped}",
        elsewhere: f"{PREFIX}:cpu:t3.large:{elsewhere}",
    }
    for worker in workers.values():
        fake_clearml.register_worker(worker, [worker.split(":")[1]])
    fake_clearml.enqueue("gpu", "training")
    assert fake_clearml.take_task(workers[busy])
    config = write_config(tmp_path)
    adopt = ("adopt", "--provider", "aws", "--config", str(config), "--from-prefix", PREFIX)

    dry = run_cli(*adopt, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would adopt {busy} as resource 'gpu' (busy; worker {workers[busy]})" in dry.stdout
    assert f"would adopt {idle} as resource 'cpu' (idle; worker {workers[idle]})" in dry.stdout
    assert ec2_proxy.count("CreateTags") == 0
    assert TAG_SCALER not in tags_of(describe(moto_server.client("ec2"), [busy])[0])

    done = run_cli(*adopt)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"adopted {busy} as resource 'gpu' (busy; worker {workers[busy]})" in out
    assert f"adopted {idle} as resource 'cpu' (idle; worker {workers[idle]})" in out
    assert f"left {unmapped}: no mapping: resource 'old_gpu' is not in the configuration" in out
    assert f"left {elsewhere}: not found by provider 'aws' where the configuration looks" in out
    assert "adopted 2, already this fleet's 0, left 2" in out
    adopted_tags = {i["InstanceId"]: tags_of(i) for i in describe(moto_server.client("ec2"), [busy, idle, unmapped])}
    for instance_id, resource in ((busy, "gpu"), (idle, "cpu")):
        tags = adopted_tags[instance_id]
        assert (tags[TAG_SCALER], tags[TAG_RESOURCE], tags["team"]) == (PREFIX, resource, "ml")
        assert len(tags[TAG_FLEET]) == 16 and tags[TAG_LAUNCH_TOKEN]
    assert adopted_tags[unmapped] == {"team": "ml"}  # untouched

    again = run_cli(*adopt)
    assert again.returncode == 0 and "adopted 0, already this fleet's 2, left 2" in again.stdout

    # a real `scaler run`: the idle machine goes after max_idle_time, the busy one stays
    started = time.monotonic()
    proc = start_cli("run", "--provider", "aws", "--config", str(config), "--log-level", "INFO")
    try:
        deadline = time.monotonic() + 60
        while state_of(moto_server, idle) not in ("shutting-down", "terminated") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert state_of(moto_server, idle) in ("shutting-down", "terminated")
        assert time.monotonic() - started >= 3  # not before max_idle_time
        time.sleep(2.5)  # more ticks: the busy machine is never idle, the unmapped one never ours
        assert state_of(moto_server, busy) == "running"
        assert state_of(moto_server, unmapped) == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    log = stdout + stderr
    assert "Traceback" not in log
    assert idle in log and "idle" in log
    # the unmapped machine is never listed: its worker is reported as counting for nothing, once
    mentions = [line for line in log.splitlines() if unmapped in line]
    assert len(mentions) == 1 and "it counts for nothing and is left alone" in mentions[0], mentions
    assert ec2_proxy.count("RunInstances") == 0  # nothing waits in the queues: nothing launched
    terminations = [r for r in ec2_proxy.requests if r.get("Action") == "TerminateInstances"]
    assert [v for r in terminations for k, v in r.items() if k.startswith("InstanceId")] == [idle]
