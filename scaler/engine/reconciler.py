"""The loop: observe → decide → act, every ``polling_interval``.

A thin shell around :func:`scaler.engine.policy.decide` that does the I/O: one read of queues and
one of workers from the queue source (ClearML, or the simulated queue), one paginated
``list`` from the provider, then batched terminations, re-enqueues and launches. Any error
in a tick is logged with context and the loop goes on; SIGINT/SIGTERM finish the current
tick and stop, leaving the fleet as it is.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from scaler.config import redact
from scaler.config.fields import format_duration
from scaler.config.model import DEFAULT_NAME
from scaler.engine.fleet import WorkerObs, join
from scaler.engine.policy import (
    Decision,
    Launch,
    Observation,
    PolicyState,
    QueueObs,
    Requeue,
    RequeueResult,
    Terminate,
    TerminationKind,
    decide,
    launch_seen,
    providers_unlisted,
    record_launch_failure,
    record_launch_success,
    termination_deferred,
    termination_recorded,
    termination_spared,
)
from scaler.engine.render import render_init_script
from scaler.errors import CapacityError, NotImplementedByProvider, ProviderError, TransientError
from scaler.types import TAG_FLEET, Instance, InstanceState, RenderContext, ServerInfo

if TYPE_CHECKING:
    from scaler.clearml.lease import Lease
    from scaler.config.model import Config
    from scaler.host import PluginHost, Provider

log = logging.getLogger("scaler")

CONSOLE_TAIL = 4000  # characters of a stuck machine's console kept in the log
CONSOLE_KEPT = 64 * 1024  # characters of it kept in the tick's report (a ClearML task artifact), at most
# wall time and monotonic time may drift apart by this much between two ticks (NTP slews
# slowly) before it counts as a clock jump
CLOCK_JUMP_TOLERANCE = 30.0


class QueueSource(Protocol):
    """Where queues and workers are read from (ClearML, or the simulated queue)."""

    def read(self, queues: list[str]) -> tuple[dict[str, QueueObs] | None, list[WorkerObs] | None]:
        """Queues (with pending counts) and workers; ``None`` for what could not be read."""

    def read_workers(self) -> list[WorkerObs] | None:
        """Workers only (re-read right before terminating idle machines)."""

    def requeue(self, task_id: str, queue: str, reason: str, max_requeues: int) -> RequeueResult:
        """Put an interrupted task back in ``queue`` if it is still marked running, unless it was
        re-enqueued ``max_requeues`` times already: then leave it failed, the reason in its status
        message (``GAVE_UP``). ``RETRY`` when it could not be done now (tried again next tick)."""

    def server_info(self) -> ServerInfo:
        """The server and credentials the agents will use."""


@dataclass
class TickReport:
    """What one tick saw and did (logs, status, metrics, the demo's timeline)."""

    now: float
    pending: dict[str, int] = field(default_factory=dict)
    fleet: dict[str, dict[str, int]] = field(default_factory=dict)
    launched: Counter[str] = field(default_factory=Counter)  # resource -> instances
    terminated: Counter[str] = field(default_factory=Counter)  # reason kind -> instances
    requeued: int = 0
    failed_tasks: int = 0  # interrupted tasks left failed: re-enqueued max_requeues times already
    adopted: int = 0  # legacy instances tagged with the fleet identity
    invalid_leases: int = 0  # lease entries of this fleet that are not valid (forged, or an over-long timeout)
    errors: Counter[str] = field(default_factory=Counter)  # error kind -> count
    actions: list[str] = field(default_factory=list)  # one line per action with its reason
    # instance id -> the console output of a stuck or stopped machine terminated in this tick: its
    # last CONSOLE_KEPT characters, secrets masked (a ClearML task saves each as an artifact)
    consoles: dict[str, str] = field(default_factory=dict)
    clearml_ok: bool = True
    cloud_ok: bool = True
    #: providers that could not be listed this tick (their machines were left as last seen)
    unlisted: list[str] = field(default_factory=list)
    duration: float = 0.0

    def failures(self) -> list[str]:
        """Why this tick could not do its job (empty: it could): what ``scaler run --once`` exits 1 for."""
        out = []
        if not self.clearml_ok:
            out.append("the ClearML server could not be read")
        if self.errors["lease"]:
            out.append("another scaler of this fleet holds the lease (or it could not be checked): nothing was done")
        elif not self.cloud_ok:
            out.append("the cloud could not be listed")
        elif self.unlisted:
            out.append(f"provider(s) {', '.join(self.unlisted)} could not be listed")
        if self.errors["bug"]:
            out.append("the tick failed unexpectedly (see the log)")
        return out


def _failed(launch: Launch, what: str) -> str:
    """The action line of a launch the provider refused (it is not a launch: nothing was created)."""
    return f"launch of {launch.count} x {launch.resource} ({'spot' if launch.spot else 'on-demand'}) failed: {what}"


class Reconciler:
    def __init__(
        self,
        config: Config,
        host: PluginHost,
        provider: Provider | Mapping[str, Provider],
        source: QueueSource,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        dry_run: bool = False,
        lease: Lease | None = None,
    ) -> None:
        self.config = config
        self.lease = lease  # single-writer safety: act only while holding the fleet's lease
        self.host = host
        #: the fleet's providers by name (one fleet may span several clouds), in config order
        self.providers: dict[str, Provider] = (
            dict(provider) if isinstance(provider, Mapping) else {provider.name: provider}
        )
        self._where: dict[str, str] = {}  # instance id -> the provider that listed or launched it
        self._last_listed: dict[str, list[Instance]] = {}  # provider -> its last successful listing
        self.source = source
        self.clock = clock
        # measures real elapsed time to tell a wall-clock jump from time passing; an injected
        # (virtual) clock is its own monotonic clock unless the caller models jumps
        self.monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._last_clocks: tuple[float, float] | None = None
        self._said: set[str] = set()  # info notices of the last tick
        self.dry_run = dry_run
        self.state = PolicyState()
        self.history: list[TickReport] = []
        self._scripts: dict[str, str] = {}
        self._context: RenderContext | None = None
        self.stop_event = threading.Event()
        self._lease_message = ""
        self._requeue_retry: dict[str, Requeue] = {}  # task id -> re-enqueue that could not be done yet
        self._cannot_tag = False  # the provider has no scaler_tag_instances (said once)
        # called with each TickReport at the end of tick() (state file, metrics, ClearML task)
        self.listeners: list[Callable[[TickReport], None]] = []

    @property
    def provider(self) -> Provider:
        """The fleet's first provider (its only one, unless the fleet spans several clouds)."""
        return next(iter(self.providers.values()))

    def provider_for(self, instance_id: str = "", resource: str = "") -> Provider:
        """The provider of an instance (the one that listed or launched it), else of a resource."""
        name = self._where.get(instance_id) or self.config.provider_of(resource)
        return self.providers.get(name) or self.provider

    def _where_is(self, resource: str, provider: str = "") -> str:
        """A resource as the action lines name it: ``gpu`` (one cloud), ``gpu on gcp`` (several)."""
        if len(self.providers) < 2:
            return resource
        return f"{resource} on {provider or self.config.provider_of(resource) or '?'}"

    # -- one tick ------------------------------------------------------------------------

    def tick(self) -> TickReport:
        started = time.perf_counter()
        report = TickReport(now=self.clock())
        self._follow_clock_jump(report.now)
        try:
            self._tick(report)
        except Exception as exc:  # keep the loop alive whatever happens; say where it happened
            report.errors["bug"] += 1
            log.exception("tick failed unexpectedly: %s: %s", type(exc).__name__, exc)
        report.duration = time.perf_counter() - started
        self.history.append(report)
        del self.history[:-100]
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception as exc:  # a reporting failure must not stop the loop
                log.warning(
                    "tick listener %s failed: %s: %s", getattr(listener, "__name__", listener), type(exc).__name__, exc
                )
        return report

    def _follow_clock_jump(self, now: float) -> None:
        """Move the policy's timers with a wall-clock jump, so they keep measuring real time."""
        mono = self.monotonic()
        last, self._last_clocks = self._last_clocks, (now, mono)
        if last is None:
            return
        jump = (now - last[0]) - (mono - last[1])
        if abs(jump) < CLOCK_JUMP_TOLERANCE:
            return
        log.warning(
            "the wall clock jumped %s%s; idle, stuck and back-off timers keep the time they had measured",
            "forward " if jump > 0 else "back ",
            format_duration(round(abs(jump))),
        )
        self.state = self.state.shifted(jump)

    def _tick(self, report: TickReport) -> None:
        config = self.config
        queues, workers = self.source.read(config.queues)
        report.clearml_ok = queues is not None and workers is not None
        if self.lease is not None and not self.dry_run:
            status = self.lease.acquire()
            report.invalid_leases = len(status.invalid)
            if not status.ok:
                report.errors["lease"] += 1
                if status.message != self._lease_message:
                    log.error("not acting: %s", status.message)
                self._lease_message = status.message
                report.cloud_ok = False  # not listed: the tick stopped here
                return
            self._lease_message = ""
        instances, frozen = self._list(report)
        report.pending = {name: q.pending for name, q in (queues or {}).items()}
        obs = Observation(report.now, queues, workers, instances)
        idle_before = dict(self.state.idle_since)
        decision = decide(config, obs, self.state)
        self.state = decision.state
        report.fleet = decision.fleet
        said, self._said = self._said, set()
        for notice in decision.notices:
            if notice.level == "warning":
                log.warning("%s", notice.message)
                continue
            # an unchanged state (a queue waiting at max_instances) is said once, then at DEBUG
            self._said.add(notice.message)
            (log.debug if notice.message in said else log.info)("%s", notice.message)

        self._adopt(decision, report)
        self._terminate(decision, report, idle_before, frozen)
        self._requeue(decision, workers, instances, report)
        self._launch(decision, obs, report)

    def _list(self, report: TickReport) -> tuple[list[Instance] | None, set[str]]:
        """Every provider's instances, each provider listed once, and the ids not to act on.

        A provider that cannot be listed while another can stands for its machines as last seen:
        they still count (against ``max_instances`` and the fleet caps, in a queue's demand),
        nothing of theirs is terminated (their ids come back frozen), and nothing is launched on
        that provider this tick; if it was never listed, nothing is launched for the queues it
        serves (nor anywhere, with a fleet cap set). ``None`` when no provider could be listed."""
        config = self.config
        found: list[Instance] = []
        frozen: set[str] = set()
        blocked: set[str] = set()
        for name, provider in self.providers.items():
            try:
                listed = provider.list_instances(config)
            except ProviderError as exc:
                report.errors[exc.kind] += 1
                report.unlisted.append(name)
                log.warning("listing instances of provider '%s' failed (%s): %s", name, exc.kind, exc)
                own = config.for_provider(name).resources
                blocked |= {r.name for r in own}
                last = self._last_listed.get(name)
                if last is None:
                    queues = {r.queue for r in own}
                    blocked |= {r.name for r in config.resources if r.queue in queues}
                    if config.scaler.max_instances_total or config.scaler.max_hourly_cost:
                        blocked |= {r.name for r in config.resources}
                    continue
                found += last
                frozen |= {inst.id for inst in last}
                continue
            self._last_listed[name] = listed
            for inst in listed:
                self._where[inst.id] = name
            found += listed
        if len(report.unlisted) == len(self.providers):
            report.cloud_ok = False
            return None, frozen
        if report.unlisted:
            log.warning(
                "provider(s) %s could not be listed: their machines are left as last seen; no launch on %s this tick",
                ", ".join(report.unlisted),
                ", ".join(sorted(blocked)) or "them",
            )
            providers_unlisted(self.state, blocked, report.now)  # skipped by this tick's plans and re-plans
        if len(self._where) > 4 * len(found) + 1000:  # forget the machines long gone
            alive = {inst.id for inst in found}
            self._where = {k: v for k, v in self._where.items() if k in alive}
        return found, frozen

    def _adopt(self, decision: Decision, report: TickReport) -> None:
        """Tag the legacy instances this fleet's workers run on with the fleet identity, once."""
        todo = [inst for inst in decision.adoptions if self.config.fleet_id]
        if not todo or self._cannot_tag:
            return
        ids = [inst.id for inst in todo]
        line = (
            f"adopt {len(ids)} legacy instance(s) of scaler '{self.config.scaler.name}' (tagged before fleet "
            f"identities; their workers are on this ClearML server): tag {TAG_FLEET}={self.config.fleet_id} "
            f"on {', '.join(ids)}"
        )
        report.actions.append(line)
        if self.dry_run:
            log.info("[dry-run] would %s", line)
            return
        by_provider: dict[str, list[str]] = defaultdict(list)
        for inst in todo:
            by_provider[self.provider_for(inst.id, inst.resource).name].append(inst.id)
        try:
            for name, some in by_provider.items():
                self.providers[name].tag_instances(self.config, some, {TAG_FLEET: self.config.fleet_id})
        except NotImplementedByProvider:
            self._cannot_tag = True
            log.warning(
                "provider '%s' cannot tag instances (no scaler_tag_instances): legacy instance(s) %s stay "
                "untagged; they are managed while their workers are on this ClearML server, and never "
                "terminated as orphans",
                name,
                ", ".join(ids),
            )
            return
        except ProviderError as exc:
            report.errors[exc.kind] += 1
            log.warning(
                "could not tag legacy instance(s) %s (%s): %s; will retry next tick", ", ".join(ids), exc.kind, exc
            )
            return
        report.adopted += len(ids)
        log.warning("%s", line)

    def _requeue(
        self,
        decision: Decision,
        workers: list[WorkerObs] | None,
        instances: list[Instance] | None,
        report: TickReport,
    ) -> None:
        retry, self._requeue_retry = self._requeue_retry, {}
        if workers is None or instances is None:  # cannot tell who runs what now: try again next tick
            self._requeue_retry = retry
            return
        todo = list(decision.requeues)
        todo += [item for task, item in retry.items() if all(r.task_id != task for r in todo)]
        if not todo:
            return  # the join below costs as much as the policy's own: only for a re-enqueue
        # what a dead worker of this fleet still reports is run by nobody; any other worker's task is
        config = self.config
        running_elsewhere = join(config.scaler.workers_prefix, instances, workers, config.fleet_id).live_tasks()
        for item in todo:
            if item.task_id in running_elsewhere:
                # e.g. after a restart the dead worker is still listed with a task that a
                # replacement machine already runs: stopping it would interrupt a healthy run
                log.info(
                    "task %s is not re-enqueued: its machine %s vanished, but a live worker runs it now",
                    item.task_id,
                    item.instance_id,
                )
                continue
            line = f"requeue task {item.task_id} to '{item.queue}': {item.reason}"
            report.actions.append(line)
            if self.dry_run:
                log.info("[dry-run] would %s", line)
                continue
            done = self.source.requeue(item.task_id, item.queue, item.reason, config.scaler.max_requeues)
            if done is RequeueResult.REQUEUED:
                report.requeued += 1
                log.warning("%s", line)
            elif done is RequeueResult.GAVE_UP:
                # the source logged why, with the count; the task is failed, its reason in the status message
                report.failed_tasks += 1
                report.actions[-1] = (
                    f"leave task {item.task_id} failed: {item.reason}; re-enqueued "
                    f"max_requeues = {config.scaler.max_requeues} time(s) already"
                )
            elif done is RequeueResult.RETRY:
                # the server could not be asked: the next tick tries again
                report.errors["requeue"] += 1
                self._requeue_retry[item.task_id] = item
                log.warning("could not %s; will retry next tick", line)

    # -- terminate -------------------------------------------------------------------------

    def _terminate(
        self, decision: Decision, report: TickReport, idle_before: dict[str, float], frozen: set[str]
    ) -> None:
        todo = list(decision.terminations)
        if frozen:  # machines of a provider that could not be listed: as last seen, never acted on
            held = [t for t in todo if t.instance_id in frozen]
            termination_deferred(self.state, held, idle_before, report.now)
            todo = [t for t in todo if t.instance_id not in frozen]
        if not todo:
            return
        if self.dry_run:
            termination_deferred(self.state, todo, idle_before, report.now)
        if any(t.worker_ids for t in todo) and not self.dry_run:
            # a worker may have taken a task since we read them: re-read once, spare those
            fresh = self.source.read_workers()
            if fresh is None:
                log.warning("could not re-read workers before terminating: terminating nothing this tick")
                termination_deferred(self.state, todo, idle_before, report.now)
                return
            busy = {w.id for w in fresh if w.task}
            spared = [t for t in todo if set(t.worker_ids) & busy]
            for item in spared:
                log.info("spared %s: its worker just took a task", item.instance_id)
                termination_spared(self.state, item.instance_id)
            todo = [t for t in todo if t not in spared]
        by_resource: dict[tuple[str, str], list[Terminate]] = defaultdict(list)
        for item in todo:
            if item.capture_console or item.kind is TerminationKind.STOPPED:
                self._save_console(item, report)
            by_resource[(self.provider_for(item.instance_id, item.resource).name, item.resource)].append(item)
        for (provider, resource), items in by_resource.items():
            for item in items:
                line = (
                    f"terminate {item.instance_id} ({self._where_is(resource, provider)}, {item.kind}): {item.reason}"
                )
                report.actions.append(line)
                log.info("%s%s", "[dry-run] would " if self.dry_run else "", line)
            if self.dry_run:
                continue
            # before the call: its answer may be lost after the cloud acted
            termination_recorded(self.state, [t.instance_id for t in items], report.now)
            try:
                self.providers[provider].terminate(self.config, [t.instance_id for t in items])
            except ProviderError as exc:
                report.errors[exc.kind] += 1
                termination_deferred(self.state, items, idle_before, report.now)
                log.error(
                    "terminating %d instance(s) of %s failed (%s): %s; will retry next tick",
                    len(items),
                    resource,
                    exc.kind,
                    exc,
                )
                continue
            for item in items:
                report.terminated[item.kind.value] += 1

    def _save_console(self, item: Terminate, report: TickReport) -> None:
        instance_id = item.instance_id
        try:
            text = self.provider_for(instance_id, item.resource).console_output(self.config, instance_id)
        except ProviderError as exc:
            log.warning("console output of %s instance %s unavailable: %s", item.kind, instance_id, exc)
            return
        if len(text) > CONSOLE_KEPT:
            # whole lines only: a secret cut in two would not be recognised, and half of it would show
            text = text[-CONSOLE_KEPT:].partition("\n")[2]
        # the machine's own output: the secrets it was given (its script, its clearml.conf) masked,
        # terminal control characters shown instead of obeyed
        kept = redact.machine_output(text, redact.known_secrets(self.config, self._render_context()))
        report.consoles[instance_id] = kept[-CONSOLE_KEPT:]
        tail = kept[-CONSOLE_TAIL:]
        log.warning("console output of %s instance %s (last %d chars):\n%s", item.kind, instance_id, len(tail), tail)

    # -- launch ----------------------------------------------------------------------------

    def _render_context(self) -> RenderContext:
        if self._context is None:
            self._context = RenderContext(self.source.server_info())
        return self._context

    def _script(self, resource_name: str) -> str:
        if resource_name not in self._scripts:
            resource = self.config.resource(resource_name)
            assert resource is not None
            self._scripts[resource_name] = render_init_script(self.host, self.config, resource, self._render_context())
        return self._scripts[resource_name]

    def _launch(self, decision: Decision, obs: Observation, report: TickReport) -> None:
        launches = decision.launches
        instances = list(obs.instances or [])
        # capacity and quota errors re-plan within the tick so demand spills to the next resource now
        for _round in range(len(self.config.resources) + 1):
            spill = False
            for launch in launches:
                done = self._launch_one(launch, report)
                if done is None:
                    spill = True
                    continue
                instances.extend(done)
            if not spill or self.dry_run:
                return
            replan = decide(self.config, replace(obs, instances=instances), self.state)
            self.state = replan.state
            launches = [launch for launch in replan.launches if launch.token not in self.state.unconfirmed]
            if not launches:
                return

    def _launch_one(self, launch: Launch, report: TickReport) -> list[Instance] | None:
        """Launch; the instances created, or ``None`` when capacity or quota failed (re-plan)."""
        line = (
            f"launch {launch.count} x {self._where_is(launch.resource)} ({'spot' if launch.spot else 'on-demand'}): "
            f"{launch.reason}"
        )
        report.actions.append(line)
        if self.dry_run:
            log.info("[dry-run] would %s", line)
            return []
        resource = self.config.resource(launch.resource)
        assert resource is not None
        log.info("%s", line)
        provider = self.provider_for(resource=launch.resource)
        try:
            created = provider.launch(
                self.config, resource, launch.count, self._script(launch.resource), launch.token, launch.spot
            )
        except CapacityError as exc:
            report.errors["capacity"] += 1
            report.actions[-1] = _failed(launch, f"out of capacity ({exc}); spilling over")
            record_launch_failure(self.state, launch, "capacity", report.now, self.config)
            log.warning(
                "no capacity for %s (%s): %s; spilling over",
                launch.resource,
                "spot" if launch.spot else "on-demand",
                exc,
            )
            return None
        except TransientError as exc:
            # the call may have been accepted: retry with the same token next tick
            report.errors["transient"] += 1
            report.actions[-1] = _failed(launch, f"{exc}; retrying with the same token next tick")
            record_launch_failure(self.state, launch, "unknown", report.now, self.config)
            log.warning(
                "launch of %s failed transiently: %s; retrying with the same token next tick", launch.resource, exc
            )
            return []
        except ProviderError as exc:
            report.errors[exc.kind] += 1
            report.actions[-1] = _failed(launch, f"{exc.kind}: {exc}")
            record_launch_failure(self.state, launch, exc.kind, report.now, self.config)
            log.error("launch of %s failed (%s): %s", launch.resource, exc.kind, exc)
            # a quota is per instance family/region: the next resource may still fit, so
            # re-plan now (record_launch_failure blocked this one); an auth error is account-wide
            return None if exc.kind == "quota" else []
        record_launch_success(self.state, launch)
        launch_seen(self.state, [inst.id for inst in created], report.now)
        for inst in created:
            self._where[inst.id] = provider.name
        report.launched[launch.resource] += len(created)
        # seen as booting by a re-plan in this tick, and as this fleet's (it just launched them)
        return [
            replace(i, state=i.state if i.state.alive else InstanceState.PENDING, fleet=self.config.fleet_id)
            for i in created
        ]

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, once: bool = False, handle_signals: bool = True) -> None:
        if handle_signals:
            self._install_signal_handlers()
        if self.config.scaler.name == DEFAULT_NAME:
            log.warning(
                "scaler.name is the default '%s': give each deployment its own name (machines are tagged with "
                "it; with the ClearML server and workspace it makes the fleet identity)",
                DEFAULT_NAME,
            )
        log.info(
            "scaler '%s' managing %d resource(s) on %s%s; polling every %ss",
            self.config.scaler.name,
            len(self.config.resources),
            " and ".join(self.providers),
            " (dry run)" if self.dry_run else "",
            f"{self.config.scaler.polling_interval:g}",
        )
        while not self.stop_event.is_set():
            self.tick()
            if once:
                break
            self.stop_event.wait(self.config.scaler.polling_interval)
        if self.lease is not None:
            self.lease.release()  # the next scaler may take over at once
        log.info("scaler stopped; the fleet is left as it is")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: object) -> None:
            log.info("received %s: finishing the current tick, then stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
