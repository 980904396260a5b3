"""``scaler run`` and ``scaler demo`` as real subprocesses: the real CLI, the real clearml SDK
against the fake ClearML server (``CLEARML_*`` environment inherited from the fixture), and the
built-in ``simulated`` provider keeping its fleet in a state file across processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_cli, start_cli

PREFIX = "cli"


cli = run_cli


def write_config(tmp_path: Path, *, extra: str = "", max_idle: str = "0s", polling: str = "1s") -> tuple[Path, Path]:
    state = tmp_path / "state.json"
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""
        scaler {{
          name = "cli-fleet"
          workers_prefix = "{PREFIX}"
          polling_interval = {polling}
          max_idle_time = {max_idle}
          stuck_timeout = 20m
        }}
        simulated {{ state_file = "{state}", boot_time = 0s }}
        resources = [
          {{ name = "cpu", queue = "cpu", max_instances = 2 }}
          {{ name = "gpu", queue = "gpu", max_instances = 1 }}
        ]
        {extra}
        """
    )
    return path, state


def fleet(state: Path) -> list[dict[str, Any]]:
    """Instances in the state file (every state)."""
    if not state.exists():
        return []
    return list(json.loads(state.read_text())["instances"])


def alive(state: Path) -> list[dict[str, Any]]:
    return [i for i in fleet(state) if i["state"] in ("pending", "running")]


def play_agents(fake: FakeClearML, state: Path) -> list[str]:
    """Register a worker per live machine (boot_time is 0: alive means booted)."""
    ids = []
    for inst in alive(state):
        wid = f"{PREFIX}:{inst['resource']}:{inst['id']}"
        if wid not in fake.workers():
            fake.register_worker(wid, [inst["resource"]])
        ids.append(wid)
    return sorted(ids)


def test_run_once_launches_then_rebuilds_from_state_and_terminates_idle(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    fake = fake_clearml
    config, state = write_config(tmp_path)
    for _ in range(3):
        fake.enqueue("cpu")
    fake.enqueue("gpu")

    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 0, proc.stderr
    by_resource = sorted(i["resource"] for i in alive(state))
    assert by_resource == ["cpu", "cpu", "gpu"]  # cpu capped at max_instances = 2
    assert "launch 2 x cpu" in proc.stderr and "launch 1 x gpu" in proc.stderr
    assert "the fleet is left as it is" in proc.stderr

    # a second process rebuilds from the state file + ClearML: the machines are booting, no duplicate
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 0, proc.stderr
    assert len(fleet(state)) == 3
    assert not re.search(r"\blaunch \d+ x ", proc.stderr)

    # agents come up and take tasks; one cpu task still waits but cpu is full
    workers = play_agents(fake, state)
    assert len(workers) == 3
    for wid in workers:
        assert fake.take_task(wid)
    assert fake.pending("cpu") == 1
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 0, proc.stderr
    assert len(alive(state)) == 3

    # all done, the last cpu task taken by one worker: the idle ones go (max_idle_time = 0s)
    for wid in workers:
        fake.finish_task(wid)
    busy = next(w for w in workers if ":cpu:" in w)
    assert fake.take_task(busy)
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 0, proc.stderr
    left = alive(state)
    assert [f"{PREFIX}:{i['resource']}:{i['id']}" for i in left] == [busy]
    assert proc.stderr.count("terminate ") == 2
    # the other machine and the gpu machine are shutting down, not duplicated
    assert len(fleet(state)) == 3


def test_run_dry_run_launches_nothing(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    fake_clearml.enqueue("gpu")
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert fleet(state) == []
    assert "would launch 1 x cpu" in proc.stderr
    assert "would launch 1 x gpu" in proc.stderr
    assert fake_clearml.pending("cpu") == 1 and fake_clearml.pending("gpu") == 1
    # only reads reached the server
    writes = [n for n, _ in fake_clearml.calls if n != "auth.login" and not n.split(".")[1].startswith("get")]
    assert writes == []


def test_run_with_clearml_down_launches_nothing_and_says_why(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("cpu")
    fake_clearml.stop()
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode in (0, 1), proc.stderr
    assert "ClearML" in proc.stderr
    assert alive(state) == []


def test_run_unknown_provider_lists_installed(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    proc = cli("run", "--provider", "no-such-cloud", "--config", str(config), "--once")
    assert proc.returncode != 0
    assert "no-such-cloud" in proc.stderr
    assert "installed providers" in proc.stderr
    assert "simulated" in proc.stderr


def test_run_invalid_config_exits_1_with_path(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    text = config.read_text().replace("max_instances = 1", "max_instances = -3")
    config.write_text(text)
    proc = cli("run", "--provider", "simulated", "--config", str(config), "--once")
    assert proc.returncode == 1, proc.stderr
    assert "resources[1].max_instances" in proc.stderr
    assert fleet(state) == []


def test_run_unreadable_config_exits_2(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    proc = cli("run", "--provider", "simulated", "--config", str(missing), "--once")
    assert proc.returncode == 2, proc.stderr
    assert str(missing) in proc.stderr
    proc = cli("run", "--provider", "simulated", "--config", str(tmp_path), "--once")  # a directory
    assert proc.returncode == 2, proc.stderr


def signal_run(config: Path, sig: int, when_ready: Callable[[subprocess.Popen[str]], None]) -> tuple[int, str, str]:
    """Start ``scaler run`` as a process, wait with ``when_ready``, send ``sig``: (exit code, stdout, stderr)."""
    proc = start_cli("run", "--provider", "simulated", "--config", str(config))
    try:
        when_ready(proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_sigterm_exits_0_leaving_the_fleet(fake_clearml: FakeClearML, tmp_path: Path, sig: int) -> None:
    config, state = write_config(tmp_path, max_idle="10m")
    fake_clearml.enqueue("gpu")

    def launched(proc: subprocess.Popen[str]) -> None:
        # wait until the loop has launched (handlers are installed before the first tick)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not alive(state):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(alive(state)) == 1
        time.sleep(1.2)  # at least one more tick: nothing duplicated

    code, out, err = signal_run(config, sig, launched)
    assert code == 0, err
    assert "Traceback" not in out + err
    assert signal.Signals(sig).name in err
    assert "the fleet is left as it is" in err
    assert len(alive(state)) == 1  # left running, not terminated on the way out


def test_run_sigterm_during_start_up_exits_0_having_changed_nothing(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("gpu")
    fake_clearml.set_slow(4.0)  # start-up is stuck reading the server's vaults

    def starting(proc: subprocess.Popen[str]) -> None:
        time.sleep(2.0)
        assert proc.poll() is None

    code, out, err = signal_run(config, signal.SIGTERM, starting)
    assert code == 0, err
    assert "stopped (SIGTERM) before the loop started; nothing was changed" in err
    assert "Traceback" not in out + err
    assert not alive(state)


@pytest.mark.parametrize(
    ("endpoint", "said"),
    [
        ("users.get_vaults", "cannot read the ClearML server's vaults; retrying in 10s (--no-server-vault"),
        ("users.get_current_user", "cannot read the ClearML server to establish the fleet identity; retrying in 10s"),
    ],
    ids=["vaults", "identity"],
)
def test_run_waits_for_its_clearml_server_at_start_and_sigterm_ends_the_wait(
    fake_clearml: FakeClearML, tmp_path: Path, endpoint: str, said: str
) -> None:
    """A daemon (not --once) whose ClearML server cannot answer at start says so and tries again,
    launching nothing meanwhile; SIGTERM ends the wait with exit 0."""
    config, state = write_config(tmp_path)
    fake_clearml.enqueue("gpu")
    fake_clearml.fail_next(endpoint, times=1000, status=500)

    def waiting(proc: subprocess.Popen[str]) -> None:
        time.sleep(4.0)
        assert proc.poll() is None, "a daemon waits for its server instead of exiting"

    code, out, err = signal_run(config, signal.SIGTERM, waiting)
    assert code == 0, err
    assert said in err
    assert "Traceback" not in out + err
    assert not alive(state)


def test_demo_json_reports_all_tasks_completed() -> None:
    proc = cli("demo", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # `scaler simulate`'s report (tests/core/sim/test_demo.py)
    assert report["tasks"]["total"] > 0
    assert report["tasks"]["completed"] == report["tasks"]["total"]
    assert report["total"]["launched"] >= 1
    assert sum(report["terminations"].values()) >= 1
    assert report["peak_fleet"] >= 1


def test_demo_text_prints_the_summary_table() -> None:
    proc = cli("demo")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Summary" in out
    for row in ("instances launched", "instances terminated", "tasks completed", "fleet cost", "peak fleet"):
        assert row in out, out
    assert "launch " in out and "terminate " in out  # the timeline


@pytest.mark.parametrize("args", [["run", "--help"], ["demo", "--help"]])
def test_help_is_plain(args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout
