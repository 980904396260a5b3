"""Benchmark (a): API calls of one tick, counted at the HTTP level, for fleets of N instances.

The real loop (``scaler.engine.reconciler.Reconciler``) with the real AWS provider
(``PluginHost().provider("aws")``, boto3 over HTTP) against moto behind the EC2 proxy of
``tests/fakes/ec2.py`` (which records every EC2 action), and the real ClearML SDK against the
fake ClearML server of ``tests/fakes/clearml_server.py`` (which records every call).

* steady state: every instance has a busy worker, no queue has pending tasks: reads only.
  Target: reads ≤ 3 + ceil(N / 1000) (queues, workers, DescribeInstances pages).
* action tick: a tenth of the workers (of two resources) go idle past ``max_idle_time`` and a
  queue gets more pending tasks than its first resource can take, so the tick terminates on two
  resources and launches on two. Target: writes batched, one call per resource per action kind.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import clearml_env, emit, parse_args, table, verdict

from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.config.model import Config
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import (
    DUMMY_AMI,
    REGION,
    EC2Proxy,
    MotoServer,
    aws_environment,
    create_instances_direct,
)

NAME, PREFIX = "bench-fleet", "bench"
BUSY = ("a1", "a2")  # queue qa: the fleet (the action tick idles some of these)
PER_RESOURCE = 990  # max_instances is at most 1,000: past 2 x this, the rest of the fleet is on fillers f1, f2, ...
LAUNCH = ("b1", "b2")  # queue qb: launches (b1 fills up, demand spills to b2)
B1_ROOM = 3
EC2_WRITES = ("RunInstances", "TerminateInstances", "CreateTags", "RequestSpotInstances", "CancelSpotInstanceRequests")


def sizes_of(n: int) -> dict[str, int]:
    """How the fleet of ``n`` busy instances is spread: half on each of a1, a2 (at most
    :data:`PER_RESOURCE` each), the rest on filler resources of the same queue."""
    sizes = {resource: min(PER_RESOURCE, n // 2 + (n % 2 if k == 0 else 0)) for k, resource in enumerate(BUSY)}
    rest, k = n - sum(sizes.values()), 0
    while rest > 0:
        k += 1
        sizes[f"f{k}"] = min(PER_RESOURCE, rest)
        rest -= sizes[f"f{k}"]
    return sizes


def make_config(host: PluginHost, n: int) -> Config:
    def res(name: str, queue: str, max_instances: int) -> dict[str, object]:
        return {
            "name": name,
            "queue": queue,
            "max_instances": max_instances,
            "aws": {"instance_type": "t3.micro", "ami_id": DUMMY_AMI},
        }

    raw = {
        "scaler": {"name": NAME, "workers_prefix": PREFIX, "max_idle_time": 0, "polling_interval": 30},
        "aws": {"region": REGION, "request_timeout": 600},  # moto renders 1,000 instances in seconds
        "resources": [
            *(res(resource, "qa", size + 10) for resource, size in sizes_of(n).items()),
            res("b1", "qb", B1_ROOM),
            res("b2", "qb", 100),
        ],
    }
    problems = [
        p.render() for p in host.validate(copy.deepcopy(raw), "aws", host.provider_names()) if p.severity == "error"
    ]
    if problems:
        raise SystemExit(f"bench config invalid: {problems}")
    return build_config(raw, provider="aws")


def counts(proxy: EC2Proxy, fake: FakeClearML) -> tuple[Counter[str], Counter[str]]:
    ec2 = Counter(proxy.actions)
    clearml = Counter(name for name, _ in fake.calls)
    return ec2, clearml


def fleet(proxy: EC2Proxy, fake: FakeClearML, n: int) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    fake.create_queue("qa")
    fake.create_queue("qb")
    for resource, size in sizes_of(n).items():
        tags = {TAG_SCALER: NAME, TAG_RESOURCE: resource, TAG_LAUNCH_TOKEN: f"bench-{resource}"}
        ids[resource] = create_instances_direct(proxy, size, tags) if size else []
        for instance_id in ids[resource]:
            worker = f"{PREFIX}:{resource}:{instance_id}"
            fake.register_worker(worker, ["qa"])
            fake.enqueue("qa")
            fake.take_task(worker)
    return ids


def one_size(host: PluginHost, proxy: EC2Proxy, moto: MotoServer, fake: FakeClearML, n: int) -> dict[str, object]:
    moto.reset()
    proxy.reset()
    fake.reset()
    ids = fleet(proxy, fake, n)
    config = make_config(host, n)
    reconciler = Reconciler(config, host, host.provider("aws"), ClearMLSource(), clock=time.time)
    reconciler.tick()  # warm-up: login, clients, first sight of every worker
    proxy.clear()
    fake.clear_calls()
    started = time.perf_counter()
    report = reconciler.tick()
    steady_s = time.perf_counter() - started
    ec2, clearml = counts(proxy, fake)
    steady = {
        "ec2": ec2,
        "clearml": clearml,
        "seconds": steady_s,
        "errors": dict(report.errors),
        "actions": len(report.actions),
    }

    idle = max(1, n // 20)  # per resource: a tenth of the fleet in all
    for resource in BUSY:
        for instance_id in ids[resource][:idle]:
            fake.finish_task(f"{PREFIX}:{resource}:{instance_id}")
    for _ in range(B1_ROOM + 4):
        fake.enqueue("qb")
    proxy.clear()
    fake.clear_calls()
    started = time.perf_counter()
    report = reconciler.tick()
    action_s = time.perf_counter() - started
    ec2, clearml = counts(proxy, fake)
    action = {
        "ec2": ec2,
        "clearml": clearml,
        "seconds": action_s,
        "terminated": sum(report.terminated.values()),
        "launched": dict(report.launched),
        "errors": dict(report.errors),
    }
    return {"steady": steady, "action": action}


def fmt(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    sizes = (4,) if args.smoke else (10, 100, 1000, 3000)
    host = PluginHost()
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        moto = MotoServer()
        moto.start()
        proxy = EC2Proxy(moto).start()
        fake = FakeClearML().start()
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update({**clearml_env(fake.env(), tmp / "home"), **aws_environment(proxy, tmp)})
            results = {n: one_size(host, proxy, moto, fake, n) for n in sizes}
        finally:
            os.environ.clear()
            os.environ.update(saved)
            fake.stop()
            proxy.close()
            moto.stop()
    steady_rows, action_rows, target_rows = [], [], []
    for n, result in results.items():
        steady, action = result["steady"], result["action"]
        assert isinstance(steady, dict) and isinstance(action, dict)
        s_ec2, s_cm = steady["ec2"], steady["clearml"]
        reads = sum(s_ec2.values()) + sum(s_cm.values())
        writes_s = sum(v for k, v in s_ec2.items() if k in EC2_WRITES)
        limit = 3 + math.ceil(n / 1000)
        steady_rows.append([f"{n:,}", fmt(s_cm), fmt(s_ec2), reads, limit, f"{steady['seconds']:.2f} s"])
        a_ec2, a_cm = action["ec2"], action["clearml"]
        writes = {k: v for k, v in a_ec2.items() if k in EC2_WRITES}
        action_rows.append(
            [
                f"{n:,}",
                action["terminated"],
                fmt(Counter(action["launched"])),
                fmt(a_cm),
                fmt(a_ec2),
                f"{action['seconds']:.2f} s",
            ]
        )
        batched = writes.get("TerminateInstances", 0) <= 2 and writes.get("RunInstances", 0) <= 2
        target_rows.append(
            [
                f"{n:,}",
                f"{reads} ≤ {limit}",
                verdict(reads <= limit and writes_s == 0),
                fmt(Counter(writes)),
                verdict(batched),
            ]
        )
    out = [
        "## API calls per tick (HTTP level)",
        "",
        "The real loop, the real AWS provider (boto3) against moto behind the counting EC2 proxy, and the real "
        "ClearML SDK against the fake ClearML server; calls counted by the servers. Steady state: every "
        "instance busy, nothing pending. Action tick: a tenth of the fleet (on resources a1 and a2) idle past "
        f"max_idle_time, and {B1_ROOM + 4} tasks pending on a queue whose first resource (b1) has room for "
        f"{B1_ROOM}.",
        "",
        "Steady state:",
        "",
        table(["instances", "ClearML calls", "EC2 calls", "reads", "target ≤ 3 + ⌈N/1000⌉", "tick time"], steady_rows),
        "",
        "Action tick:",
        "",
        table(["instances", "terminated", "launched", "ClearML calls", "EC2 calls", "tick time"], action_rows),
        "",
        table(
            ["instances", "steady reads", "reads target", "action-tick writes", "one per resource per kind"],
            target_rows,
            "lllll",
        ),
        "",
    ]
    emit(args, "\n".join(out))


if __name__ == "__main__":
    main()
