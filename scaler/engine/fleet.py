"""The one join of ClearML workers with the cloud instances this fleet owns.

A worker of the fleet is named ``<workers_prefix>:<resource>:<instance id>`` (optionally
followed by ``:<suffix>`` when several agents run on one machine), so each worker maps to
exactly one instance. The policy, the reconciler and ``scaler status`` all see the fleet
through :func:`join`.

Instances, by the fleet identity they are listed with (``Instance.fleet``):

* **own**: this fleet's identity (``config.fleet_id``);
* **legacy**: this scaler's name but no identity (launched before identities). One that a
  worker on this ClearML server names is *claimed*: it is this fleet's (an agent on it talks
  to this server) and is adopted (tagged with the identity); an unclaimed one may be another
  deployment's with the same ``scaler.name``: it is never acted on, only counted against
  ``max_instances`` (it might be ours, still booting) and reported;
* **foreign**: another identity (listed only for ``scaler status``): never ours.

Workers:

* a worker of an **alive** own (or claimed) instance counts (capacity, idle, busy). It is
  recognised by the ``<resource>:<instance id>`` its id ends with, whatever the prefix before
  it: a machine launched before ``workers_prefix`` changed keeps its old worker id, and is
  still known by its instance id (``Fleet.renamed`` lists those workers). A machine of ClearML's
  own autoscaler taken over with ``scaler adopt`` keeps its agent's worker id
  ``<prefix>:<resource>:<instance type>:<instance id>``, and is known by its resource and id the same way;
* a worker with the fleet's prefix but no alive owned instance is a **stray**: the ClearML
  server keeps a dead worker listed for about ten minutes after its machine is gone, and a
  hand-started agent may borrow the prefix. It counts for nothing (not as capacity, not as
  idle, not against ``max_instances``) and is only reported;
* a worker outside the prefix naming no instance of the fleet (another fleet's, a static
  agent) is **foreign**: never ours.

No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

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
    # every listed instance of this fleet, any state: its identity, or legacy claimed by a worker here
    own: list[Instance] = field(default_factory=list)
    # legacy instances (name only) no worker here names: perhaps another deployment's; never acted on
    unclaimed: list[Instance] = field(default_factory=list)
    # legacy instances a worker here names (or claimed before): this fleet's, to be tagged with its identity
    claimed: list[Instance] = field(default_factory=list)
    # instances with another deployment's identity (listed for `scaler status` only): never ours
    foreign_instances: list[Instance] = field(default_factory=list)
    # worker id -> the other prefix it registered under (its machine predates a workers_prefix change)
    renamed: dict[str, str] = field(default_factory=dict)
    # stray worker id -> (resource, instance id) its id names
    homes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def count(self, resource: str) -> int:
        """Alive instances of ``resource`` (what ``max_instances`` bounds): the fleet's own, and
        unclaimed legacy ones, which may be this fleet's machines still booting."""
        held = sum(1 for inst in self.unclaimed if inst.resource == resource and inst.state.alive)
        return len(self.alive.get(resource, ())) + held

    def total(self) -> int:
        """Alive instances across resources, unclaimed legacy ones included (``max_instances_total``)."""
        return sum(len(v) for v in self.alive.values()) + sum(1 for i in self.unclaimed if i.state.alive)

    def alive_ids(self) -> set[str]:
        return {inst.id for insts in self.alive.values() for inst in insts}

    def workers_on(self, instance_id: str) -> list[WorkerObs]:
        """The workers of a listed instance, alive or not (for display)."""
        return self.workers_of.get(instance_id) or self.gone_workers_of.get(instance_id, [])

    def home(self, worker: str) -> tuple[str, str] | None:
        """``(resource, instance id)`` a stray worker's id names, ``None`` when it names none."""
        return self.homes.get(worker) or worker_home(self.prefix, worker)

    def live_tasks(self) -> set[str]:
        """Tasks some live worker runs: a worker of an alive owned instance, or any foreign worker.
        What a dead worker of this fleet still reports is not being run by anyone."""
        live = [w for workers in self.workers_of.values() for w in workers]
        return {w.task for w in (*live, *self.foreign) if w.task}


def _named(worker: str, keys: dict[str, Instance]) -> tuple[Instance, str] | None:
    """The instance ``worker`` names by its ``<resource>:<instance id>`` (at the end, or before one
    ``:<suffix>``) and the prefix before it; ``None`` when it names none of ``keys``."""
    parts = worker.split(":")
    for tail in (2, 3):  # <prefix>:<resource>:<id>, then <prefix>:<resource>:<id>:<suffix>
        if len(parts) <= tail:
            break
        key = ":".join(parts[-tail : len(parts) - tail + 2])
        if key in keys:
            return keys[key], ":".join(parts[:-tail])
    if len(parts) >= 4:  # ClearML's own autoscaler: <prefix>:<resource>:<instance type>:<id> (`scaler adopt`)
        key = f"{parts[-3]}:{parts[-1]}"
        if key in keys:
            return keys[key], ":".join(parts[:-3])
    return None


def join(
    prefix: str,
    instances: Iterable[Instance] | None,
    workers: Sequence[WorkerObs] | None,
    fleet_id: str = "",
    claimed: Collection[str] = (),
) -> Fleet:
    """Join the instances the cloud lists (``None``: unread) with the workers ClearML lists
    (``None``: unread) by worker id.

    ``fleet_id`` is this fleet's identity: an instance listed with it is the fleet's, one listed
    with none is legacy (the fleet's only once a worker here names it, or its id is in
    ``claimed``), one with another identity is foreign. With an empty ``fleet_id`` (no ClearML
    server known: the simulator) every instance listed without an identity is the fleet's."""
    own: list[Instance] = []
    legacy: list[Instance] = []
    foreign_instances: list[Instance] = []
    for inst in instances or ():
        if inst.fleet == fleet_id:
            own.append(inst)
        elif not inst.fleet:
            legacy.append(inst)
        else:
            foreign_instances.append(inst)
    keys = {f"{inst.resource}:{inst.id}": inst for inst in (*own, *legacy)}
    named: dict[str, Instance] = {}  # worker id -> the instance it names
    renamed: dict[str, str] = {}
    strays: list[WorkerObs] = []
    foreign: list[WorkerObs] = []
    homes: dict[str, tuple[str, str]] = {}
    for worker in workers or ():
        found = _named(worker.id, keys)
        ours = worker.id.startswith(prefix + ":")
        if found is None:
            (strays if ours else foreign).append(worker)  # foreign: another fleet's or a static worker
            continue
        inst, before = found
        named[worker.id] = inst
        if before != prefix:
            renamed[worker.id] = before
    # a legacy instance a worker here names is this fleet's: its agent talks to this ClearML server
    claim = set(claimed) | {inst.id for inst in named.values()}
    claimed_now = [inst for inst in legacy if inst.id in claim]
    unclaimed = [inst for inst in legacy if inst.id not in claim]
    mine = own + claimed_now
    alive: dict[str, list[Instance]] = defaultdict(list)
    for inst in mine:
        if inst.state.alive:
            alive[inst.resource].append(inst)
    alive_ids = {inst.id for inst in mine if inst.state.alive}
    gone_ids = {inst.id for inst in mine if not inst.state.alive}
    workers_of: dict[str, list[WorkerObs]] = defaultdict(list)
    gone_workers_of: dict[str, list[WorkerObs]] = defaultdict(list)
    for worker in workers or ():
        home = named.get(worker.id)
        if home is None:
            continue
        inst = home
        if inst.id in alive_ids:
            workers_of[inst.id].append(worker)
            continue
        strays.append(worker)  # its machine is stopping or gone: counts for nothing
        homes[worker.id] = (inst.resource, inst.id)
        if inst.id in gone_ids:
            gone_workers_of[inst.id].append(worker)
    order = {id(w): i for i, w in enumerate(workers or ())}
    strays.sort(key=lambda w: order.get(id(w), 0))
    return Fleet(
        prefix,
        dict(alive),
        dict(workers_of),
        strays,
        foreign,
        dict(gone_workers_of),
        own=mine,
        unclaimed=unclaimed,
        claimed=claimed_now,
        foreign_instances=foreign_instances,
        renamed=renamed,
        homes=homes,
    )
