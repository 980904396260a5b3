"""A trace to replay (``scaler simulate``), with what it says about the cloud per resource (boot
time, price) and per cloud of a multi-cloud fleet (boot time, outages), its seeded variation,
and the world that replays it (:class:`TraceWorld`: the simulated cloud with per-resource boot
times and cloud outages, sampling a timeline as it goes).

Built on :mod:`scaler.sim.world` (the trace, the in-memory queue and agents, the world). The
trace format (a JSON file) is described in ``docs/simulate.md``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.default_plugins import simulated
from scaler.engine.policy import RequeueResult
from scaler.errors import CapacityError, ConfigError
from scaler.sim.world import SimQueue, SimTask, TaskSpec, Trace, VirtualClock, World

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.types import Instance

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
class CloudOutage:
    """The cloud's capacity for its resources (``resources``: only those; empty: all of the
    cloud's) is gone in [start, end): their launches fail with a capacity error, spot ones only
    when ``spot_only``. Resolved against a config, ``resources`` holds resource names."""

    start: float
    end: float
    spot_only: bool = False
    resources: tuple[str, ...] = ()

    def hits(self, now: float, resource: str, spot: bool) -> bool:
        return self.start <= now < self.end and resource in self.resources and (spot or not self.spot_only)


@dataclass(frozen=True)
class CloudSpec:
    """How one cloud behaves in a trace (``clouds.<provider>``): its machines' boot time (a
    resource's own ``resources.<name>.boot_time`` wins) and its outages."""

    boot_time: float | None = None
    outages: tuple[CloudOutage, ...] = ()

    @classmethod
    def from_dict(cls, name: str, data: Any) -> CloudSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(f"clouds.{name}: must be an object")
        unknown = sorted(set(data) - {"boot_time", "outages"})
        if unknown:
            raise ConfigError(f"clouds.{name}: unknown key(s) {', '.join(unknown)}; known: boot_time, outages")
        outages = []
        for index, item in enumerate(data.get("outages") or []):
            where = f"clouds.{name}.outages[{index}]"
            extra = sorted(set(item) - {"start", "end", "spot_only", "resources"})
            if extra:
                raise ConfigError(
                    f"{where}: unknown key(s) {', '.join(extra)}; known: start, end, spot_only, resources"
                )
            start, end = float(item["start"]), float(item["end"])
            if end <= start:
                raise ConfigError(f"{where}: end ({end:g}) must come after start ({start:g})")
            names = item.get("resources") or []
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{where}.resources: must be a list of resource names")
            outages.append(CloudOutage(start, end, bool(item.get("spot_only", False)), tuple(names)))
        boot = data.get("boot_time")
        return cls(None if boot is None else float(boot), tuple(outages))


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
    clouds: dict[str, CloudSpec] = field(default_factory=dict)  # provider -> its boot time and outages
    #: resource -> the cloud it runs on, as the config says (:func:`with_clouds`); empty: not resolved
    resource_clouds: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.trace.name

    def boot_time(self, resource: str) -> float:
        """The resource's own boot time, else its cloud's, else the trace's."""
        if resource in self.boot_times:
            return self.boot_times[resource]
        cloud = self.clouds.get(self.resource_clouds.get(resource, ""))
        if cloud is not None and cloud.boot_time is not None:
            return cloud.boot_time
        return self.trace.boot_time

    def cloud_outages(self) -> list[CloudOutage]:
        """The clouds' outages, each naming the resources it takes (those of its cloud, or the
        ones it lists among them); outages of a cloud no resource runs on take nothing."""
        found = []
        for name, cloud in self.clouds.items():
            own = tuple(r for r, c in self.resource_clouds.items() if c == name)
            for outage in cloud.outages:
                hit = tuple(r for r in own if not outage.resources or r in outage.resources)
                if hit:
                    found.append(replace(outage, resources=hit))
        return found

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
        clouds_data = data.get("clouds") or {}
        if not isinstance(clouds_data, Mapping):
            raise ConfigError("clouds: must be an object of provider name -> {boot_time, outages}")
        clouds = {str(name): CloudSpec.from_dict(str(name), item) for name, item in clouds_data.items()}
        return cls(trace, boot_times, prices, on_demand, clearml, jitter, clouds=clouds)


def with_clouds(spec: SimTrace, config: Config, written_for: str = "") -> SimTrace:
    """``spec`` with each of the config's resources mapped to its cloud, so that the trace's
    ``clouds`` apply to them and the report can show each cloud: in a multi-cloud config, each
    resource's provider; in a one-cloud config, ``written_for`` (the cloud it was written for,
    e.g. ``aws`` for an AWS config simulated on the simulated cloud), else its provider. Left as
    it is when already resolved, or when neither the trace nor the config speaks of clouds."""
    if spec.resource_clouds or not (spec.clouds or config.multi_cloud):
        return spec
    if config.multi_cloud:
        clouds = {r.name: r.provider_name for r in config.resources}
    else:
        clouds = {r.name: written_for or r.provider_name or config.provider_name for r in config.resources}
    return replace(spec, resource_clouds=clouds)


def vary(spec: SimTrace, seed: int | None) -> SimTrace:
    """The trace with seeded, deterministic variation (``None``: the trace as written).

    Each arrival moves by up to ± ``jitter.arrival`` seconds, each duration by up to
    ± ``jitter.duration`` (a fraction), and (in the cloud) each machine's boot time by up to
    ± ``jitter.boot_time``; the draws of the spot reclaims' victims get a new seed too; all
    drawn from ``random.Random(seed)``.
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
    reclaims = rng.randrange(2**31)
    return replace(spec, trace=replace(spec.trace, tasks=tuple(tasks), seed=reclaims), seed=seed)


# --- the world: per-resource boot times, a timeline -------------------------------------------


@dataclass
class TraceCloud(simulated.SimulatedCloud):
    """The simulated cloud with a boot time per resource (and per machine, with a seed), and
    the trace's cloud outages (:class:`CloudOutage`, resolved to resource names).

    The parent is built with ``boot_time = inf`` so that its :meth:`step` only retires
    stopping machines; booting is decided here.
    """

    boot_times: dict[str, float] = field(default_factory=dict)
    default_boot: float = 90.0
    boot_jitter: float = 0.0
    seed: int | None = None
    cloud_outages: list[CloudOutage] = field(default_factory=list)
    _boots: dict[str, float] = field(default_factory=dict)

    def out(self, resource: str, spot: bool) -> bool:
        """Whether a cloud outage takes launches of ``resource`` (spot or not) now."""
        now = self.clock()
        return any(o.hits(now, resource, spot) for o in self.cloud_outages)

    def spot_out(self, resource: str) -> bool:
        return super().spot_out(resource) or (bool(self.cloud_outages) and self.out(resource, True))

    def launch(
        self,
        scaler: str,
        resource: str,
        count: int,
        token: str,
        spot: bool,
        instance_type: str = "",
        init_script: str = "",
        fleet: str = "",
    ) -> list[Instance]:
        if self.cloud_outages and not (token and token in self.tokens) and self.out(resource, spot):
            self.calls.append("launch")
            raise CapacityError(
                f"cloud outage: no {'spot' if spot else 'on-demand'} capacity for {resource}", code="SimulatedOutage"
            )
        return super().launch(scaler, resource, count, token, spot, instance_type, init_script, fleet)

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

    def requeue(self, task_id: str, queue: str, reason: str, max_requeues: int) -> RequeueResult:
        task = self.tasks.get(task_id)
        started = task.started if task is not None else None
        done = super().requeue(task_id, queue, reason, max_requeues)
        if done is RequeueResult.REQUEUED and task is not None and started is not None:
            self.waited[task_id] = self.waited.get(task_id, 0.0) + started - self.queued_at.get(task_id, task.arrived)
            self.queued_at[task_id] = self.clock()
        return done

    def wait(self, task: SimTask, now: float) -> float:
        """Time spent queued: arrival → first start, plus each re-enqueue → the next start."""
        start = task.started if task.started is not None else now
        return self.waited.get(task.id, 0.0) + start - self.queued_at.get(task.id, task.arrived)


def _boot_times(spec: SimTrace) -> dict[str, float]:
    """Per resource: its own boot time, or its cloud's (the trace's default is the cloud's)."""
    found = dict(spec.boot_times)
    for resource in spec.resource_clouds:
        if resource not in found and spec.boot_time(resource) != spec.trace.boot_time:
            found[resource] = spec.boot_time(resource)
    return found


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
            boot_times=_boot_times(spec),
            default_boot=spec.trace.boot_time,
            boot_jitter=spec.jitter.get("boot_time", 0.0),
            seed=spec.seed,
            cloud_outages=spec.cloud_outages(),
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
        return [t.id for t in self.queue.tasks.values() if t.status == "in_progress" and not self.queue.live(t.worker)]

    def settled(self) -> bool:
        """Nothing left to happen: every task arrived and is done or stranded, no machine alive."""
        if not self.arrivals_done or self.pending or self.cloud.alive():
            return False
        return all(t.status == "completed" or not self.queue.live(t.worker) for t in self.queue.tasks.values())


def simulated_settings(config: Config) -> dict[str, Any]:
    """The simulated provider's settings: normalised by core when it is the chosen provider,
    its defaults otherwise."""
    from scaler.config.fields import check_section

    if config.provider_name == simulated.NAME:
        return dict(config.provider_settings)
    return check_section({}, simulated.SECTION, simulated.NAME).values


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
