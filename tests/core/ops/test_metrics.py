"""Prometheus metrics: scraped over HTTP after a few ticks of the real loop (fake ClearML
server, simulated cloud on a virtual clock), and ``scaler run --metrics-port`` serving them."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.default_plugins.simulated import SimulatedCloud
from scaler.engine.policy import TerminationKind
from scaler.engine.reconciler import Reconciler, TickReport
from scaler.errors import QuotaError
from scaler.host import PluginHost
from scaler.ops.metrics import Metrics
from tests.fakes.clearml_server import FakeClearML
from tests.support.metrics import free_port, start_metrics_run

PREFIX = "m"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def scrape(port: int) -> dict[str, float]:
    """``{'name{label="v"}': value}`` of every sample on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
def cloud() -> Iterator[tuple[SimulatedCloud, Clock]]:
    clock = Clock()
    sim = SimulatedCloud(clock=clock, boot_time=60)
    simulated.use_cloud(sim)
    try:
        yield sim, clock
    finally:
        simulated.use_cloud(None)


def test_metrics_after_a_few_ticks(fake_clearml: FakeClearML, cloud: tuple[SimulatedCloud, Clock]) -> None:
    sim, clock = cloud
    fake = fake_clearml
    config = build_config(
        {
            "scaler": {"name": "metrics-fleet", "workers_prefix": PREFIX, "max_idle_time": "120s"},
            "resources": [
                {"name": "cpu", "queue": "cpu", "max_instances": 2, "price_per_hour": 0.25},
                {"name": "gpu", "queue": "gpu", "max_instances": 1, "price_per_hour": 1.5},
            ],
        },
        provider="simulated",
    )
    host = PluginHost()
    rec = Reconciler(config, host, host.provider("simulated"), ClearMLSource(timeout=3.0), clock=clock)
    metrics = Metrics(config)
    port = metrics.serve(0, "127.0.0.1")
    rec.listeners.append(metrics)
    try:
        first = scrape(port)  # every series exists before the first tick
        assert first['scaler_fleet_instances{resource="gpu",state="idle"}'] == 0
        assert first['scaler_terminations_total{reason="idle"}'] == 0
        assert first['scaler_max_instances{resource="cpu"}'] == 2
        assert first['scaler_price_per_hour{resource="gpu"}'] == 1.5
        assert first["scaler_fleet_hourly_cost"] == 0

        for queue in ("cpu", "cpu", "cpu", "gpu"):
            fake.enqueue(queue)
        rec.tick()  # launches 2 cpu + 1 gpu, all booting
        m = scrape(port)
        assert m['scaler_pending_tasks{queue="cpu"}'] == 3
        assert m['scaler_launches_total{resource="cpu"}'] == 2
        assert m['scaler_launches_total{resource="gpu"}'] == 1
        clock.now += 10  # the fleet gauges are what a tick observed: the next one sees them booting
        rec.tick()
        m = scrape(port)
        assert m['scaler_fleet_instances{resource="cpu",state="booting"}'] == 2
        assert m['scaler_fleet_instances{resource="gpu",state="booting"}'] == 1
        assert m['scaler_launches_total{resource="cpu"}'] == 2
        assert m["scaler_fleet_hourly_cost"] == 2 * 0.25 + 1.5  # booting machines bill too

        clock.now += 80  # booted: agents register, two take tasks
        sim.step()
        for inst in sim.alive():
            fake.register_worker(f"{PREFIX}:{inst.resource}:{inst.id}", [inst.resource])
        cpu_workers = sorted(w for w in fake.workers() if ":cpu:" in w)
        fake.take_task(cpu_workers[0])
        fake.take_task(next(w for w in fake.workers() if ":gpu:" in w))
        fake.finish_task(next(w for w in fake.workers() if ":gpu:" in w))
        rec.tick()
        m = scrape(port)
        assert m['scaler_fleet_instances{resource="cpu",state="busy"}'] == 1
        assert m['scaler_fleet_instances{resource="cpu",state="idle"}'] == 1
        assert m['scaler_fleet_instances{resource="gpu",state="idle"}'] == 1
        assert m['scaler_fleet_instances{resource="cpu",state="booting"}'] == 0
        assert m['scaler_pending_tasks{queue="cpu"}'] == 2
        assert m['scaler_pending_tasks{queue="gpu"}'] == 0

        clock.now += 200  # the gpu machine has been idle past max_idle_time
        rec.tick()
        fake.enqueue("gpu")  # a new gpu task, but the cloud's quota is reached
        sim.fail_next("launch", QuotaError("vCPU quota reached", code="VcpuLimitExceeded"))
        clock.now += 30
        rec.tick()
        m = scrape(port)
        assert m['scaler_errors_total{kind="quota"}'] == 1
        assert m['scaler_launches_total{resource="gpu"}'] == 1
        fake.set_down(True)  # ClearML unreadable: pending keeps its last value, the source is down
        clock.now += 30
        rec.tick()
        m = scrape(port)
        assert m['scaler_terminations_total{reason="idle"}'] == 1
        assert m['scaler_fleet_instances{resource="gpu",state="idle"}'] == 0
        assert m['scaler_source_up{source="clearml"}'] == 0 and m['scaler_source_up{source="cloud"}'] == 1
        assert m['scaler_pending_tasks{queue="cpu"}'] == 2 and m['scaler_pending_tasks{queue="gpu"}'] == 1
        assert m["scaler_ticks_total"] == 6
        assert m["scaler_tick_duration_seconds_count"] == 6
        assert m["scaler_last_tick_timestamp_seconds"] == clock.now
        assert m['scaler_launches_total{resource="cpu"}'] == 2  # never more than max_instances
    finally:
        metrics.close()


def test_run_serves_metrics(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    config = tmp_path / "scaler.conf"
    config.write_text(
        f"""
        scaler {{ name = "metrics-cli", workers_prefix = "{PREFIX}", polling_interval = 1s }}
        simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
        resources = [ {{ name = "cpu", queue = "cpu", max_instances = 2 }} ]
        """
    )
    fake_clearml.enqueue("cpu")
    port = free_port()
    proc = start_metrics_run(config, port, "--metrics-host", "127.0.0.1", "--state-file", str(tmp_path / "state.json"))
    try:
        deadline = time.time() + 30
        samples: dict[str, float] = {}
        while time.time() < deadline:
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if samples.get("scaler_ticks_total", 0) >= 2:
                break
            time.sleep(0.2)
        assert samples.get("scaler_ticks_total", 0) >= 2, samples
        assert samples['scaler_launches_total{resource="cpu"}'] == 1
        assert samples['scaler_pending_tasks{queue="cpu"}'] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert re.search(rf"Prometheus metrics on http://127.0.0.1:{port}/metrics", output)


def test_a_standby_scaler_says_so_and_does_not_report_the_cloud_down() -> None:
    from scaler.engine.reconciler import TickReport

    config = build_config(
        {
            "scaler": {"name": "m", "workers_prefix": "m"},
            "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 1}],
        },
        provider="simulated",
    )
    metrics = Metrics(config)
    metrics(TickReport(now=1.0, pending={"cpu": 0}, fleet={}, clearml_ok=True, cloud_ok=True))
    standby = TickReport(now=2.0, pending={"cpu": 0}, fleet={}, clearml_ok=True, cloud_ok=False)
    standby.errors["lease"] += 1
    metrics(standby)
    text = metrics.text()
    assert "scaler_lease_held 0.0" in text
    assert 'scaler_source_up{source="cloud"} 1.0' in text
    assert 'scaler_errors_total{kind="lease"} 1.0' in text


def test_every_termination_kind_is_a_series_from_the_first_scrape() -> None:
    """The ``reason`` labels come from TerminationKind: a kind the policy can decide is never
    missing from the metrics (``stopped`` once was)."""
    config = build_config(
        {
            "scaler": {"name": "kinds", "workers_prefix": PREFIX},
            "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 1}],
        },
        provider="simulated",
    )
    metrics = Metrics(config)
    for kind in TerminationKind:
        assert f'scaler_terminations_total{{reason="{kind.value}"}} 0.0' in metrics.text(), kind
    metrics(TickReport(now=1.0, terminated=Counter({TerminationKind.STOPPED.value: 2})))
    assert 'scaler_terminations_total{reason="stopped"} 2.0' in metrics.text()


def test_a_fleet_across_clouds_says_which_cloud_is_up_and_where_each_resource_runs() -> None:
    config = build_config(
        {
            "scaler": {"name": "multi"},
            "aws": {"region": "us-east-1"},
            "gcp": {"project": "my-ml-project"},
            "resources": [
                {
                    "name": "a10",
                    "queue": "gpu",
                    "max_instances": 2,
                    "aws": {"instance_type": "g5.xlarge", "ami_id": "ami-0abcdef1234567890"},
                },
                {
                    "name": "l4",
                    "queue": "gpu",
                    "max_instances": 2,
                    "provider": "gcp",
                    "gcp": {
                        "machine_type": "g2-standard-8",
                        "zones": ["us-central1-a"],
                        "image": "projects/debian-cloud/global/images/family/debian-12",
                    },
                },
            ],
        }
    )
    metrics = Metrics(config)
    samples = {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in metrics.text().splitlines() if line[:1] != "#")
    }
    assert samples['scaler_resource_info{provider="aws",queue="gpu",resource="a10"}'] == 1
    assert samples['scaler_resource_info{provider="gcp",queue="gpu",resource="l4"}'] == 1
    metrics(TickReport(now=1.0, unlisted=["gcp"]))  # gcp could not be listed, aws could
    text = metrics.text()
    assert 'scaler_provider_up{provider="aws"} 1.0' in text
    assert 'scaler_provider_up{provider="gcp"} 0.0' in text
    assert 'scaler_source_up{source="cloud"} 0.0' in text  # the alert on it fires
    metrics(TickReport(now=2.0))
    assert 'scaler_provider_up{provider="gcp"} 1.0' in metrics.text()
    assert 'scaler_source_up{source="cloud"} 1.0' in metrics.text()
