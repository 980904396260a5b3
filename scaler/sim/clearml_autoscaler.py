"""ClearML's own autoscaler, run on the same simulated world as ``scaler simulate``.

This drives the real ``AutoScaler.supervisor`` loop of the installed clearml SDK
(clearml/automation/auto_scaler.py, 2.1.12) through its cloud-driver interface
(clearml/automation/cloud_driver.py ``CloudDriver``), so every decision — how many machines
to spin up per queue, which resource, when an idle worker goes, when a machine is "stuck" —
is ClearML's code, not a re-implementation. Only what touches the outside world is replaced,
each replacement named here with the lines it stands in for:

* ``AutoScaler.__init__`` (auto_scaler.py:80-123) opens a ``Session`` and an ``APIClient`` to
  a ClearML server: :class:`SimAutoScaler` sets the same attributes from a ``ScalerConfig``
  and gives it :class:`SimAPI`, which answers ``queues.get_all``/``create``/``get_by_id`` and
  ``workers.get_all`` (the only calls ``supervisor`` makes, lines 164-168, 173, 181, 213, 277)
  from the simulated queue.
* the module's ``time``/``sleep`` (imported at auto_scaler.py:7) are patched for the run:
  ``time()`` reads the virtual clock, ``sleep(s)`` advances the simulated world by ``s``.
* ``monitor_startup`` (auto_scaler.py:424-427) starts a thread that only logs console output:
  disabled (a thread would make the run nondeterministic); no decision depends on it.
* ``get_task_logger`` (auto_scaler.py:459-461) → ``None``: no ClearML task to report to.
* the cloud driver: :class:`SimDriver` implements ``CloudDriver.spin_up_worker`` /
  ``spin_down_worker`` (cloud_driver.py:88-113) on the simulated cloud and blocks the loop the
  way ``AWSDriver.spin_up_worker`` does (aws_driver.py:124-171): ``launch_wait`` seconds for
  ``instance.wait_until_running()`` (line 171), and, for spot, ``spot_wait`` seconds
  (botocore's ``SpotInstanceRequestFulfilled`` waiter: 40 x 15 s, lines 137-138) before it
  gives up on a request AWS cannot fulfil; that one-time request stays open and is fulfilled
  once spot capacity is back (a machine ClearML did not count as launched: it shows up as an
  "unknown worker", line 249). There is no spot→on-demand fallback in ClearML's scaler.

Worker ids follow ClearML's scheme ``prefix:resource:instance_type:cloud_id``
(auto_scaler.py:20-33, :206, :345); the simulated agents register ``prefix:resource:id`` and
:class:`SimAPI` shows them with the instance type inserted.

Not modelled: ClearML has no fleet-wide caps (``max_instances_total``, ``max_hourly_cost``),
no re-enqueue of tasks whose machine vanished (they stay "running" forever: the report counts
them as stranded, with their task-hours and what running them again would cost at least, so
dropped work does not make this policy look cheaper), and no handling of orphaned resources. Note: in clearml 2.1.12 ``supervisor`` calls
``spin_up_worker(resource=...)`` (auto_scaler.py:338) while ``AWSDriver.spin_up_worker``
names that parameter ``resource_conf`` (aws_driver.py:54-60), so with the shipped AWS driver
every launch fails with a ``TypeError``; the simulated driver follows the ``CloudDriver``
interface instead, i.e. this simulates ClearML's scaler as it is meant to work.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Generator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from scaler.errors import ConfigError

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.sim.report import Report
    from scaler.sim.trace import SimTrace, TraceWorld

MINUTE = 60.0
WAITER_DELAY = 15.0  # botocore EC2 waiters poll every 15 s
QUEUE_ID_PREFIX = "queue-"


class StopSimulation(Exception):
    """Raised out of the patched ``sleep`` when the run is over (never seen by ClearML's code)."""


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class SimAPI:
    """The slice of ClearML's ``APIClient`` that ``AutoScaler.supervisor`` uses, over the
    simulated queue. Counts its calls."""

    def __init__(self, world: TraceWorld, prefix: str, instance_types: dict[str, str]) -> None:
        self.world = world
        self.prefix = prefix
        self.instance_types = instance_types
        self.calls: Counter[str] = Counter()
        self.created: list[str] = []
        self.queues = SimpleNamespace(
            get_all=self._queues_get_all, create=self._queues_create, get_by_id=self._get_by_id
        )
        self.workers = SimpleNamespace(get_all=self._workers_get_all)

    def _names(self) -> list[str]:
        return list(dict.fromkeys([*self.world.queue.queues, *self.created]))

    def _queues_get_all(self, **_: Any) -> list[Any]:
        self.calls["queues.get_all"] += 1
        return [SimpleNamespace(id=QUEUE_ID_PREFIX + name, name=name) for name in self._names()]

    def _queues_create(self, name: str, **_: Any) -> Any:
        self.calls["queues.create"] += 1
        self.created.append(name)
        return SimpleNamespace(id=QUEUE_ID_PREFIX + name)

    def _get_by_id(self, queue: str, **_: Any) -> Any:
        self.calls["queues.get_by_id"] += 1
        name = queue[len(QUEUE_ID_PREFIX) :]
        entries = [SimpleNamespace(task=task, added=None) for task in self.world.queue.queues.get(name, ())]
        return SimpleNamespace(id=queue, name=name, entries=entries)

    def clearml_worker_id(self, sim_id: str) -> str:
        """``prefix:resource:id`` (simulated agent) → ``prefix:resource:instance_type:id`` (ClearML)."""
        rest = sim_id[len(self.prefix) + 1 :] if sim_id.startswith(self.prefix + ":") else sim_id
        resource, _, instance = rest.partition(":")
        return f"{self.prefix}:{resource}:{self.instance_types.get(resource, 'sim')}:{instance}"

    def _workers_get_all(self, **_: Any) -> list[Any]:
        self.calls["workers.get_all"] += 1
        out = []
        for worker in self.world.queue.workers.values():
            out.append(
                SimpleNamespace(
                    id=self.clearml_worker_id(worker.id),
                    task=SimpleNamespace(id=worker.task) if worker.task else None,
                    queues=[SimpleNamespace(id=QUEUE_ID_PREFIX + q, name=q) for q in worker.queues],
                    register_time=None,
                    last_activity_time=_dt(worker.last_activity),
                    last_report_time=None,
                )
            )
        return out


def _classes() -> tuple[type, type]:
    """ClearML's classes, subclassed here (importing clearml is slow: only when needed)."""
    from clearml.automation.auto_scaler import AutoScaler, ScalerConfig, State
    from clearml.automation.cloud_driver import CloudDriver

    class SimDriver(CloudDriver):  # type: ignore[misc]
        """``CloudDriver`` on the simulated cloud (see the module docstring)."""

        def __init__(self, run: ClearMLRun) -> None:
            # CloudDriver is an attrs class whose __attrs_post_init__ opens a Session
            # (cloud_driver.py:83-85); nothing of it is needed for launching simulated machines.
            self.run = run
            self.scaler = None
            self.tags = ""

        def kind(self) -> str:
            return "simulated"

        def instance_id_command(self) -> str:
            return "hostname"

        def instance_type_key(self) -> str:
            return "instance_type"

        def console_log(self, instance_id: str) -> str:
            inst = self.run.world.cloud.instances.get(instance_id)
            return inst.console if inst else ""

        def spin_up_worker(  # type: ignore[override]  # supervisor uses the id (auto_scaler.py:338-345)
            self, resource: dict, worker_prefix: str, queue_name: str, task_id: str
        ) -> str:
            return self.run.spin_up(resource)

        def spin_down_worker(self, instance_id: str) -> None:
            self.run.spin_down(instance_id)

    class SimAutoScaler(AutoScaler):  # type: ignore[misc]
        def __init__(self, config: ScalerConfig, driver: SimDriver, api: SimAPI) -> None:
            # auto_scaler.py:86-123 without the Session/APIClient (lines 109-121)
            self.logger = logging.getLogger("scaler.sim.clearml_autoscaler")
            self.state = State.STARTING
            self.driver = driver
            self.driver.set_scaler(self)
            self.resource_configurations = config.resource_configurations
            self.queues = config.queues
            self.resource_to_queue = {item[0]: queue for queue, resources in self.queues.items() for item in resources}
            if not self.sanity_check():
                raise ConfigError("ClearML's autoscaler rejects this config: a resource serves several queues")
            self.max_idle_time_min = float(config.max_idle_time_min)
            self.polling_interval_time_min = float(config.polling_interval_time_min)
            self.max_spin_up_time_min = float(config.max_spin_up_time_min)
            self.workers_prefix = config.workers_prefix
            self.api_client = api  # type: ignore[assignment]
            self.run = driver.run
            self._stop_event = threading.Event()
            self.state = State.READY

        def monitor_startup(self, instance_id: str) -> None:  # auto_scaler.py:424: a log-only thread
            return None

        def stale_workers(self, spun_workers: dict[str, tuple[str, float]]) -> Generator[str, None, None]:
            # the real generator (auto_scaler.py:190-195); the ids it yields are spun down as stuck
            for worker_id in super().stale_workers(spun_workers):
                self.run.stuck.add(worker_id.rsplit(":", 1)[-1])
                yield worker_id

    return SimAutoScaler, SimDriver


def _minutes(seconds: float) -> int | float:
    """ClearML's ``ScalerConfig`` validates whole minutes (auto_scaler.py:60, 62)."""
    minutes = seconds / MINUTE
    return int(minutes) if minutes == int(minutes) else minutes


class ClearMLRun:
    """One run of ClearML's autoscaler on a trace."""

    def __init__(self, config: Config, spec: SimTrace) -> None:
        from scaler.sim.trace import make_world, with_clouds

        spec = with_clouds(spec, config)  # a multi-cloud config: each cloud's boot time and outages
        self.config = config
        self.spec = spec
        self.settings = spec.clearml
        self.world = make_world(config, spec)
        self.clock = self.world.clock
        self.prefix = config.scaler.workers_prefix
        self.instance_types = {
            r.name: str(r.provider.get("instance_type", "sim.medium")).replace(":", "_") for r in config.resources
        }
        self.api = SimAPI(self.world, self.prefix, self.instance_types)
        self.launches: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.terminations: Counter[str] = Counter()
        self.stuck: set[str] = set()
        self.open_spot: list[str] = []  # resources with an open, unfulfilled spot request
        self.ticks = 0
        self._seq = 0
        self.world.hooks.append(self._fulfil_open_spot_requests)
        self._last_arrival = spec.trace.tasks[-1].at if spec.trace.tasks else 0.0

    # -- the virtual clock ---------------------------------------------------------------
    def time(self) -> float:
        return self.clock.now

    def advance(self, seconds: float) -> None:
        self.world.advance(min(self.clock.now + seconds, self.spec.trace.horizon + 1))

    def sleep(self, seconds: float) -> None:
        """The end of one ``supervisor`` iteration (auto_scaler.py:375)."""
        self.ticks += 1
        self.advance(seconds)
        if self.clock.now > self.spec.trace.horizon:
            raise StopSimulation
        if self.clock.now >= self._last_arrival and self.world.settled() and not self.open_spot:
            raise StopSimulation

    # -- the cloud driver ------------------------------------------------------------------
    def _launch(self, resource: str, spot: bool, instance_type: str) -> str:
        self._seq += 1
        created = self.world.cloud.launch(
            self.config.scaler.name, resource, 1, f"clearml-{self._seq}", spot, instance_type
        )
        return created[0].id

    def spin_up(self, conf: dict[str, Any]) -> str:
        from scaler.errors import CapacityError

        resource, spot = str(conf["name"]), bool(conf.get("is_spot"))
        instance_type = str(conf["instance_type"])
        if spot and self.world.cloud.spot_out(resource):
            # request_spot_instances, then the SpotInstanceRequestFulfilled waiter (aws_driver.py:133-138):
            # polls every 15 s, gives up (WaiterError) after spot_wait; the request stays open
            waited = 0.0
            while self.world.cloud.spot_out(resource) and waited < self.settings.spot_wait:
                step = min(WAITER_DELAY, self.settings.spot_wait - waited)
                self.advance(step)
                waited += step
            if self.world.cloud.spot_out(resource):
                self.failures["spot request not fulfilled (waiter gave up)"] += 1
                if self.settings.spot_requests_stay_open:
                    self.open_spot.append(resource)
                raise RuntimeError(f"Waiter SpotInstanceRequestFulfilled failed: Max attempts exceeded ({resource})")
            reason = "demand (spot, fulfilled while the waiter polled)"
        else:
            reason = f"demand ({'spot' if spot else 'on-demand'})"
        try:
            instance_id = self._launch(resource, spot, instance_type)
        except CapacityError:  # RunInstances: InsufficientInstanceCapacity → logged by supervisor (line 349)
            self.failures[f"no capacity ({'spot' if spot else 'on-demand'})"] += 1
            raise
        self.launches[reason] += 1
        self.advance(self.settings.launch_wait)  # instance.wait_until_running() (aws_driver.py:171)
        return instance_id

    def spin_down(self, instance_id: str) -> None:
        kind = "stuck (max_spin_up_time)" if instance_id in self.stuck else "idle"
        self.stuck.discard(instance_id)
        inst = self.world.cloud.instances.get(instance_id)
        if inst is not None and inst.state in ("pending", "running"):
            self.terminations[kind] += 1
        self.world.cloud.terminate([instance_id])

    def _fulfil_open_spot_requests(self) -> None:
        if not self.open_spot:
            return
        still = []
        for resource in self.open_spot:
            if self.world.cloud.spot_out(resource):
                still.append(resource)
                continue
            self._launch(resource, True, self.instance_types.get(resource, "sim"))
            self.launches["open spot request fulfilled later (untracked)"] += 1
        self.open_spot = still

    # -- the run -----------------------------------------------------------------------------
    def scaler_config(self) -> Any:
        from clearml.automation.auto_scaler import ScalerConfig

        queues: dict[str, list[tuple[str, int]]] = {}
        resources: dict[str, dict[str, Any]] = {}
        for r in self.config.resources:
            queues.setdefault(r.queue, []).append((r.name, r.max_instances))
            resources[r.name] = {
                "name": r.name,
                "instance_type": self.instance_types[r.name],
                "is_spot": r.spot,
                "cpu_only": r.cpu_only,
            }
        try:
            return ScalerConfig(
                max_idle_time_min=_minutes(self.settings.max_idle_time),
                polling_interval_time_min=_minutes(self.settings.polling_interval),
                max_spin_up_time_min=_minutes(self.settings.max_spin_up_time),
                workers_prefix=self.prefix,
                resource_configurations=resources,
                queues=queues,
            )
        except TypeError as exc:
            raise ConfigError(
                f"ClearML's ScalerConfig rejects the trace's clearml_policy (idle and spin-up times are whole "
                f"minutes): {exc}"
            ) from None

    def run(self) -> Report:
        from clearml.automation import auto_scaler

        from scaler.sim.report import build_report

        scaler_cls, driver_cls = _classes()
        scaler = scaler_cls(self.scaler_config(), driver_cls(self), self.api)
        patched = {"time": self.time, "sleep": self.sleep, "get_task_logger": lambda: None}
        saved = {name: getattr(auto_scaler, name) for name in patched}
        logger = logging.getLogger("scaler.sim.clearml_autoscaler")
        logger.propagate, level = False, logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            for name, value in patched.items():
                setattr(auto_scaler, name, value)
            with contextlib.suppress(StopSimulation):
                scaler.supervisor()
        finally:
            for name, value in saved.items():
                setattr(auto_scaler, name, value)
            logger.setLevel(level)
        return build_report(
            self.world,
            self.config,
            self.spec,
            "clearml",
            self.settings.polling_interval,
            launches=self.launches,
            launch_failures=self.failures,
            terminations=self.terminations,
            requeued=0,
            ticks=self.ticks,
        )


def run_clearml_policy(config: Config, spec: SimTrace) -> Report:
    """Replay ``spec`` with ClearML's own autoscaler (see the module docstring)."""
    return ClearMLRun(config, spec).run()
