"""Crash/restart chaos: the real ``scaler run --provider aws`` as a subprocess, killed with
SIGKILL at random points while tasks arrive and finish, restarted, and checked.

Per seed, one fleet (its own scaler name, workers prefix, fake ClearML server and AWS access
key, so several seeds share moto and the EC2 proxy without seeing each other) runs a seeded
plan: task arrivals with durations, two or three ``kill -9`` points, each one of

* ``time``: at a random moment (mid-read, mid-decide, mid-sleep),
* ``tick``: right after a tick ended (the state file was just rewritten), i.e. between ticks,
* ``launch``: the scaler's ``RunInstances`` reached EC2 and took effect, the answer never came back,
* ``launch-unapplied``: killed while its ``RunInstances`` was in flight, before EC2 applied it,
* ``terminate``: its ``TerminateInstances`` took effect, the answer never came back,

and some EC2 weather for that fleet only (a spot outage, throttling, 5xx, an answer lost after
EC2 accepted a launch). A test "agent driver" plays the machines: every running instance of
the fleet registers its worker ``<prefix>:<resource>:<instance id>`` after a short boot, takes
tasks that have waited at least ``TAKE_DELAY``, finishes them after their duration, and its
worker goes away (after a seeded linger, as ClearML keeps dead workers listed) once the
instance is gone. A sampler reads moto directly (not through the proxy) every 0.1 s.

Invariants (any breach fails the seed, with the plan, the sampled timeline and the scaler's log):

* at every sample, alive (pending/running) instances per resource ≤ ``max_instances``;
* every instance carrying the fleet's name tag carries the resource and launch-token tags, and
  no instance appears without an owner tag (nothing untracked); foreign instances survive;
* no instance is terminated while its worker runs a task that it took before the scaler's last
  read of the workers (checked when ``TerminateInstances`` reaches EC2). A task taken in the
  few milliseconds between that read and the call is a race the design cannot close (it is
  reported; the scaler re-enqueues the task on its next tick); see docs/reliability.md;
* the scaler never exits on its own; after the plan, every task completes and the fleet
  drains to zero machines.

The CI run uses 4 seeds in parallel; ``-m slow`` runs 50 (or ``python bench/chaos.py --seeds 50``).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from tests.fakes.clearml_server import FakeClearML
from tests.fakes.ec2 import (
    DUMMY_AMI,
    REGION,
    EC2Proxy,
    Fault,
    aws_environment,
    ec2_client,
    run_foreign_instances,
)
from tests.support.cli import start_cli

POLL = 1.0  # scaler.polling_interval (the schema's minimum)
IDLE = 3.0  # scaler.max_idle_time
TAKE_DELAY = 1.0  # an agent takes a task once it has waited this long (agents poll their queue)
LEASE_TTL = 10.0  # a killed scaler's single-writer lease outlives it by up to this long
SAMPLE_EVERY = 0.1
ALIVE = ("pending", "running")
LISTED = ("pending", "running", "shutting-down", "stopping", "stopped")
KILL_MODES = ("time", "tick", "launch", "launch-unapplied", "terminate")
WEATHER = ("spot-outage", "throttle", "ec2-5xx", "lost-answer")


@dataclass(frozen=True)
class Res:
    queue: str
    max_instances: int
    spot: bool
    instance_type: str


RESOURCES = {
    "a": Res("main", 2, True, "t3.micro"),  # spot first ...
    "b": Res("main", 2, False, "t3.small"),  # ... spilling to on-demand
    "c": Res("side", 1, False, "t3.nano"),
}


# -- the seeded plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    seed: int
    arrivals: tuple[tuple[float, str, float], ...]  # (at, queue, duration)
    kills: tuple[tuple[float, str, float], ...]  # (at, mode, restart delay)
    weather: tuple[tuple[float, str], ...]  # (at, fault)
    linger: float  # how long a dead idle worker stays listed
    span: float  # last arrival / kill time

    def describe(self) -> str:
        arrivals = ", ".join(f"{at:.1f}s {q} {d:.1f}s" for at, q, d in self.arrivals)
        kills = ", ".join(f"{at:.1f}s {mode} (restart +{delay:.1f}s)" for at, mode, delay in self.kills)
        weather = ", ".join(f"{at:.1f}s {w}" for at, w in self.weather) or "none"
        return (
            f"seed {self.seed}: tasks [{arrivals}]\n  kills [{kills}]\n  weather [{weather}]; "
            f"dead idle workers linger {self.linger:.1f}s"
        )


def make_plan(seed: int, *, tasks: int = 8, span: float = 10.0, kills: int = 2) -> Plan:
    rng = random.Random(seed)
    arrivals = sorted(
        (round(rng.uniform(0.3, span), 2), "main" if rng.random() < 0.8 else "side", round(rng.uniform(0.5, 4.0), 2))
        for _ in range(tasks)
    )
    kill_times = sorted(rng.uniform(1.0, span + 4.0) for _ in range(kills))
    plan_kills = tuple((round(at, 2), rng.choice(KILL_MODES), round(rng.uniform(0.0, 1.5), 2)) for at in kill_times)
    weather = tuple(sorted((round(rng.uniform(0.5, span), 2), w) for w in rng.sample(WEATHER, rng.randint(0, 2))))
    return Plan(seed, tuple(arrivals), plan_kills, weather, round(rng.uniform(0.0, 2.0), 2), span)


SIZES: dict[str, dict[str, Any]] = {
    "small": {"tasks": 8, "span": 10.0, "kills": 2},
    "full": {"tasks": 14, "span": 16.0, "kills": 3},
}


# -- helpers ----------------------------------------------------------------------------------


def clean_environ() -> dict[str, str]:
    """This process's environment without anything that points the SDKs elsewhere."""
    drop = ("CLEARML_", "TRAINS_", "AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def config_text(name: str, prefix: str) -> str:
    resources = "\n".join(
        f"""  {{ name = "{r}", queue = "{res.queue}", max_instances = {res.max_instances}, spot = {str(res.spot).lower()},
    regular_instance_rollback_timeout = 4s, spot_blackout_period = 6s,
    aws {{ instance_type = "{res.instance_type}", ami_id = "{DUMMY_AMI}" }} }}"""
        for r, res in RESOURCES.items()
    )
    return f"""
scaler {{
  name = "{name}"
  workers_prefix = "{prefix}"
  polling_interval = {POLL:g}s
  max_idle_time = {IDLE:g}s
  stuck_timeout = 60s
}}
aws {{ region = "{REGION}", use_iam_role = true, request_timeout = 5s, max_attempts = 3 }}
resources = [
{resources}
]
"""


def _iso(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


# -- one fleet under chaos ----------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    alive: dict[str, int]


class SeedRun:
    """One seeded fleet: its fake ClearML, its scaler process(es), its agents, its checks."""

    def __init__(self, world: World, plan: Plan, workdir: Path) -> None:
        self.world = world
        self.plan = plan
        self.seed = plan.seed
        self.name = f"chaos-{plan.seed}"
        self.prefix = f"chaos{plan.seed}"
        self.access_key = f"AKIACHAOS{plan.seed:011d}"
        self.dir = workdir / self.name
        self.home = self.dir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "clearml.conf").write_text("# empty\n")
        self.config = self.dir / "scaler.conf"
        self.config.write_text(config_text(self.name, self.prefix))
        self.state_file = self.dir / "state.json"
        self.log_path = self.dir / "scaler.log"
        self.fake = FakeClearML().start()
        for queue in {r.queue for r in RESOURCES.values()}:
            self.fake.create_queue(queue)

        self.t0 = time.monotonic()
        self.lock = threading.RLock()  # agents' actions vs the terminate check at the proxy
        self.proc_lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.killed = threading.Event()
        self.expected_exit = False
        self.armed: str | None = None
        self.stop = threading.Event()

        self.timeline: list[tuple[float, str]] = []
        self.violations: list[str] = []
        self.races: list[str] = []
        self.kill_log: list[str] = []
        self.max_alive: Counter[str] = Counter()
        self.samples = 0
        self.elapsed = 0.0
        self._last_sample: tuple[Any, ...] | None = None
        self._over: set[tuple[str, int]] = set()  # over-limit episodes already reported

        # the agents
        self.snapshot: dict[str, tuple[str, str]] = {}  # instance id -> (state, resource) of alive instances
        self.first_seen: dict[str, float] = {}
        self.worker_of: dict[str, str] = {}  # instance id -> worker id
        self.busy_until: dict[str, float] = {}  # worker id -> when its task ends
        self.taken_at: dict[str, float] = {}  # worker id -> when it took its task (monotonic)
        self.terminating: set[str] = set()
        self.dead_since: dict[str, float] = {}
        self.duration: dict[str, float] = {}  # task id -> seconds
        self.tasks: list[str] = []
        self.next_arrival = 0
        self.next_weather = 0
        self.faults: list[tuple[float, Fault]] = []  # (expires at, fault)
        self.last_workers_read = 0.0  # monotonic time of the scaler's latest workers.get_all
        self._wrap_workers_read()

    # -- bookkeeping --------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, text: str) -> None:
        with self.lock:
            self.timeline.append((self.now(), text))

    def violate(self, text: str) -> None:
        with self.lock:
            self.violations.append(f"+{self.now():.2f}s {text}")
            self.timeline.append((self.now(), f"VIOLATION: {text}"))

    def _wrap_workers_read(self) -> None:
        original = self.fake._ep_workers__get_all

        def get_all(body: Any, req: Any) -> Any:
            self.last_workers_read = time.monotonic()
            return original(body, req)

        self.fake._ep_workers__get_all = get_all  # type: ignore[method-assign]

    # -- the scaler process ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = clean_environ()
        env.update(aws_environment(self.world.proxy, self.home, self.access_key))
        env.update(self.fake.env())
        env.update(
            {
                "HOME": str(self.home),
                "CLEARML_CONFIG_FILE": str(self.home / "clearml.conf"),
                "SCALER_LOAD_PLUGINS": "clearml-scaler-aws",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start_scaler(self) -> None:
        with self.proc_lock:
            self.incarnation += 1
            self.killed.clear()
            with self.log_path.open("ab") as log:
                log.write(f"\n===== scaler #{self.incarnation} at +{self.now():.2f}s =====\n".encode())
                log.flush()
                self.proc = start_cli(
                    "run",
                    "--provider",
                    "aws",
                    "--config",
                    str(self.config),
                    "--no-server-vault",
                    "--state-file",
                    str(self.state_file),
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.note(f"scaler #{self.incarnation} started (pid {self.proc.pid})")

    def kill(self, why: str) -> bool:
        """SIGKILL the running scaler (from any thread); False when none is running."""
        with self.proc_lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return False
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.proc = None
            self.armed = None
        self.kill_log.append(why)
        self.note(f"KILL -9 scaler #{self.incarnation}: {why}")
        self.killed.set()
        return True

    def stop_scaler(self) -> None:
        with self.proc_lock:
            proc, self.proc = self.proc, None
            self.expected_exit = True
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM in the first ~0.1 s, before Python reached the scaler's code, is the
        # interpreter's default (death by signal): wait until this incarnation is running
        marker = f"===== scaler #{self.incarnation} at "
        deadline = time.time() + 15
        while time.time() < deadline and proc.poll() is None:
            log_text = self.log_path.read_text(errors="replace")
            if "managing" in log_text[log_text.rfind(marker) :]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.violate("the scaler did not stop within 15 s of SIGTERM")
            return
        if code != 0:
            self.violate(f"the scaler exited {code} on SIGTERM")

    def check_process(self) -> None:
        with self.proc_lock:
            proc = self.proc
            if proc is None or self.expected_exit:
                return
            code = proc.poll()
            if code is None:
                return
            self.proc = None
        self.violate(f"scaler #{self.incarnation} exited on its own with code {code}")

    # -- hooks called by the world (proxy threads, sampler thread) ------------------------------

    def on_request(self, action: str, params: dict[str, str], forward: Callable[[], Any]) -> Any:
        """An EC2 request of this fleet's scaler reached the proxy."""
        if action == "RunInstances":
            if self.armed == "launch-unapplied":
                self.kill("mid-launch: RunInstances in flight, never applied")
                return None
            answer = forward()
            self.note(
                f"RunInstances {params.get('MaxCount')} x {_resource_of(params)} -> HTTP {answer[0] if answer else '-'}"
            )
            if self.armed == "launch":
                self.kill("mid-launch: RunInstances applied by EC2, answer lost")
            return answer
        if action == "TerminateInstances":
            ids = [v for k, v in sorted(params.items()) if k.startswith("InstanceId.")]
            with self.lock:  # no agent takes a task while the check and the call happen
                self._check_busy(ids)
                answer = forward()
                if answer is not None and answer[0] == 200:
                    self.terminating.update(ids)
                self.note(f"TerminateInstances {', '.join(ids)} -> HTTP {answer[0] if answer else '-'}")
            if self.armed == "terminate":
                self.kill("mid-terminate: TerminateInstances applied by EC2, answer lost")
            return answer
        return forward()

    def _check_busy(self, ids: list[str]) -> None:
        workers = self.fake.workers()
        for iid in ids:
            if iid not in self.snapshot and iid not in self.worker_of:
                continue
            wid = self.worker_of.get(iid)
            worker = workers.get(wid or "")
            if worker is None or not worker.get("task") or iid in self.terminating:
                continue
            task = worker["task"]["id"]
            taken = self.taken_at.get(wid or "", 0.0)
            if taken > self.last_workers_read:
                self.races.append(
                    f"+{self.now():.2f}s {iid}: task {task[:8]} taken after the scaler's last workers read"
                )
                self.note(
                    f"RACE: {iid} terminated {1000 * (time.monotonic() - taken):.0f} ms after its worker took a task "
                    f"(after the scaler's last workers read)"
                )
            else:
                self.violate(
                    f"busy worker terminated: {wid} runs task {task[:8]} (taken "
                    f"{time.monotonic() - taken:.2f}s ago, before the scaler's last workers read)"
                )

    def on_sample(self, instances: list[dict[str, Any]]) -> None:
        alive: Counter[str] = Counter()
        snapshot: dict[str, tuple[str, str]] = {}
        for inst in instances:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
            iid, state = inst["InstanceId"], inst["State"]["Name"]
            if not tags.get(TAG_RESOURCE) or not tags.get(TAG_LAUNCH_TOKEN):
                self.violate(f"untracked instance {iid}: owner tag without resource/launch-token tags: {tags}")
            if state in ALIVE:
                alive[tags.get(TAG_RESOURCE, "?")] += 1
                snapshot[iid] = (state, tags.get(TAG_RESOURCE, "?"))
        for name, count in alive.items():
            res = RESOURCES.get(name)
            if res is None:
                self.violate(f"{count} alive instance(s) of unknown resource {name!r}")
            elif count > res.max_instances and (name, count) not in self._over:
                self._over.add((name, count))
                self.violate(f"resource {name}: {count} alive instances > max_instances {res.max_instances}")
            self.max_alive[name] = max(self.max_alive[name], count)
        with self.lock:
            self.snapshot = snapshot
            self.samples += 1
            key = tuple(sorted(alive.items()))
            if key != self._last_sample:
                self._last_sample = key
                self.timeline.append((self.now(), "sample: alive " + (", ".join(f"{k}={v}" for k, v in key) or "none")))

    # -- the agents ------------------------------------------------------------------------------

    def drive(self) -> None:
        while not self.stop.is_set():
            try:
                self.agent_step()
            except Exception as exc:  # a harness bug must show, not hang the run
                self.violate(f"agent driver failed: {type(exc).__name__}: {exc}")
            self.check_process()
            self.stop.wait(0.1)

    def agent_step(self) -> None:
        t = self.now()
        mono = time.monotonic()
        with self.lock:
            self._weather(t)
            while self.next_arrival < len(self.plan.arrivals) and self.plan.arrivals[self.next_arrival][0] <= t:
                _at, queue, duration = self.plan.arrivals[self.next_arrival]
                self.next_arrival += 1
                task = self.fake.enqueue(queue, name=f"s{self.seed}-t{self.next_arrival}")
                self.tasks.append(task)
                self.duration[task] = duration
                self.timeline.append((t, f"task {task[:8]} enqueued on {queue} ({duration:.1f}s)"))
            workers = self.fake.workers()
            alive = {iid for iid in self.snapshot if iid not in self.terminating}
            # boot: a worker per running machine, after a short seeded boot
            for iid, (_state, resource) in sorted(self.snapshot.items()):
                if iid in self.worker_of or iid in self.terminating:
                    continue
                self.first_seen.setdefault(iid, mono)
                boot = random.Random(f"{self.seed}:{iid}").uniform(0.5, 2.0)
                if mono - self.first_seen[iid] >= boot:
                    wid = f"{self.prefix}:{resource}:{iid}"
                    self.fake.register_worker(wid, [RESOURCES[resource].queue] if resource in RESOURCES else [])
                    self.worker_of[iid] = wid
                    self.timeline.append((t, f"worker {wid} registered"))
            # machines that are gone: their agents stop; dead workers stay listed a while
            for iid, wid in list(self.worker_of.items()):
                if iid in alive:
                    continue
                worker = workers.get(wid)
                self.busy_until.pop(wid, None)
                if worker is None:
                    del self.worker_of[iid]
                    continue
                since = self.dead_since.setdefault(wid, mono)
                task = (worker.get("task") or {}).get("id")
                if task and self.fake.task(task)["status"] == "in_progress":
                    continue  # listed with its task until the scaler re-enqueues it
                if mono - since >= self.plan.linger:
                    self.fake.unregister_worker(wid)
                    del self.worker_of[iid]
                    self.timeline.append((t, f"dead worker {wid} unregistered"))
            # running tasks end; idle agents take tasks that waited TAKE_DELAY
            for iid, wid in sorted(self.worker_of.items()):
                if iid not in alive or wid not in workers:
                    continue
                if wid in self.busy_until and mono >= self.busy_until[wid]:
                    done = self.fake.finish_task(wid)
                    del self.busy_until[wid]
                    self.timeline.append((t, f"{wid} finished task {(done or '?')[:8]}"))
                    continue
                if wid in self.busy_until:
                    continue
                queue = RESOURCES[self.snapshot[iid][1]].queue
                entries = self.fake.queues()[queue]["entries"]
                if entries and time.time() - _iso(entries[0]["added"]) >= TAKE_DELAY:
                    self.taken_at[wid] = mono
                    task = self.fake.take_task(wid)
                    if task:
                        self.busy_until[wid] = mono + self.duration.get(task, 1.0)
                        self.timeline.append((t, f"{wid} took task {task[:8]}"))

    def _weather(self, t: float) -> None:
        proxy = self.world.proxy
        for expires, fault in self.faults:
            if t >= expires:
                fault.remaining = 0
        while self.next_weather < len(self.plan.weather) and self.plan.weather[self.next_weather][0] <= t:
            _at, kind = self.plan.weather[self.next_weather]
            self.next_weather += 1
            name = self.name

            def ours(params: dict[str, str], name: str = name) -> bool:
                return name in params.values()

            if kind == "spot-outage":
                fault = proxy.fail(
                    "RunInstances",
                    "InsufficientInstanceCapacity",
                    times=None,
                    when=lambda p, name=name: ours(p, name) and p.get("InstanceMarketOptions.MarketType") == "spot",
                )
                self.faults.append((t + 6.0, fault))
            elif kind == "throttle":
                self.faults.append(
                    (t + 30, proxy.fail("DescribeInstances", "RequestLimitExceeded", times=4, when=ours))
                )
                self.faults.append((t + 30, proxy.fail("RunInstances", "RequestLimitExceeded", times=1, when=ours)))
            elif kind == "ec2-5xx":
                self.faults.append((t + 30, proxy.fail("DescribeInstances", "InternalError", times=3, when=ours)))
                self.faults.append((t + 30, proxy.fail("RunInstances", "InternalError", times=1, when=ours)))
            elif kind == "lost-answer":
                self.faults.append((t + 30, proxy.timeout_after_accept("RunInstances", times=1, drop=True, when=ours)))
            self.timeline.append((t, f"weather: {kind}"))

    # -- the plan ----------------------------------------------------------------------------------

    def execute(self) -> None:
        driver = threading.Thread(target=self.drive, name=f"agents-{self.seed}", daemon=True)
        driver.start()
        try:
            self.start_scaler()
            for at, mode, delay in self.plan.kills:
                self._sleep_until(at)
                self._kill_by(mode)
                time.sleep(delay)
                self.start_scaler()
            self._converge()
        except Exception as exc:
            self.violate(f"chaos controller failed: {type(exc).__name__}: {exc}")
        finally:
            self.stop_scaler()
            self.stop.set()
            driver.join(timeout=10)
            for _expires, fault in self.faults:
                fault.remaining = 0
            self.fake.stop()
            self.elapsed = self.now()

    def _sleep_until(self, at: float) -> None:
        while self.now() < at:
            time.sleep(0.02)

    def _kill_by(self, mode: str, fallback: float = 8.0) -> None:
        if mode == "time":
            self.kill("at a random moment")
            return
        if mode == "tick":
            before = self._state_mtime()
            deadline = time.monotonic() + fallback
            while time.monotonic() < deadline:
                if self._state_mtime() != before:
                    self.kill("between ticks (the state file was just written)")
                    return
                time.sleep(0.01)
            self.kill("fallback: no tick ended within 8 s")
            return
        self.armed = mode
        if not self.killed.wait(fallback):
            self.armed = None
            self.kill(f"fallback: no {mode} happened within {fallback:g} s")

    def _state_mtime(self) -> float:
        try:
            return self.state_file.stat().st_mtime_ns
        except OSError:
            return 0.0

    def _converge(self) -> None:
        self._sleep_until(self.plan.span)
        # each restart may wait for the dead scaler's lease to expire
        deadline = self.plan.span + 40.0 + LEASE_TTL * len(self.plan.kills)
        while self.now() < deadline:
            if self.converged():
                self.note("converged: every task completed, the fleet drained to zero")
                return
            time.sleep(0.2)
        self.violate("did not converge: " + self.progress())

    def converged(self) -> bool:
        with self.lock:
            if self.next_arrival < len(self.plan.arrivals) or self.snapshot:
                return False
            return all(self.fake.task(t)["status"] == "completed" for t in self.tasks)

    def progress(self) -> str:
        with self.lock:
            statuses = Counter(self.fake.task(t)["status"] for t in self.tasks)
            return (
                f"{len(self.tasks)}/{len(self.plan.arrivals)} tasks enqueued, statuses {dict(statuses)}, "
                f"{len(self.snapshot)} machine(s) alive: {sorted(self.snapshot)}"
            )

    # -- the verdict --------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        modes = "; ".join(self.kill_log)
        return (
            f"seed {self.seed}: {'ok' if self.ok else 'FAILED'} in {self.elapsed:.1f}s, {len(self.tasks)} tasks, "
            f"{self.incarnation} scaler runs, {self.samples} samples, max alive {dict(sorted(self.max_alive.items()))}, "
            f"races {len(self.races)}; kills: {modes}"
        )

    def report(self, log_lines: int = 120) -> str:
        lines = [self.summary(), self.plan.describe(), "violations:"]
        lines += [f"  {v}" for v in self.violations] or ["  none"]
        if self.races:
            lines += ["races (task taken between the scaler's last workers read and its terminate call):"]
            lines += [f"  {r}" for r in self.races]
        lines.append("timeline:")
        lines += [f"  +{t:7.2f}s {text}" for t, text in self.timeline]
        try:
            log = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            log = []
        lines.append(f"scaler log (last {log_lines} lines of {self.log_path}):")
        lines += [f"  | {line}" for line in log[-log_lines:]]
        return "\n".join(lines)


def _resource_of(params: dict[str, str]) -> str:
    for key, value in params.items():
        if key.endswith(".Key") and value == TAG_RESOURCE:
            return params.get(key[: -len("Key")] + "Value", "?")
    return "?"


# -- the shared world: moto, the proxy hook, the sampler -------------------------------------------


class World:
    """moto + the EC2 proxy shared by every seed: routes each EC2 request to its fleet (by the
    request's access key) and samples moto for all fleets."""

    def __init__(self, proxy: EC2Proxy) -> None:
        self.proxy = proxy
        self.runs: dict[str, SeedRun] = {}  # access key -> run
        self.foreign: list[str] = []
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._original: Any = None
        self._client = ec2_client(proxy.upstream, max_attempts=1)  # moto itself: no faults, not recorded

    @contextlib.contextmanager
    def running(self) -> Iterator[World]:
        self.foreign = run_foreign_instances(self.proxy, 2)
        self._original = self.proxy._handle
        self.proxy._handle = self._handle  # type: ignore[method-assign]
        self._sampler = threading.Thread(target=self._sample_loop, name="chaos-sampler", daemon=True)
        self._sampler.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._sampler.join(timeout=10)
            self.proxy._handle = self._original  # type: ignore[method-assign]
            self._check_foreign()

    def _handle(self, handler: Any, body: bytes) -> Any:
        original = self._original
        match = _CREDENTIAL.search(str(handler.headers.get("Authorization") or ""))
        run = self.runs.get(match.group(1)) if match else None
        if run is None:
            return original(handler, body)
        params = dict(urllib.parse.parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        return run.on_request(params.get("Action", ""), params, lambda: original(handler, body))

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            try:
                pages = self._client.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": "instance-state-name", "Values": list(LISTED)}]
                )
                instances = [i for p in pages for r in p["Reservations"] for i in r["Instances"]]
            except Exception as exc:  # moto busy: try again
                self.violations.append(f"sampler could not read moto: {type(exc).__name__}: {exc}")
                time.sleep(SAMPLE_EVERY)
                continue
            by_fleet: dict[str, list[dict[str, Any]]] = {}
            for inst in instances:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
                owner = tags.get(TAG_SCALER)
                if owner is None:
                    if inst["InstanceId"] not in self.foreign:
                        self.violations.append(f"instance {inst['InstanceId']} without an owner tag: {tags}")
                    continue
                by_fleet.setdefault(owner, []).append(inst)
            for run in list(self.runs.values()):
                run.on_sample(by_fleet.get(run.name, []))
            self._stop.wait(SAMPLE_EVERY)

    def _check_foreign(self) -> None:
        found = self._client.describe_instances(InstanceIds=self.foreign)["Reservations"]
        states = {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}
        for iid in self.foreign:
            if states.get(iid) != "running":
                self.violations.append(f"foreign instance {iid} is {states.get(iid)}: a scaler touched it")


def run_chaos(
    seeds: Iterable[int],
    proxy: EC2Proxy,
    workdir: Path,
    *,
    size: str = "small",
    parallel: int = 4,
    on_result: Callable[[SeedRun], None] | None = None,
) -> tuple[list[SeedRun], list[str]]:
    """Run the seeds, ``parallel`` at a time, sharing moto and the proxy; returns every run
    and the world-level violations (untagged instances, foreign instances touched)."""
    todo = list(seeds)
    done: list[SeedRun] = []
    world = World(proxy)
    with world.running():
        for start in range(0, len(todo), parallel):
            batch = [SeedRun(world, make_plan(seed, **SIZES[size]), workdir) for seed in todo[start : start + parallel]]
            for run in batch:
                world.runs[run.access_key] = run
            threads = [threading.Thread(target=run.execute, name=f"chaos-{run.seed}") for run in batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for run in batch:
                world.runs.pop(run.access_key, None)
                done.append(run)
                if on_result is not None:
                    on_result(run)
    return done, world.violations


def verdict(runs: list[SeedRun], world_violations: list[str]) -> str:
    """Empty when every seed held every invariant, else the reports of the failed seeds."""
    failed = [run.report() for run in runs if not run.ok]
    if world_violations:
        failed.append("world: " + "\n  ".join(world_violations))
    return "\n\n".join(failed)
