"""Hook implementations of the ``gcp`` provider (Google Compute Engine).

The work is done in :mod:`scaler_gcp.provider`; Google libraries load on the first provider
call, never at import (``scaler --help`` and ``scaler providers`` import this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scaler.api import Instance, Problem, ResourceSettings, ScriptPart, Section, hookimpl
from scaler_gcp import provider as gce
from scaler_gcp.schema import SECTION

if TYPE_CHECKING:
    from scaler.api import Config, Resource

NAME = "gcp"

# The instance's own name is its handle on GCP (worker id = <prefix>:<resource>:<name>). An error
# answer (-f) or one that is not an instance name leaves the id empty, with the reason on stderr:
# core's worker-identity part then shuts the machine down. GCE_METADATA_HOST is Google's own
# override of the metadata server's address.
INSTANCE_ID_SCRIPT = """\
gce_metadata="http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance/name"
if ! SCALER_INSTANCE_ID="$(curl -fsS --retry 4 --retry-delay 1 --retry-connrefused --connect-timeout 5 \\
  -H 'Metadata-Flavor: Google' "$gce_metadata")"; then
  echo "clearml-scaler: cannot read this machine's name from the GCE metadata server at $gce_metadata" >&2
  SCALER_INSTANCE_ID=""
elif ! [[ "$SCALER_INSTANCE_ID" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]]; then
  echo "clearml-scaler: the GCE metadata server at $gce_metadata answered something that is not an instance name" >&2
  SCALER_INSTANCE_ID=""
fi
export SCALER_INSTANCE_ID"""


@hookimpl
def scaler_config_sections() -> list[Section]:
    return [SECTION]


@hookimpl
def scaler_validate_config(settings: dict[str, Any], resources: list[ResourceSettings]) -> list[Problem]:
    problems: list[Problem] = []
    if settings.get("credentials_file") and settings.get("credentials_json"):
        problems.append(
            Problem(
                "gcp.credentials_json", "set either credentials_file or credentials_json (the key's content), not both"
            )
        )
    for resource in resources:
        problems += _cross_checks(resource.settings, resource.common, resource.path)
    return problems


def _cross_checks(values: Mapping[str, Any], common: Mapping[str, Any], where: str) -> list[Problem]:
    """Rules between keys that the per-key declaration cannot express."""
    problems = []
    kind, count = values.get("accelerator_type"), values.get("accelerator_count")
    if kind and count == 0:
        problems.append(
            Problem(f"{where}.accelerator_count", f"must be ≥ 1 when accelerator_type is set (got 0 for {kind!r})")
        )
    if count and not kind:
        problems.append(
            Problem(
                f"{where}.accelerator_type",
                f'is required when accelerator_count is {count} (e.g. accelerator_type = "nvidia-l4")',
            )
        )
    if values.get("spot") is True and common.get("spot") is not True:
        problems.append(
            Problem(
                f"{where}.spot",
                "has no effect unless the resource's own `spot = true` "
                "(the scaler decides when to use spot and when to fall back)",
                "warning",
            )
        )
    return problems


@hookimpl
def scaler_init_script_parts() -> list[ScriptPart]:
    return [ScriptPart(200, "instance identity (GCE metadata server)", INSTANCE_ID_SCRIPT)]


@hookimpl
def scaler_launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    return gce.launch(config, resource, count, init_script, launch_token, spot)


@hookimpl
def scaler_list_instances(config: Config, include_foreign: bool) -> list[Instance]:
    return gce.list_instances(config, include_foreign)


@hookimpl
def scaler_describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    return gce.describe_instances(config, instance_ids)


@hookimpl
def scaler_tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    return gce.tag_instances(config, instance_ids, tags)


@hookimpl
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    return gce.terminate(config, instance_ids)


@hookimpl
def scaler_console_output(config: Config, instance_id: str) -> str:
    return gce.console_output(config, instance_id)


@hookimpl
def scaler_check_cloud(config: Config) -> list[Problem]:
    return gce.check_cloud(config)
