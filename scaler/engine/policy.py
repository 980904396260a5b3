"""The scaler's decisions, as one pure function.

:func:`decide` takes what the loop observed (queues, workers, owned instances — any of
which may be missing when its source could not be read), the config, the current time and
the small in-memory state carried between ticks, and returns the actions to take with a
human-readable reason each, plus the next state. It does no I/O, so it is tested on tables
of cases (``tests/core/engine/test_policy.py``).

Rules (see docs/how-it-works.md):

* demand per queue = pending tasks − idle own workers on it − own instances still booting;
  resources of the queue are filled in config order up to ``max_instances`` each, spilling
  to the next one when a resource is full, out of capacity, or its spot market is failing;
* a launch that would go to a dearer machine (on-demand fallback, dearer resource) first leaves to the
  busy workers of the queue what they are expected to take within 2 boot times, or a short run of the
  queue when that is longer, at most ``max_spill_wait`` (spill-over patience); with ``spill_delay`` set,
  a pricier resource is launched only once the queue has been short of cheaper machines that long;
* a spot resource in blackout is probed once the blackout has run ``max(5m, regular_instance_rollback_timeout)``:
  one spot launch per tick with demand, before on-demand (the tick's re-plan launches on-demand when
  it fails; a success ends the blackout);
* fleet-wide caps ``max_instances_total`` and ``max_hourly_cost`` hold launches back;
* an idle worker ≥ ``max_idle_time`` → terminate its instance, unless a queue it serves has
  pending tasks; a busy worker is never terminated;
* no worker ``stuck_timeout`` after launch (or after its worker was last seen) → terminate
  (console captured first);
* instances of unconfigured resources → ``orphans`` = terminate (once idle, only when they carry
  this fleet's identity and are older than ``orphan_grace``) | keep;
* only the fleet's own instances are acted on: a legacy instance (the scaler's name, no
  identity) is adopted once a worker on this ClearML server names it, and left alone otherwise;
  workers are known by the instance id their id ends with, whatever the prefix before it;
* ClearML unreadable → nothing is scaled down and nothing launched; cloud unreadable →
  nothing launched;
* a task whose machine vanished while running it is re-enqueued (once per machine); a worker
  of the fleet's prefix whose machine this fleet never owned is reported, never acted on.
"""

from __future__ import annotations

import enum
import itertools
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from scaler.config.fields import format_duration
from scaler.engine.fleet import Fleet, WorkerObs, join
from scaler.types import Instance, InstanceState

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

_TOKEN_NS = uuid.UUID("6f1e7c1e-9a63-4b7e-9c55-5c0a1e2b7d10")
# how long terminated instance ids are remembered; ClearML drops a dead worker well before
TERMINATED_MEMORY = 3600.0


# --- observations -----------------------------------------------------------------------


@dataclass(frozen=True)
class QueueObs:
    name: str
    pending: int
    id: str = ""


@dataclass(frozen=True)
class Observation:
    """One tick's view of the world. ``None`` means that source could not be read."""

    now: float
    queues: dict[str, QueueObs] | None
    workers: list[WorkerObs] | None
    instances: list[Instance] | None


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    resource: str
    count: int
    spot: bool
    token: str
    reason: str


class TerminationKind(str, enum.Enum):
    """Why an instance is terminated: the ``reason`` label of the metrics and the ClearML
    task's ``terminations`` scalars (both list every member, so none can be missed)."""

    IDLE = "idle"  # idle ≥ max_idle_time
    CONSOLIDATION = "consolidation"  # idle, early: a cheaper home (resource, or spot again) has room for the next task
    STUCK = "stuck"  # no worker stuck_timeout after launch or after its worker was last seen
    ORPHAN = "orphan"  # its resource is no longer configured (orphans = terminate)
    SPOT_UNFULFILLED = "spot_unfulfilled"  # spot request pending past regular_instance_rollback_timeout
    STOPPED = "stopped"  # stopped machine (its agent exited): deleted so it stops billing

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Terminate:
    instance_id: str
    resource: str
    kind: TerminationKind
    reason: str
    worker_ids: tuple[str, ...] = ()
    capture_console: bool = False


@dataclass(frozen=True)
class Requeue:
    task_id: str
    queue: str
    instance_id: str
    reason: str


class RequeueResult(str, enum.Enum):
    """What the queue source did with a :class:`Requeue`."""

    REQUEUED = "requeued"  # back in its queue
    SKIPPED = "skipped"  # nothing to do: the task finished, was deleted, or its queue is unknown
    RETRY = "retry"  # the server could not be asked now: tried again next tick
    GAVE_UP = "gave_up"  # re-enqueued max_requeues times already: left failed, the reason in its status

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Notice:
    level: str  # info | warning
    kind: str
    message: str


# --- state carried between ticks (in memory only; reset on restart, conservatively) ----


@dataclass
class PolicyState:
    idle_since: dict[str, float] = field(default_factory=dict)  # instance id -> first seen idle
    spot_failing_since: dict[str, float] = field(default_factory=dict)  # resource -> first spot capacity error
    spot_failed_at: dict[str, float] = field(default_factory=dict)  # resource -> latest spot capacity error
    blackout_until: dict[str, float] = field(default_factory=dict)  # resource -> on-demand only until
    capacity_blocked_until: dict[str, float] = field(default_factory=dict)  # resource -> skipped until
    unconfirmed: dict[str, Launch] = field(default_factory=dict)  # token -> launch whose outcome is unknown
    running: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (instance id, queue)
    requeued: set[str] = field(default_factory=set)  # "<task id>@<instance id>" already re-enqueued
    reported: set[str] = field(default_factory=set)  # notice keys already reported once
    launch_seq: int = 0
    worker_seen: dict[str, float] = field(default_factory=dict)  # instance id -> last seen with a worker
    tick_at: float = -1.0  # `now` of the tick that `tick_launched` counts
    tick_launched: dict[str, int] = field(default_factory=dict)  # resource -> launched in that tick
    # instance id -> its launch time on the scaler's clock: the cloud's LaunchTime when first seen,
    # moved with every wall-clock jump since (so a jump does not age a booting machine into "stuck")
    launched_seen: dict[str, float] = field(default_factory=dict)
    # instance id -> when this scaler asked the cloud to terminate it: a worker of that machine
    # still reporting a task afterwards took it in the instant before the terminate (requeue it)
    terminated_at: dict[str, float] = field(default_factory=dict)
    # legacy instances (no fleet identity) a worker on this ClearML server named: this fleet's
    adopted: set[str] = field(default_factory=set)
    spot_back: set[str] = field(default_factory=set)  # resources whose blackout a spot probe ended (said once)
    # queue -> first tick of its current shortage of cheaper machines (a dearer one needed since; spill_delay)
    short_since: dict[str, float] = field(default_factory=dict)
    # -- evidence for the adaptive rules (idle_policy = adaptive, the free-up rule); values are
    # tuples, replaced (never changed in place), so that copy() keeps ticks independent
    last_pending: dict[str, int] = field(default_factory=dict)  # queue -> pending at the last readable tick
    watched_since: dict[str, float] = field(default_factory=dict)  # queue -> this process's first readable tick
    # queue -> recent arrival events ((tick time, tasks arrived since the tick before), ...), oldest first
    arrivals: dict[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    # task id -> (queue, first seen running, task name, instance id of this fleet's or "")
    task_seen: dict[str, tuple[str, float, str, str]] = field(default_factory=dict)
    # queue, or queue + "\x00" + task name -> run times of its recent tasks (seconds), oldest first
    durations: dict[str, tuple[float, ...]] = field(default_factory=dict)
    boot_times: dict[str, tuple[float, ...]] = field(default_factory=dict)  # resource -> launch-to-worker times
    unbooted: set[str] = field(default_factory=set)  # instance ids this scaler saw booting (no worker yet)
    # instance id -> when this scaler last saw it alive, for a machine gone since (reclaim, crash): a
    # dead worker of it still reporting a task it took after the last tick is this fleet's to re-enqueue
    vanished: dict[str, float] = field(default_factory=dict)

    def copy(self) -> PolicyState:
        """An independent copy: every container copied, field by field, by name."""
        return replace(self, **{f.name: _copied(getattr(self, f.name)) for f in fields(self)})

    def shifted(self, delta: float) -> PolicyState:
        """A copy with every timestamp moved by ``delta`` seconds.

        The reconciler calls it when the wall clock jumped (NTP step, VM resume, an operator
        setting the date): the timers then keep the durations they had measured, so a jump
        neither expires idle timers nor blocks a resource for hours.
        """
        out = self.copy()
        for timers in (
            out.idle_since,
            out.spot_failing_since,
            out.spot_failed_at,
            out.blackout_until,
            out.capacity_blocked_until,
            out.worker_seen,
            out.launched_seen,
            out.terminated_at,
            out.watched_since,
            out.vanished,
            out.short_since,
        ):
            for key in timers:
                timers[key] += delta
        if out.tick_at >= 0:
            out.tick_at += delta
        out.arrivals = {q: tuple((at + delta, n) for at, n in events) for q, events in out.arrivals.items()}
        out.task_seen = {t: (q, at + delta, name, inst) for t, (q, at, name, inst) in out.task_seen.items()}
        return out


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, set):
        return set(value)
    return value


@dataclass
class Decision:
    launches: list[Launch] = field(default_factory=list)
    terminations: list[Terminate] = field(default_factory=list)
    requeues: list[Requeue] = field(default_factory=list)
    # legacy instances of this fleet to tag with its identity (TAG_FLEET = config.fleet_id)
    adoptions: list[Instance] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    state: PolicyState = field(default_factory=PolicyState)
    # per resource: alive instances, booting (no worker yet), idle, busy — for status/metrics
    fleet: dict[str, dict[str, int]] = field(default_factory=dict)

    def warn(self, kind: str, message: str) -> None:
        self.notices.append(Notice("warning", kind, message))

    def info(self, kind: str, message: str) -> None:
        self.notices.append(Notice("info", kind, message))

    def once(self, key: str, level: str, kind: str, message: str) -> None:
        """A notice said once per process: ``key`` (kept in ``state.reported``) names the
        situation, so that the same one is not said again every tick."""
        if key not in self.state.reported:
            self.state.reported.add(key)
            self.notices.append(Notice(level, kind, message))


# --- helpers ----------------------------------------------------------------------------


def launch_token(scaler: str, resource: str, now: float, seq: int) -> str:
    """Deterministic UUID for one launch decision (GCE requestId must be a UUID; EC2
    ClientToken accepts it too)."""
    return str(uuid.uuid5(_TOKEN_NS, f"{scaler}/{resource}/{now:.3f}/{seq}"))


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}{'es' if word.endswith(('ch', 'sh', 's', 'x')) else 's'}"


# --- the decision -----------------------------------------------------------------------


def decide(config: Config, obs: Observation, state: PolicyState | None = None) -> Decision:
    """Everything the loop should do this tick. Pure."""
    state = (state or PolicyState()).copy()
    out = Decision(state=state)
    now = obs.now
    settings = config.scaler

    if obs.instances is None:
        out.warn("cloud_unreadable", "the cloud could not be listed: launching nothing this tick")
        if obs.queues is None or obs.workers is None:
            out.warn("clearml_unreadable", "the ClearML server could not be read: scaling nothing down this tick")
        return out
    listed = {inst.id for inst in obs.instances}
    state.adopted &= listed
    fleet = join(settings.workers_prefix, obs.instances, obs.workers, config.fleet_id, state.adopted)
    clearml_ok = obs.queues is not None and obs.workers is not None
    pending = {name: q.pending for name, q in (obs.queues or {}).items()}
    _ownership(config, fleet, state, out)
    if state.spot_back and state.tick_at != now:  # said by the tick's first decision, not by a re-plan
        for name in sorted(state.spot_back):
            out.info(
                "spot_back",
                f"spot capacity for '{name}' is back (a spot launch during its blackout succeeded): "
                "blackout ended early, launching spot again",
            )
        state.spot_back = set()

    _confirm_launches(state, obs.instances)
    _forget_gone(state, obs.instances, now)
    for memory in (state.terminated_at, state.vanished):
        for inst_id, at in list(memory.items()):
            if obs.now - at > TERMINATED_MEMORY:
                del memory[inst_id]
    if clearml_ok:
        left_alone = _interrupted(config, obs, fleet, state, out)
        _duplicates(config, obs.workers or [], out)
        for worker in fleet.strays:
            task = (
                f" (it reports task {worker.task}, left alone: its machine is not one of this fleet's instances)"
                if worker.id in left_alone
                else ""
            )
            out.once(
                f"stray:{worker.id}",
                "info",
                "stray_worker",
                f"worker {worker.id} has this fleet's prefix but no live instance of it; "
                f"it counts for nothing and is left alone{task}",
            )
    else:
        out.warn(
            "clearml_unreadable",
            "the ClearML server could not be read: scaling nothing down and launching nothing this tick",
        )

    if clearml_ok:
        _observe(config, obs, fleet, state, pending)
    adaptive = settings.idle_policy == "adaptive"
    ranks = _idle_ranks(config, fleet, state, now) if adaptive and clearml_ok else {}
    floor = min(settings.min_idle_time, settings.max_idle_time)

    # -- per instance: busy / idle / booting / stuck / orphan ---------------------------
    booting: dict[str, int] = defaultdict(int)  # resource -> alive instances with no worker yet
    idle_on_queue: dict[str, int] = defaultdict(int)
    for resource_name, instances in fleet.alive.items():
        resource = config.resource(resource_name)
        stats = out.fleet.setdefault(resource_name, {"alive": 0, "booting": 0, "idle": 0, "busy": 0})
        for inst in instances:
            stats["alive"] += 1
            workers = fleet.workers_of.get(inst.id, [])
            launched = state.launched_seen.setdefault(inst.id, inst.launched_at)
            age = now - launched
            if not workers:
                if obs.workers is not None:  # unread workers say nothing: keep the idle timer through an outage
                    state.idle_since.pop(inst.id, None)
                stats["booting"] += 1
                # a machine that had a worker is measured from its last sighting, so a worker list that
                # comes back short once does not take down long-running (busy) machines
                seen = state.worker_seen.get(inst.id)
                quiet = age if seen is None else now - max(seen, launched)
                unfulfilled = (
                    resource is not None
                    and inst.spot
                    and inst.state is InstanceState.PENDING
                    and seen is None
                    and 0 < resource.regular_instance_rollback_timeout <= age
                )
                if resource is None:
                    continue  # an orphan: kept (orphans = keep) or terminated below, never "stuck"
                if clearml_ok and unfulfilled and resource is not None and quiet < settings.stuck_timeout:
                    # a spot request the cloud has not fulfilled in time counts as a spot capacity failure
                    out.terminations.append(
                        Terminate(
                            inst.id,
                            resource_name,
                            TerminationKind.SPOT_UNFULFILLED,
                            f"spot request still pending {format_duration(round(age))} after launch "
                            f"(regular_instance_rollback_timeout "
                            f"{format_duration(resource.regular_instance_rollback_timeout)}); falling back to on-demand",
                        )
                    )
                    state.spot_failing_since.setdefault(resource_name, now - resource.regular_instance_rollback_timeout)
                    continue
                if clearml_ok and quiet >= settings.stuck_timeout:
                    what = (
                        f"no worker registered {format_duration(round(age))} after launch"
                        if seen is None
                        else f"its worker has not been seen for {format_duration(round(quiet))}"
                    )
                    out.terminations.append(
                        Terminate(
                            inst.id,
                            resource_name,
                            TerminationKind.STUCK,
                            f"{what} (stuck_timeout {format_duration(settings.stuck_timeout)}); console output saved",
                            capture_console=True,
                        )
                    )
                elif resource is not None:
                    booting[resource.queue] += 1
                continue
            state.worker_seen[inst.id] = now
            busy = [w for w in workers if w.task]
            if busy:
                stats["busy"] += 1
                state.idle_since.pop(inst.id, None)
                continue
            stats["idle"] += 1
            since = state.idle_since.setdefault(inst.id, now)
            served = {q for w in workers for q in w.queues}
            if resource is not None:
                served.add(resource.queue)
                idle_on_queue[resource.queue] += 1
            if not clearml_ok:
                continue
            waiting = sorted(q for q in served if pending.get(q, 0) > 0)
            ids = tuple(w.id for w in workers)
            if resource is None:
                if settings.orphans == "terminate" and _may_reap_orphan(config, inst, age, out):
                    out.terminations.append(_orphan(inst.id, resource_name, ids))
                continue
            idle_for = now - since
            if waiting:
                continue
            if idle_for >= settings.max_idle_time:
                out.terminations.append(
                    Terminate(
                        inst.id,
                        resource_name,
                        TerminationKind.IDLE,
                        f"worker idle for {format_duration(round(idle_for))} "
                        f"(max_idle_time {format_duration(settings.max_idle_time)})",
                        ids,
                    )
                )
            elif (
                adaptive
                and idle_for >= floor
                and (why := _not_needed_soon(config, resource, inst.spot, state, now, ranks.get(inst.id, 1)))
            ):
                # a machine bought in a pinch that goes early is a consolidation, whichever rule saw it first
                cheaper = _cheaper_home(config, resource, inst, state, fleet, now)
                out.terminations.append(
                    Terminate(
                        inst.id,
                        resource_name,
                        TerminationKind.CONSOLIDATION if cheaper else TerminationKind.IDLE,
                        f"idle for {format_duration(round(idle_for))} and {cheaper}: the next task gets the "
                        "cheaper machine"
                        if cheaper
                        else f"worker idle for {format_duration(round(idle_for))} and {why}",
                        ids,
                    )
                )
            elif idle_for >= max(2 * settings.polling_interval, 60.0) and (
                cheaper := _cheaper_home(config, resource, inst, state, fleet, now)
            ):
                out.terminations.append(
                    Terminate(
                        inst.id,
                        resource_name,
                        TerminationKind.CONSOLIDATION,
                        f"idle for {format_duration(round(idle_for))} and {cheaper}: the next task gets the "
                        "cheaper machine",
                        ids,
                    )
                )
        if resource is None and clearml_ok:
            # orphans with no worker at all (booting or dead agent) go too; busy ones wait until idle
            for inst in instances:
                if (
                    settings.orphans == "terminate"
                    and not fleet.workers_of.get(inst.id)
                    and not any(t.instance_id == inst.id for t in out.terminations)
                    and _may_reap_orphan(config, inst, now - state.launched_seen.get(inst.id, inst.launched_at), out)
                ):
                    out.terminations.append(_orphan(inst.id, resource_name))
            if settings.orphans == "keep":
                out.once(
                    f"orphan:{resource_name}",
                    "info",
                    "orphans_kept",
                    f"{_plural(len(instances), 'instance')} of unconfigured resource "
                    f"'{resource_name}' kept (orphans = keep)",
                )
    if clearml_ok:
        for inst in fleet.own:
            orphan = config.resource(inst.resource) is None
            # a stopped machine runs no agent but may still bill (GCE keeps its disk): delete it
            if inst.state is InstanceState.STOPPED and not (
                orphan
                and (settings.orphans == "keep" or not _may_reap_orphan(config, inst, now - inst.launched_at, out))
            ):
                out.terminations.append(
                    Terminate(
                        inst.id,
                        inst.resource,
                        TerminationKind.STOPPED,
                        "the machine is stopped (its agent exited and it shut down); deleting it so it stops billing",
                    )
                )
    for item in out.terminations:
        state.idle_since.pop(item.instance_id, None)

    if not clearml_ok:
        return out

    # -- launches ----------------------------------------------------------------------
    _plan_launches(config, obs, fleet, state, out, pending, booting, idle_on_queue)
    return out


def _orphan(instance_id: str, resource_name: str, worker_ids: tuple[str, ...] = ()) -> Terminate:
    return Terminate(
        instance_id,
        resource_name,
        TerminationKind.ORPHAN,
        f"resource '{resource_name}' is no longer configured (orphans = terminate)",
        worker_ids,
    )


def _may_reap_orphan(config: Config, inst: Instance, age: float, out: Decision) -> bool:
    """An orphan is terminated only when it carries this fleet's full identity (not a legacy
    machine adopted but not tagged yet) and is older than ``orphan_grace``; says once why not."""
    grace = config.scaler.orphan_grace
    if inst.fleet != config.fleet_id:
        out.once(
            f"orphan_untagged:{inst.id}",
            "info",
            "orphan_untagged",
            f"orphan {inst.id} (unconfigured resource '{inst.resource}') does not carry this fleet's identity "
            "yet: not terminated until it is tagged with it",
        )
        return False
    if age < grace:
        out.once(
            f"orphan_grace:{inst.id}",
            "info",
            "orphan_grace",
            f"orphan {inst.id} (unconfigured resource '{inst.resource}') is {format_duration(max(0, round(age)))} "
            f"old: terminated once older than orphan_grace ({format_duration(grace)})",
        )
        return False
    return True


def _ownership(config: Config, fleet: Fleet, state: PolicyState, out: Decision) -> None:
    """Adopt the legacy instances a worker here names; report, once each, the legacy instances no
    worker here names and the workers registered under another ``workers_prefix``."""
    for inst in fleet.claimed:
        state.adopted.add(inst.id)
        if config.fleet_id:
            out.adoptions.append(inst)
    for inst in fleet.unclaimed:
        out.once(
            f"unclaimed:{inst.id}",
            "warning",
            "legacy_unclaimed",
            f"instance {inst.id} carries this scaler's name '{config.scaler.name}' but no fleet identity and "
            "no worker on this ClearML server names it: it may belong to another deployment with the same "
            "scaler.name; left alone (counted against max_instances) until its worker registers here",
        )
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for worker, before in fleet.renamed.items():
        by_prefix[before].append(worker)
    for before, workers in sorted(by_prefix.items()):
        out.once(
            f"prefix:{before}",
            "warning",
            "prefix_changed",
            f"workers_prefix changed from '{before}' to '{fleet.prefix}': {_plural(len(workers), 'worker')} "
            f"of this fleet's machines still registered as '{before}:…' (e.g. {sorted(workers)[0]}); they are "
            f"known by their instance id and their machines are kept as before; new machines register as "
            f"'{fleet.prefix}:…'",
        )


def _spot_healthy(resource: Resource, state: PolicyState, now: float) -> bool:
    return state.blackout_until.get(resource.name, 0) <= now and resource.name not in state.spot_failing_since


def _cheaper_home(
    config: Config, resource: Resource, inst: Instance, state: PolicyState, fleet: Fleet, now: float
) -> str:
    """Why an idle machine should go before ``max_idle_time``, or "" when it should not.

    Machines bought in a pinch (on-demand during a spot outage, a dearer spill-over resource)
    otherwise keep serving a queue with a steady trickle of tasks at the higher price for as long
    as the trickle lasts, because they never idle for a whole ``max_idle_time``."""
    if resource.spot and not inst.spot and _spot_healthy(resource, state, now):
        return "spot works again for its resource"
    if resource.price_per_hour <= 0:
        return ""
    for other in config.resources_for_queue(resource.queue):
        if (
            other.name != resource.name
            and 0 < other.price_per_hour < resource.price_per_hour
            and fleet.count(other.name) < other.max_instances
            and state.capacity_blocked_until.get(other.name, 0) <= now
            and (not other.spot or _spot_healthy(other, state, now))
        ):
            return f"cheaper '{other.name}' has room"
    return ""


def _confirm_launches(state: PolicyState, instances: Iterable[Instance]) -> None:
    seen = {inst.launch_token for inst in instances if inst.launch_token}
    for token in list(state.unconfirmed):
        if token in seen:
            del state.unconfirmed[token]


def _forget_gone(state: PolicyState, instances: Iterable[Instance], now: float) -> None:
    alive = {inst.id for inst in instances if inst.state.alive}
    for inst_id in state.launched_seen:
        if inst_id not in alive:
            state.vanished[inst_id] = now
    for timers in (state.idle_since, state.worker_seen, state.launched_seen):
        for inst_id in list(timers):
            if inst_id not in alive:
                del timers[inst_id]


def _interrupted(config: Config, obs: Observation, fleet: Fleet, state: PolicyState, out: Decision) -> set[str]:
    """Tasks whose machine vanished while running them: re-enqueue (or report).

    Returns the ids of stray workers holding a task that is left alone because their machine
    is not known to be this fleet's.
    """
    alive_ids = fleet.alive_ids()
    listed = {inst.id for inst in fleet.own}
    # a task some live worker runs (ours or not) is not lost, whatever happened to its old machine
    running_now = fleet.live_tasks()
    lost: dict[tuple[str, str], str] = {}  # (task, instance id) -> queue
    for task, (inst_id, queue) in state.running.items():
        if inst_id not in alive_ids:
            lost[(task, inst_id)] = queue
    known = (
        listed
        | {inst_id for inst_id, _queue in state.running.values()}
        | set(state.terminated_at)
        | set(state.vanished)  # seen alive by this fleet, gone since: a task its worker took is lost
    )
    left_alone: set[str] = set()
    # after a restart `running` is empty: a dead worker of an instance the cloud still lists as
    # ours (stopping/terminated) tells the same story. A worker whose machine this fleet does
    # not know (another fleet using the same prefix, a hand-started agent) is never acted on.
    for worker in fleet.strays:
        if not worker.task:
            continue
        home = fleet.home(worker.id)
        if home is None or home[1] not in known:
            left_alone.add(worker.id)
            continue
        resource_name, inst_id = home
        resource = config.resource(resource_name)
        queue = resource.queue if resource else (worker.queues[0] if worker.queues else "")
        lost.setdefault((worker.task, inst_id), queue)
    handled: set[str] = set()
    for (task, inst_id), queue in lost.items():
        key = f"{task}@{inst_id}"
        if key in state.requeued:
            continue
        state.requeued.add(key)
        if task in handled or task in running_now:  # once is enough; or it already moved on
            continue
        handled.add(task)
        reason = f"its machine {inst_id} vanished while running it (spot reclaim or crash)"
        if config.scaler.requeue_interrupted_tasks and queue:
            out.requeues.append(Requeue(task, queue, inst_id, reason))
        else:
            out.warn(
                "task_interrupted",
                f"task {task} was interrupted: {reason}; not re-enqueued (requeue_interrupted_tasks = false)",
            )
    state.running = {}
    for insts in fleet.alive.values():
        for inst in insts:
            resource = config.resource(inst.resource)
            for worker in fleet.workers_of.get(inst.id, ()):
                if worker.task:
                    queue = resource.queue if resource else (worker.queues[0] if worker.queues else "")
                    state.running[worker.task] = (inst.id, queue)
    return left_alone


def _duplicates(config: Config, workers: Sequence[WorkerObs], out: Decision) -> None:
    if not config.scaler.warn_duplicate_task_runs:
        return
    by_task: dict[str, list[str]] = defaultdict(list)
    for worker in workers:
        if worker.task:
            by_task[worker.task].append(worker.id)
    for task, ids in by_task.items():
        if len(ids) > 1:
            out.once(
                f"dup:{task}:{','.join(sorted(ids))}",
                "warning",
                "duplicate_task_run",
                f"task {task} is run by {len(ids)} workers at once: {', '.join(sorted(ids))}",
            )


def _plan_launches(
    config: Config,
    obs: Observation,
    fleet: Fleet,
    state: PolicyState,
    out: Decision,
    pending: dict[str, int],
    booting: dict[str, int],
    idle_on_queue: dict[str, int],
) -> None:
    now = obs.now
    settings = config.scaler
    total_alive = fleet.total()  # unclaimed legacy machines included: they may be this fleet's
    unconfirmed_by_res: dict[str, int] = defaultdict(int)
    for launch in state.unconfirmed.values():
        unconfirmed_by_res[launch.resource] += launch.count
    total_alive += sum(unconfirmed_by_res.values())
    unclaimed = [inst.resource for inst in fleet.unclaimed if inst.state.alive]
    hourly = (
        sum(
            (r.price_per_hour if (r := config.resource(name)) else 0.0) * len(insts)
            for name, insts in fleet.alive.items()
        )
        + sum((r.price_per_hour if (r := config.resource(name)) else 0.0) * n for name, n in unconfirmed_by_res.items())
        + sum(r.price_per_hour for name in unclaimed if (r := config.resource(name)))
    )

    # launches whose outcome is unknown (timeout) are retried first, with their own token
    for launch in state.unconfirmed.values():
        out.launches.append(replace(launch, reason=f"retrying launch {launch.token[:8]} whose outcome was unknown"))

    # max_launch_per_tick holds across the re-plans the reconciler makes within one tick
    if state.tick_at != now:
        state.tick_at = now
        state.tick_launched = {}

    for queue in config.queues:
        demand = pending.get(queue, 0) - idle_on_queue.get(queue, 0) - booting.get(queue, 0)
        demand -= sum(
            launch.count
            for launch in state.unconfirmed.values()
            if (r := config.resource(launch.resource)) is not None and r.queue == queue
        )
        freeing = 0
        if demand > 0:
            freeing, boot, notes = _freeing(config, fleet, state, now, queue)
            if freeing:
                left = min(freeing, demand)
                demand -= left
                out.info(
                    "free_up",
                    f"queue '{queue}': {_plural(left, 'pending task')} left to busy workers expected to finish "
                    f"within the boot time ({_about(boot)}): " + "; ".join(notes[:3]),
                )
        if demand <= 0:
            state.short_since.pop(queue, None)  # no shortage: the next one starts spill_delay afresh
            continue
        wanted = demand
        rate_limited = False
        resources = config.resources_for_queue(queue)
        cheapest = min((r.price_per_hour for r in resources if r.price_per_hour > 0), default=0.0)
        patient = False  # the spill-over patience rule was applied to this queue
        short = False  # a pricier resource was needed: the spill-over delay rule was applied
        order = _order(resources, state, now, out)
        # the price of the cheapest resource of the queue that cannot take a machine at its price now
        # (full, out of capacity, or spot unavailable): what a shortage of cheaper machines is measured by
        # (spill_delay = 0, the default: no shortage is measured, nothing is held)
        delaying = settings.spill_delay > 0
        short_of = _unavailable_price(resources, order, fleet, state, unconfirmed_by_res) if delaying else 0.0
        # a spot probe in a blackout neither starts nor ends a shortage (its failure re-plans this tick)
        probing = any(spot and state.blackout_until.get(r.name, 0) > now for r, spot, _ in order)
        for resource, spot, note in order:
            if demand <= 0:
                break
            room = _room(resource, fleet, unconfirmed_by_res)
            if room <= 0:
                continue
            dearer = (resource.spot and not spot) or 0 < cheapest < resource.price_per_hour
            pricier = 0 < short_of < resource.price_per_hour  # than a cheaper resource that is short
            if pricier and not short:  # (a spot resource's own on-demand fallback waits its rollback timeout)
                short = True
                lasted = now - state.short_since.setdefault(queue, now)
                if lasted < settings.spill_delay:
                    out.info("spill_delay", _spill_delay_line(queue, resource, demand, lasted, settings.spill_delay))
                    demand = 0
                    break
            if dearer and not patient:
                patient = True
                held_for, line = _spill_patience(config, fleet, state, now, queue, resource, demand, freeing)
                if held_for:
                    demand -= held_for
                    out.info("spill_patience", line)
                    if demand <= 0:
                        break
            count = min(demand, room)
            if settings.max_launch_per_tick:
                budget = max(0, settings.max_launch_per_tick - state.tick_launched.get(resource.name, 0))
                if budget < count:
                    rate_limited = True
                    count = budget
            if count <= 0:
                continue
            asked = count
            held = ""
            held_total = False
            if settings.max_instances_total:
                allowed = settings.max_instances_total - total_alive
                if allowed < count:
                    held = f"max_instances_total = {settings.max_instances_total} ({total_alive} live or launching)"
                    held_total = allowed <= 0
                    count = max(0, allowed)
            if settings.max_hourly_cost and resource.price_per_hour > 0:
                allowed = math.floor((settings.max_hourly_cost - hourly) / resource.price_per_hour + 1e-9)
                if allowed < count:
                    held = (
                        f"max_hourly_cost = {settings.max_hourly_cost:g}/h "
                        f"(fleet at {hourly:.2f}/h, {resource.name} at {resource.price_per_hour:g}/h)"
                    )
                    count = max(0, allowed)
            if held:
                out.warn("cap", f"{_plural(asked - count, 'launch')} for queue '{queue}' held back by {held}")
            if count <= 0:
                if held_total:
                    return  # the fleet is full: every later queue is held too
                continue  # the cost cap may still leave room for a cheaper resource
            state.launch_seq += 1
            token = launch_token(settings.name, resource.name, now, state.launch_seq)
            market = "spot" if spot else "on-demand"
            reason = (
                f"queue '{queue}' has {_plural(pending.get(queue, 0), 'pending task')}, "
                f"{idle_on_queue.get(queue, 0)} idle and {booting.get(queue, 0)} booting; "
                f"launching {count} {market} (need {wanted}, room {room})" + (f"; {note}" if note else "")
            )
            out.launches.append(Launch(resource.name, count, spot, token, reason))
            state.tick_launched[resource.name] = state.tick_launched.get(resource.name, 0) + count
            demand -= count
            if delaying and count >= room and resource.price_per_hour > 0:  # full now: what is left is short of it
                short_of = min(short_of or resource.price_per_hour, resource.price_per_hour)
            total_alive += count
            hourly += count * resource.price_per_hour
        if not short and not probing:  # met without a pricier machine: no shortage
            state.short_since.pop(queue, None)
        if demand > 0:
            why = (
                f"max_launch_per_tick = {settings.max_launch_per_tick} leaves the rest for the next ticks"
                if rate_limited
                else "every resource serving it is full, capped, out of capacity or on a cloud that could not be listed"
            )
            out.info("queue_short", f"queue '{queue}' still needs {_plural(demand, 'machine')}: {why}")


def _order(
    resources: list[Resource], state: PolicyState, now: float, out: Decision
) -> list[tuple[Resource, bool, str]]:
    """Resources of one queue in the order to fill them, with the market to use.

    Resources whose spot market is failing or in blackout move after the others (so demand
    spills to them first) and launch on-demand once the rollback timeout has passed; a
    resource out of capacity is skipped until its block expires.
    """
    first: list[tuple[Resource, bool, str]] = []
    last: list[tuple[Resource, bool, str]] = []
    for resource in resources:
        if state.capacity_blocked_until.get(resource.name, 0) > now:
            continue
        if not resource.spot:
            first.append((resource, False, ""))
            continue
        until = state.blackout_until.get(resource.name, 0)
        if until > now:
            ran = now - (until - resource.spot_blackout_period)
            if ran >= _probe_after(resource) and state.spot_failed_at.get(resource.name, -1.0) < now:
                # one spot attempt per tick (all of the demand, one call) instead of on-demand: it fails → the
                # re-plan of this tick launches on-demand (spot_failed_at = now); it succeeds → the blackout ends
                first.append(
                    (
                        resource,
                        True,
                        f"probing spot {format_duration(round(ran))} into its blackout (on-demand this tick if it "
                        "fails; the blackout ends if it succeeds)",
                    )
                )
                continue
            last.append((resource, False, f"spot blackout until +{format_duration(round(until - now))}"))
            continue
        since = state.spot_failing_since.get(resource.name)
        if since is None:
            first.append((resource, True, ""))
        elif now - since >= resource.regular_instance_rollback_timeout:
            state.blackout_until[resource.name] = now + resource.spot_blackout_period
            del state.spot_failing_since[resource.name]
            out.warn(
                "spot_rollback",
                f"spot capacity for '{resource.name}' failing for "
                f"{format_duration(round(now - since))}: launching on-demand, spot blackout for "
                f"{format_duration(resource.spot_blackout_period)}",
            )
            last.append((resource, False, "spot rollback to on-demand"))
        elif state.spot_failed_at.get(resource.name) != now:  # not again within the tick that failed
            last.append((resource, True, "retrying spot after a capacity error"))
    return first + last


def record_launch_failure(state: PolicyState, launch: Launch, kind: str, now: float, config: Config) -> None:
    """Update the state after a failed launch (called by the reconciler, pure)."""
    block = max(config.scaler.polling_interval * 2, 60.0)
    if kind == "capacity":
        if launch.spot:
            if state.blackout_until.get(launch.resource, 0) <= now:  # a failed probe leaves the blackout as it is
                state.spot_failing_since.setdefault(launch.resource, now)
            state.spot_failed_at[launch.resource] = now
        else:
            state.capacity_blocked_until[launch.resource] = now + block
    elif kind == "unknown":
        state.unconfirmed[launch.token] = launch
    elif kind in ("quota", "auth"):
        state.capacity_blocked_until[launch.resource] = now + max(block, 300.0)


def providers_unlisted(state: PolicyState, resources: Iterable[str], now: float) -> None:
    """Resources of a cloud that could not be listed this tick (its machines known only as last
    seen, or not at all): nothing is launched on them in this tick's plans and re-plans; the
    next tick decides afresh (called by the reconciler, pure)."""
    for name in resources:
        state.capacity_blocked_until[name] = max(state.capacity_blocked_until.get(name, 0.0), now + 1e-3)


def record_launch_success(state: PolicyState, launch: Launch) -> None:
    state.unconfirmed.pop(launch.token, None)
    if launch.spot:
        state.spot_failing_since.pop(launch.resource, None)
        if state.blackout_until.pop(launch.resource, None) is not None:  # a probe succeeded: spot is back
            state.spot_back.add(launch.resource)


#: a spot resource in blackout is probed (one spot launch attempt per tick with demand) once its blackout
#: has run this long, and at least its regular_instance_rollback_timeout
SPOT_PROBE_AFTER = 300.0


def _probe_after(resource: Resource) -> float:
    return max(SPOT_PROBE_AFTER, resource.regular_instance_rollback_timeout)


# --- evidence: arrivals, run times, boot times (for idle_policy = adaptive and the free-up rule) --

ARRIVAL_MEMORY = 86400.0  # arrival events older than this are forgotten
ARRIVAL_EVENTS = 200  # at most this many arrival events are kept per queue
MIN_GAPS = 3  # the arrival model needs this many gaps between arrival events (else: the sparse estimate)
#: a queue with fewer arrival events than MIN_GAPS + 1 that the scaler has watched this long is *sparse*:
#: its mean gap is estimated as the time watched (at most ARRIVAL_MEMORY) / (its arrival events + 1)
SPARSE_WATCH = 3600.0
DURATIONS_KEPT = 50  # run times kept per queue and per task name
DURATION_KEYS = 500  # task names whose run times are kept (the least recently seen go first)
MIN_DURATIONS = 3  # a run-time estimate needs this many runs
BOOTS_KEPT = 10  # boot times kept per resource
#: ski rental: an idle machine is worth keeping while the next task it would run is expected within
#: this many boot times (one billed while a replacement boots, one the task would wait for it)
BOOT_COST_FACTOR = 2.0
#: a busy worker counts as freeing up when at least this share of the runs like its task that lasted
#: as long as it has run so far ended within one boot time more
FREE_UP_SHARE = 0.8
#: spill-over patience: before launching a dearer machine (an on-demand fallback, a resource dearer than
#: the queue's cheapest), the pending tasks that busy workers are expected to take within this many boot
#: times are left to them (a task left so waits about one boot time longer than for the new machine)
SPILL_PATIENCE = 2.0
#: ... or, when that is longer, within the time a short run of the queue takes (the run time that this share of
#: its recent runs are shorter than), at most ``scaler.max_spill_wait``: a task held back then waits no longer
#: than the queue's short tasks run, which for long tasks is little against the dearer price of a whole run
SPILL_SHORT_RUN = 0.1


def _remember(store: dict[str, tuple[float, ...]], key: str, value: float, keep: int) -> None:
    values = store.pop(key, ())  # re-inserted last: the dict's order is recency
    store[key] = (*values, value)[-keep:]


def _observe(config: Config, obs: Observation, fleet: Fleet, state: PolicyState, pending: dict[str, int]) -> None:
    """Update the evidence from one readable tick: boot times (launch → first worker), tasks that
    started and ended (run times per queue and per task name), and arrivals per queue (pending
    now − pending at the last tick + tasks that started in between)."""
    now = obs.now
    first = not state.last_pending  # tasks running at the first look started at an unknown time
    alive = fleet.alive_ids()
    for resource_name, instances in fleet.alive.items():
        for inst in instances:
            if fleet.workers_of.get(inst.id):
                if inst.id in state.unbooted:
                    launched = state.launched_seen.get(inst.id, inst.launched_at)
                    _remember(state.boot_times, resource_name, max(0.0, now - launched), BOOTS_KEPT)
            elif inst.id not in state.worker_seen and not first:
                state.unbooted.add(inst.id)
                continue
            state.unbooted.discard(inst.id)
    state.unbooted &= alive

    current: dict[str, tuple[str, str, str]] = {}  # task id -> (queue, name, instance id or "")
    for resource_name, instances in fleet.alive.items():
        resource = config.resource(resource_name)
        for inst in instances:
            for worker in fleet.workers_of.get(inst.id, ()):
                if worker.task:
                    queue = resource.queue if resource else (worker.queues[0] if worker.queues else "")
                    current[worker.task] = (queue, worker.task_name, inst.id)
    served = set(config.queues)
    for worker in fleet.foreign:
        if worker.task and worker.task not in current:
            queue = next((q for q in worker.queues if q in served), "")
            if queue:
                current[worker.task] = (queue, worker.task_name, "")
    started: dict[str, int] = defaultdict(int)
    for task, (queue, _name, _inst) in current.items():
        if task not in state.task_seen:
            started[queue] += 1
    for task, (queue, at, name, inst_id) in list(state.task_seen.items()):
        if task in current:
            continue
        del state.task_seen[task]
        if at >= 0 and inst_id in alive:  # ended on a machine still there: it ran to its end
            for key in _duration_keys(queue, name):
                _remember(state.durations, key, now - at, DURATIONS_KEPT)
    while len(state.durations) > DURATION_KEYS:
        del state.durations[next(iter(state.durations))]
    for task, (queue, name, inst_id) in current.items():
        if task not in state.task_seen:
            state.task_seen[task] = (queue, -1.0 if first else now, name, inst_id)

    for queue in config.queues:
        if queue not in pending:
            continue
        before = state.last_pending.get(queue)
        state.last_pending[queue] = pending[queue]
        state.watched_since.setdefault(queue, now)
        if before is None:
            continue
        arrived = pending[queue] - before + started[queue]
        if arrived > 0:
            events = (*state.arrivals.get(queue, ()), (now, arrived))[-ARRIVAL_EVENTS:]
            state.arrivals[queue] = tuple(e for e in events if now - e[0] <= ARRIVAL_MEMORY)


_NUMBERED = re.compile(r"[\s_.:#-]*\(?\d+\)?$")


def _duration_keys(queue: str, name: str) -> list[str]:
    """Where a task's run time is filed, most specific first: its name, its family (the name
    without a trailing number: ``sweep-17`` → ``sweep``, ``train (copy 2)`` → ``train (copy``),
    its queue."""
    keys = []
    if name:
        keys.append(f"{queue}\x00{name}")
        family = _NUMBERED.sub("", name)
        if family and family != name:
            keys.append(f"{queue}\x00{family}*")
    keys.append(queue)
    return keys


def _runs_like(state: PolicyState, queue: str, name: str) -> tuple[float, ...]:
    """Run times of tasks like ``name`` of ``queue``: the most specific key with enough runs."""
    for key in _duration_keys(queue, name):
        runs = state.durations.get(key, ())
        if len(runs) >= MIN_DURATIONS:
            return runs
    return ()


def _about(seconds: float) -> str:
    """A duration for a log line: whole minutes from two minutes up, else seconds."""
    if seconds >= 120:
        return format_duration(round(seconds / 60) * 60)
    return format_duration(max(0, round(seconds)))


def _boot_time(state: PolicyState, resources: Iterable[Resource]) -> float | None:
    """The shortest median observed boot time (launch → worker) of ``resources``; None: none seen."""
    medians = []
    for resource in resources:
        seen = sorted(state.boot_times.get(resource.name, ()))
        if seen:
            medians.append(seen[len(seen) // 2])
    return min(medians) if medians else None


@dataclass(frozen=True)
class ArrivalModel:
    """What a queue's recent arrivals say about the next ones."""

    events: int  # arrival events it is built on
    since: float  # seconds since the last one
    expected: float  # seconds to the next one (mean residual gap; inf: longer than any gap seen)
    mean_gap: float
    batch: float  # tasks per arrival event
    watched: float = 0.0  # a sparse queue (too few events for gaps): seconds the estimate is built on

    def time_to(self, rank: int) -> float:
        """Expected seconds until the ``rank``-th next task (1: the next one) arrives."""
        return self.expected + (math.ceil(rank / self.batch) - 1) * self.mean_gap


def arrival_model(state: PolicyState, queue: str, now: float) -> ArrivalModel | None:
    """The queue's arrival model from its recent arrival events; None: not enough evidence."""
    events = [e for e in state.arrivals.get(queue, ()) if now - e[0] <= ARRIVAL_MEMORY]
    if len(events) < MIN_GAPS + 1:
        start = state.watched_since.get(queue)
        if start is None or now - start < SPARSE_WATCH:
            return None
        # a sparse queue: few arrivals over a long watch say the next one is far (a rate estimate)
        watched = min(now - start, ARRIVAL_MEMORY)
        gap = watched / (len(events) + 1)
        since = now - events[-1][0] if events else watched
        batch = sum(n for _, n in events) / len(events) if events else 1.0
        return ArrivalModel(len(events), since, gap, gap, batch, watched)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    since = max(0.0, now - events[-1][0])
    later = [g - since for g in gaps if g > since]
    expected = sum(later) / len(later) if later else math.inf
    return ArrivalModel(len(events), since, expected, sum(gaps) / len(gaps), sum(n for _, n in events) / len(events))


def _idle_ranks(config: Config, fleet: Fleet, state: PolicyState, now: float) -> dict[str, int]:
    """Idle machines of each queue ranked by which to keep first (1: kept first): the cheapest
    (a spot resource's on-demand fallback last), then the most recently idle."""
    by_queue: dict[str, list[tuple[tuple[int, float, float], str]]] = defaultdict(list)
    for resource_name, instances in fleet.alive.items():
        resource = config.resource(resource_name)
        if resource is None:
            continue
        for inst in instances:
            workers = fleet.workers_of.get(inst.id, [])
            if not workers or any(w.task for w in workers):
                continue
            fallback = 1 if resource.spot and not inst.spot else 0
            key = (fallback, resource.price_per_hour, -state.idle_since.get(inst.id, now))
            by_queue[resource.queue].append((key, inst.id))
    ranks: dict[str, int] = {}
    for items in by_queue.values():
        for rank, (_key, inst_id) in enumerate(sorted(items), start=1):
            ranks[inst_id] = rank
    return ranks


def _not_needed_soon(config: Config, resource: Resource, spot: bool, state: PolicyState, now: float, rank: int) -> str:
    """Why an idle machine should go before ``max_idle_time`` (idle_policy = adaptive), or "" when
    it should stay: ski rental, keep it while the task it would run next is expected within
    BOOT_COST_FACTOR boot times; without evidence (arrivals, boot times) it stays."""
    boot = _boot_time(state, [resource])
    model = arrival_model(state, resource.queue, now)
    if boot is None or model is None:
        return ""
    if spot and not _spot_healthy(resource, state, now):
        return ""  # its replacement would be on-demand: a spot machine is kept to max_idle_time
    due = model.time_to(rank)
    budget = BOOT_COST_FACTOR * boot
    if due <= budget:
        return ""
    if model.watched:
        nth = "its next task" if rank == 1 else f"the task for its #{rank} idle machine"
        expect = (
            f"queue '{resource.queue}' had {_plural(model.events, 'arrival')} in the last "
            f"{_about(model.watched)} (a sparse queue) and expects {nth} in ~{_about(due)}"
        )
    elif math.isinf(due):
        expect = (
            f"queue '{resource.queue}' has had no new task for {_about(model.since)}, longer than "
            f"any gap between its last {model.events} arrivals"
        )
    else:
        nth = "its next task" if rank == 1 else f"the task for its #{rank} idle machine"
        expect = f"queue '{resource.queue}' expects {nth} in ~{_about(due)}"
    return (
        f"{expect}, more than {BOOT_COST_FACTOR:g} x its boot time ({_about(boot)}): "
        f"ending it before max_idle_time {format_duration(config.scaler.max_idle_time)} (idle_policy adaptive)"
    )


def _freeing(config: Config, fleet: Fleet, state: PolicyState, now: float, queue: str) -> tuple[int, float, list[str]]:
    """Busy workers of ``queue`` expected to finish within one boot time (the free-up rule): how
    many, the boot time, and a note on each. Only with evidence: the boot time of the queue's
    resources and the run times of tasks like the one each worker runs."""
    resources = config.resources_for_queue(queue)
    boot = _boot_time(state, resources)
    if boot is None:
        return 0, 0.0, []
    count = 0
    notes: list[str] = []
    for resource in resources:
        for inst in fleet.alive.get(resource.name, ()):
            for worker in fleet.workers_of.get(inst.id, ()):
                seen = state.task_seen.get(worker.task or "")
                if seen is None or seen[1] < 0:
                    continue
                ran = now - seen[1]
                runs = _runs_like(state, queue, seen[2])
                longer = [d for d in runs if d > ran]
                if len(longer) < MIN_DURATIONS:
                    continue
                soon = [d for d in longer if d <= ran + boot]
                if len(soon) >= FREE_UP_SHARE * len(longer):
                    count += 1
                    usual = sorted(soon)[len(soon) // 2]
                    notes.append(f"{worker.task} ({seen[2] or queue}) has run {_about(ran)} of a usual {_about(usual)}")
    return count, boot, notes


def _room(resource: Resource, fleet: Fleet, unconfirmed: dict[str, int]) -> int:
    """How many more machines ``resource`` may have: ``max_instances`` less its live machines and
    its launches whose outcome is unknown."""
    return resource.max_instances - fleet.count(resource.name) - unconfirmed[resource.name]


def _unavailable_price(
    resources: list[Resource],
    order: list[tuple[Resource, bool, str]],
    fleet: Fleet,
    state: PolicyState,
    unconfirmed: dict[str, int],
) -> float:
    """The lowest ``price_per_hour`` among the queue's resources that cannot take a machine at that
    price this tick: full (``max_instances``), skipped (capacity, quota, unlisted cloud), or a spot
    resource whose spot market is failing or in blackout; 0 when there is none."""
    spot_in_order = {r.name: spot for r, spot, _ in order}
    prices = [
        r.price_per_hour
        for r in resources
        if r.price_per_hour > 0
        and (
            r.name not in spot_in_order
            or (r.spot and (not spot_in_order[r.name] or r.name in state.spot_failing_since))
            or _room(r, fleet, unconfirmed) <= 0
        )
    ]
    return min(prices, default=0.0)


def _spill_delay_line(queue: str, resource: Resource, demand: int, short: float, delay: float) -> str:
    """The log line of the spill-over delay rule: the queue's shortage of cheaper machines has not
    lasted ``spill_delay`` yet, so no dearer machine is launched this tick."""
    return (
        f"queue '{queue}': {_plural(demand, 'pending task')} wait for cheaper machines: short of them for "
        f"{format_duration(round(short))} of spill_delay {format_duration(delay)} before launching pricier "
        f"'{resource.name}' ({resource.price_per_hour:g}/h)"
    )


def _spill_patience(
    config: Config,
    fleet: Fleet,
    state: PolicyState,
    now: float,
    queue: str,
    resource: Resource,
    demand: int,
    freeing: int,
) -> tuple[int, str]:
    """The spill-over patience rule: how many of ``demand`` pending tasks to leave to the busy
    workers of ``queue`` instead of launching the dearer ``resource`` (an on-demand fallback, or a
    resource dearer than the queue's cheapest), and the log line. The window is SPILL_PATIENCE boot
    times, or a short run of the queue (SPILL_SHORT_RUN, at most ``max_spill_wait``) when that is longer.
    The expected number of busy workers finishing within it is the sum, over them, of the share of the runs like
    their task that lasted as long as it has run so far and ended within that time more; a machine of
    the queue still booting counts too, with the share of the queue's runs that would end within what
    is left of that time once it is up (it takes a pending task when it registers). The whole part of
    the sum, less the workers the free-up rule counted already, is held back. Without evidence (no boot
    time seen, fewer than MIN_DURATIONS such runs) nothing is held back."""
    boot = _boot_time(state, config.resources_for_queue(queue))
    if boot is None:
        return 0, ""
    queue_runs = _runs_like(state, queue, "")
    window = SPILL_PATIENCE * boot
    within = f"{SPILL_PATIENCE:g} x the boot time ({_about(boot)})"
    short = sorted(queue_runs)[int(len(queue_runs) * SPILL_SHORT_RUN)] if queue_runs else 0.0
    limit = config.scaler.max_spill_wait
    if min(short, limit) > window:
        window = min(short, limit)
        within = (
            f"{_about(window)}, as long as a short run of the queue"
            if short <= limit
            else f"max_spill_wait {format_duration(limit)} (a short run of the queue takes {_about(short)})"
        )
    expected = 0.0
    busy = booting = 0
    for other in config.resources_for_queue(queue):
        for inst in fleet.alive.get(other.name, ()):
            workers = fleet.workers_of.get(inst.id, ())
            if not workers and inst.id in state.unbooted:
                booting += 1
                age = now - state.launched_seen.get(inst.id, inst.launched_at)
                left = window - max(0.0, boot - age)  # of the window, once it is up
                if queue_runs and left > 0:
                    expected += sum(1 for d in queue_runs if d <= left) / len(queue_runs)
                continue
            for worker in workers:
                seen = state.task_seen.get(worker.task or "")
                if seen is None or seen[1] < 0:
                    continue
                busy += 1
                ran = now - seen[1]
                longer = [d for d in _runs_like(state, queue, seen[2]) if d > ran]
                if len(longer) >= MIN_DURATIONS:
                    expected += sum(1 for d in longer if d <= ran + window) / len(longer)
    held = min(demand, math.floor(expected + 1e-9) - freeing)
    if held <= 0:
        return 0, ""
    what = f"on-demand '{resource.name}'" if resource.spot else f"dearer '{resource.name}'"
    return held, (
        f"queue '{queue}': {_plural(held, 'pending task')} left to busy workers instead of launching "
        f"{what}: {busy} busy" + (f" and {booting} booting" if booting else "") + f", ~{expected:.1f} expected to "
        f"finish within {within}"
    )


# --- what the reconciler reports back (every change of state outside `decide` is one of these) --


def launch_seen(state: PolicyState, instance_ids: Iterable[str], now: float) -> None:
    """Instances a launch just created: their boot is measured from ``now`` on the scaler's
    own clock, whatever the cloud's launch time says."""
    for inst_id in instance_ids:
        state.launched_seen.setdefault(inst_id, now)


def termination_recorded(state: PolicyState, instance_ids: Iterable[str], now: float) -> None:
    """The cloud is being asked to terminate these instances (recorded before the call: its
    answer may be lost after the cloud acted). A worker of one of them still reporting a task
    afterwards took it in the instant before the terminate; :func:`decide` re-enqueues it."""
    for inst_id in instance_ids:
        state.terminated_at[inst_id] = now


def termination_spared(state: PolicyState, instance_id: str) -> None:
    """An idle instance's worker took a task right before its termination: it is busy, not idle."""
    state.idle_since.pop(instance_id, None)


def termination_deferred(
    state: PolicyState, items: Iterable[Terminate], idle_before: dict[str, float], now: float
) -> None:
    """Terminations that did not happen (dry run, workers not re-read, the call failed).

    :func:`decide` forgets the idle timer of an instance it terminates; here the timer comes
    back (``idle_before``: the timers before that tick's decision), so the next tick decides
    the same instead of waiting a whole ``max_idle_time`` again."""
    for item in items:
        if item.kind in (TerminationKind.IDLE, TerminationKind.CONSOLIDATION) or item.instance_id in idle_before:
            state.idle_since[item.instance_id] = idle_before.get(item.instance_id, now)
