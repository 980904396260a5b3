"""A simulated world for the demo and the simulator: the simulated cloud, an in-memory
ClearML queue, and agents that register workers and run tasks, all on a virtual clock.

The real policy and reconciler run against it unchanged: the reconciler sees the cloud
only through the ``simulated`` provider's hooks and the queue only through the
:class:`~scaler.engine.reconciler.QueueSource` protocol.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaler.default_plugins import simulated
from scaler.engine.fleet import WorkerObs
from scaler.engine.policy import QueueObs, RequeueResult
from scaler.errors import ConfigError
from scaler.types import Secret, ServerInfo

DATA = Path(__file__).parent / "data"

#: The trace's ``seed`` when it names none: which machine each spot reclaim takes is drawn from it.
DEFAULT_SEED = 0


class VirtualClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# --- the trace -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    at: float
    queue: str
    duration: float
    name: str = ""


@dataclass(frozen=True)
class Trace:
    """Task arrivals and the cloud's behaviour. See docs/simulate.md for the format."""

    name: str
    horizon: float
    tasks: tuple[TaskSpec, ...]
    boot_time: float = 90.0
    spot_outages: tuple[simulated.SpotOutage, ...] = ()
    preemptions: tuple[tuple[float, str], ...] = ()  # (time, resource): one spot machine reclaimed
    description: str = ""
    seed: int = DEFAULT_SEED  # seeds the draw of each reclaim's victim (see World)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        tasks: list[TaskSpec] = []
        for index, item in enumerate(data.get("tasks", [])):
            count = int(item.get("count", 1))
            every = float(item.get("every", 0))
            for k in range(count):
                tasks.append(
                    TaskSpec(
                        float(item["at"]) + k * every,
                        str(item["queue"]),
                        float(item["duration"]),
                        item.get("name", f"task-{index}-{k}"),
                    )
                )
        tasks.sort(key=lambda t: t.at)
        horizon = float(data.get("horizon", max((t.at + t.duration for t in tasks), default=0) + 3600))
        outages = tuple(
            simulated.SpotOutage(float(o["start"]), float(o["end"]), str(o.get("resource", "")))
            for o in data.get("spot_outages", [])
        )
        preempt = tuple((float(p["at"]), str(p["resource"])) for p in data.get("preemptions", []))
        seed = data.get("seed", DEFAULT_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"trace seed: must be an integer, got {seed!r}")
        return cls(
            str(data.get("name", "trace")),
            horizon,
            tuple(tasks),
            float(data.get("boot_time", 90)),
            outages,
            preempt,
            str(data.get("description", "")),
            seed,
        )


# --- the in-memory queue (a QueueSource) --------------------------------------------------


@dataclass
class SimTask:
    id: str
    name: str
    queue: str
    duration: float
    arrived: float
    status: str = "queued"  # queued | in_progress | completed | failed
    started: float | None = None
    finished: float | None = None
    worker: str = ""
    attempts: int = 0
    requeues: int = 0  # times the scaler re-enqueued it (max_requeues bounds them)


#: how long the ClearML server keeps listing the worker of a machine that is gone (its last report,
#: task included, stays), as the real server does for about ten minutes
DEAD_WORKER_TTL = 600.0


@dataclass
class SimWorker:
    id: str
    queues: tuple[str, ...]
    task: str | None = None
    last_activity: float = 0.0
    gone: bool = False  # its machine is gone: still listed as it last reported, for DEAD_WORKER_TTL


class SimQueue:
    """An in-memory ClearML: queues of tasks and registered workers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.tasks: dict[str, SimTask] = {}
        self.queues: dict[str, deque[str]] = {}
        self.workers: dict[str, SimWorker] = {}
        self.down = False
        self.reads = 0

    def enqueue(self, spec: TaskSpec) -> SimTask:
        task = SimTask(f"t{len(self.tasks) + 1:05d}", spec.name, spec.queue, spec.duration, self.clock())
        self.tasks[task.id] = task
        self.queues.setdefault(spec.queue, deque()).append(task.id)
        return task

    # QueueSource
    def read(self, queues: list[str]) -> tuple[dict[str, QueueObs] | None, list[WorkerObs] | None]:
        if self.down:
            return None, None
        self.reads += 1
        return {q: QueueObs(q, len(self.queues.get(q, ()))) for q in queues}, self.read_workers()

    def read_workers(self) -> list[WorkerObs] | None:
        if self.down:
            return None
        return [
            WorkerObs(w.id, w.queues, w.task, (w.task and self.tasks[w.task].name) or "", w.last_activity)
            for w in self.workers.values()
        ]

    def live(self, worker_id: str) -> bool:
        """Whether ``worker_id`` is the agent of a machine still running (not a dead one still listed)."""
        worker = self.workers.get(worker_id)
        return worker is not None and not worker.gone

    def requeue(self, task_id: str, queue: str, reason: str, max_requeues: int) -> RequeueResult:
        if self.down:
            return RequeueResult.RETRY  # could not be asked: the loop tries again next tick
        task = self.tasks.get(task_id)
        if task is None or task.status != "in_progress":
            return RequeueResult.SKIPPED
        if task.requeues >= max_requeues:
            task.status, task.worker, task.finished = "failed", "", self.clock()
            return RequeueResult.GAVE_UP
        task.requeues += 1
        task.status, task.worker, task.started = "queued", "", None
        # at the back, as ClearML's tasks.enqueue (what the scaler's re-enqueue calls) puts it
        self.queues.setdefault(queue, deque()).append(task_id)
        return RequeueResult.REQUEUED

    def server_info(self) -> ServerInfo:
        return ServerInfo(
            "https://api.clearml.sim",
            "https://app.clearml.sim",
            "https://files.clearml.sim",
            Secret("SIMACCESSKEY"),
            Secret("sim-secret"),
        )


# --- the world ------------------------------------------------------------------------------


class World:
    """Advances the simulated cloud, agents and tasks to a point in virtual time.

    A spot reclaim (``trace.preemptions``) takes one of the resource's *running* spot machines,
    drawn at random from ``random.Random(f"reclaims/{trace.seed}")``: the k-th reclaim always
    uses the k-th draw (one uniform number scaled to the machines there are), so two policies
    replaying the same trace see the same sequence of draws. A reclaim that finds no running
    spot machine of its resource takes nothing (the draw is used all the same).
    """

    def __init__(
        self,
        trace: Trace,
        prefix: str,
        clock: VirtualClock,
        queue_of: dict[str, str],
        capacity: dict[str, int] | None = None,
    ) -> None:
        self.trace = trace
        self.queue_of = queue_of  # resource name -> the queue its agents listen to
        self.prefix = prefix
        self.clock = clock
        self.cloud = simulated.SimulatedCloud(
            clock=clock, boot_time=trace.boot_time, capacity=capacity or {}, spot_outages=list(trace.spot_outages)
        )
        self.queue = SimQueue(clock)
        self._next_task = 0
        self._preempt = sorted(trace.preemptions)
        self._reclaim_rng = random.Random(f"reclaims/{trace.seed}")
        self.preempted = 0
        self.reclaimed: list[str] = []  # ids of the machines spot reclaims took, in order

    def advance(self, until: float, step: float = 5.0) -> None:
        while self.clock.now < until:
            self.clock.now = min(until, self.clock.now + step)
            self._step()

    def _step(self) -> None:
        now = self.clock.now
        tasks = self.trace.tasks
        while self._next_task < len(tasks) and tasks[self._next_task].at <= now:
            self.queue.enqueue(tasks[self._next_task])
            self._next_task += 1
        while self._preempt and self._preempt[0][0] <= now:
            _, resource = self._preempt.pop(0)
            draw = self._reclaim_rng.random()
            victims = [i for i in self.cloud.alive() if i.resource == resource and i.spot and i.state == "running"]
            if victims:
                victim = victims[int(draw * len(victims))]
                self.cloud.preempt(victim.id)
                self.reclaimed.append(victim.id)
                self.preempted += 1
        self.cloud.step()
        alive = {}
        for inst in self.cloud.instances.values():
            if inst.state == "running":
                alive[f"{self.prefix}:{inst.resource}:{inst.id}"] = inst
        for wid, gone in list(self.queue.workers.items()):
            if wid not in alive:  # machine gone: its agent with it (a running task stays in_progress);
                gone.gone = True  # the server lists its last report a while longer, as ClearML's does
                if now - gone.last_activity > DEAD_WORKER_TTL:
                    del self.queue.workers[wid]
        for wid, inst in alive.items():
            worker = self.queue.workers.get(wid)
            if worker is None:
                queue = self.queue_of.get(inst.resource, inst.resource)
                worker = self.queue.workers[wid] = SimWorker(wid, (queue,), None, now)
            if worker.task:
                task = self.queue.tasks[worker.task]
                if task.started is not None and now >= task.started + task.duration:
                    task.status, task.finished = "completed", now
                    worker.task = None
            if worker.task is None:
                pending = self.queue.queues.get(worker.queues[0])
                if pending:
                    task = self.queue.tasks[pending.popleft()]
                    task.status, task.started, task.worker = "in_progress", now, wid
                    task.attempts += 1
                    worker.task = task.id
            worker.last_activity = now

    @property
    def done(self) -> bool:
        return self._next_task >= len(self.trace.tasks) and all(
            t.status in ("completed", "failed") for t in self.queue.tasks.values()
        )


# --- figures -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def demo_paths() -> tuple[Path, Path]:
    return DATA / "demo.conf", DATA / "demo-trace.json"
