"""Running as a ClearML task, against the fake ClearML server: ``scaler run --remote`` creates
the task with the configuration and enqueues it; run the way clearml-agent runs it, the scaler
reads its configuration from the task, reports scalars, logs its decisions to the task's
console and follows the task's ``log_level`` property."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clearml.backend_api.session.client import APIClient
from typer.testing import CliRunner

from scaler import __version__
from scaler.clearml.task import TaskReporter
from scaler.cli import app
from scaler.config.loading import build_config
from scaler.engine.policy import TerminationKind
from scaler.engine.reconciler import TickReport
from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_remote

runner = CliRunner()


def write_config(tmp_path: Path, max_instances: int = 2) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""# the remote fleet
scaler {{ name = "remote-fleet", workers_prefix = "rem", polling_interval = 1s }}
simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
resources = [ {{ name = "cpu", queue = "cpu", max_instances = {max_instances} }} ]
"""
    )
    return path


def create(fake: FakeClearML, config: Path, *extra: str) -> dict[str, Any]:
    result = run_remote(config, *extra)
    assert result.exit_code == 0, result.output
    [task] = fake.tasks().values()
    assert f"created task {task['id']} 'remote-fleet' in project 'DevOps' and enqueued it in 'services'" in (
        result.output
    )
    return task


def test_remote_creates_the_task_with_its_configuration_and_enqueues_it(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    fake = fake_clearml
    fake.create_queue("services")
    config = write_config(tmp_path)
    task = create(fake, config, "--log-level", "warning", "--dry-run")
    assert task["name"] == "remote-fleet" and task["type"] == "service"
    assert [p.name for p in APIClient().projects.get_all(id=[task["project"]])] == ["DevOps"]
    assert task["configuration"]["scaler"]["value"] == config.read_text()  # as written, comments included
    assert task["configuration"]["scaler"]["type"] == "HOCON"
    assert task["hyperparams"]["properties"]["log_level"]["value"] == "WARNING"
    # where ClearML users look (issue 14, item 6): the scalar settings and the resources, editable
    general = {name: p["value"] for name, p in task["hyperparams"]["General"].items()}
    assert general == {"name": "remote-fleet", "workers_prefix": "rem", "polling_interval": "1s"}
    assert '"max_instances": 2' in task["configuration"]["resources"]["value"]
    assert task["script"]["entry_point"] == "-m scaler.cli run --provider simulated --log-format text --dry-run"
    assert f"clearml-scaler=={__version__}" in task["script"]["requirements"]["pip"]
    assert task["status"] == "queued"
    assert [e["task"] for e in fake.queues()["services"]["entries"]] == [task["id"]]


def test_remote_needs_the_queue_and_a_valid_config(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = ["run", "--remote", "--provider", "simulated", "--config", str(config), "--package", "clearml-scaler"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "there is no queue named 'services'" in result.output
    config.write_text("scaler { name = 1 2 3 }")
    fake_clearml.create_queue("services")
    assert runner.invoke(app, args).exit_code != 0
    assert not fake_clearml.tasks()


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the scaler exited ({proc.returncode}) before {what}: {proc.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_running_inside_the_task(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake = fake_clearml
    fake.create_queue("services")
    task_id = create(fake, write_config(tmp_path))["id"]
    client = APIClient()
    # the operator edits the configuration in the UI: one cpu machine at most instead of two
    edited = write_config(tmp_path, max_instances=1).read_text()
    client.tasks.edit_configuration(task=task_id, configuration=[{"name": "scaler", "value": edited, "type": "HOCON"}])
    (tmp_path / "scaler.conf").unlink()  # not read: the task's configuration is
    for _ in range(3):
        fake.enqueue("cpu")
    # an agent on 'services' takes the task and runs its entry point with CLEARML_TASK_ID set
    fake.register_worker("services-agent", ["services"])
    assert fake.take_task("services-agent") == task_id
    entry = fake.task(task_id)["script"]["entry_point"]
    env = dict(os.environ, CLEARML_TASK_ID=task_id, XDG_CACHE_HOME=str(tmp_path / "cache"))
    # the agent captures the console of the process; the SDK's own simulation of that does the same here
    env["CLEARML_SIMULATE_REMOTE_TASK"] = "1"
    proc = subprocess.Popen(
        [sys.executable, *shlex.split(entry)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def scalars(title: str, series: str) -> list[float]:
        return [
            e["value"]
            for e in fake.events(task_id, type="training_stats_scalar")
            if e.get("metric") == title and e.get("variant") == series
        ]

    def console() -> str:
        return "\n".join(str(e.get("msg", "")) for e in fake.events(task_id, type="log"))

    try:
        wait_for("the first scalars", lambda: len(scalars("pending tasks", "cpu")) >= 2, proc)
        assert scalars("pending tasks", "cpu")[0] == 3
        assert scalars("launches", "cpu")[0] == 1  # the edited configuration: max_instances = 1
        assert scalars("resource cpu", "running")[1] == 1
        assert set(scalars("terminations", "idle")) == {0}
        assert "launch 1 x cpu (on-demand): queue 'cpu' has 3 pending tasks" in console()
        assert "tick: pending" not in console()  # INFO: no per-tick debug summary

        client.tasks.edit_hyper_params(
            task=task_id, hyperparams=[{"section": "properties", "name": "log_level", "value": "DEBUG"}]
        )
        wait_for("DEBUG to take effect", lambda: "tick: pending {'cpu': " in console(), proc)
        assert "log level INFO -> DEBUG (task property log_level)" in console()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "scaler stopped; the fleet is left as it is" in output
    assert "Traceback" not in output
    # the task's configuration (it may hold secrets) is copied for the loader, readable by its owner only
    copied = tmp_path / "cache" / "clearml-scaler" / f"task-{task_id}.conf"
    assert copied.read_text() == edited and stat.S_IMODE(copied.stat().st_mode) == 0o600


class _Logger:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, str, float, int]] = []

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        self.scalars.append((title, series, value, iteration))

    def flush(self) -> None:
        pass


class _Task:
    """The part of a clearml Task the reporter uses."""

    def __init__(self) -> None:
        self.logger = _Logger()

    def get_logger(self) -> _Logger:
        return self.logger

    def get_last_iteration(self) -> int:
        return 0

    def get_user_properties(self, value_only: bool = False) -> dict[str, Any]:
        return {}


def test_every_termination_kind_is_reported_every_tick() -> None:
    """The ``terminations`` series come from TerminationKind: a kind the policy can decide is
    never missing from the task's scalars (``stopped`` once was)."""
    config = build_config(
        {
            "scaler": {"name": "kinds", "workers_prefix": "rem"},
            "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 1}],
        },
        provider="simulated",
    )
    task = _Task()
    reporter = TaskReporter(task, config)

    def reported(tick: int) -> dict[str, float]:
        return {s: value for title, s, value, it in task.logger.scalars if title == "terminations" and it == tick}

    reporter(TickReport(now=1.0))  # nothing terminated: every kind is plotted at 0
    assert reported(0) == {kind.value: 0 for kind in TerminationKind}
    reporter(TickReport(now=2.0, terminated=Counter({TerminationKind.STOPPED.value: 2})))
    assert reported(1) == {kind.value: 2 if kind is TerminationKind.STOPPED else 0 for kind in TerminationKind}


MULTI_CLOUD = """
scaler { name = "multi-fleet", workers_prefix = "mc", polling_interval = 30s }
aws { region = "us-east-1", use_iam_role = true }
gcp { project = "my-ml-project"%s }
resources = [
  { name = "a10", queue = "gpu", max_instances = 2, aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } }
  { name = "l4", queue = "gpu", max_instances = 2, provider = gcp,
    gcp { machine_type = "g2-standard-8", zones = ["us-central1-a"],
          image = "projects/debian-cloud/global/images/family/debian-12" } }
]
"""


def test_remote_runs_a_fleet_across_clouds_and_keeps_each_clouds_secrets_off_the_task(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    fake = fake_clearml
    fake.create_queue("services")
    config = tmp_path / "multi.conf"
    args = ["run", "--remote", "--config", str(config), "--queue", "services", "--package", "clearml-scaler"]
    # a GCP service-account key written in clear is refused, with the GCP way to keep it off the task
    key = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x"}'
    config.write_text(MULTI_CLOUD % f', credentials_json = """{key}"""')
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert "gcp.credentials_json" in refused.output and "auto_scaler.v1.gcp" in refused.output
    assert "BEGIN PRIVATE KEY" not in refused.output
    assert fake.tasks() == {}
    # without it: one task runs both clouds (no --provider in its entry point)
    config.write_text(MULTI_CLOUD % "")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [task] = fake.tasks().values()
    assert task["script"]["entry_point"] == "-m scaler.cli run --log-format text"
    assert "provider aws + gcp" in task["configuration"]["scaler"]["description"]
