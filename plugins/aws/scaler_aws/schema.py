"""The ``aws`` configuration section (top level and per resource), declared to core through
``scaler_config_sections``: types, defaults, docs, secrets and their environment variables,
the ClearML vault keys and the ``scaler init`` questions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scaler.api import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, Ask, Field, Section

REGION = r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+"
TAG_PAIR = re.compile(r"^[^=,]+=[^,]*$")
#: tag keys the scaler itself writes; a user tag may not replace them (ownership depends on them)
RESERVED_TAGS = (TAG_SCALER, TAG_RESOURCE, TAG_LAUNCH_TOKEN)


def parse_tags(value: str) -> dict[str, str]:
    """``{"team": "ml", "env": "prod"}`` from ``"team=ml,env=prod"`` (empty items skipped)."""
    tags: dict[str, str] = {}
    for pair in value.split(","):
        if "=" in pair:
            key, _, val = pair.partition("=")
            if key.strip():
                tags[key.strip()] = val.strip()
    return tags


def check_tags(value: str) -> str | None:
    """``k=v,k2=v2`` as the ClearML app spells resource tags."""
    if not value.strip():
        return None
    for index, pair in enumerate(value.split(",")):
        if not TAG_PAIR.match(pair.strip()):
            return (
                f"must be comma-separated key=value pairs like 'team=ml,env=prod'; item {index + 1} is {pair.strip()!r}"
            )
        key = pair.split("=", 1)[0].strip()
        if key.lower().startswith("aws:"):
            return f"tag key {key!r} uses the reserved 'aws:' prefix"
        if key in RESERVED_TAGS:
            return f"tag key {key!r} is written by the scaler itself (it marks the instances it owns)"
    return None


def check_profile(value: str) -> str | None:
    if value and not (
        re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+", value)
        or re.fullmatch(r"[\w+=,.@-]{1,128}", value)
    ):
        return "must be an instance profile name or its ARN (arn:aws:iam::<account>:instance-profile/<name>)"
    return None


def _with_keys(answers: Mapping[str, Any]) -> bool:
    return answers.get("use_iam_role") is False


AWS_SECTION = (
    Field(
        "region",
        "str",
        "AWS region of the fleet.",
        default="us-east-1",
        pattern=REGION,
        pattern_hint="a region like us-east-1",
        vault=("aws_region", "cloud_credentials_region"),
        ask="AWS region",
    ),
    Field(
        "use_iam_role",
        "bool",
        "Use boto3's default credential chain (IAM role, profile, environment).",
        default=True,
        vault=("use_iam_role", "use_credentials_chain"),
        ask="Use the default AWS credential chain (IAM role, profile, environment)?",
    ),
    Field(
        "access_key_id",
        "secret",
        "AWS access key id (overrides the credential chain).",
        default="",
        env="AWS_ACCESS_KEY_ID",
        vault=("aws_access_key_id", "aws_credentials_key_id", "cloud_credentials_key"),
        ask=Ask("AWS access key id (hidden)", when=_with_keys),
    ),
    Field(
        "secret_access_key",
        "secret",
        "AWS secret access key.",
        default="",
        env="AWS_SECRET_ACCESS_KEY",
        vault=("aws_secret_access_key", "cloud_credentials_secret"),
        ask=Ask("AWS secret access key (hidden)", when=_with_keys),
    ),
    Field(
        "session_token",
        "secret",
        "AWS session token for temporary credentials.",
        default="",
        env="AWS_SESSION_TOKEN",
        vault=("aws_session_token", "cloud_credentials_token"),
    ),
    Field(
        "iam_instance_profile",
        "str",
        "Instance profile (name or ARN) the machines run with.",
        default="",
        check=check_profile,
        vault=("iam_instance_profile", "iam_arn", "iam_name"),
        ask="Instance profile the machines run with (name or ARN; empty: none)",
    ),
    Field(
        "custom_launch_spec",
        "dict",
        "Base of every RunInstances request (explicit settings win).",
        default={},
        vault=("custom_launch_spec",),
    ),
    Field(
        "endpoint_url",
        "str",
        "EC2 endpoint override (private endpoints, emulators).",
        default="",
        pattern=r"https?://\S+",
        pattern_hint="http(s)://host[:port]",
    ),
    Field("imdsv2_required", "bool", "Require IMDSv2 tokens on the machines (HttpTokens=required).", default=True),
    Field(
        "imds_hop_limit",
        "int",
        "IMDS PUT response hop limit (2 lets task containers reach the instance role).",
        default=2,
        min=1,
        max=64,
    ),
    Field(
        "request_timeout",
        "duration",
        "Read timeout of one EC2 API call, e.g. 20s (retries come on top).",
        default=20.0,
        min=1,
    ),
    Field(
        "max_attempts",
        "int",
        "Attempts per EC2 API call, first one included (botocore standard retries).",
        default=3,
        min=1,
        max=10,
    ),
)

EBS_SECTION = (
    Field(
        "device",
        "str",
        "Device name of the volume `ebs` sizes: the AMI's root device. Empty: read from the AMI "
        "(DescribeImages, once per AMI), so the root volume is the one sized (`/dev/sda1` on Ubuntu, "
        "`/dev/xvda` on Amazon Linux); when it cannot be read, `/dev/sda1` with a warning. Set it and it "
        "is used as written.",
        default="",
        pattern=r"/dev/[a-z0-9]+",
        pattern_hint="a device like /dev/sda1 or /dev/xvda",
        clearml=("ebs_device_name",),
    ),
    Field(
        "size_gb",
        "int",
        "Root volume size in GiB.",
        default=100,
        min=8,
        max=65536,
        clearml=("ebs_volume_size",),
        ask=Ask("Root volume size (GiB)", key="disk"),
    ),
    Field(
        "type",
        "choice",
        "EBS volume type.",
        default="gp3",
        choices=("gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"),
        clearml=("ebs_volume_type",),
    ),
    Field(
        "snapshot_id",
        "str",
        "EBS snapshot the root volume is created from (empty: the AMI's); `size_gb` must be at least its size.",
        default="",
        pattern=r"snap-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="snap- followed by 8 or 17 hex digits",
        clearml=("ebs_snapshot_id",),
    ),
    Field("iops", "int", "Provisioned IOPS (gp3, io1, io2).", default=0, min=0),
    Field("throughput", "int", "Throughput in MiB/s (gp3).", default=0, min=0),
    Field("encrypted", "bool", "Encrypt the root volume.", default=False),
)

AWS_RESOURCE_SECTION = (
    Field(
        "instance_type",
        "str",
        "EC2 instance type.",
        required=True,
        pattern=r"[a-z][a-z0-9-]*\.[a-z0-9-]+",
        pattern_hint="an instance type like g5.xlarge",
        example='instance_type = "g5.xlarge"',
        clearml=("instance_type",),
        ask=Ask("EC2 instance type (e.g. g5.xlarge)", key="instance_type"),
    ),
    Field(
        "ami_id",
        "str",
        "AMI with docker and python3.",
        required=True,
        pattern=r"ami-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="ami- followed by 8 or 17 hex digits",
        example='ami_id = "ami-0abcdef1234567890"',
        clearml=("ami_id",),
        ask=Ask("AMI id (with docker and python3)", key="image"),
    ),
    Field(
        "availability_zone",
        "str",
        "Availability zone (empty: any, or the subnet's).",
        default="",
        pattern=REGION + r"[a-z]",
        pattern_hint="a zone like us-east-1b",
        clearml=("availability_zone",),
        ask=Ask("Availability zone (empty: any)", key="zone"),
    ),
    Field("tags", "str", "Extra tags, 'k=v,k2=v2'.", default="", check=check_tags, clearml=("tags",)),
    Field("ebs", "section", "Root volume.", fields=EBS_SECTION),
    Field("key_name", "str", "EC2 key pair for SSH.", default="", clearml=("key_name",)),
    Field(
        "security_group_ids",
        "list",
        "Security group ids.",
        default=[],
        pattern=r"sg-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="sg- followed by 8 or 17 hex digits",
        clearml=("security_group_ids",),
    ),
    Field(
        "subnet_ids",
        "list",
        "Subnets tried in order (next on capacity or full subnet).",
        default=[],
        pattern=r"subnet-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="subnet- followed by 8 or 17 hex digits",
    ),
    Field(
        "subnet_id",
        "str",
        "A single subnet (same as subnet_ids = [id]).",
        default="",
        pattern=r"subnet-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="subnet- followed by 8 or 17 hex digits",
        clearml=("subnet_id",),
    ),
    Field(
        "iam_instance_profile",
        "str",
        "Instance profile for this resource (overrides aws.iam_instance_profile).",
        default="",
        check=check_profile,
    ),
    Field(
        "custom_launch_spec",
        "dict",
        "Merged over aws.custom_launch_spec for this resource.",
        default={},
        clearml=("extra_configurations",),
    ),
    Field(
        "monitoring",
        "bool",
        "Detailed CloudWatch monitoring of the instances (RunInstances `Monitoring`).",
        default=False,
        clearml=("enable_monitoring",),
    ),
    Field(
        "spot_max_price",
        "str",
        "Maximum spot price in USD/hour (empty: on-demand price).",
        default="",
        pattern=r"\d+(\.\d+)?",
        pattern_hint="a price like 0.50",
    ),
)

SECTION = Section(
    "aws",
    "AWS settings of the fleet (credentials come from the default chain unless set here).",
    fields=AWS_SECTION,
    resource_fields=AWS_RESOURCE_SECTION,
)
