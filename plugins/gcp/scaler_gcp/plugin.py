"""Hook implementations of the ``gcp`` provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaler.errors import NotImplementedByProvider
from scaler.hookspecs import hookimpl
from scaler.schema import check_provider_sections, defaults
from scaler.types import Instance, Problem, RenderContext, ScriptPart
from scaler_gcp.schema import GCP_RESOURCE_SECTION, GCP_SECTION, VAULT_KEYS

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

NAME = "gcp"

# the instance's own name is its handle on GCP (worker id = <prefix>:<resource>:<name>)
INSTANCE_ID_SCRIPT = """\
export SCALER_INSTANCE_ID="$(curl -sS -H 'Metadata-Flavor: Google' \\
  http://metadata.google.internal/computeMetadata/v1/instance/name)\""""


@hookimpl
def scaler_validate_config(config: dict[str, Any], provider: str | None, providers: list[str]) -> list[Problem]:
    return check_provider_sections(config, NAME, provider, GCP_SECTION, GCP_RESOURCE_SECTION)


@hookimpl
def scaler_vault_keys(provider: str) -> dict[str, str]:
    return dict(VAULT_KEYS) if provider == NAME else {}


@hookimpl
def scaler_config_defaults() -> dict[str, Any]:
    return {NAME: defaults(GCP_SECTION)}


@hookimpl
def scaler_init_script_parts(config: Config, resource: Resource, provider: str,
                             context: RenderContext) -> list[ScriptPart]:
    if provider != NAME:
        return []
    return [ScriptPart(200, "instance identity (GCE metadata server)", INSTANCE_ID_SCRIPT)]


def _todo(hook: str) -> NotImplementedByProvider:
    return NotImplementedByProvider(f"the gcp provider's {hook} is not implemented yet")


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
