"""Hook implementations of the ``aws`` provider (entry point ``aws`` of group ``scaler``).

This module is imported by ``scaler providers`` and every ``--help``: boto3 is imported
only inside the hooks (through :mod:`scaler_aws.client`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaler.api import Instance, Problem, ResourceSettings, ScriptPart, Section, hookimpl
from scaler_aws.schema import SECTION

if TYPE_CHECKING:
    from scaler.api import Config, Resource

NAME = "aws"

# IMDSv2: a token first, then the instance id (works with HttpTokens=required). The endpoint
# variable is the one the AWS SDKs honour (IPv6-only subnets, tests).
INSTANCE_ID_SCRIPT = """\
imds="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
imds="${imds%/}"
imds_token="$(curl -fsS --retry 5 --retry-delay 2 -X PUT "${imds}/latest/api/token" \\
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
export SCALER_INSTANCE_ID="$(curl -fsS --retry 5 --retry-delay 2 -H "X-aws-ec2-metadata-token: ${imds_token}" \\
  "${imds}/latest/meta-data/instance-id")\""""


@hookimpl
def scaler_config_sections() -> list[Section]:
    return [SECTION]


@hookimpl
def scaler_validate_config(settings: dict[str, Any], resources: list[ResourceSettings], applies: bool) -> list[Problem]:
    from scaler_aws.checks import validate

    return validate(settings, resources, applies)


@hookimpl
def scaler_init_script_parts() -> list[ScriptPart]:
    return [ScriptPart(200, "instance identity (EC2 metadata, IMDSv2)", INSTANCE_ID_SCRIPT)]


@hookimpl
def scaler_launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    from scaler_aws.provider import launch

    return launch(config, resource, count, init_script, launch_token, spot)


@hookimpl
def scaler_list_instances(config: Config, include_foreign: bool) -> list[Instance]:
    from scaler_aws.provider import list_instances

    return list_instances(config, include_foreign)


@hookimpl
def scaler_describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    from scaler_aws.provider import describe_instances

    return describe_instances(config, instance_ids)


@hookimpl
def scaler_tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    from scaler_aws.provider import tag_instances

    return tag_instances(config, instance_ids, tags)


@hookimpl
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    from scaler_aws.provider import terminate

    return terminate(config, instance_ids)


@hookimpl
def scaler_console_output(config: Config, instance_id: str) -> str:
    from scaler_aws.provider import console_output

    return console_output(config, instance_id)


@hookimpl
def scaler_check_cloud(config: Config) -> list[Problem]:
    from scaler_aws.checks import check_cloud

    return check_cloud(config)
