"""A complete clearml-scaler provider in one module: a "cloud" kept in a JSON file.

Its machines never boot (there is no cloud), but everything the scaler needs from a
provider is here: launch with tags and an idempotency token, list by tag, terminate
idempotently, console output, config validation and the instance-id init-script part.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from scaler.config.fields import Field, check_provider_sections, check_section
from scaler.hookspecs import (
    CapacityError,
    Instance,
    InstanceState,
    Problem,
    ScriptPart,
    hookimpl,
)
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER

NAME = "toycloud"
SECTION = (Field("state_file", "str", "Where the toy cloud keeps its machines.", required=True),)
RESOURCE_SECTION = (Field("size", "choice", "Machine size.", default="small", choices=("small", "large")),)


def _load(config: Any) -> tuple[Path, dict[str, Any]]:
    settings = check_section(config.provider_settings, SECTION, NAME).values
    path = Path(settings["state_file"])
    return path, (json.loads(path.read_text()) if path.exists() else {"machines": {}, "tokens": {}})


def _instance(machine: dict[str, Any]) -> Instance:
    return Instance(
        id=machine["id"],
        resource=machine["tags"][TAG_RESOURCE],
        state=InstanceState(machine["state"]),
        launched_at=machine["launched_at"],
        launch_token=machine["tags"][TAG_LAUNCH_TOKEN],
    )


@hookimpl
def scaler_launch(config, resource, count, init_script, launch_token, spot):  # type: ignore[no-untyped-def]
    path, cloud = _load(config)
    if launch_token in cloud["tokens"]:  # a retried call: answer with the first call's machines
        return [_instance(cloud["machines"][i]) for i in cloud["tokens"][launch_token]]
    if spot:
        raise CapacityError("the toy cloud has no spot market", code="NoSpot")
    created = []
    for _ in range(count):
        machine_id = f"toy-{uuid.uuid4().hex[:8]}"
        tags = {TAG_SCALER: config.scaler.name, TAG_RESOURCE: resource.name, TAG_LAUNCH_TOKEN: launch_token}
        cloud["machines"][machine_id] = {
            "id": machine_id,
            "state": "pending",
            "launched_at": time.time(),
            "tags": tags,
            "user_data": init_script,
        }
        created.append(machine_id)
    cloud["tokens"][launch_token] = created
    path.write_text(json.dumps(cloud))
    return [_instance(cloud["machines"][i]) for i in created]


@hookimpl
def scaler_list_instances(config):  # type: ignore[no-untyped-def]
    _, cloud = _load(config)
    return [
        _instance(m)
        for m in cloud["machines"].values()
        if m["tags"][TAG_SCALER] == config.scaler.name and m["state"] != "terminated"
    ]


@hookimpl
def scaler_terminate(config, instance_ids):  # type: ignore[no-untyped-def]
    path, cloud = _load(config)
    for machine_id in instance_ids:
        if machine_id in cloud["machines"]:  # already gone is success
            cloud["machines"][machine_id]["state"] = "terminated"
    path.write_text(json.dumps(cloud))
    return True


@hookimpl
def scaler_console_output(config, instance_id):  # type: ignore[no-untyped-def]
    return f"toycloud: {instance_id} has no console\n"


@hookimpl
def scaler_validate_config(config, provider, providers):  # type: ignore[no-untyped-def]
    return check_provider_sections(config, NAME, provider, SECTION, RESOURCE_SECTION, resource_required=False)


@hookimpl
def scaler_init_script_parts(config, resource, provider, context):  # type: ignore[no-untyped-def]
    if provider != NAME:
        return []
    return [ScriptPart(200, "instance identity (toycloud)", 'export SCALER_INSTANCE_ID="$(hostname)"')]


@hookimpl
def scaler_check_cloud(config) -> list[Problem]:  # type: ignore[no-untyped-def]
    path, _ = _load(config)
    return [] if path.parent.exists() else [Problem("toycloud.state_file", f"folder {path.parent} does not exist")]
