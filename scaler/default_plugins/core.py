"""Core's own plugin: it declares the ``scaler`` and ``resources`` sections (with their vault
keys, secrets' environment variables and ``scaler init`` questions), checks what their
declaration cannot express, and renders the base init script and clearml.conf — through the
same hooks a third-party plugin implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaler.config.fields import ResourceSettings, Section, format_duration
from scaler.config.sections import CORE_SECTIONS, RESOURCES, SCALER
from scaler.engine.render import core_clearml_conf, core_script_parts
from scaler.hookspecs import hookimpl
from scaler.types import Problem, RenderContext, ScriptPart

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource


@hookimpl(tryfirst=True)
def scaler_config_sections() -> list[Section]:
    return list(CORE_SECTIONS)


@hookimpl
def scaler_validate_config(section: str, settings: dict[str, Any], resources: list[ResourceSettings]) -> list[Problem]:
    if section == SCALER.name:
        return _check_fleet(settings)
    if section == RESOURCES.name:
        return _check_resources(resources)
    return []


def _check_fleet(settings: dict[str, Any]) -> list[Problem]:
    problems = []
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
    floor, ceiling = settings.get("min_idle_time"), settings.get("max_idle_time")
    if isinstance(floor, int | float) and isinstance(ceiling, int | float) and floor > ceiling:
        problems.append(
            Problem(
                "scaler.min_idle_time",
                f"{format_duration(floor)} is longer than max_idle_time ({format_duration(ceiling)}), the most a "
                "machine may stay idle: machines go after max_idle_time; lower min_idle_time or raise max_idle_time",
                severity="warning",
            )
        )
    return problems


def _check_resources(resources: list[ResourceSettings]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for resource in resources:
        name = resource.settings.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    Problem(f"{resource.path}.name", f"duplicate resource name '{name}' (also resources[{seen[name]}])")
                )
            else:
                seen[name] = resource.index
        if resource.settings.get("spot") is False and (
            {"spot_blackout_period", "regular_instance_rollback_timeout"} & resource.written
        ):
            problems.append(
                Problem(resource.path, "spot rollback settings have no effect when spot = false", severity="warning")
            )
    return problems


@hookimpl(tryfirst=True)
def scaler_init_script_parts(
    config: Config, resource: Resource, provider: str, context: RenderContext
) -> list[ScriptPart]:
    return core_script_parts(config, resource, context)


@hookimpl(tryfirst=True)
def scaler_clearml_conf_parts(config: Config, resource: Resource, provider: str, context: RenderContext) -> list[str]:
    return core_clearml_conf(config, context)
