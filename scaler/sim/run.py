"""``scaler simulate``: replay a trace on the real policy and reconciler (or on ClearML's own
autoscaler, :mod:`scaler.sim.clearml_autoscaler`) against the simulated cloud, on a virtual clock,
and report what the fleet cost against a lower bound.

Built on :mod:`scaler.sim.world` (the trace, the in-memory queue and agents, the world); this
module adds what the trace says about the cloud per resource (boot time, price), seeded
variation of a trace, the run for each policy, and the report:

* per resource and in total: instance-hours, cost, the **lower bound** and cost ÷ lower
  bound. The lower bound of a completed task is its own run time priced at the cheapest
  resource of its queue: no policy can pay less for it. A machine bills from launch to
  termination and runs one task at a time, so the bound is never above the measured cost
  (per resource too: each resource's bound sums the tasks that ran on it).
* task wait p50/p95/max (arrival → start of the run that completed), launches by reason,
  failed launches, terminations by reason, spot reclaims, re-enqueued and lost tasks.

The trace format (a JSON file) is described in ``docs/simulate.md``.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.default_plugins import simulated
from scaler.errors import ConfigError
from scaler.host import Provider
from scaler.sim.world import SimQueue, SimTask, TaskSpec, Trace, VirtualClock, World, percentile

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource
    from scaler.host import PluginHost
    from scaler.types import Instance

POLICIES = ("scaler", "clearml")
SAMPLE_EVERY = 60.0  # seconds between two points of the timeline (pending tasks, fleet size)

#: Jitter applied by ``--seed`` unless the trace's ``jitter`` says otherwise.
DEFAULT_JITTER = {"arrival": 60.0, "duration": 0.10, "boot_time": 0.10}


# --- the trace, with the cloud's behaviour per resource ------------------------------------


@dataclass(frozen=True)
class ClearMLSettings:
    """How ClearML's autoscaler is run on the trace (see :mod:`scaler.sim.clearml_autoscaler`).

    Defaults are ClearML's own: ``ScalerConfig`` in clearml/automation/auto_scaler.py:60-62
    (``max_idle_time_min = 15``, ``polling_interval_time_min = 5``, ``max_spin_up_time_min =
    30``); the waits are those of the AWS driver's boto3 waiters (aws_driver.py:137-138 and
    :171; botocore ``InstanceRunning`` and ``SpotInstanceRequestFulfilled``: 15 s delay, 40
    attempts).
    """

    polling_interval: float = 300.0
    max_idle_time: float = 900.0
    max_spin_up_time: float = 1800.0
    launch_wait: float = 15.0  # spin_up_worker blocks until EC2 reports the machine running
    spot_wait: float = 600.0  # ... and a spot request that cannot be fulfilled blocks 40 x 15 s
    spot_requests_stay_open: bool = True  # an unfulfilled one-time spot request stays open (AWS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClearMLSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"trace clearml_policy: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = bool(value) if key == "spot_requests_stay_open" else float(value)
        return cls(**values)


@dataclass(frozen=True)
class SimTrace:
    """A :class:`scaler.sim.world.Trace` plus the cloud's behaviour per resource and the settings
    of the ClearML policy run."""

    trace: Trace
    boot_times: dict[str, float] = field(default_factory=dict)  # resource -> seconds to a running agent
    prices: dict[str, float] = field(default_factory=dict)  # resource -> price per hour (overrides the config)
    on_demand_prices: dict[str, float] = field(default_factory=dict)  # spot resource -> price when on-demand
    clearml: ClearMLSettings = field(default_factory=ClearMLSettings)
    jitter: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_JITTER))
    seed: int | None = None  # set by vary(): also jitters each machine's boot time

    @property
    def name(self) -> str:
        return self.trace.name

    def boot_time(self, resource: str) -> float:
        return self.boot_times.get(resource, self.trace.boot_time)

    @classmethod
    def load(cls, path: str | Path) -> SimTrace:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"trace {path}: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"trace {path}: cannot be read: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimTrace:
        if not isinstance(data, Mapping):
            raise ConfigError("a trace must be a JSON object")
        trace = Trace.from_dict(dict(data))
        boot_times: dict[str, float] = {}
        prices: dict[str, float] = {}
        on_demand: dict[str, float] = {}
        for name, item in (data.get("resources") or {}).items():
            if "on_demand_price_per_hour" in item:
                on_demand[str(name)] = float(item["on_demand_price_per_hour"])
            if "boot_time" in item:
                boot_times[str(name)] = float(item["boot_time"])
            if "price_per_hour" in item:
                prices[str(name)] = float(item["price_per_hour"])
        jitter = dict(DEFAULT_JITTER)
        jitter.update({str(k): float(v) for k, v in (data.get("jitter") or {}).items()})
        clearml = ClearMLSettings.from_dict(data.get("clearml_policy") or {})
        return cls(trace, boot_times, prices, on_demand, clearml, jitter)


def vary(spec: SimTrace, seed: int | None) -> SimTrace:
    """The trace with seeded, deterministic variation (``None``: the trace as written).

    Each arrival moves by up to ± ``jitter.arrival`` seconds, each duration by up to
    ± ``jitter.duration`` (a fraction), and (in the cloud) each machine's boot time by up to
    ± ``jitter.boot_time``; all drawn from ``random.Random(seed)``.
    """
    if seed is None:
        return spec
    rng = random.Random(seed)
    arrival, duration = spec.jitter.get("arrival", 0.0), spec.jitter.get("duration", 0.0)
    tasks = []
    for task in spec.trace.tasks:
        at = min(spec.trace.horizon, max(0.0, task.at + rng.uniform(-arrival, arrival)))
        length = max(1.0, task.duration * (1 + rng.uniform(-duration, duration)))
        tasks.append(TaskSpec(round(at, 3), task.queue, round(length, 3), task.name))
    tasks.sort(key=lambda t: t.at)
    return replace(spec, trace=replace(spec.trace, tasks=tuple(tasks)), seed=seed)


# --- the world: per-resource boot times, a timeline -------------------------------------------


@dataclass
class TraceCloud(simulated.SimulatedCloud):
    """The simulated cloud with a boot time per resource (and per machine, with a seed).

    The parent is built with ``boot_time = inf`` so that its :meth:`step` only retires
    stopping machines; booting is decided here.
    """

    boot_times: dict[str, float] = field(default_factory=dict)
    default_boot: float = 90.0
    boot_jitter: float = 0.0
    seed: int | None = None
    _boots: dict[str, float] = field(default_factory=dict)

    def boot_of(self, inst: simulated.SimInstance) -> float:
        boot = self._boots.get(inst.id)
        if boot is None:
            boot = self.boot_times.get(inst.resource, self.default_boot)
            if self.seed is not None and self.boot_jitter:
                rng = random.Random(f"{self.seed}/{inst.id}")
                boot *= 1 + rng.uniform(-self.boot_jitter, self.boot_jitter)
            self._boots[inst.id] = boot
        return boot

    def step(self) -> None:
        now = self.clock()
        for inst in self.instances.values():
            if inst.state == "pending" and now - inst.launched_at >= self.boot_of(inst):
                inst.state = "running"
                inst.console += f"[{now:.0f}] booted; starting clearml-agent\n"
        super().step()


class TraceQueue(SimQueue):
    """The simulated queue, remembering how long each re-enqueued task had waited before."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.waited: dict[str, float] = {}  # task id -> queued time before its latest enqueue
        self.queued_at: dict[str, float] = {}  # task id -> its latest (re-)enqueue

    def requeue(self, task_id: str, queue: str, reason: str) -> bool | None:
        task = self.tasks.get(task_id)
        started = task.started if task is not None else None
        done = super().requeue(task_id, queue, reason)
        if done and task is not None and started is not None:
            self.waited[task_id] = self.waited.get(task_id, 0.0) + started - self.queued_at.get(task_id, task.arrived)
            self.queued_at[task_id] = self.clock()
        return done

    def wait(self, task: SimTask, now: float) -> float:
        """Time spent queued: arrival → first start, plus each re-enqueue → the next start."""
        start = task.started if task.started is not None else now
        return self.waited.get(task.id, 0.0) + start - self.queued_at.get(task.id, task.arrived)


class TraceWorld(World):
    """:class:`scaler.sim.world.World` on a :class:`TraceCloud`, sampling a timeline as it goes."""

    def __init__(
        self,
        spec: SimTrace,
        prefix: str,
        clock: VirtualClock,
        queue_of: dict[str, str],
        capacity: dict[str, int] | None = None,
        spot_available: bool = True,
    ) -> None:
        super().__init__(spec.trace, prefix, clock, queue_of, capacity)
        self.queue: TraceQueue = TraceQueue(clock)
        self.cloud: TraceCloud = TraceCloud(
            clock=clock,
            boot_time=math.inf,
            capacity=dict(capacity or {}),
            spot_available=spot_available,
            spot_outages=list(spec.trace.spot_outages),
            boot_times=dict(spec.boot_times),
            default_boot=spec.trace.boot_time,
            boot_jitter=spec.jitter.get("boot_time", 0.0),
            seed=spec.seed,
        )
        self.timeline: list[tuple[float, int, int]] = []  # (time, pending tasks, alive machines)
        self.hooks: list[Callable[[], None]] = []  # run after every step (e.g. open spot requests)
        self._next_sample = 0.0
        self.used: set[str] = set()  # ids of machines that ran at least one task

    def _step(self) -> None:
        super()._step()
        for worker in self.queue.workers.values():
            if worker.task:
                self.used.add(worker.id.rsplit(":", 1)[-1])
        for hook in self.hooks:
            hook()
        if self.clock.now >= self._next_sample:
            self.timeline.append((self.clock.now, self.pending, len(self.cloud.alive())))
            self._next_sample = self.clock.now + SAMPLE_EVERY

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queue.queues.values())

    @property
    def arrivals_done(self) -> bool:
        return self._next_task >= len(self.trace.tasks)

    def stranded(self) -> list[str]:
        """Tasks marked running whose machine is gone (nobody will finish them)."""
        return [
            t.id for t in self.queue.tasks.values() if t.status == "in_progress" and t.worker not in self.queue.workers
        ]

    def settled(self) -> bool:
        """Nothing left to happen: every task arrived and is done or stranded, no machine alive."""
        if not self.arrivals_done or self.pending or self.cloud.alive():
            return False
        return all(t.status == "completed" or t.worker not in self.queue.workers for t in self.queue.tasks.values())


# --- the report -----------------------------------------------------------------------------


@dataclass
class ResourceRow:
    name: str
    queue: str
    price_per_hour: float
    boot_time: float
    on_demand_price: float = 0.0  # what a spot resource's machine costs when launched on-demand (rollback)
    launched_spot: int = 0
    launched_on_demand: int = 0
    instance_hours: float = 0.0
    task_hours: float = 0.0  # run time of the completed tasks that ran here
    lower_bound: float = 0.0  # task_hours at the cheapest price of the queue
    cost: float = 0.0  # each machine's hours at its price (on-demand machines of a spot resource: on_demand_price)
    boot_cost: float = 0.0  # the part of the cost billed while machines booted
    premium: float = 0.0  # task hours × (the machine's price − the cheapest of the queue)

    @property
    def launched(self) -> int:
        return self.launched_spot + self.launched_on_demand

    @property
    def ratio(self) -> float | None:
        return self.cost / self.lower_bound if self.lower_bound > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.name,
            "queue": self.queue,
            "price_per_hour": self.price_per_hour,
            "on_demand_price_per_hour": self.on_demand_price,
            "boot_time": round(self.boot_time, 1),
            "launched": {"spot": self.launched_spot, "on_demand": self.launched_on_demand},
            "instance_hours": round(self.instance_hours, 3),
            "cost": round(self.cost, 4),
            "task_hours": round(self.task_hours, 3),
            "lower_bound": round(self.lower_bound, 4),
            "cost_over_lower_bound": _round(self.ratio),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Report:
    trace: str
    policy: str
    seed: int | None
    polling_interval: float
    resources: list[ResourceRow]
    tasks: int = 0
    completed: int = 0
    requeued: int = 0
    stranded: int = 0  # interrupted and never re-enqueued
    wait_p50: float = 0.0
    wait_p95: float = 0.0
    wait_max: float = 0.0
    launches: Counter[str] = field(default_factory=Counter)  # reason -> machines
    launch_failures: Counter[str] = field(default_factory=Counter)  # reason -> failed launch calls
    terminations: Counter[str] = field(default_factory=Counter)  # reason -> machines
    preempted: int = 0
    never_used: int = 0  # machines that ran no task at all (launched for work another machine took)
    peak_fleet: int = 0
    ticks: int = 0
    end: float = 0.0  # virtual seconds when the run stopped
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def instance_hours(self) -> float:
        return sum(r.instance_hours for r in self.resources)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.resources)

    @property
    def lower_bound(self) -> float:
        return sum(r.lower_bound for r in self.resources)

    @property
    def ratio(self) -> float | None:
        return self.cost / self.lower_bound if self.lower_bound > 0 else None

    def overhead(self) -> dict[str, float]:
        """Where cost − lower bound went, in $: booting (billed before the agent runs), the
        premium of running tasks on a dearer resource than the cheapest of their queue, and the
        rest — idle time, machines that ran nothing, runs lost to reclaims."""
        boot = sum(row.boot_cost for row in self.resources)
        premium = sum(row.premium for row in self.resources)
        return {"boot": boot, "premium": premium, "idle": self.cost - self.lower_bound - boot - premium}

    @property
    def max_boot_time(self) -> float:
        return max((r.boot_time for r in self.resources), default=0.0)

    def as_dict(self, timeline: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trace": self.trace,
            "policy": self.policy,
            "seed": self.seed,
            "polling_interval": self.polling_interval,
            "resources": [r.as_dict() for r in self.resources],
            "total": {
                "launched": sum(r.launched for r in self.resources),
                "instance_hours": round(self.instance_hours, 3),
                "cost": round(self.cost, 4),
                "lower_bound": round(self.lower_bound, 4),
                "cost_over_lower_bound": _round(self.ratio),
            },
            "tasks": {
                "total": self.tasks,
                "completed": self.completed,
                "requeued": self.requeued,
                "stranded": self.stranded,
            },
            "wait_seconds": {
                "p50": round(self.wait_p50, 1),
                "p95": round(self.wait_p95, 1),
                "max": round(self.wait_max, 1),
            },
            "launches": dict(sorted(self.launches.items())),
            "launch_failures": dict(sorted(self.launch_failures.items())),
            "terminations": dict(sorted(self.terminations.items())),
            "overhead": {k: round(v, 4) for k, v in self.overhead().items()},
            "spot_reclaims": self.preempted,
            "machines_that_ran_no_task": self.never_used,
            "peak_fleet": self.peak_fleet,
            "ticks": self.ticks,
            "end_seconds": round(self.end, 1),
        }
        if timeline:
            out["timeline"] = [list(point) for point in self.timeline]
        return out


def build_report(
    world: TraceWorld,
    config: Config,
    spec: SimTrace,
    policy: str,
    polling_interval: float,
    *,
    launches: Counter[str],
    launch_failures: Counter[str],
    terminations: Counter[str],
    requeued: int,
    ticks: int,
) -> Report:
    rows: dict[str, ResourceRow] = {}
    spot_resources = {r.name for r in config.resources if r.spot}
    cheapest: dict[str, float] = {}
    for r in config.resources:
        price = spec.prices.get(r.name, r.price_per_hour)
        on_demand = spec.on_demand_prices.get(r.name, price) if r.spot else price
        rows[r.name] = ResourceRow(r.name, r.queue, price, spec.boot_time(r.name), on_demand)
        cheapest[r.queue] = min(cheapest.get(r.queue, math.inf), price)

    def price_of(inst: simulated.SimInstance, row: ResourceRow) -> float:
        return row.on_demand_price if inst.resource in spot_resources and not inst.spot else row.price_per_hour

    now = world.clock.now
    for inst in world.cloud.instances.values():
        row = rows.setdefault(inst.resource, ResourceRow(inst.resource, "", 0.0, spec.boot_time(inst.resource)))
        if inst.spot:
            row.launched_spot += 1
        else:
            row.launched_on_demand += 1
        hours = max(0.0, (inst.ended_at if inst.ended_at else now) - inst.launched_at) / 3600
        row.instance_hours += hours
        row.cost += hours * price_of(inst, row)
        row.boot_cost += min(hours, world.cloud.boot_of(inst) / 3600) * price_of(inst, row)
    tasks = list(world.queue.tasks.values())
    for task in tasks:
        machine = world.cloud.instances.get(task.worker.rsplit(":", 1)[-1])
        if task.status != "completed" or machine is None or machine.resource not in rows:
            continue
        ran_on = rows[machine.resource]
        hours = task.duration / 3600
        floor = cheapest.get(task.queue, ran_on.price_per_hour)
        ran_on.task_hours += hours
        ran_on.lower_bound += hours * floor
        ran_on.premium += hours * (price_of(machine, ran_on) - floor)
    waits = [world.queue.wait(t, now) for t in tasks]
    report = Report(
        trace=spec.name,
        policy=policy,
        seed=spec.seed,
        polling_interval=polling_interval,
        resources=list(rows.values()),
        tasks=len(tasks),
        completed=sum(1 for t in tasks if t.status == "completed"),
        requeued=requeued,
        stranded=len(world.stranded()),
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        wait_max=max(waits, default=0.0),
        launches=launches,
        launch_failures=launch_failures,
        terminations=terminations,
        preempted=world.preempted,
        never_used=sum(1 for i in world.cloud.instances if i not in world.used),
        peak_fleet=max((f for _, _, f in world.timeline), default=0),
        ticks=ticks,
        end=now,
        timeline=list(world.timeline),
    )
    if world.preempted:
        report.terminations["spot reclaim (by the cloud)"] += world.preempted
    return report


# --- running -----------------------------------------------------------------------------------


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The reconciler logs every action; a simulation reports them in its summary instead."""
    logger = logging.getLogger("scaler")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def simulated_settings(config: Config) -> dict[str, Any]:
    from scaler.config.fields import check_section

    raw = config.provider_settings if config.provider_name == simulated.NAME else {}
    return check_section(raw, simulated.SECTION, simulated.NAME).values


def make_world(config: Config, spec: SimTrace) -> TraceWorld:
    settings = simulated_settings(config)
    capacity = {str(k): int(v) for k, v in settings["capacity"].items()}
    return TraceWorld(
        spec,
        config.scaler.workers_prefix,
        VirtualClock(0.0),
        {r.name: r.queue for r in config.resources},
        capacity,
        settings["spot_available"],
    )


class _RecordingProvider(Provider):
    """The simulated provider, recording each launch call's outcome (for launches by reason)."""

    def __init__(self, host: PluginHost, name: str, config: Config) -> None:
        super().__init__(host, name)
        self.config = config
        self.tokens: set[str] = set()
        self.launches: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def launch(
        self, config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
    ) -> list[Instance]:
        if launch_token in self.tokens:
            reason = "retry (same launch token)"
        elif resource.spot and not spot:
            reason = "demand, on-demand (spot failing: rollback/blackout)"
        else:
            reason = f"demand ({'spot' if spot else 'on-demand'})"
        self.tokens.add(launch_token)
        try:
            created = super().launch(config, resource, count, init_script, launch_token, spot)
        except Exception as exc:
            kind = getattr(exc, "kind", type(exc).__name__)
            self.failures[f"{kind} ({'spot' if spot else 'on-demand'})"] += 1
            raise
        self.launches[reason] += len(created)
        return created


def run_scaler_policy(config: Config, host: PluginHost, spec: SimTrace) -> Report:
    """Replay ``spec`` with this project's policy and reconciler on the simulated provider."""
    from scaler.engine.reconciler import Reconciler

    world = make_world(config, spec)
    clock = world.clock
    provider = _RecordingProvider(host, simulated.NAME, config)
    terminations: Counter[str] = Counter()
    requeued = ticks = 0
    simulated.use_cloud(world.cloud)
    try:
        with quiet_logs():
            reconciler = Reconciler(config, host, provider, world.queue, clock=clock)
            last_arrival = spec.trace.tasks[-1].at if spec.trace.tasks else 0.0
            now = 0.0
            while now <= spec.trace.horizon:
                world.advance(now)
                report = reconciler.tick()
                ticks += 1
                terminations.update(report.terminated)
                requeued += report.requeued
                if now >= last_arrival and world.settled():
                    break
                now += config.scaler.polling_interval
    finally:
        simulated.use_cloud(None)
    return build_report(
        world,
        config,
        spec,
        "scaler",
        config.scaler.polling_interval,
        launches=provider.launches,
        launch_failures=provider.failures,
        terminations=Counter({f"{k}": v for k, v in terminations.items()}),
        requeued=requeued,
        ticks=ticks,
    )


def simulate(
    config: Config, host: PluginHost, spec: SimTrace, policy: str = "scaler", seed: int | None = None
) -> Report:
    """Run one policy on ``spec`` (varied by ``seed``) and report."""
    varied = vary(spec, seed)
    if policy == "scaler":
        return run_scaler_policy(config, host, varied)
    if policy == "clearml":
        from scaler.sim.clearml_autoscaler import run_clearml_policy

        return run_clearml_policy(config, varied)
    raise ConfigError(f"unknown policy {policy!r}; choose one of: {', '.join(POLICIES)}")


def load(host: PluginHost, config_path: str | Path, trace_path: str | Path) -> tuple[Config, SimTrace]:
    """The config (validated, for the simulated provider) and the trace."""
    from scaler.config.loading import ConfigFileError, load_config

    try:
        result = load_config(config_path, host, provider=simulated.NAME)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    if not result.ok or result.config is None:
        raise ConfigError(f"{config_path}: " + "; ".join(p.render() for p in result.errors))
    return result.config, SimTrace.load(trace_path)


# --- output ----------------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def render_text(report: Report) -> str:
    """The report as plain text tables (what ``scaler simulate`` prints)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=120, markup=False, highlight=False, color_system=None)
    seed = "as written" if report.seed is None else f"seed {report.seed}"
    console.print(
        f"simulate: {report.trace} — policy {report.policy}, {seed}, polling every {report.polling_interval:g}s"
    )
    table = Table(title="Per resource")
    for column in (
        "resource",
        "queue",
        "$/h",
        "boot",
        "launched (spot/od)",
        "instance-h",
        "cost",
        "task-h",
        "lower bound",
        "cost ÷ bound",
    ):
        table.add_column(column, justify="left" if column in ("resource", "queue") else "right")
    for row in report.resources:
        table.add_row(
            row.name,
            row.queue,
            f"{row.price_per_hour:g}"
            + (f" ({row.on_demand_price:g} od)" if row.on_demand_price != row.price_per_hour else ""),
            f"{row.boot_time:g}s",
            f"{row.launched} ({row.launched_spot}/{row.launched_on_demand})",
            f"{row.instance_hours:.2f}",
            _money(row.cost),
            f"{row.task_hours:.2f}",
            _money(row.lower_bound),
            _ratio(row.ratio),
        )
    table.add_row(
        "total",
        "",
        "",
        "",
        str(sum(r.launched for r in report.resources)),
        f"{report.instance_hours:.2f}",
        _money(report.cost),
        f"{sum(r.task_hours for r in report.resources):.2f}",
        _money(report.lower_bound),
        _ratio(report.ratio),
    )
    console.print(table)
    summary = Table(title="Tasks and fleet")
    summary.add_column("figure")
    summary.add_column("value")
    summary.add_row("tasks completed", f"{report.completed} of {report.tasks}")
    summary.add_row("re-enqueued / stranded", f"{report.requeued} / {report.stranded}")
    summary.add_row(
        "task wait p50 / p95 / max", f"{report.wait_p50:.0f}s / {report.wait_p95:.0f}s / {report.wait_max:.0f}s"
    )
    parts = report.overhead()
    summary.add_row(
        "cost above the bound",
        f"{_money(report.cost - report.lower_bound)}: booting {_money(parts['boot'])}, dearer resource "
        f"{_money(parts['premium'])}, idle or unused {_money(parts['idle'])}",
    )
    summary.add_row("launches by reason", _counts(report.launches))
    summary.add_row("failed launch calls", _counts(report.launch_failures))
    summary.add_row("terminations by reason", _counts(report.terminations))
    summary.add_row("machines that ran no task", str(report.never_used))
    summary.add_row("peak fleet", str(report.peak_fleet))
    summary.add_row("ticks / virtual end", f"{report.ticks} / {report.end / 3600:.2f} h")
    console.print(summary)
    return buffer.getvalue()


def require_matplotlib() -> Any:
    """matplotlib (an optional extra), or a clear error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib: pip install 'clearml-scaler[plot]' (or pip install matplotlib)"
        ) from None
    return matplotlib


def plot(reports: list[Report], path: str | Path, title: str | None = None) -> Path:
    """Pending tasks and fleet size over time (one PNG; one line per report)."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), dpi=100)
    for report in reports:
        hours = [t / 3600 for t, _, _ in report.timeline]
        label = f"{report.policy} (cost {_money(report.cost)}, p95 wait {report.wait_p95 / 60:.0f} min)"
        top.step(hours, [p for _, p, _ in report.timeline], where="post", label=label, linewidth=1.2)
        bottom.step(hours, [f for _, _, f in report.timeline], where="post", label=report.policy, linewidth=1.2)
    top.set_ylabel("pending tasks")
    bottom.set_ylabel("machines (alive)")
    bottom.set_xlabel("hours")
    top.set_title(title or (reports[0].trace if reports else ""), fontsize=10)
    top.legend(fontsize=8, loc="upper right")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
