"""``scaler status``: what the fleet looks like now.

Queues and workers come from ClearML, instances from the provider's ``list`` (the same two
reads a tick makes); the last actions and the idle timers come from the running scaler's
state file (:mod:`scaler.ops.statefile`), when there is one on this machine.

Each instance shows whose it is: ``own`` (this fleet's identity), ``legacy`` (the scaler's
name, no identity: adopted once its worker shows here), ``foreign`` (the same scaler name,
another deployment's identity: never touched). Lease entries of the fleet that no scaler of
it wrote (:mod:`scaler.clearml.lease`) are shown as errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.clearml.lease import check_entries
from scaler.clearml.queues import LEASE_PREFIX
from scaler.engine.fleet import join
from scaler.errors import ProviderError
from scaler.ops.statefile import read_state

if TYPE_CHECKING:
    from rich.console import Console

    from scaler.clearml.queues import ClearMLIdentity
    from scaler.config.model import Config
    from scaler.engine.reconciler import QueueSource
    from scaler.host import Provider
    from scaler.types import Instance

STATES = ("booting", "idle", "busy")


def collect(
    config: Config,
    provider: Provider | Sequence[Provider],
    source: QueueSource,
    *,
    state_path: Path | None = None,
    now: float | None = None,
    actions: int = 10,
    identity: ClearMLIdentity | None = None,
) -> dict[str, Any]:
    """One snapshot of the fleet as plain data (the ``--format json`` output). ``identity`` is
    the scaler's own on its ClearML server (``config.fleet_id`` is made of it); without it the
    ownership of instances tagged with an identity is unknown."""
    now = time.time() if now is None else now
    errors: list[str] = []
    queues, workers = source.read(config.queues)
    clearml_error = cloud_error = None
    if queues is None or workers is None:
        # why, as the SDK said it (the command masks secrets in the whole snapshot)
        clearml_error = str(getattr(source, "last_error", "") or "") or "no answer"
        errors.append(f"the ClearML server could not be read: pending tasks and workers are unknown ({clearml_error})")
    if not config.fleet_id and queues is not None and workers is not None:
        errors.append("the fleet identity is unknown (the ClearML server could not be read): ownership is not shown")
    providers = [provider] if not isinstance(provider, Sequence) else list(provider)
    found: list[Instance] = []
    where: dict[str, str] = {}  # instance id -> its provider
    cloud_errors = []
    for each in providers:  # one fleet may span several clouds: each listed once
        try:
            listed = each.list_instances(config, include_foreign=True)
        except ProviderError as exc:
            cloud_errors.append(f"{exc.kind}: {exc}" if len(providers) == 1 else f"{each.name}: {exc.kind}: {exc}")
            cloud = "the cloud" if len(providers) == 1 else f"provider '{each.name}'"
            errors.append(f"{cloud} could not be listed ({exc.kind}): {exc}")
            continue
        where.update((inst.id, each.name) for inst in listed)
        found += listed
    cloud_error = "; ".join(cloud_errors) or None
    # one cloud unreadable: the others' machines are still shown (and the status exits 1)
    instances: list[Instance] | None = None if len(cloud_errors) == len(providers) else found
    invalid_leases = []
    entries = getattr(source, "lease_entries", None)
    if entries is not None:
        ttl = max(10, round(3 * config.scaler.polling_interval))
        _valid, invalid = check_entries(entries.get(LEASE_PREFIX + config.scaler.name, []), identity, ttl, now)
        invalid_leases = [item.describe() for item in invalid]
        for text in invalid_leases:
            errors.append(
                f"invalid {text}; the scaler ignores it (see docs/operating.md, 'A forged lease'): "
                "find who registered it and revoke those credentials"
            )

    state = read_state(state_path) if state_path is not None else None
    if state is not None and state.get("name") != config.scaler.name:
        state = None
    idle_since: dict[str, float] = dict((state or {}).get("idle_since") or {})

    fleet = join(config.scaler.workers_prefix, instances, workers, config.fleet_id)
    foreign = {inst.id for inst in fleet.foreign_instances}
    legacy = {inst.id for inst in (*fleet.claimed, *fleet.unclaimed)}

    rows: list[dict[str, Any]] = []
    for inst in sorted(instances or (), key=lambda i: (i.resource, i.launched_at, i.id)):
        if not config.fleet_id and inst.fleet:
            owner = "unknown"
        else:
            owner = "foreign" if inst.id in foreign else ("legacy" if inst.id in legacy else "own")
        mine = [] if owner in ("foreign", "unknown") else fleet.workers_on(inst.id)
        busy = [w for w in mine if w.task]
        if owner in ("foreign", "unknown"):
            activity = owner  # another deployment's (never touched: its workers are on its own server), or unknown
        elif not inst.state.alive:
            activity = inst.state.value
        elif workers is None:
            activity = "unknown"  # ClearML unread: no way to tell booting, idle or busy
        elif busy:
            activity = "busy"
        elif mine:
            activity = "idle"
        else:
            activity = "booting"
        since = idle_since.get(inst.id) if activity == "idle" else None
        rows.append(
            {
                "id": inst.id,
                "provider": where.get(inst.id, ""),
                "resource": inst.resource,
                "state": inst.state.value,
                "activity": activity,
                "age": max(0.0, now - inst.launched_at),
                "worker": mine[0].id if mine else None,
                "task": busy[0].task if busy else None,
                "task_name": busy[0].task_name if busy else "",
                "idle_for": max(0.0, now - since) if since is not None else None,
                "spot": inst.spot,
                "zone": inst.zone,
                "instance_type": inst.instance_type,
                "owner": owner,
                "fleet": inst.fleet,
            }
        )

    configured = {r.name for r in config.resources}
    resources = []
    names = [r.name for r in config.resources] + sorted(
        {r["resource"] for r in rows if r["owner"] not in ("foreign", "unknown")} - configured
    )
    for name in names:
        resource = config.resource(name)
        alive = [r for r in rows if r["resource"] == name and r["activity"] in (*STATES, "unknown")]
        counts = {s: sum(1 for r in alive if r["activity"] == s) for s in STATES}
        known = instances is not None and workers is not None
        resources.append(
            {
                "name": name,
                "provider": config.provider_of(name) or None,
                "queue": resource.queue if resource else None,
                "running": len(alive) if instances is not None else None,
                **{s: (counts[s] if known else None) for s in STATES},
                "max": resource.max_instances if resource else None,
                "spot": resource.spot if resource else None,
                "configured": resource is not None,
            }
        )

    queue_rows = [
        {
            "queue": name,
            "pending": queues[name].pending if queues is not None and name in queues else None,
            "resources": [r.name for r in config.resources_for_queue(name)],
        }
        for name in config.queues
    ]

    last_tick = (state or {}).get("last_tick") or {}
    scaler_info: dict[str, Any] = {
        "state_file": str(state_path) if state_path is not None else None,
        "found": state is not None,
    }
    if state is not None:
        at = last_tick.get("at")
        interval = float(state.get("polling_interval") or config.scaler.polling_interval)
        scaler_info.update(
            {
                "pid": state.get("pid"),
                "dry_run": bool(state.get("dry_run")),
                "last_tick_at": at,
                "last_tick_age": (now - at) if isinstance(at, (int, float)) else None,
                "stale": isinstance(at, (int, float)) and now - at > 3 * interval + 10,
                "last_tick": last_tick,
            }
        )
    recent = list((state or {}).get("actions") or [])[-actions:] if actions > 0 else []
    return {
        "name": config.scaler.name,
        "provider": " + ".join(p.name for p in providers),
        "providers": [p.name for p in providers],
        "at": now,
        "clearml_ok": queues is not None and workers is not None,
        "cloud_ok": not cloud_errors,
        "clearml_error": clearml_error,
        "cloud_error": cloud_error,
        "errors": errors,
        "queues": queue_rows,
        "resources": resources,
        "instances": rows,
        "scaler": scaler_info,
        "actions": recent,
        "fleet_id": config.fleet_id,
        "invalid_leases": invalid_leases,
    }


def human(seconds: float | None) -> str:
    """``42s``, ``12m``, ``3h05m``, ``2d03h``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _clock(at: float, now: float) -> str:
    fmt = "%H:%M:%S" if now - at < 86400 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(at))


def _n(value: Any) -> str:
    return "?" if value is None else str(value)


def render(snapshot: dict[str, Any], console: Console) -> None:
    """The snapshot as rich tables."""
    from rich.table import Table

    now = float(snapshot["at"])
    scaler = snapshot["scaler"]
    head = f"scaler '{snapshot['name']}' on {snapshot['provider']} · {time.strftime('%Y-%m-%d %H:%M:%S')}"
    if snapshot.get("fleet_id"):
        head += f" · fleet {snapshot['fleet_id']}"
    if scaler.get("found"):
        age = scaler.get("last_tick_age")
        head += f" · last tick {human(age)} ago (pid {scaler.get('pid')})"
        if scaler.get("dry_run"):
            head += " · dry run"
        if scaler.get("stale"):
            head += " · STALE: is `scaler run` still running?"
    elif scaler.get("state_file"):
        head += (
            f" · no state file at {scaler['state_file']} (last actions and idle times come from a running `scaler run`)"
        )
    console.print(head)
    for error in snapshot["errors"]:
        console.print(f"error: {error}", style="red")

    queues = Table(title="Queues", title_justify="left")
    for column in ("queue", "pending", "resources"):
        queues.add_column(column, justify="right" if column == "pending" else "left")
    for row in snapshot["queues"]:
        queues.add_row(row["queue"], _n(row["pending"]), ", ".join(row["resources"]))
    console.print(queues)

    several = len(snapshot.get("providers") or ()) > 1
    resources = Table(title="Resources", title_justify="left")
    for column in (
        "resource",
        *(("provider",) if several else ()),
        "queue",
        "running",
        "booting",
        "idle",
        "busy",
        "max",
        "market",
    ):
        resources.add_column(
            column, justify="right" if column in ("running", "booting", "idle", "busy", "max") else "left"
        )
    for row in snapshot["resources"]:
        market = "-" if row["spot"] is None else ("spot" if row["spot"] else "on-demand")
        resources.add_row(
            row["name"] + ("" if row["configured"] else " (not configured)"),
            *((row.get("provider") or "-",) if several else ()),
            row["queue"] or "-",
            _n(row["running"]),
            _n(row["booting"]),
            _n(row["idle"]),
            _n(row["busy"]),
            _n(row["max"]) if row["max"] is not None else "-",
            market,
        )
    console.print(resources)

    instances = Table(title="Instances", title_justify="left")
    columns = ("instance", *(("provider",) if several else ()), "resource", "state", "age", "worker", "activity")
    for column in (*columns, "idle for", "market", "owner"):
        instances.add_column(column, justify="right" if column in ("age", "idle for") else "left")
    for row in snapshot["instances"]:
        activity = row["activity"]
        if row["task"]:
            activity = f"busy: {row['task_name'] or row['task']}"
        instances.add_row(
            row["id"],
            *((row.get("provider") or "-",) if several else ()),
            row["resource"],
            row["state"],
            human(row["age"]),
            row["worker"] or "-",
            activity,
            human(row["idle_for"]) if row["activity"] == "idle" else "-",
            "spot" if row["spot"] else "on-demand",
            row["owner"] if row["owner"] != "foreign" else f"foreign ({row['fleet']})",
        )
    if not snapshot["instances"]:
        instances.add_row("(none)" if snapshot["cloud_ok"] else "(unknown)", *([""] * (len(columns) + 2)))
    console.print(instances)

    actions = Table(title="Last actions", title_justify="left")
    actions.add_column("time")
    actions.add_column("action")
    for item in snapshot["actions"]:
        actions.add_row(_clock(float(item["at"]), now), str(item["action"]))
    if not snapshot["actions"]:
        actions.add_row("-", "none recorded" if scaler.get("found") else "no state file")
    console.print(actions)
