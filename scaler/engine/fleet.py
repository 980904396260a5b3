"""The one join of ClearML workers with the cloud instances this fleet owns.

A worker of the fleet is named ``<workers_prefix>:<resource>:<instance id>`` (optionally
followed by ``:<suffix>`` when several agents run on one machine), so each worker maps to
exactly one instance. The policy, the reconciler and ``scaler status`` all see the fleet
through :func:`join`:

* a worker of an **alive** owned instance counts (capacity, idle, busy);
* a worker with the fleet's prefix but no alive owned instance is a **stray**: the ClearML
  server keeps a dead worker listed for about ten minutes after its machine is gone, and a
  hand-started agent may borrow the prefix. It counts for nothing (not as capacity, not as
  idle, not against ``max_instances``) and is only reported;
* a worker outside the prefix (another fleet's, a static agent) is **foreign**: never ours.

No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scaler.types import Instance


@dataclass(frozen=True)
class WorkerObs:
    """One ClearML worker as a tick observed it."""

    id: str
    queues: tuple[str, ...] = ()  # queue names
    task: str | None = None  # id of the task it runs, None when idle
    task_name: str = ""
    last_activity: float = 0.0


def worker_id(prefix: str, resource: str, instance_id: str) -> str:
    """The id the agent of ``instance_id`` registers under."""
    return f"{prefix}:{resource}:{instance_id}"


def worker_home(prefix: str, worker: str) -> tuple[str, str] | None:
    """``(resource, instance id)`` a worker id of this fleet names, ``None`` when it names none
    (outside the prefix, or too short). The prefix holds no ``:`` (config validation)."""
    if not worker.startswith(prefix + ":"):
        return None
    parts = worker[len(prefix) + 1 :].split(":")
    if len(parts) < 2:
        return None
    return parts[0], parts[1]


@dataclass(frozen=True)
class Fleet:
    """Owned instances joined with the workers ClearML lists."""

    prefix: str
    alive: dict[str, list[Instance]]  # resource -> alive instances, in listed order
    workers_of: dict[str, list[WorkerObs]]  # alive instance id -> its workers (the ones that count)
    strays: list[WorkerObs]  # workers with the fleet's prefix but no alive owned instance: count for nothing
    foreign: list[WorkerObs]  # workers outside the fleet's prefix: never ours
    # listed but not alive instance id (stopping, stopped, terminated) -> its workers, still listed
    # by ClearML; they are strays too, and shown beside their machine by `scaler status`
    gone_workers_of: dict[str, list[WorkerObs]]

    def count(self, resource: str) -> int:
        """Alive instances of ``resource`` (what ``max_instances`` bounds)."""
        return len(self.alive.get(resource, ()))

    def alive_ids(self) -> set[str]:
        return {inst.id for insts in self.alive.values() for inst in insts}

    def workers_on(self, instance_id: str) -> list[WorkerObs]:
        """The workers of a listed instance, alive or not (for display)."""
        return self.workers_of.get(instance_id) or self.gone_workers_of.get(instance_id, [])

    def live_tasks(self) -> set[str]:
        """Tasks some live worker runs: a worker of an alive owned instance, or any foreign worker.
        What a dead worker of this fleet still reports is not being run by anyone."""
        live = [w for workers in self.workers_of.values() for w in workers]
        return {w.task for w in (*live, *self.foreign) if w.task}


def join(prefix: str, instances: Iterable[Instance] | None, workers: Sequence[WorkerObs] | None) -> Fleet:
    """Join the instances the cloud lists (``None``: unread) with the workers ClearML lists
    (``None``: unread) by worker id."""
    alive: dict[str, list[Instance]] = defaultdict(list)
    owner: dict[str, str] = {}  # worker id -> alive instance id
    gone_owner: dict[str, str] = {}  # worker id -> listed instance id that is not alive
    for inst in instances or ():
        wid = worker_id(prefix, inst.resource, inst.id)
        if inst.state.alive:
            alive[inst.resource].append(inst)
            owner[wid] = inst.id
        else:
            gone_owner[wid] = inst.id
    workers_of: dict[str, list[WorkerObs]] = defaultdict(list)
    gone_workers_of: dict[str, list[WorkerObs]] = defaultdict(list)
    strays: list[WorkerObs] = []
    foreign: list[WorkerObs] = []
    for worker in workers or ():
        if not worker.id.startswith(prefix + ":"):
            foreign.append(worker)  # another fleet's or a static worker: not ours to count or act on
            continue
        # exact id, or id + ":suffix" (several agents on one machine)
        if worker.id in owner:
            workers_of[owner[worker.id]].append(worker)
            continue
        base = worker.id.rsplit(":", 1)[0]
        if base in owner:
            workers_of[owner[base]].append(worker)
            continue
        strays.append(worker)
        home = worker.id if worker.id in gone_owner else base
        if home in gone_owner:
            gone_workers_of[gone_owner[home]].append(worker)
    return Fleet(prefix, dict(alive), dict(workers_of), strays, foreign, dict(gone_workers_of))
