"""The fault matrix: every fault injected at the wire, with the behaviour it must produce.

Faults are armed on the real servers the real clients talk to: the EC2 proxy in front of moto
(boto3) and the fake ClearML API server (the clearml SDK). The loop is the real ``Reconciler``
with the real ``aws`` provider and ``ClearMLSource``, ticked by hand on a fake clock that starts
at the real time (EC2 stamps ``LaunchTime`` with the real clock). The same faults on Compute
Engine (stockouts, quota, 403, 429/5xx, lost operations) are injected into the fake GCE server in
``test_gcp_provider.py`` and ``test_gcp_e2e.py``. docs/reliability.md lists each row with its test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scaler.clearml.queues import ClearMLSource
from scaler.config.model import Config
from scaler.engine.reconciler import Reconciler, TickReport
from scaler.host import PluginHost
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.support.aws import SCALER, aws_fixtures, make_config, raw_config, resource
from tests.support.cli import run_cli

_fresh_clients, host, aws = aws_fixtures()

PREFIX = "dynamic_aws"  # raw_config's workers_prefix


class Clock:
    """The scaler's wall clock, and the monotonic clock that measures real elapsed time."""

    def __init__(self) -> None:
        self.now = time.time()
        self.elapsed = 0.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float, jump: float = 0.0) -> None:
        """``seconds`` pass; the wall clock also jumps by ``jump``."""
        self.now += seconds + jump
        self.elapsed += seconds


@dataclass
class Env:
    """One fleet: config, loop, the fakes, and the agents played by hand."""

    host: PluginHost
    fake: FakeClearML
    proxy: EC2Proxy
    moto: Any
    clock: Clock = field(default_factory=Clock)
    config: Config | None = None
    loop: Reconciler | None = None

    def setup(
        self, resources: list[dict[str, Any]], *, timeout: float = 3.0, aws: dict[str, Any] | None = None, **scaler: Any
    ) -> Reconciler:
        settings = {"polling_interval": "30s", "max_idle_time": "5m", "stuck_timeout": "20m", **scaler}
        self.config = make_config(self.host, raw_config(resources, aws={"max_attempts": 3, **(aws or {})}, **settings))
        self.loop = Reconciler(
            self.config,
            self.host,
            self.host.provider("aws"),
            ClearMLSource(timeout=timeout),
            clock=self.clock,
            monotonic=self.clock.monotonic,
        )
        return self.loop

    def tick(self, advance: float = 30.0, *, jump: float = 0.0) -> TickReport:
        assert self.loop is not None
        self.clock.advance(advance, jump)
        return self.loop.tick()

    def instances(self, *states: str) -> list[dict[str, Any]]:
        """This fleet's instances in moto (alive ones unless states are given)."""
        pages = self.moto.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{TAG_SCALER}", "Values": [SCALER]},
                {"Name": "instance-state-name", "Values": list(states or ("pending", "running"))},
            ]
        )
        return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]

    def alive(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inst in self.instances():
            name = tags_of(inst)[TAG_RESOURCE]
            out[name] = out.get(name, 0) + 1
        return out

    def boot(self) -> list[str]:
        """Every alive instance registers its worker (on its resource's queue)."""
        assert self.config is not None
        known = self.fake.workers()
        ids = []
        for inst in self.instances():
            res = tags_of(inst)[TAG_RESOURCE]
            wid = f"{PREFIX}:{res}:{inst['InstanceId']}"
            if wid not in known:
                found = self.config.resource(res)
                self.fake.register_worker(wid, [found.queue] if found else [])
            ids.append(wid)
        return ids

    def idle_fleet(self, queue: str, n: int) -> list[str]:
        """``n`` machines launched for ``queue``, booted, run a task each and now idle (timer started)."""
        for _ in range(n):
            self.fake.enqueue(queue)
        report = self.tick()
        assert sum(report.launched.values()) == n, report
        workers = self.boot()
        for wid in workers:
            if self.fake.workers()[wid]["task"] is None:
                self.fake.take_task(wid)
        for wid in workers:
            self.fake.finish_task(wid)
        report = self.tick()  # sees them idle: idle timers start
        assert sum(s["idle"] for s in report.fleet.values()) >= n, report
        return [i["InstanceId"] for i in self.instances()]

    def state_of(self, instance_id: str) -> str:
        [res] = self.moto.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(res["Instances"][0]["State"]["Name"])


def tags_of(inst: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags") or []}


def launches(proxy: EC2Proxy) -> list[dict[str, str]]:
    return [r for r in proxy.requests if r.get("Action") == "RunInstances"]


@pytest.fixture
def env(
    host: PluginHost, fake_clearml: FakeClearML, ec2_proxy: EC2Proxy, moto_server: MotoServer, aws_env: dict[str, str]
) -> Iterator[Env]:
    yield Env(host, fake_clearml, ec2_proxy, moto_server.client("ec2"))


def gpu(name: str, max_instances: int = 2, instance_type: str = "t3.micro", **extra: Any) -> dict[str, Any]:
    return resource(name, queue="gpu", max_instances=max_instances, aws={"instance_type": instance_type}, **extra)


# -- EC2: launch faults -------------------------------------------------------------------------------


def test_spot_capacity_error_spills_then_rolls_back_to_on_demand(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.setup(
        [
            gpu("spot-a", 2, spot=True, regular_instance_rollback_timeout="10m", spot_blackout_period="30m"),
            gpu("od-b", 1, "t3.small"),
        ]
    )
    env.proxy.fail(
        "RunInstances",
        "InsufficientInstanceCapacity",
        times=None,
        when=lambda p: p.get("InstanceMarketOptions.MarketType") == "spot",
    )
    for _ in range(3):
        env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["capacity"] == 1
    assert dict(report.launched) == {"od-b": 1}  # spilled in the same tick
    assert env.alive() == {"od-b": 1}

    report = env.tick(5 * 60)  # spot is retried, still failing: nothing on-demand yet
    assert report.errors["capacity"] == 1 and not report.launched

    with caplog.at_level(logging.WARNING, logger="scaler"):
        report = env.tick(6 * 60)  # failing for 11m ≥ regular_instance_rollback_timeout
    assert dict(report.launched) == {"spot-a": 2}, report
    assert "launching on-demand, spot blackout for 30m" in caplog.text
    assert all("InstanceLifecycle" not in i for i in env.instances() if tags_of(i)[TAG_RESOURCE] == "spot-a")
    assert "InstanceMarketOptions.MarketType" not in launches(env.proxy)[-1]
    assert env.alive() == {"od-b": 1, "spot-a": 2}


def test_on_demand_capacity_error_goes_to_the_next_resource(env: Env) -> None:
    env.setup([gpu("a", 2, "t3.micro"), gpu("b", 2, "t3.small")])
    fault = env.proxy.fail(
        "RunInstances", "InsufficientInstanceCapacity", times=None, when=lambda p: p.get("InstanceType") == "t3.micro"
    )
    env.fake.enqueue("gpu")
    env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["capacity"] == 1 and dict(report.launched) == {"b": 2}
    attempts = len(launches(env.proxy))

    for _ in range(2):
        env.fake.enqueue("gpu")
    report = env.tick()  # b is full, a is held back for a while: no new call to a
    assert not report.launched and len(launches(env.proxy)) == attempts

    fault.remaining = 0  # capacity is back
    report = env.tick(60)
    assert dict(report.launched) == {"a": 2}
    assert env.alive() == {"a": 2, "b": 2}


@pytest.mark.parametrize(
    ("code", "action"),
    [
        ("RequestLimitExceeded", "RunInstances"),
        ("RequestLimitExceeded", "DescribeInstances"),
        ("RequestLimitExceeded", "TerminateInstances"),
        ("InternalError", "RunInstances"),
        ("InternalError", "DescribeInstances"),
        ("Unavailable", "TerminateInstances"),
    ],
)
def test_throttling_and_5xx_are_retried_and_succeed(env: Env, code: str, action: str) -> None:
    env.setup([gpu("a", 2)], max_idle_time="1m")
    if action == "TerminateInstances":
        env.idle_fleet("gpu", 1)
        env.clock.advance(60)
    else:
        env.fake.enqueue("gpu")
    before = env.proxy.count(action)
    fault = env.proxy.fail(action, code, times=1)
    report = env.tick()
    assert fault.hits == 1 and env.proxy.count(action) == before + 2  # the retry went through
    assert not report.errors and report.cloud_ok
    if action == "TerminateInstances":
        assert report.terminated["idle"] == 1 and env.alive() == {}
    else:
        assert dict(report.launched) == {"a": 1} and env.alive() == {"a": 1}


def test_persistent_5xx_on_list_launches_nothing_and_recovers(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.setup([gpu("a", 2)], max_idle_time="1m")
    [idle] = env.idle_fleet("gpu", 1)
    env.fake.enqueue("cpu")  # noise: a queue nobody serves
    fault = env.proxy.fail("DescribeInstances", "InternalError", times=None)
    for _ in range(2):
        env.fake.enqueue("gpu")
    with caplog.at_level(logging.WARNING, logger="scaler"):
        report = env.tick(120)
    assert not report.cloud_ok and report.errors["transient"] == 1
    assert not report.launched and not report.terminated
    assert "the cloud could not be listed: launching nothing" in caplog.text
    assert env.alive() == {"a": 1} and env.state_of(idle) == "running"
    fault.remaining = 0
    report = env.tick()
    assert report.cloud_ok and dict(report.launched) == {"a": 1}  # two pending, one idle machine


def test_persistent_5xx_on_launch_is_retried_next_tick_with_the_same_token(env: Env) -> None:
    env.setup([gpu("a", 2)], aws={"max_attempts": 2})
    fault = env.proxy.fail("RunInstances", "InternalError", times=None)
    env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["transient"] == 1 and not report.launched and env.alive() == {}
    [first, second] = launches(env.proxy)
    assert first["ClientToken"] == second["ClientToken"]
    fault.remaining = 0
    report = env.tick()
    assert dict(report.launched) == {"a": 1}
    assert {r["ClientToken"] for r in launches(env.proxy)} == {first["ClientToken"]}  # no second decision
    assert env.alive() == {"a": 1}


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "read-timeout"])
def test_answer_lost_after_ec2_accepted_the_launch_makes_no_second_batch(env: Env, drop: bool) -> None:
    env.setup([gpu("a", 3)], aws={"max_attempts": 2, "request_timeout": "1s"})
    fault = env.proxy.timeout_after_accept("RunInstances", times=None, drop=drop, delay=5)
    for _ in range(3):
        env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["transient"] == 1 and not report.launched
    assert env.alive() == {"a": 3}  # EC2 did launch them: the scaler could not know
    tokens = {r["ClientToken"] for r in launches(env.proxy)}
    assert len(tokens) == 1
    fault.remaining = 0
    for _ in range(3):  # the next ticks see the instances by their launch token: no new batch
        report = env.tick()
        assert not report.launched and not report.errors
    assert env.alive() == {"a": 3}
    assert {r["ClientToken"] for r in launches(env.proxy)} == tokens
    assert {tags_of(i)[TAG_LAUNCH_TOKEN] for i in env.instances()} == tokens


@pytest.mark.parametrize(
    ("action", "code", "permission"),
    [
        ("RunInstances", "UnauthorizedOperation", "ec2:RunInstances"),
        ("DescribeInstances", "UnauthorizedOperation", "ec2:DescribeInstances"),
        ("DescribeInstances", "AuthFailure", "AWS rejected the credentials"),
    ],
)
def test_auth_failure_names_the_permission_launches_nothing_and_the_loop_lives(
    env: Env, caplog: pytest.LogCaptureFixture, action: str, code: str, permission: str
) -> None:
    profile = env.proxy.create_instance_profile("workers")
    env.setup([gpu("a", 2)], aws={"iam_instance_profile": profile})
    env.proxy.fail(action, code, times=None)
    env.fake.enqueue("gpu")
    with caplog.at_level(logging.WARNING, logger="scaler"):
        reports = [env.tick() for _ in range(3)]
    assert all(r.errors["auth"] == 1 and not r.errors["bug"] for r in reports[:1])
    assert all(not r.launched and not r.errors["bug"] for r in reports)
    assert permission in caplog.text
    if action == "RunInstances":
        assert "iam:PassRole" in caplog.text  # the instance profile needs it too
        assert len(launches(env.proxy)) == 1  # the resource is held back, not hammered every tick
    assert "Encoded authorization failure message:" not in caplog.text
    assert env.instances() == []


def test_quota_exceeded_blocks_the_resource_and_uses_the_next(env: Env) -> None:
    env.setup([gpu("a", 2, "g5.xlarge"), gpu("b", 2, "t3.small")])
    fault = env.proxy.fail(
        "RunInstances", "VcpuLimitExceeded", times=None, when=lambda p: p.get("InstanceType") == "g5.xlarge"
    )
    env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["quota"] == 1
    assert dict(report.launched) == {"b": 1}, report  # the next resource, in the same tick
    attempts = len(launches(env.proxy))
    for _ in range(2):
        env.fake.enqueue("gpu")
    report = env.tick()
    assert dict(report.launched) == {"b": 1} and len(launches(env.proxy)) == attempts + 1  # a stays blocked
    fault.remaining = 0
    env.fake.enqueue("gpu")
    report = env.tick(5 * 60)
    # the hold is over: 4 pending, b's 2 still booting -> the other 2 go to a, first in config order
    assert dict(report.launched) == {"a": 2}, report


# -- EC2: terminate faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [True, False], ids=["ec2-names-the-id", "ec2-says-not-which"])
def test_partial_terminate_failure_still_terminates_the_others(env: Env, named: bool) -> None:
    env.setup([gpu("a", 3)], max_idle_time="1m")
    ids = env.idle_fleet("gpu", 3)
    gone = ids[0]
    env.moto.terminate_instances(InstanceIds=[gone])  # really gone meanwhile
    message = f"The instance ID '{gone}' does not exist" if named else "Some instance IDs do not exist"
    env.proxy.fail(
        "TerminateInstances", "InvalidInstanceID.NotFound", message, when=lambda p: gone in p.values(), times=None
    )
    report = env.tick(60)
    assert not report.errors
    assert [env.state_of(i) for i in ids[1:]] == ["terminated", "terminated"]
    assert env.alive() == {}


def test_instance_vanishing_between_list_and_terminate(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = env.setup([gpu("a", 3)], max_idle_time="1m")
    ids = env.idle_fleet("gpu", 3)
    reread = loop.source.read_workers
    calls = []

    def vanish_then_read() -> Any:  # the second read is the re-read after the list, right before terminating
        calls.append(1)
        if len(calls) == 2:
            env.moto.terminate_instances(InstanceIds=[ids[0]])
        return reread()

    monkeypatch.setattr(loop.source, "read_workers", vanish_then_read)
    report = env.tick(60)
    assert len(calls) == 2 and report.fleet["a"]["alive"] == 3
    assert not report.errors and report.terminated["idle"] == 3
    assert env.alive() == {}
    monkeypatch.setattr(loop.source, "read_workers", reread)
    report = env.tick()
    assert not report.errors and not report.terminated and not report.requeued


# -- ClearML: workers that do not match the fleet ------------------------------------------------------


def test_worker_without_an_instance_counts_for_nothing_and_is_left_alone(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.setup([gpu("a", 2)])
    idle_stray = f"{PREFIX}:a:i-00000000000000dead"
    busy_stray = f"{PREFIX}:a:i-0000000000000beef"
    env.fake.register_worker(idle_stray, ["gpu"])
    env.fake.register_worker(busy_stray, ["gpu"])
    env.fake.enqueue("gpu")
    task = env.fake.take_task(busy_stray)
    env.fake.enqueue("gpu")
    with caplog.at_level(logging.INFO, logger="scaler"):
        reports = [env.tick(), env.tick(), env.tick(10 * 60)]
    assert dict(reports[0].launched) == {"a": 1}  # the idle stray is not capacity
    assert reports[1].fleet["a"] == {"alive": 1, "booting": 1, "idle": 0, "busy": 0}
    assert not reports[1].launched and not reports[2].launched
    assert all(not r.terminated and not r.requeued and not r.errors for r in reports)
    for stray in (idle_stray, busy_stray):
        assert caplog.text.count(f"worker {stray} has this fleet's prefix but no live instance") == 1
    assert env.proxy.count("TerminateInstances") == 0
    assert task and env.fake.task(task)["status"] == "in_progress"  # never stopped or re-enqueued


def test_two_workers_on_one_instance_are_one_machine_busy_if_either_is(env: Env) -> None:
    env.setup([gpu("a", 2)], max_idle_time="5m")
    env.fake.enqueue("gpu")
    report = env.tick()
    [inst] = env.instances()
    main, second = f"{PREFIX}:a:{inst['InstanceId']}", f"{PREFIX}:a:{inst['InstanceId']}:gpu1"
    env.fake.register_worker(main, ["gpu"])
    env.fake.register_worker(second, ["gpu"])
    assert env.fake.take_task(second)
    for _ in range(3):
        report = env.tick(5 * 60)
        assert report.fleet["a"] == {"alive": 1, "booting": 0, "idle": 0, "busy": 1}
        assert not report.terminated and not report.launched
    env.fake.finish_task(second)
    report = env.tick()
    assert report.fleet["a"]["idle"] == 1 and not report.terminated
    report = env.tick(5 * 60)
    assert report.terminated["idle"] == 1
    [call] = [r for r in env.proxy.requests if r.get("Action") == "TerminateInstances"]
    assert [v for k, v in call.items() if k.startswith("InstanceId.")] == [inst["InstanceId"]]


# -- ClearML: the server fails ---------------------------------------------------------------------------


def _break(fake: FakeClearML, how: str) -> None:
    if how == "down":
        fake.set_down(True)
    elif how == "reset":
        fake.set_down(True, mode="reset")
    elif how == "slow":
        fake.set_slow(3.0)
    elif how == "garbage":
        fake.set_garbage(True)
    elif how == "5xx-workers":
        fake.fail_next("workers.get_all", times=100, status=500)
    elif how == "5xx-queues":
        fake.fail_next("queues.get_all", times=100, status=500)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["down", "reset", "slow", "garbage", "5xx-workers", "5xx-queues"])
def test_clearml_unreadable_scales_nothing_then_recovers(env: Env, caplog: pytest.LogCaptureFixture, how: str) -> None:
    env.setup([gpu("a", 2), resource("cpu", queue="cpu", max_instances=1)], timeout=1.0, max_idle_time="1m")
    [idle] = env.idle_fleet("cpu", 1)
    env.clock.advance(5 * 60)  # long past max_idle_time
    env.fake.enqueue("gpu")
    _break(env.fake, how)
    with caplog.at_level(logging.WARNING, logger="scaler"):
        report = env.tick()
    assert not report.clearml_ok
    assert not report.launched and not report.terminated
    assert "the ClearML server could not be read" in caplog.text
    assert env.alive() == {"cpu": 1} and env.state_of(idle) == "running"
    env.fake.clear_faults()
    report = env.tick()
    assert report.clearml_ok
    assert dict(report.launched) == {"a": 1} and report.terminated["idle"] == 1
    assert env.alive() == {"a": 1}


def test_clearml_failing_between_observe_and_terminate_terminates_nothing(env: Env) -> None:
    env.setup([gpu("a", 2)], max_idle_time="1m")
    [idle] = env.idle_fleet("gpu", 1)
    original = env.fake._ep_workers__get_all

    def first_read_then_fail(body: Any, req: Any) -> Any:
        env.fake.fail_next("workers.get_all", status=500)  # the re-read right before terminating fails
        env.fake._ep_workers__get_all = original  # type: ignore[method-assign]
        return original(body, req)

    env.fake._ep_workers__get_all = first_read_then_fail  # type: ignore[method-assign]
    report = env.tick(5 * 60)
    assert not report.terminated and env.state_of(idle) == "running"
    report = env.tick()  # the timer was kept: terminated at the next good tick, not max_idle_time later
    assert report.terminated["idle"] == 1


# -- the vault ----------------------------------------------------------------------------------------------


VAULT_CONFIG = """
scaler {{ name = "{name}", workers_prefix = "dynamic_aws", polling_interval = 30s, {extra} }}
aws {{ region = "us-east-1" }}
resources = [ {{ name = "a", queue = "gpu", max_instances = 1, aws {{ instance_type = "t3.micro", ami_id = "ami-0123456789abcdef0" }} }} ]
"""


@pytest.mark.parametrize("where", ["file", "server"])
@pytest.mark.parametrize("ignore", [False, True], ids=["strict", "ignore_vault_parsing_errors"])
def test_vault_that_does_not_parse(
    tmp_path: Path, fake_clearml: FakeClearML, ec2_proxy: EC2Proxy, aws_env: dict[str, str], where: str, ignore: bool
) -> None:
    config = tmp_path / "c.conf"
    extra = "ignore_vault_parsing_errors = true" if ignore else ""
    config.write_text(VAULT_CONFIG.format(name=SCALER, extra=extra))
    bad = "auto_scaler.v1.aws { aws_region = \n"
    args = ["run", "--provider", "aws", "--config", str(config), "--once"]
    if where == "file":
        (tmp_path / "v.conf").write_text(bad)
        args += ["--vault", str(tmp_path / "v.conf"), "--no-server-vault"]
    else:
        fake_clearml.add_vault(bad, "broken")
    fake_clearml.enqueue("gpu")
    done = run_cli(*args)
    if ignore:
        assert done.returncode == 0, done.stderr
        assert "ignore" in done.stderr.lower()
        assert ec2_proxy.count("RunInstances") == 1  # ran as configured
    else:
        assert done.returncode == 1, done.stderr
        assert "vault" in done.stderr and "error" in done.stderr
        assert ec2_proxy.count("RunInstances") == 0 and ec2_proxy.count("DescribeInstances") == 0


# -- the clock jumps -------------------------------------------------------------------------------------------


def _mixed_fleet(env: Env) -> tuple[str, str, str]:
    """A busy and a still booting machine of gpu resource a, an idle machine (timer running) of cpu."""
    env.setup([gpu("a", 4), resource("cpu", queue="cpu", max_instances=1)], max_idle_time="5m", stuck_timeout="20m")
    [idle] = env.idle_fleet("cpu", 1)
    env.fake.enqueue("gpu")
    assert dict(env.tick().launched) == {"a": 1}
    env.boot()
    [busy] = [i["InstanceId"] for i in env.instances() if i["InstanceId"] != idle]
    assert env.fake.take_task(f"{PREFIX}:a:{busy}")
    env.fake.enqueue("gpu")
    assert dict(env.tick().launched) == {"a": 1}  # a second machine boots for the next task
    [booting] = [i["InstanceId"] for i in env.instances() if i["InstanceId"] not in (busy, idle)]
    return busy, idle, booting


def test_clock_jump_forward_never_terminates_busy_machines_nor_churns(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    busy, idle, booting = _mixed_fleet(env)
    report = env.tick(jump=6 * 3600)
    assert "the wall clock jumped forward 6h" in caplog.text
    # 30 s passed, not 6 h: nothing is idle or stuck for longer than it really was
    assert not report.errors and not report.terminated and not report.launched, report
    assert env.state_of(busy) == env.state_of(idle) == env.state_of(booting) == "running"
    for _ in range(3):
        report = env.tick()
        assert not report.errors and not report.terminated and not report.launched
    # the idle timer kept counting real time: the idle machine goes once max_idle_time really passed
    report = env.tick(5 * 60)
    assert not report.errors and report.terminated == {"idle": 1}, report
    assert env.state_of(idle) in ("shutting-down", "terminated")
    assert env.state_of(busy) == env.state_of(booting) == "running"


def test_clock_jump_backward_breaks_nothing_and_delays_nothing_for_long(env: Env) -> None:
    busy, idle, booting = _mixed_fleet(env)
    report = env.tick(jump=-6 * 3600)
    assert not report.errors and not report.terminated and not report.launched
    env.boot()  # the booting machine's agent comes up and takes the pending task
    assert env.fake.take_task(f"{PREFIX}:a:{booting}")
    for _ in range(3):
        report = env.tick()
        assert not report.errors and not report.terminated and not report.launched
    # idle timers move with the clock: the idle machine goes after max_idle_time, not 6 h later
    report = env.tick(5 * 60)
    assert not report.errors and report.terminated == {"idle": 1}, report
    assert env.state_of(idle) in ("shutting-down", "terminated")
    assert env.state_of(busy) == env.state_of(booting) == "running"


def test_clock_jump_backward_does_not_block_a_resource_for_hours(env: Env) -> None:
    env.setup([gpu("a", 2, "g5.xlarge"), gpu("b", 1, "t3.small")])
    fault = env.proxy.fail(
        "RunInstances", "VcpuLimitExceeded", times=1, when=lambda p: p.get("InstanceType") == "g5.xlarge"
    )
    env.fake.enqueue("gpu")
    report = env.tick()
    assert report.errors["quota"] == 1 and fault.hits == 1
    for _ in range(2):
        env.fake.enqueue("gpu")
    report = env.tick(jump=-6 * 3600)
    report = env.tick(10 * 60)  # the hold is 5 minutes on the scaler's clock, not 6 h 5 min
    assert dict(report.launched).get("a") == 2, report
