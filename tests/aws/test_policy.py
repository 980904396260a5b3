"""The core loop (scaler.engine.reconciler + scaler.engine.policy) driving the aws provider over several
ticks with a fake clock: spot capacity errors roll back to on-demand, then a blackout; a
spot reclaim re-enqueues the task; a launch whose answer was lost is not repeated."""

from __future__ import annotations

from typing import Any

import pytest

from scaler.engine.fleet import WorkerObs
from scaler.engine.policy import QueueObs, RequeueResult
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost, Provider
from scaler.types import Secret, ServerInfo
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.support.aws import (
    make_config,
    raw_config,
    requests_of,
    resource,
    tags_of,
)


class FakeQueues:
    """A QueueSource whose queues and workers the test sets directly."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}
        self.workers: list[WorkerObs] = []
        self.requeued: list[tuple[str, str]] = []

    def read(self, queues: list[str]) -> tuple[dict[str, QueueObs] | None, list[WorkerObs] | None]:
        return {q: QueueObs(q, self.pending.get(q, 0)) for q in queues}, list(self.workers)

    def read_workers(self) -> list[WorkerObs] | None:
        return list(self.workers)

    def requeue(self, task_id: str, queue: str, reason: str, max_requeues: int) -> RequeueResult:
        self.requeued.append((task_id, queue))
        return RequeueResult.REQUEUED

    def server_info(self) -> ServerInfo:
        return ServerInfo(api_host="http://clearml.invalid:8008", access_key=Secret("k"), secret_key=Secret("s"))


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


def _alive(moto_ec2: Any) -> list[dict[str, Any]]:
    pages = moto_ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _markets(proxy: EC2Proxy) -> list[str]:
    return [
        "spot" if r.get("InstanceMarketOptions.MarketType") == "spot" else "on-demand"
        for r in requests_of(proxy, "RunInstances")
    ]


def _loop(host: PluginHost, aws: Provider, **resource_settings: Any) -> tuple[Reconciler, FakeQueues, Clock]:
    import time

    raw = raw_config(
        resources=[resource("gpu", queue="gpu", max_instances=4, **resource_settings)],
        stuck_timeout="3h",
        max_idle_time="1h",
    )
    config = make_config(host, raw)
    queues = FakeQueues()
    clock = Clock(time.time())
    return Reconciler(config, host, aws, queues, clock=clock), queues, clock


def test_spot_capacity_errors_roll_back_to_on_demand_then_blackout(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    loop, queues, clock = _loop(
        host, aws, spot=True, regular_instance_rollback_timeout="10m", spot_blackout_period="30m"
    )
    outage = ec2_proxy.fail(
        "RunInstances",
        "InsufficientInstanceCapacity",
        times=None,
        when=lambda p: p.get("InstanceMarketOptions.MarketType") == "spot",
    )
    queues.pending = {"gpu": 1}

    report = loop.tick()  # spot fails; not retried again within the same tick
    assert report.errors["capacity"] == 1 and not _alive(moto_ec2)
    clock.advance(5)
    report = loop.tick()  # still inside the rollback timeout: spot again
    assert report.errors["capacity"] == 1 and not _alive(moto_ec2)
    assert set(_markets(ec2_proxy)) == {"spot"}
    spot_attempts = outage.hits

    clock.advance(5)
    report = loop.tick()  # 10 minutes of failures: on-demand, and a 30 minute blackout starts
    assert report.launched["gpu"] == 1
    [first] = _alive(moto_ec2)
    assert "InstanceLifecycle" not in first
    assert _markets(ec2_proxy)[-1] == "on-demand"

    outage.remaining = 0  # spot capacity is back, but the blackout holds
    clock.advance(5)
    queues.pending = {"gpu": 2}
    report = loop.tick()
    assert report.launched["gpu"] == 1
    assert _markets(ec2_proxy)[-2:] == ["on-demand", "on-demand"]
    assert outage.hits == spot_attempts  # spot was not even tried during the blackout
    assert not any(i.get("InstanceLifecycle") == "spot" for i in _alive(moto_ec2))

    clock.advance(26)  # the blackout is over: spot again
    queues.pending = {"gpu": 3}
    report = loop.tick()
    assert report.launched["gpu"] == 1
    assert _markets(ec2_proxy)[-1] == "spot"
    lifecycles = sorted(i.get("InstanceLifecycle", "on-demand") for i in _alive(moto_ec2))
    assert lifecycles == ["on-demand", "on-demand", "spot"]
    assert not loop.state.unconfirmed


def test_spot_reclaim_requeues_the_task_and_replaces_the_machine(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    loop, queues, clock = _loop(host, aws, spot=True)
    queues.pending = {"gpu": 1}
    loop.tick()
    [inst] = _alive(moto_ec2)
    assert inst["InstanceLifecycle"] == "spot"
    worker = f"dynamic_aws:gpu:{inst['InstanceId']}"
    queues.pending = {}
    queues.workers = [WorkerObs(worker, ("gpu",), task="task-1")]
    clock.advance(1)
    loop.tick()
    assert queues.requeued == []

    moto_ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])  # AWS reclaims the spot machine
    clock.advance(1)
    report = loop.tick()  # the dead worker is still listed by ClearML for a while
    assert queues.requeued == [("task-1", "gpu")] and report.requeued == 1

    queues.pending = {"gpu": 1}  # the task waits again: a new machine comes
    clock.advance(1)
    report = loop.tick()
    assert report.launched["gpu"] == 1
    [replacement] = _alive(moto_ec2)
    assert replacement["InstanceId"] != inst["InstanceId"]
    assert queues.requeued == [("task-1", "gpu")]  # once


def test_a_launch_whose_answer_was_lost_is_not_repeated(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    loop, queues, clock = _loop(host, aws)
    hang = ec2_proxy.timeout_after_accept("RunInstances", times=None, drop=True)
    queues.pending = {"gpu": 2}
    report = loop.tick()
    assert report.errors["transient"] == 1 and report.launched["gpu"] == 0
    assert len(_alive(moto_ec2)) == 2  # EC2 launched them all the same
    hang.remaining = 0
    for _ in range(3):
        clock.advance(1)
        loop.tick()
    alive = _alive(moto_ec2)
    assert len(alive) == 2  # never a second batch
    assert {tags_of(i)["clearml-scaler-launch-token"] for i in alive} == {
        requests_of(ec2_proxy, "RunInstances")[0]["ClientToken"]
    }
    assert not loop.state.unconfirmed


def test_a_stopped_instance_is_terminated(host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy) -> None:
    loop, queues, clock = _loop(host, aws)
    queues.pending = {"gpu": 1}
    loop.tick()
    [inst] = _alive(moto_ec2)
    moto_ec2.stop_instances(InstanceIds=[inst["InstanceId"]])  # stopped by hand: no agent, EBS still bills
    queues.pending = {}
    clock.advance(1)
    report = loop.tick()
    assert report.terminated["stopped"] == 1
    [res] = moto_ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"]
    assert res["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")
