"""Single-writer safety: two scalers with the same name never act at once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaler.clearml.lease import Lease
from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from tests.support.cli import run_cli

RAW = {
    "scaler": {"name": "leased", "workers_prefix": "ls", "polling_interval": "5s"},
    "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 3}],
}


@pytest.fixture
def cloud() -> Iterator[simulated.SimulatedCloud]:
    sim = simulated.SimulatedCloud()
    simulated.use_cloud(sim)
    yield sim
    simulated.use_cloud(None)


def scaler_process(name: str = "leased") -> Reconciler:
    config = build_config({**RAW, "scaler": {**RAW["scaler"], "name": name}}, provider="simulated")
    host = PluginHost()
    source = ClearMLSource(timeout=5)
    return Reconciler(config, host, host.provider("simulated"), source, lease=Lease(source, name, ttl=15))


def test_second_scaler_refuses_until_the_first_releases(
    fake_clearml: Any, cloud: simulated.SimulatedCloud, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = scaler_process(), scaler_process()
    fake_clearml.enqueue("cpu")
    assert sum(first.tick().launched.values()) == 1
    fake_clearml.enqueue("cpu")
    with caplog.at_level(logging.ERROR, logger="scaler"):
        report = second.tick()
        second.tick()
    assert report.errors["lease"] == 1 and not report.launched and not report.actions
    messages = [r.getMessage() for r in caplog.records if "another scaler" in r.getMessage()]
    assert len(messages) == 1, "said once, not every tick"
    assert "another scaler named 'leased' is running" in messages[0] and str(os.getpid()) in messages[0]
    assert len(cloud.alive()) == 1
    first.lease.release()  # type: ignore[union-attr]  # a clean stop hands over at once
    assert sum(second.tick().launched.values()) == 1
    assert first.tick().errors["lease"] == 1  # and the first does not come back while the second holds it


def test_a_dead_holders_lease_expires(fake_clearml: Any, cloud: simulated.SimulatedCloud) -> None:
    dead, successor = scaler_process(), scaler_process()
    assert dead.tick().errors["lease"] == 0  # holds the lease, then dies without releasing it
    assert successor.tick().errors["lease"] == 1
    fake_clearml.advance_clock(16)  # the lease's ttl (15 s) passes without a renewal
    assert successor.tick().errors["lease"] == 0


def test_other_fleet_names_do_not_conflict(fake_clearml: Any, cloud: simulated.SimulatedCloud) -> None:
    assert scaler_process("fleet-a").tick().errors["lease"] == 0
    assert scaler_process("fleet-b").tick().errors["lease"] == 0


def test_lease_costs_one_write_per_tick_in_steady_state(fake_clearml: Any, cloud: simulated.SimulatedCloud) -> None:
    loop = scaler_process()
    loop.tick()
    fake_clearml.clear_calls()
    loop.tick()
    endpoints = [endpoint for endpoint, _ in fake_clearml.calls]
    assert endpoints.count("workers.get_all") == 1 and endpoints.count("queues.get_all") == 1
    assert endpoints.count("workers.register") == 1


def test_a_second_scaler_process_says_so_and_launches_nothing(fake_clearml: Any, tmp_path: Path) -> None:
    holder = Lease(ClearMLSource(timeout=5), "leased", ttl=60)
    assert holder.acquire().ok
    fake_clearml.enqueue("cpu")
    state = tmp_path / "sim.json"
    config = tmp_path / "c.conf"
    config.write_text(
        f'scaler {{ name = "leased" }}\nsimulated {{ state_file = "{state}" }}\n'
        'resources = [ { name = "cpu", queue = "cpu", max_instances = 2 } ]\n'
    )
    env = {**os.environ, **fake_clearml.env(), "HOME": str(tmp_path)}
    result = run_cli(
        "run", "--provider", "simulated", "--config", str(config), "--once", "--no-server-vault", env=env, timeout=60
    )
    assert result.returncode == 1, result.stderr  # --once could not do its job: another scaler holds the lease
    assert "not acting: another scaler named 'leased' is running" in result.stderr
    assert not state.exists() or '"instances": []' in state.read_text()


def test_a_refused_scaler_leaves_the_holders_state_file_alone(
    fake_clearml: Any, cloud: simulated.SimulatedCloud, tmp_path: Path
) -> None:
    """Two scalers of one name on one machine share the default state file; only the lease
    holder writes it, so `scaler status` keeps showing the scaler that acts."""
    from scaler.ops.statefile import StateWriter, read_state

    path = tmp_path / "leased.json"
    first, second = scaler_process(), scaler_process()
    first.listeners.append(StateWriter(path, first))
    second.listeners.append(StateWriter(path, second))
    fake_clearml.enqueue("cpu")
    first.tick()
    written = read_state(path)
    assert written is not None and written["last_tick"]["launched"] == {"cpu": 1}
    assert second.tick().errors["lease"] == 1
    assert read_state(path) == written


def _register_lease(name: str, **tags: str) -> None:
    """A lease entry as another scaler writes it."""
    assert ClearMLSource(timeout=5).register_lease(f"scaler-lease:{name}", 60, [f"{k}={v}" for k, v in tags.items()])


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize(
    "differs, takes_over",
    [({}, True), ({"host": "elsewhere"}, False), ({"pidns": "4026531999"}, False), ({"pid": "alive"}, False)],
    ids=["same-host-dead-pid", "other-host", "other-pid-namespace", "pid-alive"],
)
def test_a_dead_holder_on_this_host_is_replaced_at_once(
    fake_clearml: Any, cloud: simulated.SimulatedCloud, differs: dict[str, str], takes_over: bool
) -> None:
    """A crash-restarted scaler on the same host need not wait for the lease to expire; any
    doubt (another host, another pid namespace, a live pid) means waiting."""
    import socket

    from scaler.clearml.lease import _pid_namespace

    tags = {
        "holder": "0ld",
        "where": "old",
        "host": socket.gethostname(),
        "pid": str(_dead_pid()),
        "pidns": _pid_namespace(),
    }
    tags.update(differs)
    if tags["pid"] == "alive":
        tags["pid"] = str(os.getppid())
    _register_lease("leased", **tags)
    assert (scaler_process().tick().errors["lease"] == 0) is takes_over


def test_a_dry_run_next_to_the_real_scaler_needs_no_lease(fake_clearml: Any, cloud: simulated.SimulatedCloud) -> None:
    """`--dry-run` changes nothing, so it may run beside the lease holder and still decide."""
    holder = scaler_process()
    assert holder.tick().errors["lease"] == 0
    config = build_config(RAW, provider="simulated")
    host = PluginHost()
    source = ClearMLSource(timeout=5)
    dry = Reconciler(
        config, host, host.provider("simulated"), source, dry_run=True, lease=Lease(source, "leased", ttl=15)
    )
    fake_clearml.enqueue("cpu")
    report = dry.tick()
    assert report.errors["lease"] == 0
    assert any(line.startswith("launch 1 x cpu") for line in report.actions) and not cloud.alive()
    assert holder.tick().errors["lease"] == 0  # and the holder keeps its lease
