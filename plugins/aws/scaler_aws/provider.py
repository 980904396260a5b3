"""The ``aws`` provider's operations: launch, list, terminate, console output.

Every EC2 call goes through :func:`scaler_aws.client.ec2_client` (bounded timeouts, botocore
standard retries) and every failure leaves as one of the scaler's typed errors.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scaler.api import (
    TAG_FLEET,
    TAG_LAUNCH_TOKEN,
    TAG_RESOURCE,
    TAG_SCALER,
    CapacityError,
    Instance,
    InstanceState,
    ProviderError,
)
from scaler_aws.client import NEXT_SUBNET_CODES, credential_source, ec2_client, error_code, log, map_error
from scaler_aws.images import root_device
from scaler_aws.launch import build_request, client_token, encode_user_data, instance_profile, subnets_of

if TYPE_CHECKING:
    from scaler.api import Config, Resource

#: EC2 states listed (terminated ones are gone for the scaler)
LISTED_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
STATES = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "shutting-down": InstanceState.STOPPING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,  # the policy terminates it: its EBS volumes bill
    "terminated": InstanceState.TERMINATED,
}
TERMINATE_BATCH = 1000  # EC2's limit of ids per TerminateInstances
LIST_PAGE = 1000  # DescribeInstances MaxResults
NOT_FOUND_CODES = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")
LATEST_UNSUPPORTED = (
    "UnsupportedOperation",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "UnsupportedInstanceType",
)


# -- settings ------------------------------------------------------------------------------------


def aws_settings(config: Config) -> dict[str, Any]:
    """The normalised top-level ``aws`` section (core applied the defaults of
    :data:`scaler_aws.schema.SECTION`, durations in seconds, secrets wrapped)."""
    return config.provider_settings


def resource_settings(resource: Resource) -> dict[str, Any]:
    """The normalised ``aws`` section of one resource."""
    return resource.provider


def needs_for_launch(settings: Mapping[str, Any], r: Mapping[str, Any]) -> list[str]:
    """IAM actions a RunInstances call depends on besides ec2:RunInstances."""
    needs = ["ec2:CreateTags (tags at launch)"]
    profile = instance_profile(settings, r)
    if profile:
        needs.append(f"iam:PassRole on the role of instance profile '{profile}'")
    return needs


# -- instances -----------------------------------------------------------------------------------


def tags_of(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value", "")) for t in raw.get("Tags") or [] if isinstance(t, Mapping)}


def to_instance(raw: Mapping[str, Any], resource: str = "") -> Instance:
    tags = tags_of(raw)
    state_name = str((raw.get("State") or {}).get("Name") or "pending")
    launched: Any = raw.get("LaunchTime")
    launched_at = float(launched.timestamp()) if hasattr(launched, "timestamp") else time.time()
    return Instance(
        id=str(raw["InstanceId"]),
        resource=tags.get(TAG_RESOURCE, resource),
        state=STATES.get(state_name, InstanceState.PENDING),
        launched_at=launched_at,
        launch_token=tags.get(TAG_LAUNCH_TOKEN, ""),
        spot=raw.get("InstanceLifecycle") == "spot",
        zone=str((raw.get("Placement") or {}).get("AvailabilityZone") or ""),
        instance_type=str(raw.get("InstanceType") or ""),
        fleet=tags.get(TAG_FLEET, ""),
    )


# -- launch --------------------------------------------------------------------------------------


def launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    """One RunInstances per subnet tried (in order), MinCount=1/MaxCount=count. Never waits."""
    if count <= 0:
        return []
    settings = aws_settings(config)
    r = resource_settings(resource)
    client = ec2_client(settings)
    user_data = encode_user_data(init_script)
    market = "spot" if spot else "on-demand"
    failures: list[str] = []
    subnets = subnets_of(r)
    # the volume ebs sizes: ebs.device as written, else the AMI's root device (asked once per AMI)
    root = "" if r["ebs"].get("device") else root_device(client, settings, str(r["ami_id"]))
    last: CapacityError | None = None
    for attempt, subnet in enumerate(subnets):
        request = build_request(
            scaler_name=config.scaler.name,
            resource_name=resource.name,
            settings=settings,
            resource_settings=r,
            count=count,
            user_data=user_data,
            launch_token=launch_token,
            token=client_token(launch_token, attempt),
            spot=spot,
            subnet=subnet,
            fleet_id=config.fleet_id,
            root_device=root,
        )
        where = f"resource '{resource.name}', {count} x {r['instance_type']} {market}" + (
            f", subnet {subnet}" if subnet else (f", zone {r['availability_zone']}" if r["availability_zone"] else "")
        )
        try:
            response = client.run_instances(**request)
        except Exception as exc:  # mapped to the typed errors below
            error = map_error(
                exc,
                "RunInstances",
                context=where,
                needs=needs_for_launch(settings, r),
                credentials=credential_source(settings),
            )
            if isinstance(error, CapacityError):
                failures.append(f"{subnet or 'default subnet'}: {error.code}")
                last = error
                if error.code in NEXT_SUBNET_CODES and attempt + 1 < len(subnets):
                    log.info("no capacity in %s for %s (%s); trying the next subnet", subnet, resource.name, error.code)
                    continue
                if len(failures) > 1:
                    raise CapacityError(
                        f"no {market} capacity for resource '{resource.name}' ({r['instance_type']}) in any of "
                        f"{len(failures)} subnets tried: {'; '.join(failures)}. Last error: {error}",
                        code=error.code,
                    ) from exc
            raise error from exc
        instances = [to_instance(item, resource.name) for item in response.get("Instances") or []]
        log.info(
            "launched %d/%d %s x %s for resource '%s'%s: %s",
            len(instances),
            count,
            market,
            r["instance_type"],
            resource.name,
            f" in {subnet}" if subnet else "",
            ", ".join(i.id for i in instances),
        )
        return instances
    assert last is not None  # pragma: no cover - the loop either returns or raises
    raise last


# -- list ----------------------------------------------------------------------------------------


def list_instances(config: Config, include_foreign: bool = False) -> list[Instance]:
    """Every pending/running/stopping instance tagged with this scaler's name and this fleet's
    identity or none (legacy), all pages; with ``include_foreign``, other identities too."""
    settings = aws_settings(config)
    client = ec2_client(settings)
    filters = [
        {"Name": f"tag:{TAG_SCALER}", "Values": [config.scaler.name]},
        {"Name": "instance-state-name", "Values": list(LISTED_STATES)},
    ]
    found: dict[str, Instance] = {}
    try:
        pages = client.get_paginator("describe_instances").paginate(
            Filters=filters, PaginationConfig={"PageSize": LIST_PAGE}
        )
        for page in pages:
            for reservation in page.get("Reservations") or []:
                for raw in reservation.get("Instances") or []:
                    # belt and braces: ownership is the tags (name, and identity unless legacy)
                    if not config.listed(tags_of(raw), include_foreign):
                        continue
                    instance = to_instance(raw)
                    found[instance.id] = instance
    except Exception as exc:  # mapped to the typed errors
        raise map_error(exc, "DescribeInstances", credentials=credential_source(settings)) from exc
    return list(found.values())


# -- describe (scaler adopt) ---------------------------------------------------------------------

#: EC2's limit of values per DescribeInstances filter
DESCRIBE_BATCH = 200
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


def describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    """The instances with these ids in the configured region, any tags, any state (a filter on
    ``instance-id``, so an id EC2 does not know there is left out instead of failing the call)."""
    settings = aws_settings(config)
    client = ec2_client(settings)
    ids = [i for i in dict.fromkeys(str(i) for i in instance_ids) if _INSTANCE_ID.fullmatch(i)]
    found: dict[str, Instance] = {}
    try:
        for start in range(0, len(ids), DESCRIBE_BATCH):
            batch = ids[start : start + DESCRIBE_BATCH]
            pages = client.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": batch}], PaginationConfig={"PageSize": LIST_PAGE}
            )
            for page in pages:
                for reservation in page.get("Reservations") or []:
                    for raw in reservation.get("Instances") or []:
                        instance = to_instance(raw)
                        found[instance.id] = instance
    except Exception as exc:  # mapped to the typed errors
        raise map_error(exc, "DescribeInstances", credentials=credential_source(settings)) from exc
    return list(found.values())


# -- tag -----------------------------------------------------------------------------------------


def tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    """CreateTags in batches (it adds or overwrites, keeping the other tags); ids EC2 does not
    know are skipped (the machine is gone)."""
    settings = aws_settings(config)
    client = ec2_client(settings)
    ids = list(dict.fromkeys(str(i) for i in instance_ids if i))
    pairs = [{"Key": key, "Value": value} for key, value in tags.items()]
    for start in range(0, len(ids), TERMINATE_BATCH):
        remaining = ids[start : start + TERMINATE_BATCH]
        while remaining:
            try:
                client.create_tags(Resources=remaining, Tags=pairs)
                log.info("tagged %d instance(s) with %s: %s", len(remaining), tags, ", ".join(remaining))
                break
            except Exception as exc:  # mapped to the typed errors
                if error_code(exc) not in NOT_FOUND_CODES:
                    raise map_error(
                        exc,
                        "CreateTags",
                        context=f"{len(remaining)} instance(s)",
                        credentials=credential_source(settings),
                    ) from exc
                message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
                gone = _named(remaining, message) or remaining[:1]
                log.info("already gone, not tagging: %s", ", ".join(gone))
                remaining = [i for i in remaining if i not in gone]
    return True


# -- terminate -----------------------------------------------------------------------------------


def _named(ids: list[str], message: str) -> list[str]:
    return [i for i in ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", message)]


def terminate(config: Config, instance_ids: list[str]) -> bool:
    """TerminateInstances in batches of ≤ 1000; ids EC2 does not know are skipped (already gone)."""
    settings = aws_settings(config)
    client = ec2_client(settings)
    ids = list(dict.fromkeys(str(i) for i in instance_ids if i))
    for start in range(0, len(ids), TERMINATE_BATCH):
        _terminate_batch(client, settings, ids[start : start + TERMINATE_BATCH])
    return True


def _terminate_batch(client: Any, settings: Mapping[str, Any], batch: list[str]) -> None:
    remaining = list(batch)
    while remaining:
        try:
            client.terminate_instances(InstanceIds=remaining)
            log.info("terminating %d instance(s): %s", len(remaining), ", ".join(remaining))
            return
        except Exception as exc:  # mapped to the typed errors
            code = error_code(exc)
            if code not in NOT_FOUND_CODES:
                raise map_error(
                    exc,
                    "TerminateInstances",
                    context=f"{len(remaining)} instance(s)",
                    credentials=credential_source(settings),
                ) from exc
            message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
            gone = _named(remaining, message)
            if not gone:
                if len(remaining) == 1:
                    gone = remaining
                else:  # EC2 did not say which: one at a time
                    for instance_id in remaining:
                        _terminate_batch(client, settings, [instance_id])
                    return
            log.info("already gone (%s), not terminating: %s", code, ", ".join(gone))
            remaining = [i for i in remaining if i not in gone]


# -- console output ------------------------------------------------------------------------------


def decode_console(output: str | bytes | None) -> str:
    """EC2 sends the console base64-encoded; some clients/emulators decode it already."""
    if not output:
        return ""
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    try:
        raw = base64.b64decode(output, validate=True)
    except (binascii.Error, ValueError):
        return output  # already text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def console_output(config: Config, instance_id: str) -> str:
    """The latest console output (``Latest=True`` where supported); empty while there is none."""
    settings = aws_settings(config)
    client = ec2_client(settings)
    try:
        try:
            response = client.get_console_output(InstanceId=instance_id, Latest=True)
        except Exception as exc:  # only the "Latest unsupported" case is handled here
            if error_code(exc) not in LATEST_UNSUPPORTED:
                raise
            response = client.get_console_output(InstanceId=instance_id)
    except Exception as exc:  # mapped to the typed errors
        if error_code(exc) in NOT_FOUND_CODES:
            raise ProviderError(
                f"instance {instance_id} does not exist in {settings['region']} (or was terminated long ago)",
                code=error_code(exc),
            ) from exc
        raise map_error(exc, "GetConsoleOutput", context=instance_id, credentials=credential_source(settings)) from exc
    return decode_console(response.get("Output"))
