"""The real clearml-agent, end to end (issue 14, item 15).

The loop launches a machine for a waiting task (moto behind the EC2 proxy, the fake ClearML
server through the real SDK); the init script it gave that machine (its EC2 user data, as
launched) then runs **for real** on this machine: no docker, the instance metadata service
(IMDSv2) faked on loopback, ``shutdown``/``poweroff`` (and ``apt-get``) stubbed, a scratch
HOME, TMPDIR and agent venv. It installs the real ``clearml-agent`` from the package index
(the default ``agent_version`` range) and starts ``clearml-agent daemon --queue Q`` against
the fake ClearML server. Then:

* the agent registers under the worker id the scaler expects, ``<prefix>:<resource>:<instance id>``;
* the loop, against the same servers, counts that machine as idle capacity (and launches nothing);
* a queued task is pulled by the agent and shown running (``tasks.started``, a status report
  naming the task) by that worker;
* when the agent exits, the script shuts the machine down.

Marked ``network`` (it needs the package index): ``pytest -m "not slow and not network"`` skips
it offline; with the index unreachable it skips, except under ``CI=true``, where it fails. The
pip cache of the user running the tests is reused (PIP_CACHE_DIR); the install takes ~15-40 s.
"""

from __future__ import annotations

import base64
import gzip
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import load_config
from scaler.config.model import DEFAULT_AGENT_VERSION
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.fakes.ec2_metadata import FakeIMDS
from tests.support.aws import register_ami

pytestmark = pytest.mark.network

PREFIX = "dyn_real"
QUEUE = "cpu-real"
REQUIREMENT = "clearml-agent" + DEFAULT_AGENT_VERSION
INSTALL_TIMEOUT = 300.0  # pip install of clearml-agent, then the daemon's start
TASK_TIMEOUT = 120.0

STUB = """#!/bin/bash
printf '%s\\n' "$*" >> {log}
{body}
"""


def require_package_index() -> None:
    """Skip when the package index cannot be reached, unless in CI (CI=true), where it fails."""
    try:
        found = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "clearml-agent"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        reason = "" if found.returncode == 0 else (found.stderr.strip().splitlines() or ["pip failed"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        message = f"the package index cannot be reached ({reason}); run with -m 'not slow and not network' offline"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def pip_cache() -> str:
    """The pip cache of the user running the tests (HOME is a scratch directory here)."""
    return os.environ.get("PIP_CACHE_DIR") or str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip")


def machine_env(tmp_path: Path, stubs: Path, imds: FakeIMDS) -> dict[str, str]:
    """This machine's environment as a cloud machine's boot would see it: nothing of the scaler's
    ClearML or AWS settings, the dev venv off PATH, the stubs first."""
    dropped = ("CLEARML_", "TRAINS_", "AWS_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p != venv_bin]
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    for folder in (home, tmp):
        folder.mkdir(exist_ok=True)
    return {
        **env,
        "PATH": os.pathsep.join([str(stubs), *path]),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "SCALER_AGENT_VENV": str(tmp_path / "agent-venv"),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        "PIP_CACHE_DIR": pip_cache(),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "LC_ALL": "C.UTF-8",
    }


def make_stubs(folder: Path) -> Path:
    """``shutdown`` and ``poweroff`` record their arguments (the machine would stop); ``apt-get``
    refuses (nothing is installed on this machine)."""
    folder.mkdir()
    bodies = {
        "shutdown": "exit 0",
        "poweroff": "exit 0",
        "apt-get": 'echo "apt-get is stubbed in this test: $*" >&2; exit 100',
    }
    for name, body in bodies.items():
        path = folder / name
        path.write_text(STUB.format(log=shlex.quote(str(folder / f"{name}.calls")), body=body))
        path.chmod(0o755)
    return folder


def write_config(tmp_path: Path, ami: str) -> Path:
    path = tmp_path / "real-agent.conf"
    path.write_text(f"""
scaler {{
  name = "real-agent-fleet"
  workers_prefix = "{PREFIX}"
  default_docker_image = none
  max_idle_time = 15m
  stuck_timeout = 20m
}}
aws {{ region = "us-east-1", use_iam_role = true }}
resources = [
  {{ name = "cpu", queue = "{QUEUE}", max_instances = 2,
     aws {{ instance_type = "t3.micro", ami_id = "{ami}" }} }}
]
""")
    return path


def user_data(moto_ec2: Any, instance_id: str) -> str:
    value = moto_ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    raw = base64.b64decode(value)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def wait_for(what: str, check: Callable[[], Any], timeout: float, machine: subprocess.Popen[str], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if machine.poll() is not None:
            pytest.fail(f"the init script ended ({machine.returncode}) before {what}:\n{log.read_text()[-6000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f}s; the machine's console:\n{log.read_text()[-6000:]}")


def agent_daemons(machine: subprocess.Popen[str]) -> list[Any]:
    import psutil

    found = []
    for child in psutil.Process(machine.pid).children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "clearml-agent" in line and " daemon " in f"{line} ":
            found.append(child)
    return found


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Machines (init scripts) started by the test, each in a session of its own: whatever they
    started is ended with them."""
    machines: list[subprocess.Popen[str]] = []
    yield machines
    for machine in machines:
        if machine.poll() is None:
            os.killpg(machine.pid, signal.SIGKILL)
            machine.wait(timeout=30)


def test_the_real_agent_registers_is_counted_as_idle_capacity_and_runs_a_queued_task(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
    started: list[subprocess.Popen[str]],
) -> None:
    require_package_index()
    host = PluginHost()
    loaded = load_config(write_config(tmp_path, register_ami(moto_ec2)), host, provider="aws")
    assert loaded.ok and loaded.config is not None, [p.render() for p in loaded.errors]
    now = [time.time()]
    loop = Reconciler(loaded.config, host, host.provider("aws"), ClearMLSource(timeout=5), clock=lambda: now[0])

    # a waiting task: the loop launches one machine, with the rendered init script as its user data
    waking = fake_clearml.enqueue(QUEUE, "wakes the fleet")
    report = loop.tick()
    assert report.launched["cpu"] == 1, report
    [reservation] = moto_ec2.describe_instances()["Reservations"]
    instance_id = reservation["Instances"][0]["InstanceId"]
    script = user_data(moto_ec2, instance_id)
    assert "--docker" not in script and f"--queue {QUEUE}" in script
    # that task is taken back, so the machine's agent starts idle
    from clearml.backend_api.session.client import APIClient

    APIClient().tasks.dequeue(task=waking)
    assert fake_clearml.pending(QUEUE) == 0

    # the machine boots: its init script runs here, for real
    stubs = make_stubs(tmp_path / "stubs")
    console = tmp_path / "console.log"
    (tmp_path / "init.sh").write_text(script)
    worker_id = f"{PREFIX}:cpu:{instance_id}"
    with FakeIMDS(instance_id) as imds, console.open("w") as out:
        machine = subprocess.Popen(
            ["bash", str(tmp_path / "init.sh")],
            env=machine_env(tmp_path, stubs, imds),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(machine)

        # the real agent registers under the worker id the scaler expects
        worker = wait_for(
            f"worker {worker_id}", lambda: fake_clearml.workers().get(worker_id), INSTALL_TIMEOUT, machine, console
        )
        assert [q["name"] for q in worker["queues"]] == [QUEUE], worker
        assert ("PUT", "/latest/api/token") in imds.requests  # the id came from IMDSv2

        # the scaler, against the same servers, counts that machine as idle capacity
        now[0] += 60
        report = loop.tick()
        assert report.clearml_ok and report.cloud_ok, report
        assert report.fleet["cpu"] == {"alive": 1, "booting": 0, "idle": 1, "busy": 0}, report
        assert not report.launched and not report.terminated, report

        # a queued task is pulled by that agent and shown running by its worker
        task_id = fake_clearml.enqueue(QUEUE, "pulled by the real agent")
        wait_for(
            "task pulled by the agent",
            lambda: fake_clearml.task(task_id)["status"] != "queued",
            TASK_TIMEOUT,
            machine,
            console,
        )
        wait_for(
            "status report naming the task",
            lambda: any(
                body.get("worker") == worker_id and body.get("task") == task_id
                for body in fake_clearml.calls_to("workers.status_report")
            ),
            TASK_TIMEOUT,
            machine,
            console,
        )
        started_calls = [b for b in fake_clearml.calls_to("tasks.started") if b.get("task") == task_id]
        assert started_calls, fake_clearml.calls_to("tasks.started")
        assert fake_clearml.task(task_id)["last_worker"] == worker_id

        # the agent exits: the script shuts the machine down
        daemons = wait_for("agent daemon process", lambda: agent_daemons(machine), 30, machine, console)
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        machine.wait(timeout=120)

    text = console.read_text()
    assert f"clearml-scaler: worker id {worker_id}" in text
    assert f"clearml-scaler: installed {REQUIREMENT}" in text
    assert "clearml-agent exited with status" in text
    assert (stubs / "shutdown.calls").read_text().splitlines() == ["-h now"], text[-4000:]
    assert not (stubs / "apt-get.calls").exists()  # python3 -m venv worked: nothing was installed here
