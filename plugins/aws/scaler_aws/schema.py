"""The ``aws`` config sections (top level and per resource) and the vault key map."""

from __future__ import annotations

import re

from scaler.config.fields import Field
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER

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


AWS_SECTION = (
    Field(
        "region",
        "str",
        "AWS region of the fleet.",
        default="us-east-1",
        pattern=REGION,
        pattern_hint="a region like us-east-1",
    ),
    Field(
        "use_iam_role", "bool", "Use boto3's default credential chain (IAM role, profile, environment).", default=True
    ),
    Field("access_key_id", "secret", "AWS access key id (overrides the credential chain).", default=""),
    Field("secret_access_key", "secret", "AWS secret access key.", default=""),
    Field("session_token", "secret", "AWS session token for temporary credentials.", default=""),
    Field(
        "iam_instance_profile",
        "str",
        "Instance profile (name or ARN) the machines run with.",
        default="",
        check=check_profile,
    ),
    Field("custom_launch_spec", "dict", "Base of every RunInstances request (explicit settings win).", default={}),
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
        "Root device name of the AMI.",
        default="/dev/sda1",
        pattern=r"/dev/[a-z0-9]+",
        pattern_hint="a device like /dev/sda1 or /dev/xvda",
    ),
    Field("size_gb", "int", "Root volume size in GiB.", default=100, min=8, max=65536),
    Field(
        "type",
        "choice",
        "EBS volume type.",
        default="gp3",
        choices=("gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"),
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
    ),
    Field(
        "ami_id",
        "str",
        "AMI with docker and python3.",
        required=True,
        pattern=r"ami-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="ami- followed by 8 or 17 hex digits",
        example='ami_id = "ami-0abcdef1234567890"',
    ),
    Field(
        "availability_zone",
        "str",
        "Availability zone (empty: any, or the subnet's).",
        default="",
        pattern=REGION + r"[a-z]",
        pattern_hint="a zone like us-east-1b",
    ),
    Field("tags", "str", "Extra tags, 'k=v,k2=v2'.", default="", check=check_tags),
    Field("ebs", "section", "Root volume.", fields=EBS_SECTION),
    Field("key_name", "str", "EC2 key pair for SSH.", default=""),
    Field(
        "security_group_ids",
        "list",
        "Security group ids.",
        default=[],
        pattern=r"sg-([0-9a-f]{8}|[0-9a-f]{17})",
        pattern_hint="sg- followed by 8 or 17 hex digits",
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
    ),
    Field(
        "iam_instance_profile",
        "str",
        "Instance profile for this resource (overrides aws.iam_instance_profile).",
        default="",
        check=check_profile,
    ),
    Field("custom_launch_spec", "dict", "Merged over aws.custom_launch_spec for this resource.", default={}),
    Field(
        "spot_max_price",
        "str",
        "Maximum spot price in USD/hour (empty: on-demand price).",
        default="",
        pattern=r"\d+(\.\d+)?",
        pattern_hint="a price like 0.50",
    ),
)

#: ClearML vault / app key names → config paths
VAULT_KEYS = {
    "aws_region": "aws.region",
    "aws_access_key_id": "aws.access_key_id",
    "aws_secret_access_key": "aws.secret_access_key",
    "aws_session_token": "aws.session_token",
    "cloud_credentials_region": "aws.region",
    "cloud_credentials_key": "aws.access_key_id",
    "cloud_credentials_secret": "aws.secret_access_key",
    "cloud_credentials_token": "aws.session_token",
    "use_credentials_chain": "aws.use_iam_role",
    "use_iam_role": "aws.use_iam_role",
    "iam_instance_profile": "aws.iam_instance_profile",
    "iam_arn": "aws.iam_instance_profile",
    "iam_name": "aws.iam_instance_profile",
    "custom_launch_spec": "aws.custom_launch_spec",
}
