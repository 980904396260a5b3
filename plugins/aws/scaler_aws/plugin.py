"""Hook implementations of the ``aws`` provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaler.errors import NotImplementedByProvider
from scaler.hookspecs import hookimpl
from scaler.schema import check_provider_sections
from scaler.types import Instance, Problem, RenderContext, ScriptPart
from scaler_aws.schema import AWS_RESOURCE_SECTION, AWS_SECTION, VAULT_KEYS

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

NAME = "aws"

# IMDSv2: a token first, then the instance id (works with HttpTokens=required)
INSTANCE_ID_SCRIPT = """\
imds_token="$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
export SCALER_INSTANCE_ID="$(curl -sS -H "X-aws-ec2-metadata-token: ${imds_token}" \\
  http://169.254.169.254/latest/meta-data/instance-id)\""""


@hookimpl
def scaler_validate_config(config: dict[str, Any], provider: str | None, providers: list[str]) -> list[Problem]:
    return check_provider_sections(config, NAME, provider, AWS_SECTION, AWS_RESOURCE_SECTION)


@hookimpl
def scaler_vault_keys(provider: str) -> dict[str, str]:
    return dict(VAULT_KEYS) if provider == NAME else {}


@hookimpl
def scaler_config_defaults() -> dict[str, Any]:
    from scaler.schema import defaults

    return {NAME: defaults(AWS_SECTION)}


@hookimpl
def scaler_init_script_parts(config: Config, resource: Resource, provider: str,
                             context: RenderContext) -> list[ScriptPart]:
    if provider != NAME:
        return []
    return [ScriptPart(200, "instance identity (EC2 metadata, IMDSv2)", INSTANCE_ID_SCRIPT)]


def _todo(hook: str) -> NotImplementedByProvider:
    return NotImplementedByProvider(f"the aws provider's {hook} is not implemented yet")


@hookimpl
def scaler_launch(config: Config, resource: Resource, count: int, init_script: str, launch_token: str,
                  spot: bool) -> list[Instance]:
    raise _todo("launch")


@hookimpl
def scaler_list_instances(config: Config) -> list[Instance]:
    raise _todo("list")


@hookimpl
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    raise _todo("terminate")


@hookimpl
def scaler_console_output(config: Config, instance_id: str) -> str:
    raise _todo("console output")
