"""Core's own plugin: it validates the ``scaler`` and ``resources`` sections, maps the
provider-independent vault keys, and renders the base init script and clearml.conf —
through the same hooks a third-party plugin implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scaler.config.fields import check_section, defaults, format_duration, suggest, type_name
from scaler.config.sections import RESOURCE_FIELDS, SCALER_SECTION, TOP_LEVEL_KEYS
from scaler.engine.render import core_clearml_conf, core_script_parts
from scaler.hookspecs import hookimpl
from scaler.types import Problem, RenderContext, ScriptPart

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

#: ClearML autoscaler key names (as its apps and vaults spell them) → our config paths.
CORE_VAULT_KEYS = {
    "git_user": "scaler.git.user",
    "git_pass": "scaler.git.password",
    "default_docker_image": "scaler.default_docker_image",
    "max_idle_time_min": "scaler.max_idle_time",
    "polling_interval_time_min": "scaler.polling_interval",
    "max_spin_up_time_min": "scaler.stuck_timeout",
    "workers_prefix": "scaler.workers_prefix",
    "extra_trains_conf": "scaler.extra_clearml_conf",
}


@hookimpl(tryfirst=True)
def scaler_validate_config(config: dict[str, Any], provider: str | None, providers: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    if not isinstance(config, Mapping):
        return [Problem("", f"the configuration must be an object, got {type_name(config)}")]
    known_top = [*TOP_LEVEL_KEYS, *providers]
    for key in config:
        if key not in known_top:
            problems.append(Problem(key, f"unknown key '{key}'{suggest(key, known_top)}"))
    if provider and provider not in providers:
        problems.append(Problem("", f"unknown provider '{provider}'; installed providers: {', '.join(providers)}"))

    scaler = check_section(_mapping(config, "scaler", problems), SCALER_SECTION, "scaler")
    problems += scaler.problems
    settings = scaler.values
    if "polling_interval" in settings and "max_idle_time" in settings:
        if 0 < settings["max_idle_time"] < settings["polling_interval"]:
            problems.append(
                Problem(
                    "scaler.max_idle_time",
                    f"{format_duration(settings['max_idle_time'])} is shorter than polling_interval "
                    f"({format_duration(settings['polling_interval'])}); idle machines are only checked once a tick",
                    severity="warning",
                )
            )

    resources = config.get("resources")
    if resources is None:
        problems.append(
            Problem("resources", "is required: a list of { name, queue, max_instances, <provider> { ... } }")
        )
        return problems
    if not isinstance(resources, list):
        problems.append(Problem("resources", f"must be a list of resource objects, got {type_name(resources)}"))
        return problems
    if not resources:
        problems.append(Problem("resources", "must list at least one resource"))
    seen: dict[str, int] = {}
    for index, item in enumerate(resources):
        where = f"resources[{index}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"must be an object, got {type_name(item)}"))
            continue
        checked = check_section(item, RESOURCE_FIELDS, where, allow_unknown=providers)
        problems += checked.problems
        name = checked.values.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    Problem(f"{where}.name", f"duplicate resource name '{name}' (also resources[{seen[name]}])")
                )
            else:
                seen[name] = index
        values = checked.values
        if values.get("spot") is False and (
            "spot_blackout_period" in item or "regular_instance_rollback_timeout" in item
        ):
            problems.append(
                Problem(where, "spot rollback settings have no effect when spot = false", severity="warning")
            )
    return problems


def _mapping(config: Mapping[str, Any], key: str, problems: list[Problem]) -> Mapping[str, Any] | None:
    value = config.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    problems.append(Problem(key, f"must be an object ({{ key = value }}), got {type_name(value)}"))
    return None


@hookimpl
def scaler_config_defaults() -> dict[str, Any]:
    return {"scaler": defaults(SCALER_SECTION), "resources": [defaults(RESOURCE_FIELDS)]}


@hookimpl
def scaler_vault_keys(provider: str) -> dict[str, str]:
    return dict(CORE_VAULT_KEYS)


@hookimpl(tryfirst=True)
def scaler_init_script_parts(
    config: Config, resource: Resource, provider: str, context: RenderContext
) -> list[ScriptPart]:
    return core_script_parts(config, resource, context)


@hookimpl(tryfirst=True)
def scaler_clearml_conf_parts(config: Config, resource: Resource, provider: str, context: RenderContext) -> list[str]:
    return core_clearml_conf(config, resource, context)
