"""``scaler adopt``: take over the machines ClearML's own autoscaler launched.

ClearML's autoscaler tags nothing the scaler recognises, but every agent it starts registers
with ClearML as ``<prefix>:<resource>:<instance type>:<instance id>``. So the machines are
found through ClearML's workers: each worker of that form names its machine; the provider
describes those ids (the optional hook ``scaler_describe_instances``: where the configuration
looks, whatever their tags), and every machine that is running, carries no clearml-scaler tags
yet and whose resource is a resource of the configuration gets the ownership tags a launch
writes (``scaler_tag_instances`` with ``config.tags_for(resource, token)``). From then on the
loop manages it like a machine it launched: its agent keeps its ClearML worker id, which the
fleet join recognises (:mod:`scaler.engine.fleet`), so an idle one is terminated after
``max_idle_time`` and a busy one is left alone.

Left, and reported with the reason: a worker whose resource maps to no configured resource, an
id the provider does not find (another region or project, or gone), a machine that is not
running, a machine another scaler tagged already. Machines of the old fleet whose agent is not
registered cannot be told apart from any other machine of the account: they are not found.

No ClearML here: the caller reads the workers (the engine knows nothing of ClearML).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scaler.engine.fleet import WorkerObs
from scaler.errors import ProviderError
from scaler.types import Instance

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.host import Provider

#: what became of a machine
ADOPTED, WOULD_ADOPT, ALREADY, LEFT = "adopted", "would adopt", "already this fleet's", "left"
_TOKEN_NS = uuid.UUID("6d1f3f0e-4a0b-4c55-9d0e-8a3d2c1b0a99")


class AdoptError(ProviderError):
    """``scaler adopt`` cannot be done with this provider or configuration."""


@dataclass(frozen=True)
class ClearMLWorker:
    """A worker id of ClearML's autoscaler, ``<prefix>:<resource>:<instance type>:<instance id>``."""

    worker: WorkerObs
    resource: str
    instance_type: str
    instance_id: str


@dataclass(frozen=True)
class Outcome:
    """One machine (or one worker that names none) and what ``adopt`` did with it."""

    instance_id: str
    workers: tuple[str, ...]
    clearml_resource: str
    status: str  # ADOPTED, WOULD_ADOPT, ALREADY, LEFT
    reason: str = ""
    resource: str = ""  # the configured resource it belongs to (adopted ones)
    busy: bool = False

    def render(self) -> str:
        state = "busy" if self.busy else "idle"
        who = ", ".join(self.workers)
        if self.status in (ADOPTED, WOULD_ADOPT):
            text = f"{self.status} {self.instance_id} as resource '{self.resource}' ({state}; worker {who})"
        elif self.status == ALREADY:
            text = f"{self.instance_id}: already this fleet's (resource '{self.resource}'; worker {who})"
        else:
            text = f"left {self.instance_id or '(no machine)'}: {self.reason} (worker {who})"
        return text + (f"; {self.reason}" if self.reason and self.status != LEFT else "")


@dataclass
class AdoptReport:
    outcomes: list[Outcome] = field(default_factory=list)
    #: workers with the prefix that are not of ClearML's form (clearml-scaler's own, hand-made ids)
    other_workers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of(self, *statuses: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in statuses]


def parse_worker(prefix: str, worker: WorkerObs) -> ClearMLWorker | None:
    """The parts of a worker id of ClearML's autoscaler with this prefix, ``None`` for any other."""
    parts = worker.id.split(":")
    if len(parts) != 4 or parts[0] != prefix or not all(parts[1:]):
        return None
    return ClearMLWorker(worker, parts[1], parts[2], parts[3])


def adoption_token(config: Config, resource: str) -> str:
    """The launch token adopted machines of ``resource`` carry (stable: adopting again writes the same)."""
    return str(uuid.uuid5(_TOKEN_NS, f"{config.scaler.name}/{resource}/adopted"))


def adopt(
    config: Config, provider: Provider, workers: Sequence[WorkerObs], prefix: str, *, dry_run: bool = False
) -> AdoptReport:
    """Find the machines of ClearML's autoscaler with workers ``prefix:…`` and tag the ones that
    belong to a configured resource as this fleet's (nothing is tagged with ``dry_run``)."""
    for hook in ("scaler_describe_instances", "scaler_tag_instances"):
        if not provider.implements(hook):
            raise AdoptError(
                f"provider '{provider.name}' does not implement {hook}, which `scaler adopt` needs; nothing was changed",
                code="NotSupported",
            )
    if not config.fleet_id:
        raise AdoptError("the fleet identity is not known (no ClearML server); nothing was changed", code="NoFleetId")
    report = AdoptReport()
    by_id: dict[str, list[ClearMLWorker]] = defaultdict(list)
    for worker in workers:
        if not worker.id.startswith(prefix + ":"):
            continue
        found = parse_worker(prefix, worker)
        if found is None:
            report.other_workers.append(worker.id)
        else:
            by_id[found.instance_id].append(found)

    mapped: dict[str, str] = {}  # instance id -> configured resource
    for instance_id, named in by_id.items():
        names = {w.resource for w in named}
        ids = tuple(w.worker.id for w in named)
        busy = any(w.worker.task for w in named)
        if len(names) > 1:
            report.outcomes.append(
                Outcome(
                    instance_id, ids, "", LEFT, f"its workers name different resources ({', '.join(sorted(names))})"
                )
            )
            continue
        [name] = names
        if config.resource(name) is None:
            report.outcomes.append(
                Outcome(
                    instance_id,
                    ids,
                    name,
                    LEFT,
                    f"no mapping: resource '{name}' is not in the configuration",
                    busy=busy,
                )
            )
            continue
        mapped[instance_id] = name

    described = {inst.id: inst for inst in provider.describe_instances(config, list(mapped))}
    adopt_now: dict[str, list[str]] = defaultdict(list)
    for instance_id, name in mapped.items():
        named = by_id[instance_id]
        ids = tuple(w.worker.id for w in named)
        busy = any(w.worker.task for w in named)
        inst = described.get(instance_id)
        why = _left_because(config, inst, name)
        if inst is not None and why == ALREADY:
            report.outcomes.append(Outcome(instance_id, ids, name, ALREADY, resource=name, busy=busy))
            continue
        if why:
            report.outcomes.append(Outcome(instance_id, ids, name, LEFT, why, busy=busy))
            continue
        assert inst is not None
        said = {w.instance_type for w in named}
        note = ""
        if inst.instance_type and inst.instance_type not in said:
            note = f"its worker id says {', '.join(sorted(said))}, the machine is {inst.instance_type}"
        adopt_now[name].append(instance_id)
        report.outcomes.append(
            Outcome(instance_id, ids, name, WOULD_ADOPT if dry_run else ADOPTED, note, resource=name, busy=busy)
        )
    if not dry_run:
        for name, chosen in adopt_now.items():
            provider.tag_instances(config, chosen, config.tags_for(name, adoption_token(config, name)))
    _warn_over_max(config, provider, report, adopt_now, dry_run)
    return report


def _left_because(config: Config, inst: Instance | None, name: str) -> str:
    """Why a described machine is not adopted ("" : it is adopted; ALREADY: it is this fleet's)."""
    if inst is None:
        return (
            f"not found by provider '{config.provider_name}' where the configuration looks "
            "(another region or project?), or gone"
        )
    if inst.resource or inst.fleet or inst.launch_token:
        if inst.fleet == config.fleet_id and inst.resource == name:
            return ALREADY
        owner = f"resource '{inst.resource}'" if inst.resource else "another fleet's identity"
        return f"it carries clearml-scaler tags already ({owner}): another scaler's machine"
    if not inst.state.alive:
        return f"not running ({inst.state.value})"
    return ""


def _warn_over_max(
    config: Config, provider: Provider, report: AdoptReport, adopted: dict[str, list[str]], dry_run: bool
) -> None:
    if not adopted:
        return
    try:
        listed = provider.list_instances(config)
    except ProviderError as exc:
        report.warnings.append(f"could not count the fleet's machines after adopting ({exc})")
        return
    alive = {inst.id for inst in listed if inst.state.alive}
    for name, ids in adopted.items():
        resource = config.resource(name)
        assert resource is not None
        count = len({inst.id for inst in listed if inst.resource == name} & alive)
        if dry_run:
            count += len(ids)
        if count > resource.max_instances:
            report.warnings.append(
                f"resource '{name}' {'would have' if dry_run else 'has'} {count} machines, more than its "
                f"max_instances ({resource.max_instances}): nothing is launched for it until fewer run"
            )
