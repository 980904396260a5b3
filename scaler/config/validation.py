"""Checking and normalising a whole configuration against the declared sections, once.

Core does this for every plugin, from the declarations alone (:class:`~scaler.config.catalog.Catalog`):

* the top level holds ``resources``, the declared sections and the provider names;
* each resource runs on one provider (:meth:`Catalog.resource_providers`: its ``provider``
  key, its one provider subsection, ``--provider``, or the configuration's one cloud); the
  providers of the resources are the run's (one fleet may span several clouds);
* every top-level section is checked against its ``fields`` when it applies to the run (core's,
  a plugin's that is no provider, the section of a provider the resources run on) and, for
  another provider's, where it is written;
* ``resources`` is a non-empty list of objects; each is checked against the inline fields (the
  common keys) and each ``resources[i].<section>`` against the section's ``resource_fields``:
  required for the resource's provider when one of those fields is required, checked where
  written otherwise; another provider's subsection on a resource is an error;
* then each plugin's ``scaler_validate_config`` runs the checks between keys that a per-key
  schema cannot express, on its own normalised sections (``cross_check``).

Every problem comes back at once, with its dotted path. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.config.catalog import Catalog, KeyHome
from scaler.config.fields import ResourceSettings, Section, check_section, suggest, type_name
from scaler.types import Problem

#: ``(section name, settings, resources, applies) -> problems``: runs the declaring plugin's
#: ``scaler_validate_config`` (the plugin host provides it)
CrossCheck = Callable[[str, Mapping[str, Any], list[ResourceSettings], bool], list[Problem]]


@dataclass
class CheckedConfig:
    """The problems of a configuration and its normalised sections (defaults applied,
    durations in seconds, secrets as :class:`~scaler.types.Secret`; invalid keys left out)."""

    problems: list[Problem] = field(default_factory=list)
    #: top-level section name -> normalised values (every declared section that applies or is written)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per resource (same index as ``resources``): its normalised common keys (``None``: not an object)
    common: list[dict[str, Any] | None] = field(default_factory=list)
    #: per resource: section name -> its normalised ``resources[i].<section>``
    subsections: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    #: per resource: the provider it runs on ("" when none can be told)
    resource_providers: list[str] = field(default_factory=list)
    #: the providers of the run: ``--provider`` if given, and every resource's, in config order
    providers: list[str] = field(default_factory=list)


def _object_problem(path: str, value: Any) -> Problem:
    return Problem(path, f"must be an object ({{ key = value }}), got {type_name(value)}")


def _required_message(section: Section, catalog: Catalog) -> str:
    required = ", ".join(f.name for f in section.resource_fields if f.required)
    whose = f" for provider '{section.name}'" if catalog.is_provider_section(section.name) else ""
    return f"is required{whose} (with {required})"


def _misplaced(key: str, homes: list[KeyHome], where: str) -> str:
    """``unknown key 'instance_type' here: move it into `mycloud { }` (resources[0].mycloud.instance_type)``."""
    places = []
    for home in homes:
        if not home.section:
            places.append(f"write it as {home.where(where)}")
        elif home.fleet_wide:
            places.append(f"move it into the top-level `{home.section} {{ }}` ({home.where(where)}: fleet-wide)")
        else:
            places.append(f"move it into `{home.section} {{ }}` ({home.where(where)})")
    what = " (ClearML's name for it)" if all(home.clearml for home in homes) else ""
    choice = "; ".join(places) if len(places) == 1 else "for your provider: " + " or ".join(sorted(places))
    return f"unknown key '{key}' on a resource{what}: {choice}"


def check_config(
    raw: Any, catalog: Catalog, provider: str | None, *, cross_check: CrossCheck | None = None
) -> CheckedConfig:
    """Check ``raw`` (a parsed configuration) against ``catalog``; ``provider`` is ``--provider``
    (the provider of a resource that names none; ``None``: the configuration says)."""
    result = CheckedConfig()
    problems = result.problems
    if not isinstance(raw, Mapping):
        problems.append(Problem("", f"the configuration must be an object, got {type_name(raw)}"))
        return result
    result.resource_providers, unknown = catalog.resource_providers(raw, provider)
    problems += [Problem(path, message) for path, message in unknown]
    result.providers = list(
        dict.fromkeys([*([provider] if provider else []), *filter(None, result.resource_providers)])
    )
    active = set(result.providers)
    for key in raw:
        if key in catalog.providers and key not in active and provider is None and result.providers:
            problems.append(
                Problem(
                    str(key),
                    f"no resource runs on provider '{key}', so this section is not used; give a resource "
                    f"`provider = {key}` (and its `{key} {{ }}` settings) to use it",
                    severity="warning",
                )
            )

    def applies(name: str) -> bool:
        return name in active or not catalog.is_provider_section(name)

    known_top = catalog.top_level_keys()
    for key in raw:
        if key not in known_top:
            problems.append(Problem(key, f"unknown key '{key}'{suggest(key, known_top)}"))
    if provider and provider not in catalog.providers:
        problems.append(
            Problem("", f"unknown provider '{provider}'; installed providers: {', '.join(catalog.providers)}")
        )
    for name in catalog.conflicts:
        problems.append(
            Problem(name, "is declared by more than one plugin; the first declaration is used", severity="warning")
        )

    # top-level sections
    written_top: set[str] = set()
    for section in catalog.top_sections:
        value = raw.get(section.name)
        if value is None and not applies(section.name):
            continue
        if value is not None and not isinstance(value, Mapping):
            problems.append(_object_problem(section.name, value))
            result.sections[section.name] = check_section({}, section.fields, section.name).values
            continue
        if value is not None:
            written_top.add(section.name)
        checked = check_section(value, section.fields, section.name)
        problems += checked.problems
        result.sections[section.name] = checked.values

    # resources
    resources = raw.get("resources")
    items: list[Any] = []
    if resources is None:
        problems.append(
            Problem("resources", "is required: a list of { name, queue, max_instances, <provider> { ... } }")
        )
    elif not isinstance(resources, list):
        problems.append(Problem("resources", f"must be a list of resource objects, got {type_name(resources)}"))
    else:
        items = resources
        if not items:
            problems.append(Problem("resources", "must list at least one resource"))
    subsection_names = [key for key in catalog.resource_keys() if key not in {f.name for f in catalog.inline_fields}]
    for index, item in enumerate(items):
        where = f"resources[{index}]"
        subsections: dict[str, dict[str, Any]] = {}
        result.subsections.append(subsections)
        own = result.resource_providers[index] if index < len(result.resource_providers) else ""
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"must be an object, got {type_name(item)}"))
            result.common.append(None)
            continue
        # a key of a section written on the resource itself (ClearML's flat spelling): say where it goes
        inline_names = {f.name for f in catalog.inline_fields}
        homes = {
            key: catalog.resource_key_homes(str(key), own or provider)
            for key in item
            if key not in inline_names and key not in subsection_names
        }
        misplaced = {key: found for key, found in homes.items() if found}
        for key, found in misplaced.items():
            problems.append(Problem(f"{where}.{key}", _misplaced(str(key), found, where)))
        if own:  # a key of another provider's section: say whose
            for key in [key for key, found in homes.items() if not found]:
                elsewhere = [h for h in catalog.resource_key_homes(str(key), None) if h.section != own]
                if elsewhere and all(catalog.is_provider_section(h.section) for h in elsewhere):
                    misplaced[key] = elsewhere
                    sections = " or ".join(sorted({f"`{h.section} {{ }}`" for h in elsewhere}))
                    problems.append(
                        Problem(
                            f"{where}.{key}",
                            f"unknown key '{key}' on a resource: a key of {sections}, and the provider is '{own}'",
                        )
                    )
        if misplaced:
            item = {key: value for key, value in item.items() if key not in misplaced}
        checked = check_section(item, catalog.inline_fields, where, allow_unknown=subsection_names)
        problems += checked.problems
        result.common.append(checked.values)
        for section in catalog.top_sections:
            sub = item.get(section.name)
            path = f"{where}.{section.name}"
            mine = section.name == own or not catalog.is_provider_section(section.name)
            if sub is not None and not mine and own and item.get("provider") == own:
                problems.append(
                    Problem(
                        path,
                        f"this resource runs on '{own}' (its provider), not '{section.name}': a resource runs on "
                        f"one cloud; remove `{section.name} {{ }}` or make it a resource of its own",
                    )
                )
            if sub is None:
                if section.resource_fields and mine:
                    if section.resource_required:
                        problems.append(Problem(path, _required_message(section, catalog)))
                    subsections[section.name] = check_section({}, section.resource_fields, path).values
                continue
            if not isinstance(sub, Mapping):
                problems.append(_object_problem(path, sub))
                continue
            checked = check_section(sub, section.resource_fields, path)
            problems += checked.problems
            subsections[section.name] = checked.values

    if cross_check is not None:
        problems += _cross_checks(raw, items, result, catalog, active, written_top, cross_check)
    return result


def _cross_checks(
    raw: Mapping[str, Any],
    items: list[Any],
    result: CheckedConfig,
    catalog: Catalog,
    active: set[str],
    written_top: set[str],
    cross_check: CrossCheck,
) -> list[Problem]:
    problems: list[Problem] = []
    for section in catalog.sections.values():
        resources: list[ResourceSettings] = []
        for index, item in enumerate(items):
            common = result.common[index]
            if common is None:
                continue
            if section.inline:
                resources.append(ResourceSettings(index, f"resources[{index}]", common, common, frozenset(item)))
            elif isinstance(item.get(section.name), Mapping):
                resources.append(
                    ResourceSettings(
                        index,
                        f"resources[{index}].{section.name}",
                        result.subsections[index][section.name],
                        common,
                        frozenset(item[section.name]),
                    )
                )
        applies = section.name in active or not catalog.is_provider_section(section.name)
        if not (applies or section.name in written_top or resources):
            continue
        settings = result.sections.get(section.name, {})
        problems += cross_check(section.name, settings, resources, applies)
    return problems
