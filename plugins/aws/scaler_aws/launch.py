"""Building the ``RunInstances`` request of one launch (pure: no I/O, no boto3)."""

from __future__ import annotations

import copy
import gzip
import hashlib
from collections.abc import Mapping
from typing import Any

from scaler.api import TAG_FLEET, TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, ProviderError
from scaler_aws.images import FALLBACK_DEVICE
from scaler_aws.schema import parse_tags

#: EC2 limits user data to 16 KB of raw data (before base64)
USER_DATA_LIMIT = 16 * 1024
#: EC2's longest ClientToken
CLIENT_TOKEN_MAX = 64
#: resource types tagged with the ownership tags at launch
TAGGED_TYPES = ("instance", "volume")
#: keys of RunInstances the scaler always sets itself (a custom_launch_spec value is overridden)
MANAGED_KEYS = (
    "ImageId",
    "InstanceType",
    "MinCount",
    "MaxCount",
    "ClientToken",
    "UserData",
    "InstanceInitiatedShutdownBehavior",
    "DryRun",
)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in recursively (mappings merge, everything else replaces)."""
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def encode_user_data(script: str) -> bytes:
    """The init script as EC2 user data: raw when it fits 16 KB, else gzip (cloud-init
    unpacks gzip user data by itself). Deterministic (gzip without a timestamp), so a
    retried launch sends identical parameters with its ClientToken."""
    raw = script.encode("utf-8")
    if len(raw) <= USER_DATA_LIMIT:
        return raw
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if len(packed) <= USER_DATA_LIMIT:
        return packed
    raise ProviderError(
        f"the init script is {len(raw)} bytes ({len(packed)} gzipped) but EC2 user data is limited to 16 KB: "
        "move large parts of scaler.init_script / the resource's init_script / the vault's extra_vm_bash_script "
        "into a file the script downloads (e.g. from S3)",
        code="UserDataTooLarge",
    )


def client_token(launch_token: str, attempt: int) -> str:
    """The ClientToken of the ``attempt``-th subnet tried for one launch decision.

    EC2 answers a repeated token with the first call's instances, but refuses the same token
    with different parameters (``IdempotentParameterMismatch``); another subnet is another
    parameter set, so each subnet attempt gets its own token: the launch token itself for the
    first subnet, ``<token>-s<n>`` for the n-th next one. A retry of the whole launch (next
    tick, after a timeout) walks the same sequence, so every attempt stays idempotent.
    """
    token = launch_token if attempt == 0 else f"{launch_token}-s{attempt}"
    if len(token) > CLIENT_TOKEN_MAX:
        token = hashlib.sha256(token.encode()).hexdigest()[:CLIENT_TOKEN_MAX]
    return token


def subnets_of(resource_settings: Mapping[str, Any]) -> list[str]:
    """Subnets to try in order (``subnet_ids``, then ``subnet_id``); ``[""]`` for none."""
    subnets = list(resource_settings.get("subnet_ids") or [])
    single = resource_settings.get("subnet_id") or ""
    if single and single not in subnets:
        subnets.append(single)
    return subnets or [""]


def instance_profile(settings: Mapping[str, Any], resource_settings: Mapping[str, Any]) -> str:
    return str(resource_settings.get("iam_instance_profile") or settings.get("iam_instance_profile") or "")


def _tags_of(spec: Mapping[str, Any], resource_type: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in spec.get("TagSpecifications") or []:
        if isinstance(item, Mapping) and item.get("ResourceType") == resource_type:
            for tag in item.get("Tags") or []:
                if isinstance(tag, Mapping) and "Key" in tag:
                    tags[str(tag["Key"])] = str(tag.get("Value", ""))
    return tags


def _tag_specifications(
    base: Mapping[str, Any], defaults: dict[str, str], user: dict[str, str], ownership: dict[str, str]
) -> list[dict[str, Any]]:
    types = list(TAGGED_TYPES)
    for item in base.get("TagSpecifications") or []:
        kind = item.get("ResourceType") if isinstance(item, Mapping) else None
        if kind and kind not in types:
            types.append(str(kind))
    specs = []
    for kind in types:
        # precedence, lowest first: default Name, custom_launch_spec, `tags`, ownership tags
        tags = {**defaults, **_tags_of(base, kind), **user, **ownership}
        specs.append({"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]})
    return specs


def _block_devices(base: Mapping[str, Any], ebs: Mapping[str, Any], root_device: str) -> list[dict[str, Any]]:
    volume: dict[str, Any] = {
        "VolumeSize": int(ebs["size_gb"]),
        "VolumeType": str(ebs["type"]),
        "DeleteOnTermination": True,
    }
    if ebs.get("iops"):
        volume["Iops"] = int(ebs["iops"])
    if ebs.get("throughput"):
        volume["Throughput"] = int(ebs["throughput"])
    if ebs.get("encrypted"):
        volume["Encrypted"] = True
    if ebs.get("snapshot_id"):
        volume["SnapshotId"] = str(ebs["snapshot_id"])
    # an explicit ebs.device is authoritative; else the AMI's root device as read at launch
    root = {"DeviceName": str(ebs.get("device") or root_device or FALLBACK_DEVICE), "Ebs": volume}
    mappings: list[dict[str, Any]] = []
    merged = False
    for item in base.get("BlockDeviceMappings") or []:
        if isinstance(item, Mapping) and item.get("DeviceName") == root["DeviceName"]:
            mappings.append(deep_merge(item, root))  # e.g. a KmsKeyId from custom_launch_spec stays
            merged = True
        else:
            mappings.append(copy.deepcopy(dict(item)) if isinstance(item, Mapping) else item)
    if not merged:
        mappings.insert(0, root)
    return mappings


def build_request(
    *,
    scaler_name: str,
    resource_name: str,
    settings: Mapping[str, Any],
    resource_settings: Mapping[str, Any],
    count: int,
    user_data: bytes | None,
    launch_token: str,
    token: str | None,
    spot: bool,
    subnet: str,
    fleet_id: str = "",
    root_device: str = "",
) -> dict[str, Any]:
    """The keyword arguments of ``ec2.run_instances`` for one launch into ``subnet``.

    ``root_device`` is the AMI's root device name (:func:`scaler_aws.images.root_device`), the
    device ``ebs`` sizes unless ``ebs.device`` names one (empty: ``/dev/sda1``).

    ``aws.custom_launch_spec`` deep-merged with the resource's ``custom_launch_spec`` is the
    base; every explicit setting wins over it; tags are merged (ownership tags always win).
    """
    r = resource_settings
    request = deep_merge(settings.get("custom_launch_spec") or {}, r.get("custom_launch_spec") or {})
    base = copy.deepcopy(request)

    request["ImageId"] = r["ami_id"]
    request["InstanceType"] = r["instance_type"]
    request["MinCount"] = 1  # partial capacity still launches some
    request["MaxCount"] = int(count)
    if token:
        request["ClientToken"] = token
    else:
        request.pop("ClientToken", None)
    if user_data is not None:
        request["UserData"] = user_data
    request["InstanceInitiatedShutdownBehavior"] = "terminate"

    ownership = {TAG_SCALER: scaler_name, TAG_RESOURCE: resource_name, TAG_LAUNCH_TOKEN: launch_token}
    if fleet_id:
        ownership[TAG_FLEET] = fleet_id  # the deployment: scaler name, ClearML server and workspace
    request["TagSpecifications"] = _tag_specifications(
        base, {"Name": f"{scaler_name}:{resource_name}"}, parse_tags(r.get("tags") or ""), ownership
    )
    request["BlockDeviceMappings"] = _block_devices(base, r["ebs"], root_device)

    request["MetadataOptions"] = deep_merge(
        base.get("MetadataOptions") or {},
        {
            "HttpTokens": "required" if settings.get("imdsv2_required", True) else "optional",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": int(settings.get("imds_hop_limit") or 2),
        },
    )

    profile = instance_profile(settings, r)
    if profile:
        request["IamInstanceProfile"] = {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
    if r.get("key_name"):
        request["KeyName"] = r["key_name"]
    if r.get("monitoring"):
        request["Monitoring"] = {"Enabled": True}

    groups = list(r.get("security_group_ids") or [])
    interfaces = request.get("NetworkInterfaces")
    if isinstance(interfaces, list) and interfaces and isinstance(interfaces[0], Mapping):
        # EC2 refuses SubnetId/SecurityGroupIds next to NetworkInterfaces: they go in the primary interface
        primary = dict(interfaces[0])
        primary.setdefault("DeviceIndex", 0)
        if subnet:
            primary["SubnetId"] = subnet
        if groups:
            primary["Groups"] = groups
        request["NetworkInterfaces"] = [primary, *interfaces[1:]]
    else:
        if subnet:
            request["SubnetId"] = subnet
        if groups:
            request["SecurityGroupIds"] = groups

    zone = r.get("availability_zone") or ""
    if zone and not subnet and not (isinstance(interfaces, list) and interfaces):
        # with a subnet the subnet decides the zone (a different zone would be refused)
        request["Placement"] = deep_merge(base.get("Placement") or {}, {"AvailabilityZone": zone})

    if spot:
        options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if r.get("spot_max_price"):
            options["MaxPrice"] = str(r["spot_max_price"])
        market = base.get("InstanceMarketOptions") or {}
        request["InstanceMarketOptions"] = deep_merge(market, {"MarketType": "spot", "SpotOptions": options})
    else:
        request.pop("InstanceMarketOptions", None)  # the policy chose on-demand
    return request
