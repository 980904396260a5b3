"""What the ``gcp`` provider hooks do: launch, list, terminate, console output, check cloud.

Every call goes through the real ``google-cloud-compute`` REST clients of
:mod:`scaler_gcp.clients` (imported lazily). The instance id the scaler sees, and that ends
the worker id, is the instance *name*; names are deterministic per launch token and index,
and every insert carries a ``requestId`` derived from them, so a retried launch meets the
machines of the first attempt instead of creating new ones.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scaler.api import (
    TAG_FLEET,
    TAG_LAUNCH_TOKEN,
    TAG_RESOURCE,
    TAG_SCALER,
    AuthError,
    CapacityError,
    Instance,
    InstanceState,
    Problem,
    ProviderError,
    QuotaError,
    TransientError,
)
from scaler_gcp.clients import (
    REQUEST_TIMEOUT,
    Session,
    map_error,
    operation_error,
    retry_policy,
    session_for,
)
from scaler_gcp.naming import (
    NAME_RE,
    image_ref,
    instance_name,
    label_value,
    last_part,
    network_path,
    request_id,
    subnetwork_path,
)

if TYPE_CHECKING:
    from scaler.api import Config, Resource

log = logging.getLogger("scaler.gcp")

#: GCE instance status → the scaler's lifecycle
STATUS_MAP: dict[str, InstanceState] = {
    "PROVISIONING": InstanceState.PENDING,
    "STAGING": InstanceState.PENDING,
    "RUNNING": InstanceState.RUNNING,
    "REPAIRING": InstanceState.RUNNING,
    "STOPPING": InstanceState.STOPPING,
    "SUSPENDING": InstanceState.STOPPING,
    "SUSPENDED": InstanceState.STOPPED,
    "TERMINATED": InstanceState.STOPPED,  # shut down from inside: stopped, its disk still bills
}
#: machine families whose GPUs come built in (no live migration, no guestAccelerators needed)
GPU_FAMILIES = frozenset({"a2", "a3", "a4", "g2", "g4"})
#: page size of the aggregated list (GCE's maximum)
PAGE_SIZE = 500
#: delays between operation polls (seconds); the last one repeats until the deadline
POLL_DELAYS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
STARTUP_SCRIPT_KEY = "startup-script"
INSTALL_DRIVER_KEY = "install-nvidia-driver"


# --- process memory (the cloud stays the source of truth) ----------------------------------

_lock = threading.Lock()
#: (project, instance name) → zone, filled by launch and list, so terminate needs no lookup
_zone_of: dict[tuple[str, str], str] = {}
#: (launch token, index) → index of the zone a retry of that launch starts at
_progress: OrderedDict[tuple[str, int], int] = OrderedDict()
_PROGRESS_MAX = 4096


def _remember_zone(project: str, name: str, zone: str) -> None:
    with _lock:
        _zone_of[(project, name)] = zone


def _forget_zone(project: str, name: str) -> None:
    with _lock:
        _zone_of.pop((project, name), None)


def _known_zone(project: str, name: str) -> str | None:
    with _lock:
        return _zone_of.get((project, name))


def _start_zone(token: str, index: int) -> int:
    with _lock:
        return _progress.get((token, index), 0)


def _set_start_zone(token: str, index: int, zone_index: int) -> None:
    with _lock:
        _progress[(token, index)] = zone_index
        _progress.move_to_end((token, index))
        while len(_progress) > _PROGRESS_MAX:
            _progress.popitem(last=False)


def reset_memory() -> None:
    """Forget the zone cache and launch progress (tests)."""
    with _lock:
        _zone_of.clear()
        _progress.clear()


# --- settings and the insert body -----------------------------------------------------------


def resource_settings(resource: Resource) -> dict[str, Any]:
    """The resource's normalised ``gcp { ... }`` section (core applied the defaults of
    :data:`scaler_gcp.schema.SECTION`)."""
    return resource.provider


def has_gpus(settings: dict[str, Any]) -> bool:
    family = str(settings["machine_type"]).split("-", 1)[0]
    return bool(settings.get("accelerator_type") and settings.get("accelerator_count")) or family in GPU_FAMILIES


def _metadata_text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def instance_body(
    *,
    scaler: str,
    resource: str,
    settings: dict[str, Any],
    project: str,
    zone: str,
    name: str,
    launch_token: str,
    init_script: str,
    spot: bool,
    fleet_id: str = "",
) -> dict[str, Any]:
    """The ``compute_v1.Instance`` of one machine, as a plain dict (proto field names)."""
    labels = {str(k): str(v) for k, v in (settings.get("labels") or {}).items()}
    ownership = {TAG_SCALER: scaler, TAG_RESOURCE: resource, TAG_LAUNCH_TOKEN: launch_token}
    if fleet_id:
        ownership[TAG_FLEET] = fleet_id  # the deployment: scaler name, ClearML server and workspace
    labels.update({key: label_value(value) for key, value in ownership.items()})
    gpus = has_gpus(settings)
    metadata: dict[str, str] = {}
    if gpus:
        # Deep Learning VM images install the NVIDIA driver on first boot only when asked
        metadata[INSTALL_DRIVER_KEY] = "True"
    metadata.update({str(k): _metadata_text(v) for k, v in (settings.get("metadata") or {}).items()})
    metadata.update(
        {
            STARTUP_SCRIPT_KEY: init_script,
            # exact names (labels are lowercased and cut): what list reports
            **ownership,
        }
    )
    items = [{"key": key, "value": value} for key, value in metadata.items()]
    nic: dict[str, Any] = {"network": network_path(settings["network"])}
    if settings.get("subnetwork"):
        nic["subnetwork"] = subnetwork_path(settings["subnetwork"], zone)
    if settings.get("external_ip", True):
        nic["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
    if spot:
        scheduling: dict[str, Any] = {
            "provisioning_model": "SPOT",
            "instance_termination_action": "DELETE",
            "on_host_maintenance": "TERMINATE",
            "automatic_restart": False,
        }
    else:
        scheduling = {
            "provisioning_model": "STANDARD",
            "on_host_maintenance": "TERMINATE" if gpus else "MIGRATE",
            "automatic_restart": True,
        }
    body: dict[str, Any] = {
        "name": name,
        "description": f"clearml-scaler {scaler}: resource {resource}",
        "machine_type": f"zones/{zone}/machineTypes/{settings['machine_type']}",
        "disks": [
            {
                "boot": True,
                "auto_delete": True,
                "initialize_params": {
                    "source_image": image_ref(settings["image"], project).path,
                    "disk_size_gb": int(settings["disk_size_gb"]),
                    "disk_type": f"zones/{zone}/diskTypes/{settings['disk_type']}",
                },
            }
        ],
        "network_interfaces": [nic],
        "metadata": {"items": items},
        "labels": labels,
        "scheduling": scheduling,
    }
    if settings.get("accelerator_type") and settings.get("accelerator_count"):
        body["guest_accelerators"] = [
            {
                "accelerator_type": f"projects/{project}/zones/{zone}/acceleratorTypes/{settings['accelerator_type']}",
                "accelerator_count": int(settings["accelerator_count"]),
            }
        ]
    if settings.get("service_account"):
        body["service_accounts"] = [{"email": settings["service_account"], "scopes": list(settings["scopes"])}]
    if settings.get("network_tags"):
        body["tags"] = {"items": list(settings["network_tags"])}
    return body


# --- launch ---------------------------------------------------------------------------------

Outcome = Instance | ProviderError


def launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    if count <= 0:
        return []
    settings = resource_settings(resource)
    session = session_for(config)
    use_spot = bool(spot) and settings.get("spot") is not False
    zones: list[str] = list(settings["zones"])
    names = {i: instance_name(config.scaler.name, resource.name, launch_token, i) for i in range(count)}
    deadline = time.monotonic() + session.operation_timeout
    created: dict[int, Instance] = {}
    failed: dict[int, ProviderError] = {}
    capacity: list[CapacityError] = []
    todo = list(range(count))
    for zone_index, zone in enumerate(zones):
        batch = [i for i in todo if _start_zone(launch_token, i) <= zone_index]
        if not batch:
            continue
        outcomes = _launch_in_zone(
            session,
            config,
            resource,
            settings,
            zone,
            zone_index,
            batch,
            names,
            launch_token,
            init_script,
            use_spot,
            deadline,
        )
        for i, outcome in outcomes.items():
            if isinstance(outcome, Instance):
                created[i] = outcome
            elif isinstance(outcome, CapacityError):
                capacity.append(outcome)
                _set_start_zone(launch_token, i, zone_index + 1)
                log.info("no capacity for %s in %s (%s); trying the next zone", names[i], zone, outcome.code)
                continue
            else:
                failed[i] = outcome
            todo.remove(i)
    market = "spot" if use_spot else "on-demand"
    if created:
        if len(created) < count:
            why = "; ".join(sorted({str(e) for e in failed.values()})) or (
                str(capacity[-1]) if capacity else "no capacity"
            )
            log.warning(
                "launched %d of %d %s %s instance(s) of %s: %s",
                len(created),
                count,
                market,
                settings["machine_type"],
                resource.name,
                why,
            )
        return [created[i] for i in sorted(created)]
    if failed:
        raise _most_telling(failed.values())
    last = capacity[-1] if capacity else None
    raise CapacityError(
        f"no {market} capacity for {settings['machine_type']} in zone(s) {', '.join(zones)}"
        + (f": {last}" if last else ""),
        code=last.code if last else "ZONE_RESOURCE_POOL_EXHAUSTED",
    )


def _most_telling(errors: Iterable[ProviderError]) -> ProviderError:
    """The error to report when no machine came up: auth, then quota, then config, then transient."""
    rank = {AuthError: 0, QuotaError: 1, ProviderError: 2, TransientError: 3}
    return min(errors, key=lambda e: rank.get(type(e), 2))


def _launch_in_zone(
    session: Session,
    config: Config,
    resource: Resource,
    settings: dict[str, Any],
    zone: str,
    zone_index: int,
    batch: list[int],
    names: dict[int, str],
    token: str,
    init_script: str,
    spot: bool,
    deadline: float,
) -> dict[int, Outcome]:
    """Insert every machine of ``batch`` in ``zone`` without waiting, then wait for them all."""
    from google.cloud import compute_v1

    outcomes: dict[int, Outcome] = {}
    ops: dict[int, Any] = {}
    retry = retry_policy()
    stop: ProviderError | None = None
    for i in batch:
        name = names[i]
        if stop is not None:
            outcomes[i] = stop  # the same body fails the same way: do not repeat the call
            continue
        _set_start_zone(token, i, zone_index)
        body = instance_body(
            scaler=config.scaler.name,
            resource=resource.name,
            settings=settings,
            project=session.project,
            zone=zone,
            name=name,
            launch_token=token,
            init_script=init_script,
            spot=spot,
            fleet_id=config.fleet_id,
        )
        request = {
            "project": session.project,
            "zone": zone,
            "instance_resource": compute_v1.Instance(body),
            "request_id": request_id(token, i, zone),
        }
        action = f"creating instance {name} in {zone}"
        try:
            ops[i] = session.instances.insert_unary(request=request, retry=retry, timeout=REQUEST_TIMEOUT)
        except Exception as exc:
            if _already_exists(exc):
                outcomes[i] = _existing(session, config, name, zone, token)
            else:
                error = map_error(exc, action=action, permission="compute.instances.create", session=session)
                outcomes[i] = error
                if not isinstance(error, CapacityError):
                    stop = error
    finished = _wait(session, zone, ops, deadline)
    now = time.time()
    for i in ops:
        name = names[i]
        done = finished.get(i)
        failure = None
        if done is not None:
            failure = operation_error(
                done,
                action=f"creating instance {name} in {zone}",
                permission="compute.instances.create",
                session=session,
            )
        if failure is not None:
            outcomes[i] = failure
            continue
        if done is None:
            log.info(
                "instance %s in %s is still being created after %gs; the next list will show how it went",
                name,
                zone,
                session.operation_timeout,
            )
        _remember_zone(session.project, name, zone)
        outcomes[i] = Instance(
            id=name,
            resource=resource.name,
            state=InstanceState.PENDING,
            launched_at=now,
            launch_token=token,
            spot=spot,
            zone=zone,
            instance_type=str(settings["machine_type"]),
            fleet=config.fleet_id,
        )
    return outcomes


def _already_exists(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.Conflict)


def _existing(session: Session, config: Config, name: str, zone: str, token: str) -> Outcome:
    """409 on our deterministic name: the machine of an earlier attempt of this launch."""
    try:
        found = session.instances.get(
            project=session.project, zone=zone, instance=name, retry=retry_policy(), timeout=REQUEST_TIMEOUT
        )
    except Exception as exc:
        return map_error(
            exc,
            action=f"reading existing instance {name} in {zone}",
            permission="compute.instances.get",
            session=session,
        )
    meta = _metadata(found)
    theirs = meta.get(TAG_LAUNCH_TOKEN) or dict(found.labels).get(TAG_LAUNCH_TOKEN, "")
    if label_value(theirs) != label_value(token):
        return ProviderError(
            f"an instance named {name} already exists in {zone} and was not made by this launch "
            f"(launch token {theirs or 'none'})",
            code="alreadyExists",
        )
    instance = to_instance(found, zone, config)
    if instance is None:
        return ProviderError(f"instance {name} in {zone} exists but belongs to another scaler", code="alreadyExists")
    _remember_zone(session.project, name, zone)
    return instance


def _wait(session: Session, zone: str, ops: dict[int, Any], deadline: float) -> dict[int, Any]:
    """Poll the zone operations until each is DONE or the deadline passes (those are left out)."""
    from google.cloud import compute_v1

    done_status = compute_v1.Operation.Status.DONE
    finished = {i: op for i, op in ops.items() if op.status == done_status}
    pending = {i: op for i, op in ops.items() if op.status != done_status}
    attempt = 0
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        delay = POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)]
        attempt += 1
        if delay:
            time.sleep(min(delay, remaining))
        for i, op in list(pending.items()):
            try:
                fresh = session.zone_operations.get(
                    project=session.project,
                    zone=zone,
                    operation=op.name,
                    retry=None,
                    timeout=max(1.0, min(REQUEST_TIMEOUT, deadline - time.monotonic())),
                )
            except Exception as exc:
                mapped = map_error(
                    exc,
                    action=f"following operation {op.name} in {zone}",
                    permission="compute.zoneOperations.get",
                    session=session,
                )
                if isinstance(mapped, TransientError):
                    continue  # poll again
                log.warning("%s; the instance is treated as being created", mapped)
                del pending[i]
                continue
            if fresh.status == done_status:
                finished[i] = fresh
                del pending[i]
    return finished


# --- list -----------------------------------------------------------------------------------


def owner_filter(scaler: str) -> str:
    return f'labels.{TAG_SCALER} = "{label_value(scaler)}"'


def list_instances(config: Config, include_foreign: bool = False) -> list[Instance]:
    """The instances labelled with the scaler's name and this fleet's identity or none (legacy),
    in every zone; with ``include_foreign``, other identities too."""
    session = session_for(config)
    out = []
    for zone, found in _aggregated(session, owner_filter(config.scaler.name), "listing instances"):
        instance = to_instance(found, zone, config)
        if instance is None:
            continue
        _remember_zone(session.project, instance.id, zone)
        if include_foreign or instance.fleet in ("", config.fleet_id):
            out.append(instance)
    return out


#: names per describe filter (GCE caps a filter expression's length)
DESCRIBE_BATCH = 50


def describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    """The instances with these names in the project, in every zone, whatever their labels
    (``scaler adopt``); a name not found is left out."""
    session = session_for(config)
    names = [n for n in dict.fromkeys(str(i) for i in instance_ids) if NAME_RE.fullmatch(n)]
    out: dict[str, Instance] = {}
    for start in range(0, len(names), DESCRIBE_BATCH):
        batch = names[start : start + DESCRIBE_BATCH]
        flt = " OR ".join(f'(name = "{name}")' for name in batch)
        for zone, found in _aggregated(session, flt, "describing instances"):
            if str(found.name) not in batch:
                continue
            labels, meta = dict(found.labels), _metadata(found)
            scheduling = found.scheduling
            tags = {key: meta.get(key) or labels.get(key, "") for key in (TAG_RESOURCE, TAG_LAUNCH_TOKEN, TAG_FLEET)}
            _remember_zone(session.project, str(found.name), zone)
            out[str(found.name)] = Instance.from_tags(
                str(found.name),
                tags,
                STATUS_MAP.get(str(found.status or ""), InstanceState.PENDING),
                _timestamp(str(found.creation_timestamp or "")),
                spot=str(scheduling.provisioning_model or "") == "SPOT" or bool(scheduling.preemptible),
                zone=last_part(str(found.zone or zone)) or zone,
                instance_type=last_part(str(found.machine_type or "")),
            )
    return list(out.values())


def _aggregated(session: Session, flt: str, action: str) -> list[tuple[str, Any]]:
    """Every instance matching ``flt`` in every zone, across all pages, as (zone, instance)."""
    found: list[tuple[str, Any]] = []
    try:
        pager = session.instances.aggregated_list(
            request={"project": session.project, "filter": flt, "max_results": PAGE_SIZE},
            retry=retry_policy(),
            timeout=REQUEST_TIMEOUT,
        )
        for scope, scoped in pager:
            warning: Any = scoped.warning
            if str(warning.code or "") == "UNREACHABLE":
                raise TransientError(
                    f"{action}: {scope} is unreachable, the list would be incomplete ({warning.message})",
                    code="UNREACHABLE",
                )
            for item in scoped.instances:
                found.append((last_part(scope), item))
    except ProviderError:
        raise
    except Exception as exc:
        raise map_error(exc, action=action, permission="compute.instances.list", session=session) from exc
    return found


def _metadata(found: Any) -> dict[str, str]:
    try:
        return {str(item.key): str(item.value) for item in found.metadata.items if item.key != STARTUP_SCRIPT_KEY}
    except AttributeError:
        return {}


def _timestamp(text: str) -> float:
    if text:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()  # unknown: treat as new rather than as stuck


def to_instance(found: Any, zone: str, config: Config) -> Instance | None:
    """The scaler's view of one GCE instance, or ``None`` when another scaler owns it."""
    labels = dict(found.labels)
    meta = _metadata(found)
    owner = meta.get(TAG_SCALER)
    if owner is not None:
        if owner != config.scaler.name:
            return None
    elif labels.get(TAG_SCALER) != label_value(config.scaler.name):
        return None
    resource = meta.get(TAG_RESOURCE)
    if not resource:
        label = labels.get(TAG_RESOURCE, "")
        resource = next((r.name for r in config.resources if label_value(r.name) == label), label)
    scheduling = found.scheduling
    status = str(found.status or "")
    return Instance(
        id=str(found.name),
        resource=resource,
        state=STATUS_MAP.get(status, InstanceState.PENDING),
        launched_at=_timestamp(str(found.creation_timestamp or "")),
        launch_token=meta.get(TAG_LAUNCH_TOKEN) or labels.get(TAG_LAUNCH_TOKEN, ""),
        spot=str(scheduling.provisioning_model or "") == "SPOT" or bool(scheduling.preemptible),
        zone=last_part(str(found.zone or zone)) or zone,
        instance_type=last_part(str(found.machine_type or "")),
        # the label: adoption sets only labels (the identity is lower-case hex, a label keeps it whole)
        fleet=labels.get(TAG_FLEET) or meta.get(TAG_FLEET, ""),
    )


# --- terminate ------------------------------------------------------------------------------


def _zones_for(config: Config, session: Session, names: Iterable[str], *, refresh: bool = False) -> dict[str, str]:
    """name → zone for the given names, from the cache, else from one fresh list."""
    names = list(dict.fromkeys(names))
    zones = {} if refresh else {n: z for n in names if (z := _known_zone(session.project, n))}
    if len(zones) < len(names):
        # a zone lookup: any machine with the scaler's name (console-output may not know the identity)
        for instance in list_instances(config, include_foreign=True):
            if instance.id in names:
                zones[instance.id] = instance.zone
    return zones


def terminate(config: Config, instance_ids: list[str]) -> bool:
    from google.api_core import exceptions as gexc

    session = session_for(config)
    names = list(dict.fromkeys(instance_ids))
    if not names:
        return True
    zones = _zones_for(config, session, names)
    errors: list[ProviderError] = []
    retry = retry_policy()

    def delete(name: str, zone: str) -> bool:
        """Issue one delete (not waiting for it); False when the machine is not in ``zone``."""
        action = f"deleting instance {name} in {zone}"
        try:
            op = session.instances.delete_unary(
                request={"project": session.project, "zone": zone, "instance": name, "request_id": str(uuid.uuid4())},
                retry=retry,
                timeout=REQUEST_TIMEOUT,
            )
        except gexc.NotFound:
            _forget_zone(session.project, name)
            return False
        except Exception as exc:
            errors.append(map_error(exc, action=action, permission="compute.instances.delete", session=session))
            return True
        error = operation_error(op, action=action, permission="compute.instances.delete", session=session)
        if error is not None and error.code not in ("RESOURCE_NOT_FOUND", "notFound"):
            errors.append(error)
        return True

    missing = [name for name in names if name not in zones]
    for name in names:
        if name in zones and not delete(name, zones[name]):
            missing.append(name)
    if missing:
        # a cached zone was stale, or the name was never seen: look once more, else it is gone
        fresh = _zones_for(config, session, missing, refresh=True)
        for name in missing:
            zone = fresh.get(name)
            if zone and zone != zones.get(name):
                delete(name, zone)
            else:
                log.info("instance %s is already gone", name)
    if errors:
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise type(first)(f"{len(errors)} of {len(names)} deletions failed; first: {first}", code=first.code)
    return True


# --- tag ------------------------------------------------------------------------------------


def tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    """Add labels to instances (``setLabels``: the current labels plus ``tags``, with the label
    fingerprint read just before, so a concurrent change is not overwritten). A machine that is
    gone is skipped."""
    from google.api_core import exceptions as gexc

    session = session_for(config)
    names = list(dict.fromkeys(instance_ids))
    zones = _zones_for(config, session, names)
    errors: list[ProviderError] = []
    for name in names:
        zone = zones.get(name)
        if not zone:
            log.info("instance %s is gone; not labelling it", name)
            continue
        action = f"labelling instance {name} in {zone}"
        try:
            found = session.instances.get(
                project=session.project, zone=zone, instance=name, retry=retry_policy(), timeout=REQUEST_TIMEOUT
            )
            labels = dict(found.labels)
            labels.update({key: label_value(value) for key, value in tags.items()})
            op = session.instances.set_labels_unary(
                request={
                    "project": session.project,
                    "zone": zone,
                    "instance": name,
                    "instances_set_labels_request_resource": {
                        "labels": labels,
                        "label_fingerprint": found.label_fingerprint,
                    },
                    "request_id": str(uuid.uuid4()),
                },
                retry=retry_policy(),
                timeout=REQUEST_TIMEOUT,
            )
        except gexc.NotFound:
            _forget_zone(session.project, name)
            log.info("instance %s is gone; not labelling it", name)
            continue
        except Exception as exc:
            errors.append(map_error(exc, action=action, permission="compute.instances.setLabels", session=session))
            continue
        error = operation_error(op, action=action, permission="compute.instances.setLabels", session=session)
        if error is not None:
            errors.append(error)
    if errors:
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise type(first)(f"{len(errors)} of {len(names)} label changes failed; first: {first}", code=first.code)
    return True


# --- console output -------------------------------------------------------------------------


def console_output(config: Config, instance_id: str) -> str:
    from google.api_core import exceptions as gexc

    session = session_for(config)
    zone = _zones_for(config, session, [instance_id]).get(instance_id)
    if not zone:
        raise ProviderError(
            f"instance {instance_id} is not one of this scaler's instances (or is gone)", code="NotFound"
        )
    try:
        out = session.instances.get_serial_port_output(
            request={"project": session.project, "zone": zone, "instance": instance_id, "port": 1},
            retry=retry_policy(),
            timeout=REQUEST_TIMEOUT,
        )
    except gexc.NotFound:
        _forget_zone(session.project, instance_id)
        raise ProviderError(f"instance {instance_id} in {zone} is gone", code="NotFound") from None
    except Exception as exc:
        raise map_error(
            exc,
            action=f"reading the serial console of {instance_id} in {zone}",
            permission="compute.instances.getSerialPortOutput",
            session=session,
        ) from exc
    return str(out.contents or "")


# --- check cloud ----------------------------------------------------------------------------


class _Checker:
    """Looks things up once each and turns failures into problems."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.problems: list[Problem] = []
        self._seen: dict[tuple[str, ...], Any] = {}
        self._reported: set[str] = set()

    def get(self, key: tuple[str, ...], permission: str, fetch: Callable[..., Any], **request: Any) -> Any:
        """``fetch(**request)``: the resource, ``None`` when it does not exist, ``False`` when it
        could not be checked (that problem is reported once)."""
        from google.api_core import exceptions as gexc

        if key in self._seen:
            return self._seen[key]
        try:
            value = fetch(**request, timeout=REQUEST_TIMEOUT)
        except gexc.NotFound:
            value = None
        except Exception as exc:
            error = map_error(exc, action=f"checking {'/'.join(key)}", permission=permission, session=self.session)
            once = f"{type(error).__name__}:{permission}"
            if once not in self._reported:
                self._reported.add(once)
                severity = "warning" if isinstance(error, TransientError) else "error"
                self.problems.append(Problem("gcp", f"{error} (not all settings could be checked)", severity))
            value = False
        self._seen[key] = value
        return value

    def add(self, path: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(path, message, severity))


def check_cloud(config: Config) -> list[Problem]:
    """Image (or family), zones, machine type and accelerator type of every resource exist."""
    try:
        session = session_for(config)
    except ProviderError as exc:
        return [Problem("gcp", str(exc))]
    check = _Checker(session)
    project = session.project
    for index, resource in enumerate(config.resources):
        where = f"resources[{index}].gcp"
        settings = resource.provider
        ref = image_ref(settings["image"], project)
        if ref.family:
            image = check.get(
                ("images", ref.project, "family", ref.name),
                "compute.images.getFromFamily",
                session.images.get_from_family,
                project=ref.project,
                family=ref.name,
            )
        else:
            image = check.get(
                ("images", ref.project, ref.name),
                "compute.images.get",
                session.images.get,
                project=ref.project,
                image=ref.name,
            )
        if image is None:
            what = f"image family '{ref.name}'" if ref.family else f"image '{ref.name}'"
            check.add(
                f"{where}.image",
                f"{what} does not exist in project '{ref.project}' (or is not shared with these credentials)",
            )
        elif image:
            state = str(image.deprecated.state or "") if image.deprecated else ""
            if state in ("OBSOLETE", "DELETED"):
                check.add(f"{where}.image", f"image '{image.name}' is {state.lower()}")
            elif state == "DEPRECATED":
                check.add(f"{where}.image", f"image '{image.name}' is deprecated", "warning")
        machine_type = settings["machine_type"]
        accelerator = settings["accelerator_type"]
        for zone_index, zone in enumerate(settings["zones"]):
            if check.get(("zones", zone), "compute.zones.get", session.zones.get, project=project, zone=zone) is None:
                check.add(f"{where}.zones[{zone_index}]", f"zone '{zone}' does not exist")
                continue
            found = check.get(
                ("machineTypes", zone, machine_type),
                "compute.machineTypes.get",
                session.machine_types.get,
                project=project,
                zone=zone,
                machine_type=machine_type,
            )
            if found is None:
                check.add(f"{where}.machine_type", f"machine type '{machine_type}' is not offered in zone '{zone}'")
            if not accelerator:
                continue
            found = check.get(
                ("acceleratorTypes", zone, accelerator),
                "compute.acceleratorTypes.get",
                session.accelerator_types.get,
                project=project,
                zone=zone,
                accelerator_type=accelerator,
            )
            if found is None:
                check.add(
                    f"{where}.accelerator_type", f"accelerator type '{accelerator}' is not offered in zone '{zone}'"
                )
            elif found and 0 < found.maximum_cards_per_instance < settings["accelerator_count"]:
                check.add(
                    f"{where}.accelerator_count",
                    f"at most {found.maximum_cards_per_instance} x {accelerator} per machine in zone '{zone}', "
                    f"got {settings['accelerator_count']}",
                )
    return check.problems
