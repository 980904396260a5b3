"""``scaler status`` against the fake ClearML server and the simulated provider (its fleet in
a state file, as a running ``scaler run`` leaves it), and the state file ``scaler run`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.clearml.queues import ClearMLSource
from scaler.cli import app
from scaler.config.loading import load_config
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.ops.observers import attach
from scaler.ops.statefile import default_path, read_state
from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli

PREFIX = "st"
runner = CliRunner()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""
        scaler {{ name = "status-fleet", workers_prefix = "{PREFIX}", polling_interval = 1s, max_idle_time = 1h }}
        simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
        resources = [
          {{ name = "cpu", queue = "cpu", max_instances = 2 }}
          {{ name = "gpu", queue = "gpu", max_instances = 1, spot = true, simulated {{ instance_type = "sim.gpu" }} }}
        ]
        """
    )
    return path


def scaler(tmp_path: Path) -> Reconciler:
    """The loop as `scaler run` builds it (simulated fleet in a file, real SDK against the fake)."""
    host = PluginHost()
    config = load_config(write_config(tmp_path), host, provider="simulated").config
    assert config is not None
    reconciler = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=3.0))
    attach(reconciler)  # the default state file: $XDG_CACHE_HOME/clearml-scaler/status-fleet.json
    return reconciler


def instances(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        i
        for i in json.loads((tmp_path / "cloud.json").read_text())["instances"]
        if i["state"] in ("pending", "running")
    ]


@pytest.fixture
def fleet(fake_clearml: FakeClearML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two ticks: 3 cpu + 1 gpu tasks → 2 cpu + 1 gpu machines; their agents start, two take tasks."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = fake_clearml
    for queue in ("cpu", "cpu", "cpu", "gpu"):
        fake.enqueue(queue, name=f"train-{queue}")
    rec = scaler(tmp_path)
    rec.tick()
    workers = {}
    for inst in instances(tmp_path):
        wid = f"{PREFIX}:{inst['resource']}:{inst['id']}"
        fake.register_worker(wid, [inst["resource"]])
        workers[inst["id"]] = wid
    cpu = sorted(i for i in workers if "cpu" in workers[i])
    gpu = [i for i in workers if "gpu" in workers[i]]
    fake.take_task(workers[cpu[0]])
    fake.take_task(workers[gpu[0]])
    fake.finish_task(workers[gpu[0]])  # the gpu machine is idle now
    rec.tick()
    return {"config": tmp_path / "scaler.conf", "workers": workers, "cpu": cpu, "gpu": gpu[0], "fake": fake}


def test_status_json(fleet: dict[str, Any]) -> None:
    result = runner.invoke(
        app, ["status", "--config", str(fleet["config"]), "--provider", "simulated", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    snap = json.loads(result.stdout)
    assert snap["clearml_ok"] and snap["cloud_ok"] and not snap["errors"]
    assert {q["queue"]: q["pending"] for q in snap["queues"]} == {"cpu": 2, "gpu": 0}
    resources = {r["name"]: r for r in snap["resources"]}
    assert {k: resources["cpu"][k] for k in ("running", "booting", "idle", "busy", "max")} == {
        "running": 2,
        "booting": 0,
        "idle": 1,
        "busy": 1,
        "max": 2,
    }
    assert {k: resources["gpu"][k] for k in ("running", "idle", "busy", "max", "spot")} == {
        "running": 1,
        "idle": 1,
        "busy": 0,
        "max": 1,
        "spot": True,
    }
    rows = {r["id"]: r for r in snap["instances"]}
    busy = rows[fleet["cpu"][0]]
    assert busy["activity"] == "busy" and busy["task_name"] == "train-cpu" and busy["idle_for"] is None
    idle = rows[fleet["gpu"]]
    assert idle["activity"] == "idle" and idle["worker"] == fleet["workers"][fleet["gpu"]]
    assert idle["idle_for"] is not None and idle["idle_for"] >= 0  # from the scaler's idle timer
    assert idle["spot"] is True and busy["spot"] is False
    # the last actions, with their reasons, from the state file the loop wrote
    actions = [a["action"] for a in snap["actions"]]
    assert any(a.startswith("launch 2 x cpu (on-demand): queue 'cpu' has 3 pending tasks") for a in actions)
    assert any(a.startswith("launch 1 x gpu (spot)") for a in actions)
    assert snap["scaler"]["found"] and not snap["scaler"]["stale"]


def test_status_tables_and_watch(fleet: dict[str, Any]) -> None:
    args = ["status", "--config", str(fleet["config"]), "--provider", "simulated"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for title in ("Queues", "Resources", "Instances", "Last actions"):
        assert title in out
    assert fleet["gpu"] in out and fleet["workers"][fleet["gpu"]] in out
    assert "busy: train-cpu" in out and "launch 1 x gpu (spot)" in out
    result = runner.invoke(app, [*args, "--watch", "--interval", "0.1", "--count", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("Last actions") == 2


def test_state_file_written_each_tick(fleet: dict[str, Any], tmp_path: Path) -> None:
    state = read_state(default_path("status-fleet"))
    assert state is not None and state["name"] == "status-fleet" and state["provider"] == "simulated"
    assert state["last_tick"]["fleet"]["cpu"] == {"alive": 2, "booting": 0, "idle": 1, "busy": 1}
    assert set(state["idle_since"]) == {fleet["cpu"][1], fleet["gpu"]}
    # a restarted scaler keeps the recorded actions
    rec = scaler(tmp_path)
    rec.tick()
    again = read_state(default_path("status-fleet"))
    assert again is not None and len(again["actions"]) >= 2


def test_status_when_clearml_is_down(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    scaler(tmp_path).tick()  # one machine launched (and no worker could be seen from here on)
    fake_clearml.set_down(True)
    proc = run_cli(
        "status",
        "--config",
        str(config),
        "--provider",
        "simulated",
        "--no-server-vault",
        "--format",
        "json",
        "--state-file",
        str(tmp_path / "none.json"),
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    snap = json.loads(proc.stdout)
    assert not snap["clearml_ok"] and snap["cloud_ok"]
    # the error says why (issue 14, item 10)
    [error] = snap["errors"]
    assert error.startswith("the ClearML server could not be read: pending tasks and workers are unknown (")
    assert "Connection" in snap["clearml_error"] and snap["clearml_error"] in error
    assert snap["cloud_error"] is None
    assert snap["queues"][0]["pending"] is None and not snap["scaler"]["found"]
    # the machine is running, but whether it is booting, idle or busy cannot be told
    [cpu] = [r for r in snap["resources"] if r["name"] == "cpu"]
    assert cpu["running"] == 1 and cpu["booting"] is cpu["idle"] is cpu["busy"] is None
    assert [i["activity"] for i in snap["instances"]] == ["unknown"]
