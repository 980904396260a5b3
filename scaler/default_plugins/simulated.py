"""The built-in ``simulated`` provider: an in-memory cloud with boot delays, capacity
limits, spot outages and fault injection, driven by any clock (a virtual one in the demo
and the simulator, real time otherwise).

It is a provider like any other: the loop reaches it only through the provider hooks.
With ``simulated.state_file`` set, the fleet survives restarts of the scaler process (so
crash/restart tests can run ``scaler run --provider simulated`` as a real subprocess).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.config.fields import Ask, Field, Section
from scaler.errors import CapacityError, ProviderError
from scaler.hookspecs import hookimpl
from scaler.types import (
    TAG_FLEET,
    TAG_LAUNCH_TOKEN,
    TAG_RESOURCE,
    TAG_SCALER,
    Instance,
    InstanceState,
    Problem,
    ScriptPart,
)

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

NAME = "simulated"

SECTION = (
    Field(
        "boot_time",
        "duration",
        "Seconds from launch until a machine is running (its agent starts).",
        default=60.0,
        min=0,
    ),
    Field("state_file", "str", "JSON file that keeps the simulated fleet across scaler restarts.", default=""),
    Field(
        "capacity", "dict", "Per resource name: how many instances the simulated cloud can give at once.", default={}
    ),
    Field("spot_available", "bool", "Whether spot capacity exists (false: every spot launch fails).", default=True),
)
RESOURCE_SECTION = (
    Field(
        "instance_type",
        "str",
        "Label only: shown in status and the demo.",
        default="sim.medium",
        ask=Ask("Instance type label", key="instance_type"),
    ),
)
DECLARED = Section(
    NAME, "The built-in simulated cloud (no account needed).", fields=SECTION, resource_fields=RESOURCE_SECTION
)


@dataclass
class SimInstance:
    id: str
    scaler: str
    resource: str
    launch_token: str
    spot: bool
    launched_at: float
    state: str = "pending"
    ended_at: float = 0.0
    instance_type: str = "sim.medium"
    console: str = ""
    fleet: str = ""  # the fleet identity it is tagged with ("" : none, like a machine launched before identities)

    def to_instance(self) -> Instance:
        return Instance(
            self.id,
            self.resource,
            InstanceState(self.state),
            self.launched_at,
            self.launch_token,
            self.spot,
            "sim-zone-a",
            self.instance_type,
            self.fleet,
        )


@dataclass
class SpotOutage:
    """Spot capacity for ``resource`` (empty: every resource) is gone during [start, end)."""

    start: float
    end: float
    resource: str = ""


@dataclass
class SimulatedCloud:
    """The simulated cloud's state and rules."""

    clock: Callable[[], float] = time.time
    boot_time: float = 60.0
    capacity: dict[str, int] = field(default_factory=dict)
    spot_available: bool = True
    spot_outages: list[SpotOutage] = field(default_factory=list)
    instances: dict[str, SimInstance] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0
    calls: list[str] = field(default_factory=list)
    faults: dict[str, list[Exception]] = field(default_factory=dict)

    # -- fault injection ----------------------------------------------------------------
    def fail_next(self, hook: str, error: Exception, times: int = 1) -> None:
        """The next ``times`` calls of ``hook`` (``launch``, ``list``, ``terminate``) raise ``error``."""
        self.faults.setdefault(hook, []).extend([error] * times)

    def _maybe_fail(self, hook: str) -> None:
        self.calls.append(hook)
        queue = self.faults.get(hook)
        if queue:
            raise queue.pop(0)

    # -- lifecycle ----------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock()
        for inst in self.instances.values():
            if inst.state == "pending" and now - inst.launched_at >= self.boot_time:
                inst.state = "running"
                inst.console += f"[{now:.0f}] booted; starting clearml-agent\n"
            elif inst.state == "stopping":
                inst.state = "terminated"
                inst.ended_at = inst.ended_at or now

    def spot_out(self, resource: str) -> bool:
        now = self.clock()
        if not self.spot_available:
            return True
        return any(o.start <= now < o.end and o.resource in ("", resource) for o in self.spot_outages)

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
        self._maybe_fail("launch")
        self.step()
        if token and token in self.tokens:  # idempotent like EC2 ClientToken / GCE requestId
            return [self.instances[i].to_instance() for i in self.tokens[token]]
        if spot and self.spot_out(resource):
            raise CapacityError(f"no spot capacity for {resource}", code="SimulatedSpotCapacity")
        limit = self.capacity.get(resource)
        if limit is not None:
            alive = sum(
                1 for i in self.instances.values() if i.resource == resource and i.state in ("pending", "running")
            )
            count = min(count, max(0, limit - alive))
            if count == 0:
                raise CapacityError(f"simulated cloud has no capacity left for {resource}", code="SimulatedCapacity")
        now = self.clock()
        created = []
        for _ in range(count):
            self.counter += 1
            inst = SimInstance(
                f"sim-{self.counter:06d}",
                scaler,
                resource,
                token,
                spot,
                now,
                instance_type=instance_type or "sim.medium",
                console=f"[{now:.0f}] launched ({'spot' if spot else 'on-demand'})\n",
                fleet=fleet,
            )
            self.instances[inst.id] = inst
            created.append(inst)
        self.tokens[token] = [i.id for i in created]
        return [i.to_instance() for i in created]

    def owned(self, scaler: str, fleet: str = "", include_foreign: bool = False) -> list[Instance]:
        """The live instances named ``scaler`` with the identity ``fleet`` or none (legacy), and
        with another identity too when ``include_foreign``."""
        self._maybe_fail("list")
        self.step()
        return [
            i.to_instance()
            for i in self.instances.values()
            if i.scaler == scaler and i.state != "terminated" and (include_foreign or i.fleet in ("", fleet))
        ]

    def tag(self, ids: list[str], fleet: str) -> None:
        """Tag instances with a fleet identity (ids it does not know are skipped)."""
        self._maybe_fail("tag")
        for instance_id in ids:
            inst = self.instances.get(instance_id)
            if inst is not None:
                inst.fleet = fleet

    def describe(self, ids: list[str]) -> list[Instance]:
        """The instances with these ids, whoever owns them (``scaler adopt``); unknown ids left out."""
        self._maybe_fail("describe")
        self.step()
        return [self.instances[i].to_instance() for i in dict.fromkeys(ids) if i in self.instances]

    def take_over(self, ids: list[str], tags: dict[str, str]) -> None:
        """Write the ownership tags a launch writes onto instances (``scaler adopt``)."""
        for instance_id in ids:
            inst = self.instances.get(instance_id)
            if inst is not None:
                inst.scaler = tags.get(TAG_SCALER, inst.scaler)
                inst.resource = tags.get(TAG_RESOURCE, inst.resource)
                inst.launch_token = tags.get(TAG_LAUNCH_TOKEN, inst.launch_token)

    def terminate(self, ids: list[str]) -> None:
        self._maybe_fail("terminate")
        now = self.clock()
        for instance_id in ids:
            inst = self.instances.get(instance_id)
            if inst is not None and inst.state in ("pending", "running"):
                inst.state = "stopping"
                inst.ended_at = now

    def preempt(self, instance_id: str) -> None:
        """A spot reclaim or crash: the machine is gone without the scaler asking."""
        inst = self.instances[instance_id]
        inst.state = "terminated"
        inst.ended_at = self.clock()

    def running(self, scaler: str | None = None) -> list[SimInstance]:
        self.step()
        return [i for i in self.instances.values() if i.state == "running" and scaler in (None, i.scaler)]

    def alive(self) -> list[SimInstance]:
        return [i for i in self.instances.values() if i.state in ("pending", "running")]

    # -- persistence (state_file) -------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "tokens": self.tokens,
            "instances": [asdict(i) for i in self.instances.values()],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.counter = int(data.get("counter", 0))
        self.tokens = {k: list(v) for k, v in data.get("tokens", {}).items()}
        self.instances = {d["id"]: SimInstance(**d) for d in data.get("instances", [])}


_active: SimulatedCloud | None = None


def use_cloud(cloud: SimulatedCloud | None) -> None:
    """Make ``cloud`` the one the provider hooks act on (demo, simulator, tests)."""
    global _active
    _active = cloud


def active_cloud() -> SimulatedCloud | None:
    """The cloud :func:`use_cloud` made active (a simulation in progress), if any."""
    return _active


@contextlib.contextmanager
def _cloud_for(config: Config) -> Iterator[SimulatedCloud]:
    settings = config.provider_settings  # normalised by core from SECTION
    state_file = settings["state_file"]
    if _active is not None and not state_file:
        yield _active
        return
    cloud = SimulatedCloud(
        boot_time=settings["boot_time"],
        capacity={str(k): int(v) for k, v in settings["capacity"].items()},
        spot_available=settings["spot_available"],
    )
    if not state_file:
        use_cloud(cloud)
        yield cloud
        return
    path = Path(state_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time across scaler processes
        if path.exists() and path.stat().st_size:
            cloud.load(json.loads(path.read_text()))
        yield cloud
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cloud.dump()))
        tmp.replace(path)


def _instance_type(resource: Resource) -> str:
    return str(resource.provider["instance_type"])


@hookimpl
def scaler_launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    with _cloud_for(config) as cloud:
        return cloud.launch(
            config.scaler.name,
            resource.name,
            count,
            launch_token,
            spot,
            _instance_type(resource),
            init_script,
            fleet=config.fleet_id,
        )


@hookimpl
def scaler_list_instances(config: Config, include_foreign: bool) -> list[Instance]:
    with _cloud_for(config) as cloud:
        return cloud.owned(config.scaler.name, config.fleet_id, include_foreign)


@hookimpl
def scaler_tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    with _cloud_for(config) as cloud:
        if TAG_FLEET in tags:
            cloud.tag(instance_ids, tags[TAG_FLEET])
        cloud.take_over(instance_ids, tags)
    return True


@hookimpl
def scaler_describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    with _cloud_for(config) as cloud:
        return cloud.describe(instance_ids)


@hookimpl
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    with _cloud_for(config) as cloud:
        cloud.terminate(instance_ids)
    return True


@hookimpl
def scaler_console_output(config: Config, instance_id: str) -> str:
    with _cloud_for(config) as cloud:
        inst = cloud.instances.get(instance_id)
        if inst is None:
            raise ProviderError(f"simulated instance {instance_id} does not exist", code="NotFound")
        return inst.console


@hookimpl
def scaler_check_cloud(config: Config) -> list[Problem]:
    return []


@hookimpl
def scaler_config_sections() -> list[Section]:
    return [DECLARED]


@hookimpl
def scaler_init_script_parts() -> list[ScriptPart]:
    return [
        ScriptPart(
            200, "instance identity (simulated)", 'export SCALER_INSTANCE_ID="${SCALER_INSTANCE_ID:-$(hostname)}"'
        )
    ]
