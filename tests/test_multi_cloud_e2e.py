"""End to end, one fleet across clouds (issue 18): the real reconciler on a virtual clock, moto's
EC2 behind the EC2 proxy (real boto3) and the fake Compute Engine server (real
google-cloud-compute) at once, the fake ClearML server (real clearml SDK).

One gpu queue is served by ``aws-spot`` → ``gcp-spot`` → ``aws-od`` (2 machines each). Faults are
injected where the clouds answer: spot capacity errors at the EC2 proxy, exhausted zones and
failing lists at the fake GCE, failing DescribeInstances at the EC2 proxy. After every tick the
machines alive in each cloud are counted per resource against ``max_instances`` (and the fleet
cap). Workers register as the agents would: ``<workers_prefix>:<resource>:<instance id>``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import load_config
from scaler.config.model import Config
from scaler.engine.reconciler import Reconciler, TickReport
from scaler.host import PluginHost
from scaler.types import TAG_RESOURCE, TAG_SCALER
from scaler_aws.client import clear_clients
from scaler_aws.images import clear_root_devices
from scaler_gcp import clients as gcp_clients
from scaler_gcp import provider as gcp_provider
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import DUMMY_AMI, EC2Proxy, MotoServer
from tests.fakes.gce_server import FakeGCE
from tests.support.aws import tags_of

FLEET = "multi-e2e"
PREFIX = "ml"
MAX = {"aws-spot": 2, "gcp-spot": 2, "aws-od": 2}
AWS_RESOURCES = ("aws-spot", "aws-od")
IDLE = 5 * 60  # max_idle_time
TICK = 30  # polling_interval

CONFIG = f"""
scaler {{
  name = "{FLEET}"
  workers_prefix = "{PREFIX}"
  polling_interval = {TICK}s
  max_idle_time = {IDLE}s
  idle_policy = fixed
  stuck_timeout = 20m
  %(scaler)s
}}
# one attempt per EC2 call: an injected 5xx is not retried with botocore's (real) back-off sleeps
aws {{ region = "us-east-1", use_iam_role = true, max_attempts = 1 }}
gcp {{ project = "test-proj", operation_timeout = 10s }}
resources = [
  {{
    name = "aws-spot"
    provider = aws
    queue = "gpu"
    max_instances = {MAX["aws-spot"]}
    spot = true
    aws {{ instance_type = "g5.xlarge", ami_id = "{DUMMY_AMI}" }}
  }}
  {{
    name = "gcp-spot"
    provider = gcp
    queue = "gpu"
    max_instances = {MAX["gcp-spot"]}
    spot = true
    gcp {{
      machine_type = "g2-standard-8"
      zones = ["us-central1-a", "us-central1-b"]
      image = "projects/debian-cloud/global/images/family/debian-12"
    }}
  }}
  {{
    name = "aws-od"
    provider = aws
    queue = "gpu"
    max_instances = {MAX["aws-od"]}
    aws {{ instance_type = "g5.xlarge", ami_id = "{DUMMY_AMI}" }}
  }}
]
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _is_spot(params: dict[str, str]) -> bool:
    return params.get("InstanceMarketOptions.MarketType") == "spot"


@dataclass
class MultiCloud:
    """Both clouds, the ClearML server, the configuration and the virtual clock of one test."""

    config: Config
    host: PluginHost
    clock: Clock
    ec2: Any  # boto3 client straight to moto (not recorded by the proxy)
    proxy: EC2Proxy
    gce: FakeGCE
    clearml: FakeClearML
    ticks: int = 0
    launched: Counter[str] = field(default_factory=Counter)  # resource -> machines, over all ticks

    def reconciler(self) -> Reconciler:
        """A scaler process as ``scaler run`` makes it: every provider of the fleet, one ClearML source."""
        providers = {name: self.host.provider(name) for name in self.config.provider_names}
        assert list(providers) == ["aws", "gcp"]
        return Reconciler(self.config, self.host, providers, ClearMLSource(timeout=5), clock=self.clock)

    # -- the clouds, read directly ---------------------------------------------------------------
    def aws_live(self) -> dict[str, list[str]]:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{TAG_SCALER}", "Values": [FLEET]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        out: dict[str, list[str]] = {}
        for page in pages:
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    out.setdefault(tags_of(inst)[TAG_RESOURCE], []).append(inst["InstanceId"])
        return out

    def gcp_live(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for inst in self.gce.instances():
            if inst["labels"].get(TAG_SCALER) == FLEET and inst["status"] != "STOPPING":
                out.setdefault(inst["labels"][TAG_RESOURCE], []).append(inst["name"])
        return out

    def live(self) -> dict[str, list[str]]:
        """Machines alive per resource, each cloud asked (AWS resources on EC2, GCP ones on GCE)."""
        aws, gcp = self.aws_live(), self.gcp_live()
        assert set(aws) <= set(AWS_RESOURCES) and set(gcp) <= {"gcp-spot"}, (aws, gcp)  # each on its cloud
        return {**aws, **gcp}

    def counts(self) -> dict[str, int]:
        live = self.live()
        return {name: len(live.get(name, [])) for name in MAX}

    def tick(self, loop: Reconciler, advance: float = TICK) -> TickReport:
        """Advance the virtual clock, tick once, check the limits in both clouds."""
        self.clock.now += advance
        report = loop.tick()
        self.ticks += 1
        self.launched.update(report.launched)
        assert not report.errors["bug"], report
        counts = self.counts()
        for name, n in counts.items():
            assert n <= MAX[name], f"tick {self.ticks}: {name} has {n} machines, max_instances = {MAX[name]}"
        cap = self.config.scaler.max_instances_total
        if cap:
            assert sum(counts.values()) <= cap, f"tick {self.ticks}: {counts} exceeds max_instances_total = {cap}"
        return report

    # -- the agents ---------------------------------------------------------------------------------
    def workers(self) -> dict[str, str]:
        """Worker id of every live machine (as its agent registers) -> instance id."""
        return {f"{PREFIX}:{name}:{iid}": iid for name, ids in self.live().items() for iid in ids}

    def agents_start(self) -> list[str]:
        """Every live machine's agent registers on the gpu queue (if not yet) and takes a task if any."""
        known = self.clearml.workers()
        started = []
        for worker in self.workers():
            if worker not in known:
                self.clearml.register_worker(worker, ["gpu"])
                started.append(worker)
            self.clearml.take_task(worker)
        return started

    def spot_runs(self) -> int:
        return sum(1 for r in self.proxy.requests if r.get("Action") == "RunInstances" and _is_spot(r))

    def on_demand_runs(self) -> int:
        return sum(1 for r in self.proxy.requests if r.get("Action") == "RunInstances" and not _is_spot(r))

    def gce_inserts(self) -> list[str]:
        """Zone of every insert request the fake GCE received, in order."""
        return [r.path.split("/zones/")[1].split("/")[0] for r in self.gce.requests.matching("POST", r"/instances$")]

    def gce_deletes(self) -> int:
        return len(self.gce.requests.matching("DELETE", r"/instances/"))


@pytest.fixture
def clouds(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    fake_gce: FakeGCE,
    moto_server: MotoServer,
    ec2_proxy: EC2Proxy,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MultiCloud]:
    yield from _clouds(tmp_path, fake_clearml, fake_gce, moto_server, ec2_proxy, monkeypatch, "")


@pytest.fixture
def capped_clouds(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    fake_gce: FakeGCE,
    moto_server: MotoServer,
    ec2_proxy: EC2Proxy,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MultiCloud]:
    yield from _clouds(tmp_path, fake_clearml, fake_gce, moto_server, ec2_proxy, monkeypatch, "max_instances_total = 3")


def _clouds(
    tmp_path: Path,
    fake_clearml: FakeClearML,
    gce: FakeGCE,
    moto_server: MotoServer,
    proxy: EC2Proxy,
    monkeypatch: pytest.MonkeyPatch,
    scaler_extra: str,
) -> Iterator[MultiCloud]:
    clear_clients()
    clear_root_devices()
    monkeypatch.setenv(gcp_clients.EMULATOR_ENV, f"127.0.0.1:{gce.port}")
    # a failing GCE call is retried briefly (real sleeps): keep that short
    monkeypatch.setattr(gcp_clients, "RETRY_INITIAL", 0.01)
    monkeypatch.setattr(gcp_clients, "RETRY_MAXIMUM", 0.02)
    monkeypatch.setattr(gcp_clients, "RETRY_DEADLINE", 0.1)
    gce.operation_polls = 1
    gcp_provider.reset_memory()
    # an in-process CLI test may have run setup_logging (propagate = False on "scaler")
    monkeypatch.setattr(logging.getLogger("scaler"), "propagate", True)
    path = tmp_path / "fleet.conf"
    path.write_text(CONFIG % {"scaler": scaler_extra})
    host = PluginHost()
    loaded = load_config(path, host, infer_provider=True)
    assert loaded.ok and loaded.config is not None, [p.render() for p in loaded.problems]
    config = loaded.config
    assert config.multi_cloud and [(r.name, r.provider_name) for r in config.resources] == [
        ("aws-spot", "aws"),
        ("gcp-spot", "gcp"),
        ("aws-od", "aws"),
    ]
    # moto stamps launch times with the wall clock: the virtual clock starts there, GCE follows it
    clock = Clock(time.time())
    gce.clock = lambda: datetime.fromtimestamp(clock.now, timezone.utc)
    yield MultiCloud(config, host, clock, moto_server.client("ec2"), proxy, gce, fake_clearml)
    clear_clients()
    clear_root_devices()


def _enqueue(clearml: FakeClearML, n: int) -> list[str]:
    return [clearml.enqueue("gpu") for _ in range(n)]


# -- 1-5: spill-over across clouds, limits, idle machines on both clouds ----------------------------


def test_spill_over_aws_spot_to_gcp_spot_to_aws_on_demand_then_idle_on_both_clouds(clouds: MultiCloud) -> None:
    loop = clouds.reconciler()
    spot_out = clouds.proxy.fail("RunInstances", "InsufficientInstanceCapacity", times=None, when=_is_spot)

    # EC2 has no spot capacity: the task's machine comes from GCP spot, in the same tick
    tasks = _enqueue(clouds.clearml, 1)
    report = clouds.tick(loop)
    assert report.launched == Counter({"gcp-spot": 1}), report.actions
    assert report.errors["capacity"] == 1 and spot_out.hits == 1
    assert clouds.on_demand_runs() == 0
    assert clouds.counts() == {"aws-spot": 0, "gcp-spot": 1, "aws-od": 0}
    [failed, spilled] = report.actions  # each action line names the cloud
    assert failed.startswith("launch of 1 x aws-spot") and "failed: out of capacity" in failed, failed
    assert spilled.startswith("launch 1 x gcp-spot on gcp (spot)"), spilled

    # GCP's zones are exhausted too: AWS on-demand takes the next task, in the same tick
    clouds.gce.fail_operation_next(r"us-central1-.*", "ZONE_RESOURCE_POOL_EXHAUSTED", "stockout", times=1000)
    tasks += _enqueue(clouds.clearml, 1)
    inserts_before = len(clouds.gce_inserts())
    report = clouds.tick(loop)
    assert report.launched == Counter({"aws-od": 1}), report.actions
    assert clouds.gce_inserts()[inserts_before:] == ["us-central1-a", "us-central1-b"]  # every zone tried
    assert report.errors["capacity"] == 1
    assert clouds.on_demand_runs() == 1
    assert clouds.counts() == {"aws-spot": 0, "gcp-spot": 1, "aws-od": 1}

    # three more tasks while both spot markets are out: on-demand fills up, the rest waits;
    # no resource goes over its max_instances (checked after every tick)
    tasks += _enqueue(clouds.clearml, 3)
    report = clouds.tick(loop)
    assert report.launched == Counter({"aws-od": 1}), report.actions
    assert clouds.counts() == {"aws-spot": 0, "gcp-spot": 1, "aws-od": 2}
    assert report.pending == {"gpu": 5}

    # the outages end: spot capacity on AWS again takes what still waits
    spot_out.remaining = 0
    clouds.gce.clear_faults()
    report = clouds.tick(loop)
    assert sum(report.launched.values()) == 2, report.actions
    assert clouds.counts() == {"aws-spot": 2, "gcp-spot": 1, "aws-od": 2}
    report = clouds.tick(loop)
    assert not report.launched  # demand is covered (five machines booting for five tasks)

    # the agents come up on both clouds and run the five tasks
    assert len(clouds.agents_start()) == 5
    report = clouds.tick(loop)
    assert not report.launched and not report.terminated
    assert {name: stats["busy"] for name, stats in report.fleet.items()} == {"aws-spot": 2, "gcp-spot": 1, "aws-od": 2}
    assert report.pending == {"gpu": 0}
    # a steady tick reads each cloud once: one EC2 listing, one GCE listing, whatever the resources
    ec2_before = Counter(clouds.proxy.actions)
    gce_before = len(clouds.gce.requests.matching("GET", r"/instances"))
    report = clouds.tick(loop)
    ec2_reads = {k: v - ec2_before[k] for k, v in Counter(clouds.proxy.actions).items() if v > ec2_before[k]}
    assert ec2_reads == {"DescribeInstances": 1}, ec2_reads
    assert len(clouds.gce.requests.matching("GET", r"/instances")) - gce_before == 1
    assert not report.launched and not report.terminated

    # the tasks end; the machines idle on both clouds and go after max_idle_time
    for worker in clouds.workers():
        clouds.clearml.finish_task(worker)
    report = clouds.tick(loop)
    assert not report.terminated
    report = clouds.tick(loop, IDLE - TICK)
    assert not report.terminated  # idle for less than max_idle_time
    terminate_calls = clouds.proxy.count("TerminateInstances")
    report = clouds.tick(loop)
    assert report.terminated == Counter({"idle": 5}), report.actions
    assert clouds.live() == {}
    assert clouds.gce_deletes() == 1
    assert clouds.proxy.count("TerminateInstances") - terminate_calls == 2  # one per AWS resource
    report = clouds.tick(loop)
    assert not report.launched and not report.terminated and not report.errors
    assert clouds.ticks == 11 and clouds.launched == Counter({"aws-spot": 2, "gcp-spot": 1, "aws-od": 2})
    assert all(clouds.clearml.task(t)["status"] == "completed" for t in tasks)


def test_fleet_cap_holds_across_clouds(capped_clouds: MultiCloud) -> None:
    clouds = capped_clouds
    assert clouds.config.scaler.max_instances_total == 3
    loop = clouds.reconciler()
    spot_out = clouds.proxy.fail("RunInstances", "InsufficientInstanceCapacity", times=None, when=_is_spot)
    _enqueue(clouds.clearml, 5)

    # AWS spot is out: the three machines the cap allows come from GCP spot and AWS on-demand
    report = clouds.tick(loop)
    assert report.launched == Counter({"gcp-spot": 2, "aws-od": 1}), report.actions
    assert clouds.counts() == {"aws-spot": 0, "gcp-spot": 2, "aws-od": 1}

    # two tasks wait, capacity comes back everywhere: the cap still holds, tick after tick
    spot_out.remaining = 0
    for _ in range(3):
        report = clouds.tick(loop)
        assert not report.launched, report.actions
    # a restarted scaler counts the machines of both clouds against the cap
    report = clouds.tick(clouds.reconciler())
    assert not report.launched, report.actions
    assert sum(clouds.counts().values()) == 3 and clouds.ticks == 5


# -- 6: a restart rebuilds the fleet from both clouds ---------------------------------------------------


def test_restart_rebuilds_the_fleet_from_both_clouds(clouds: MultiCloud) -> None:
    first = clouds.reconciler()
    _enqueue(clouds.clearml, 5)
    report = clouds.tick(first)
    assert report.launched == Counter({"aws-spot": 2, "gcp-spot": 2, "aws-od": 1}), report.actions
    machines = clouds.live()

    # the scaler restarts while the machines boot: it finds them on both clouds, launches nothing
    second = clouds.reconciler()
    report = clouds.tick(second)
    assert not report.launched and not report.terminated, report.actions
    assert {name: stats["booting"] for name, stats in report.fleet.items()} == {
        "aws-spot": 2,
        "gcp-spot": 2,
        "aws-od": 1,
    }
    assert clouds.live() == machines

    # the agents run the five tasks; three end (both GCP machines and one AWS spot machine)
    assert len(clouds.agents_start()) == 5
    report = clouds.tick(second)
    assert not report.launched and sum(s["busy"] for s in report.fleet.values()) == 5
    ending = [f"{PREFIX}:gcp-spot:{i}" for i in machines["gcp-spot"]] + [f"{PREFIX}:aws-spot:{machines['aws-spot'][0]}"]
    for worker in ending:
        clouds.clearml.finish_task(worker)

    # another restart: the idle machines are found idle and go after max_idle_time, the busy stay
    third = clouds.reconciler()
    report = clouds.tick(third)
    assert not report.launched and not report.terminated
    report = clouds.tick(third, IDLE)
    assert report.terminated == Counter({"idle": 3}), report.actions
    assert clouds.live() == {"aws-spot": machines["aws-spot"][1:], "aws-od": machines["aws-od"]}
    report = clouds.tick(third)
    assert not report.launched and not report.terminated and not report.errors
    assert clouds.launched == Counter({"aws-spot": 2, "gcp-spot": 2, "aws-od": 1}) and clouds.ticks == 6


# -- 7: one cloud unreadable, the other fine -------------------------------------------------------------


def _idle_fleet(clouds: MultiCloud, loop: Reconciler) -> dict[str, list[str]]:
    """Four machines (2 AWS spot, 2 GCP spot) whose agents ran a task each and now idle."""
    _enqueue(clouds.clearml, 4)
    report = clouds.tick(loop)
    assert report.launched == Counter({"aws-spot": 2, "gcp-spot": 2}), report.actions
    assert len(clouds.agents_start()) == 4
    clouds.tick(loop)
    for worker in clouds.workers():
        clouds.clearml.finish_task(worker)
    report = clouds.tick(loop)  # idle from now on
    assert {name: s["idle"] for name, s in report.fleet.items()} == {"aws-spot": 2, "gcp-spot": 2}
    return clouds.live()


def test_gce_unreadable_aws_goes_on(clouds: MultiCloud, caplog: pytest.LogCaptureFixture) -> None:
    loop = clouds.reconciler()
    machines = _idle_fleet(clouds, loop)

    # GCE answers 503 to every list: its idle machines stay; AWS's idle machines still go
    clouds.gce.fail_next("GET", r"/aggregated/instances$", 503, "backendError", "Service unavailable", times=10_000)
    caplog.set_level(logging.INFO, logger="scaler")
    caplog.clear()
    report = clouds.tick(loop, IDLE)
    assert report.unlisted == ["gcp"] and report.cloud_ok
    assert report.terminated == Counter({"idle": 2}), report.actions
    assert clouds.live() == {"gcp-spot": machines["gcp-spot"]}
    assert clouds.gce_deletes() == 0
    assert "provider(s) gcp could not be listed" in " ".join(report.failures())
    assert "listing instances of provider 'gcp' failed (transient)" in caplog.text
    assert (
        "provider(s) gcp could not be listed: their machines are left as last seen; no launch on gcp-spot this tick"
        in caplog.text
    )

    # new work while GCE stays unreadable and AWS spot is out: the demand the idle GCP workers
    # cannot take spills past GCP spot (not launched on) to AWS on-demand
    spot_out = clouds.proxy.fail("RunInstances", "InsufficientInstanceCapacity", times=None, when=_is_spot)
    _enqueue(clouds.clearml, 4)
    inserts = len(clouds.gce_inserts())
    report = clouds.tick(loop)
    assert report.unlisted == ["gcp"]
    assert spot_out.hits == 1
    assert report.launched == Counter({"aws-od": 2}), report.actions
    assert len(clouds.gce_inserts()) == inserts  # nothing launched on the unreadable cloud
    assert not report.terminated and clouds.gce_deletes() == 0

    # a scaler restarted during the outage has never seen GCP's machines: it launches nothing
    # for the queue GCP serves and terminates nothing
    restarted = clouds.reconciler()
    report = clouds.tick(restarted)
    assert report.unlisted == ["gcp"]
    assert not report.launched and not report.terminated, report.actions
    assert clouds.gce_deletes() == 0 and len(clouds.gce_inserts()) == inserts

    # GCE is readable again: every agent takes a task (GCP's idle ones too), nothing more is
    # launched; when the tasks end, the machines of both clouds go after max_idle_time
    clouds.gce.clear_faults()
    spot_out.remaining = 0
    assert len(clouds.agents_start()) == 2  # the AWS on-demand ones; GCP's were registered
    report = clouds.tick(loop)
    assert not report.unlisted and not report.launched and not report.terminated, report.actions
    assert {name: s["busy"] for name, s in report.fleet.items()} == {"gcp-spot": 2, "aws-od": 2}
    for worker in clouds.workers():
        clouds.clearml.finish_task(worker)
    clouds.tick(loop)
    report = clouds.tick(loop, IDLE)
    assert report.terminated == Counter({"idle": 4}), report.actions
    assert clouds.live() == {} and clouds.gce_deletes() == 2
    assert clouds.ticks == 9


def test_ec2_unreadable_gcp_goes_on(clouds: MultiCloud, caplog: pytest.LogCaptureFixture) -> None:
    loop = clouds.reconciler()
    machines = _idle_fleet(clouds, loop)

    # DescribeInstances fails at EC2: its idle machines stay; GCP's idle machines still go
    clouds.proxy.fail("DescribeInstances", "InternalError", times=None)
    caplog.set_level(logging.INFO, logger="scaler")
    caplog.clear()
    runs_before, terminates_before = clouds.proxy.count("RunInstances"), clouds.proxy.count("TerminateInstances")
    report = clouds.tick(loop, IDLE)
    assert report.unlisted == ["aws"]
    assert report.terminated == Counter({"idle": 2}), report.actions
    assert clouds.live() == {"aws-spot": machines["aws-spot"]}
    assert "listing instances of provider 'aws' failed" in caplog.text
    assert "no launch on aws-od, aws-spot this tick" in caplog.text

    # new work: only GCP spot may launch (the AWS resources are not launched on while unlisted)
    _enqueue(clouds.clearml, 5)
    report = clouds.tick(loop)
    assert report.unlisted == ["aws"]
    assert report.launched == Counter({"gcp-spot": 2}), report.actions
    assert clouds.proxy.count("RunInstances") == runs_before
    assert clouds.proxy.count("TerminateInstances") == terminates_before
    assert clouds.ticks == 5
