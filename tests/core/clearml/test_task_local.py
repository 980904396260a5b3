"""The task as ClearML users know it (issue 14, item 6), against the fake ClearML server with the
real clearml SDK: ``scaler run --task`` creates the scaler's task and runs here reporting to it
(HYPER PARAMETERS > General, the ``resources`` object, scalars, console); a clone of that task,
edited in General and ``resources`` and run the way clearml-agent runs it, runs with the edits,
or stops at start on an invalid one; the console output of a stuck machine becomes a task
artifact, its secrets masked."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clearml.backend_api.session.client import APIClient

from scaler.engine.reconciler import CONSOLE_KEPT as KEPT
from scaler.types import fleet_identity
from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli

GIT_TOKEN = "ghp_localTaskLeak0123456789abcdefABCD"


def write_config(tmp_path: Path, max_instances: int = 2) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""# the scaler of the local task
scaler {{
  name = "local-fleet", workers_prefix = "loc", polling_interval = 1s, max_idle_time = 15m
  git {{ user = "bot", password = ${{?SCALER_GIT_TOKEN}} }}
}}
simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
resources = [ {{ name = "cpu", queue = "cpu", max_instances = {max_instances} }} ]
"""
    )
    return path


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    # the fixture pointed the SDK at the fake (CLEARML_* variables, HOME); the cache is the test's own
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), SCALER_GIT_TOKEN=GIT_TOKEN, **extra)


def run_task_here(tmp_path: Path, config: Path, *extra: str) -> tuple[str, str]:
    proc = run_cli(
        "run",
        "--task",
        "--once",
        "--provider",
        "simulated",
        "--config",
        str(config),
        "--no-server-vault",
        *extra,
        env=environment(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output, proc.stdout.split("created task ", 1)[1].split()[0]


def console(fake: FakeClearML, task_id: str) -> str:
    return "\n".join(str(e.get("msg", "")) for e in fake.events(task_id, type="log"))


def scalars(fake: FakeClearML, task_id: str, title: str, series: str) -> list[float]:
    return [
        e["value"]
        for e in fake.events(task_id, type="training_stats_scalar")
        if e.get("metric") == title and e.get("variant") == series
    ]


def cloud(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "cloud.json"
    return json.loads(path.read_text())["instances"] if path.exists() else []


def test_run_task_creates_the_task_and_reports_to_it(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake = fake_clearml
    for _ in range(3):
        fake.enqueue("cpu")
    config = write_config(tmp_path)
    output, task_id = run_task_here(tmp_path, config)
    assert f"created task {task_id} 'local-fleet' in project 'DevOps'; this scaler reports to it" in output
    task = fake.task(task_id)
    assert task["name"] == "local-fleet" and task["type"] == "service"
    assert task["queue"] is None  # run here, not enqueued
    # where ClearML users look: the scalar settings (no secret: git.password is not a scalar of
    # 'scaler' and is a ${?VAR} reference anyway) and the resources, as --remote shows them
    general = {name: p["value"] for name, p in task["hyperparams"]["General"].items()}
    assert general == {
        "name": "local-fleet",
        "workers_prefix": "loc",
        "polling_interval": "1s",
        "max_idle_time": "900s",
    }
    assert json.loads(task["configuration"]["resources"]["value"]) == [
        {"name": "cpu", "queue": "cpu", "max_instances": 2}
    ]
    assert task["configuration"]["scaler"]["value"] == config.read_text()
    assert task["hyperparams"]["properties"]["log_level"]["value"] == "INFO"
    # a clone runs on an agent as a --remote task does: the same entry point
    assert task["script"]["entry_point"] == (
        "-m scaler.cli run --provider simulated --log-format text --no-server-vault"
    )
    # scalars and the console, as inside an agent's task
    assert scalars(fake, task_id, "pending tasks", "cpu") == [3]
    assert scalars(fake, task_id, "launches", "cpu") == [2]
    log = console(fake, task_id)
    assert "launch 2 x cpu (on-demand): queue 'cpu' has 3 pending tasks" in log
    assert f"reporting to ClearML task {task_id}" in log
    assert len(cloud(tmp_path)) == 2
    assert GIT_TOKEN not in output + log + json.dumps(task)


def clone_and_run(
    fake: FakeClearML, tmp_path: Path, task_id: str, general: dict[str, str], resources: str | None
) -> tuple[Any, str, str]:
    """Clone the task with the SDK (as the UI's Clone does), edit its General hyper-parameters and
    'resources' object, enqueue it, and run its entry point the way clearml-agent does."""
    from clearml import Task

    clone = Task.clone(source_task=task_id).id
    client = APIClient()
    if general:
        client.tasks.edit_hyper_params(
            task=clone,
            hyperparams=[{"section": "General", "name": name, "value": value} for name, value in general.items()],
        )
    if resources is not None:
        client.tasks.edit_configuration(
            task=clone, configuration=[{"name": "resources", "value": resources, "type": "JSON"}]
        )
    fake.create_queue("services")
    client.tasks.enqueue(task=clone, queue_name="services")
    fake.register_worker("services-agent", ["services"])
    assert fake.take_task("services-agent") == clone
    entry = fake.task(clone)["script"]["entry_point"]
    assert entry.startswith("-m scaler.cli run ")  # the module run_cli runs
    proc = run_cli(
        *shlex.split(entry)[2:],  # "-m scaler.cli" is run_cli's own
        "--once",
        env=environment(tmp_path, CLEARML_TASK_ID=clone, CLEARML_SIMULATE_REMOTE_TASK="1"),
        cwd=tmp_path,
        timeout=120,
    )
    return proc, clone, proc.stdout + proc.stderr


def test_an_edited_clone_runs_with_the_edits(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake = fake_clearml
    config = write_config(tmp_path)
    _, task_id = run_task_here(tmp_path, config)  # nothing waits: nothing launched
    assert cloud(tmp_path) == []
    for _ in range(3):
        fake.enqueue("cpu")
    # in the UI: General > polling_interval 1s -> 7s, and one cpu machine at most instead of two
    proc, clone, output = clone_and_run(
        fake,
        tmp_path,
        task_id,
        {"polling_interval": "7s"},
        json.dumps([{"name": "cpu", "queue": "cpu", "max_instances": 1}], indent=2),
    )
    assert proc.returncode == 0, output
    log = console(fake, clone)
    assert "task edits applied over its configuration: scaler.polling_interval, resources" in log
    assert "polling every 7s" in log
    assert "launch 1 x cpu (on-demand): queue 'cpu' has 3 pending tasks" in log
    assert scalars(fake, clone, "launches", "cpu") == [1]
    assert len(cloud(tmp_path)) == 1


def test_an_invalid_edit_stops_the_clone_at_start(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake = fake_clearml
    config = write_config(tmp_path)
    _, task_id = run_task_here(tmp_path, config)
    for _ in range(3):
        fake.enqueue("cpu")
    proc, clone, output = clone_and_run(
        fake, tmp_path, task_id, {"max_idle_time": "soon"}, '[ { name = "cpu", queue = "cpu", max_instances = -1 } ]'
    )
    assert proc.returncode == 1, output
    log = console(fake, clone)
    for text in (output, log):
        assert "scaler.max_idle_time" in text and "soon" in text, text
        assert "resources[0].max_instances" in text, text
        assert "the task's configuration has 2 problem(s); nothing was started: fix them in the task" in text
    assert cloud(tmp_path) == []  # nothing launched


def machine(fleet: str, instance_id: str, state: str, console: str) -> dict[str, Any]:
    """A machine of the simulated cloud launched an hour ago whose agent never registered."""
    return {
        "id": instance_id,
        "scaler": "local-fleet",
        "resource": "cpu",
        "launch_token": f"token-{instance_id}",
        "spot": False,
        "launched_at": time.time() - 3600,
        "state": state,
        "console": console,
        "fleet": fleet,
    }


def test_stuck_and_stopped_machines_consoles_are_task_artifacts_with_their_secrets_masked(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    fake = fake_clearml
    config = write_config(tmp_path)
    fleet = fleet_identity("local-fleet", fake.url, fake.company["id"])
    # a stuck machine (no worker 1 h after launch; stuck_timeout 20m) whose console shows what it was
    # given: the git token of the configuration, the ClearML secret key of its clearml.conf
    stuck = (
        "cloud-init: starting\n"
        f"+ git clone https://bot:{GIT_TOKEN}@github.com/org/repo\n"
        f"api.credentials.secret_key: {fake.secret_key}\n"
        "clearml-agent: error: cannot reach the server\n"
    )
    # a machine that stopped (its agent exited) with a long console: what is kept ends where the
    # token's line is cut in two, 10 characters before the token's end
    token_line = f"+ git clone https://bot:{GIT_TOKEN}@github.com/org/repo\n"
    after = "x" * (KEPT - len("@github.com/org/repo\n") - 10 - 1) + "\n"
    stopped = "boot log line\n" * 5000 + token_line + after + "clearml-agent exited\n"
    (tmp_path / "cloud.json").write_text(
        json.dumps(
            {
                "counter": 2,
                "tokens": {},
                "instances": [
                    machine(fleet, "sim-stuck-1", "running", stuck),
                    machine(fleet, "sim-stopped-2", "stopped", stopped),
                ],
            }
        )
    )
    output, task_id = run_task_here(tmp_path, config)
    log = console(fake, task_id)
    assert "terminate sim-stuck-1 (cpu, stuck)" in log and "terminate sim-stopped-2 (cpu, stopped)" in log
    artifacts = {a["key"]: a for a in fake.task(task_id)["execution"]["artifacts"]}
    assert sorted(artifacts) == ["console-sim-stopped-2", "console-sim-stuck-1"]  # one per machine
    saved = {key: fake.files()[urlsplit(a["uri"]).path].decode() for key, a in artifacts.items()}
    assert "clearml-agent: error: cannot reach the server" in saved["console-sim-stuck-1"]
    assert "+ git clone https://bot:********@github.com/org/repo" in saved["console-sim-stuck-1"]
    assert saved["console-sim-stopped-2"].endswith("clearml-agent exited\n")
    assert len(saved["console-sim-stopped-2"]) <= KEPT  # bounded, whole lines
    assert saved["console-sim-stopped-2"].startswith("x")
    shown = [output, log, *saved.values(), *(a["type_data"]["preview"] for a in artifacts.values())]
    for secret in (GIT_TOKEN, GIT_TOKEN[-10:], fake.secret_key):
        assert not any(secret in text for text in shown), secret
    for key in artifacts:
        assert f"saved as artifact '{key}'" in log
