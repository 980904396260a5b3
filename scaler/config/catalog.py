"""What each path of a configuration means, from the sections the plugins declare.

A :class:`Catalog` holds every :class:`~scaler.config.fields.Section` declared through the
hook ``scaler_config_sections`` (core's own ``scaler`` and ``resources`` included) and
answers the questions of the tools that read or write whole configuration files (validation,
``scaler init``, ``export``/``import``, the configuration reference, the vault): which
:class:`~scaler.config.fields.Field` describes a path, its documentation, whether it is a
secret and from which environment variable it is read, and which vault keys map onto which
paths. Shipped and third-party plugins are looked up the same way. A key nobody declares (a
plugin that is not installed, or inside a free-form object) is judged by its name: anything
that looks like a password, a token or a key is treated as a secret.

The plugin host builds the catalog of the plugins it loaded (``PluginHost.catalog()``);
:func:`installed` is the catalog of the installed plugins for code that has no host at hand
(``build_config``), published by the host module when it is imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.config.fields import Field, FieldKind, Section
from scaler.config.redact import SECRET_NAME
from scaler.config.sections import CORE_SECTIONS
from scaler.errors import ConfigError

Path = tuple[str | int, ...]


def _walk(fields: Sequence[Field], rest: Path) -> Field | None:
    if not rest:
        return None
    found = next((f for f in fields if f.name == rest[0]), None)
    if found is None or len(rest) == 1:
        return found
    if found.kind == FieldKind.SECTION:
        return _walk(found.fields, rest[1:])
    return None  # inside a free-form object or a list


def leaves(fields: Sequence[Field], prefix: str) -> Iterable[tuple[str, Field]]:
    """``(dotted path, field)`` of every field that holds a value (nested sections walked)."""
    for item in fields:
        path = f"{prefix}.{item.name}" if prefix else item.name
        if item.kind == FieldKind.SECTION:
            yield from leaves(item.fields, path)
        else:
            yield path, item


def leaf_values(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """``(path, value)`` of every value of a parsed configuration that is neither an object nor a
    list (both walked), e.g. ``(("resources", 0, "aws", "ami_id"), "ami-…")``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaf_values(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_values(item, (*path, index))
    else:
        yield path, value


@dataclass(frozen=True)
class KeyHome:
    """Where a key misplaced on a resource belongs (:meth:`Catalog.resource_key_homes`): ``path``
    inside ``resources[i].<section>`` (``section`` empty: on the resource itself), or inside the
    top-level ``<section>`` when ``fleet_wide``; ``clearml``: the key was ClearML's name for it."""

    section: str
    path: str
    clearml: bool = False
    fleet_wide: bool = False

    def where(self, resource: str) -> str:
        """The dotted path it belongs at, for the resource at ``resource`` (``resources[0]``)."""
        if self.fleet_wide:
            return f"{self.section}.{self.path}"
        return ".".join(part for part in (resource, self.section, self.path) if part)


def _fields_under(fields: Sequence[Field], prefix: str) -> Iterable[tuple[str, Field]]:
    """``(dotted path, field)`` of every field, nested sections and the fields in them."""
    for item in fields:
        path = f"{prefix}.{item.name}" if prefix else item.name
        yield path, item
        if item.kind == FieldKind.SECTION:
            yield from _fields_under(item.fields, path)


class Catalog:
    """The declared sections of a set of plugins.

    ``sections`` in declaration order (core's first); a section declared twice is kept from
    its first declaration and the conflict recorded in :attr:`conflicts`. ``providers`` are the
    installed provider names: a section named after a provider is that provider's.
    """

    def __init__(self, sections: Iterable[Section] = CORE_SECTIONS, providers: Iterable[str] = ()) -> None:
        self.sections: dict[str, Section] = {}
        self.conflicts: list[str] = []
        for section in sections:
            if section.name in self.sections:
                self.conflicts.append(section.name)
                continue
            self.sections[section.name] = section
        self.providers = tuple(providers)
        self.inline_fields: tuple[Field, ...] = tuple(
            f for s in self.sections.values() if s.inline for f in s.resource_fields
        )

    # -- sections ---------------------------------------------------------------------------

    def section(self, name: str) -> Section | None:
        """The section declared for top-level key / resource subsection ``name`` (not inline)."""
        found = self.sections.get(name)
        return found if found is not None and not found.inline else None

    @property
    def top_sections(self) -> list[Section]:
        """The sections written as ``<name> { … }`` and/or ``resources[i].<name> { … }``."""
        return [s for s in self.sections.values() if not s.inline]

    def is_provider_section(self, name: str) -> bool:
        return name in self.providers

    def applies(self, name: str, provider: str | None) -> bool:
        """Whether section ``name`` belongs to this run: a provider's section when that provider
        is the chosen one, any other plugin's section always."""
        return name == provider or not self.is_provider_section(name)

    def cloud_sections(self, raw: Any) -> dict[str, str]:
        """``{provider: where}`` for each provider whose section a parsed configuration holds
        (``<provider> { … }`` at the top level, or in a resource: ``resources[2].<provider>``),
        in the order written."""
        found: dict[str, str] = {}
        if not isinstance(raw, Mapping):
            return found
        for key in raw:
            if key in self.providers:
                found.setdefault(key, f"{key} {{ }}")
        resources = raw.get("resources")
        for index, item in enumerate(resources if isinstance(resources, list) else []):
            for key in item if isinstance(item, Mapping) else ():
                if key in self.providers:
                    found.setdefault(key, f"resources[{index}].{key}")
        return found

    def choose_provider(self, raw: Any, source: str = "the configuration") -> str:
        """The provider a configuration is for when none is given: the one whose section it holds
        (:meth:`cloud_sections`). Raises :class:`ProviderChoiceError` when it holds none, or
        sections of several providers."""
        found = self.cloud_sections(raw)
        if len(found) == 1:
            return next(iter(found))
        if not found:
            sections = " or ".join(", ".join(f"{name} {{ }}" for name in self.providers).rsplit(", ", 1))
            raise ProviderChoiceError(
                f"{source} holds no cloud section ({sections or 'no provider is installed'}), so its "
                f"provider cannot be inferred; pass --provider (installed: {', '.join(self.providers) or 'none'})",
                [],
            )
        raise ProviderChoiceError(
            f"{source} holds the sections of several providers ({', '.join(found.values())}), so its "
            f"provider cannot be inferred; pass --provider {' or --provider '.join(found)}",
            list(found),
        )

    def resource_providers(self, raw: Any, given: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
        """The provider of each resource of a parsed configuration, and ``(path, message)`` for
        each resource whose provider cannot be told ("" in the list). A resource's provider is
        its ``provider`` key; else the one provider whose subsection it holds; else the
        configuration's one cloud (:meth:`cloud_sections`). With sections of several clouds and
        none of these, its ``provider`` is required. ``given`` (``--provider``): a configuration
        whose resources span several providers keeps them (a resource that names none is
        ``given``'s), any other runs wholly on ``given``."""
        resources = raw.get("resources") if isinstance(raw, Mapping) else None
        items = resources if isinstance(resources, list) else []
        clouds = list(self.cloud_sections(raw))
        if given:
            own, unclear = self.resource_providers(raw)
            if len({name for name in own if name}) < 2:
                # a configuration of one cloud (or none) runs wholly on --provider, as written for
                # another (``scaler simulate`` of an AWS configuration); several: it picks its own
                return [given] * len(items), [p for p in unclear if not p[1].startswith("is required")]
            default = given
        else:
            default = clouds[0] if len(clouds) == 1 else ""
        found: list[str] = []
        problems: list[tuple[str, str]] = []
        installed = ", ".join(self.providers) or "none"
        for index, item in enumerate(items):
            where = f"resources[{index}]"
            if not isinstance(item, Mapping):
                found.append("")
                continue
            explicit = item.get("provider")
            subsections = [key for key in item if key in self.providers]
            if explicit is not None:
                if not isinstance(explicit, str) or explicit not in self.providers:
                    problems.append(
                        (f"{where}.provider", f"unknown provider {explicit!r}; installed providers: {installed}")
                    )
                    found.append("")
                    continue
                found.append(explicit)
            elif len(subsections) == 1:
                found.append(subsections[0])
            elif len(subsections) > 1:
                problems.append(
                    (
                        where,
                        f"holds the sections of several providers ({', '.join(subsections)}); a resource runs on one "
                        "cloud: keep one section, or make one resource per cloud",
                    )
                )
                found.append("")
            elif default:
                found.append(default)
            elif clouds:
                problems.append(
                    (
                        f"{where}.provider",
                        f"is required when the configuration holds several clouds ({', '.join(clouds)}): write "
                        + " or ".join(f"provider = {name}" for name in clouds),
                    )
                )
                found.append("")
            else:
                found.append("")
        return found, problems

    def active_providers(self, raw: Any, given: str | None = None) -> list[str]:
        """The providers a configuration's resources run on, in config order (each once)."""
        found, _ = self.resource_providers(raw, given)
        return list(dict.fromkeys(name for name in found if name))

    def top_level_keys(self) -> list[str]:
        return sorted({*(s.name for s in self.top_sections), "resources", *self.providers})

    def resource_keys(self) -> list[str]:
        """Keys a resource may hold: the inline fields, then subsection names."""
        subsections = {s.name for s in self.top_sections if s.resource_fields} | set(self.providers)
        return [*(f.name for f in self.inline_fields), *sorted(subsections)]

    def resource_key_homes(self, key: str, provider: str | None) -> list[KeyHome]:
        """Where a key written directly on a resource belongs, from the declarations alone: a
        field of that name in a section's resource fields (``instance_type`` →
        ``resources[i].<provider>.instance_type``), a field that declares it as ClearML's name
        for it (``Field.clearml``: a common key, or a key of a section, nested ones included), or
        a field of that name in a section's fleet-wide fields (``<section>.<key>`` at the top
        level). With a ``provider``, the other providers' sections are left out."""
        homes: list[KeyHome] = []
        for item in self.inline_fields:
            if key in item.clearml:
                homes.append(KeyHome("", item.name, clearml=True))
        for section in self.top_sections:
            if provider is not None and not self.applies(section.name, provider):
                continue
            for path, item in _fields_under(section.resource_fields, ""):
                if path == key or key in item.clearml:
                    homes.append(KeyHome(section.name, path, clearml=path != key))
        if not homes:
            for section in self.top_sections:
                if provider is not None and not self.applies(section.name, provider):
                    continue
                if any(item.name == key for item in section.fields):
                    homes.append(KeyHome(section.name, key, fleet_wide=True))
        return homes

    # -- paths -------------------------------------------------------------------------------

    def field_at(self, path: Path) -> Field | None:
        """The field describing ``path`` (``("resources", 0, "mycloud", "disk", "size_gb")``), if any."""
        if not path:
            return None
        head = path[0]
        if head == "resources":
            if len(path) < 3 or not isinstance(path[1], int):
                return None
            found = _walk(self.inline_fields, path[2:])
            if found is not None:
                return found
            section = self.section(str(path[2]))
            return _walk(section.resource_fields, path[3:]) if section else None
        section = self.section(str(head))
        return _walk(section.fields, path[1:]) if section else None

    def doc_at(self, path: Path) -> str:
        """What the key at ``path`` means (for comments)."""
        if len(path) == 1 and isinstance(path[0], str):
            declared = self.sections.get(path[0])
            return declared.doc if declared is not None else f"Settings of the '{path[0]}' plugin."
        if len(path) == 3 and path[0] == "resources" and isinstance(path[2], str) and self.section(path[2]):
            return f"This resource's {path[2]} settings."
        found = self.field_at(path)
        return found.doc if found is not None else ""

    def is_secret(self, path: Path) -> bool:
        found = self.field_at(path)
        if found is not None:
            return found.kind == FieldKind.SECRET
        last = path[-1] if path else ""
        return isinstance(last, str) and bool(SECRET_NAME.search(last))

    def is_duration(self, path: Path) -> bool:
        found = self.field_at(path)
        return found is not None and found.kind == FieldKind.DURATION

    def env_for(self, path: Path | str) -> str:
        """The environment variable a secret at ``path`` is read from: its field's ``env``, else
        ``SCALER_`` and the path in capitals (``resources[0].mycloud.token`` →
        ``SCALER_RESOURCES_0_MYCLOUD_TOKEN``)."""
        where = parse_path(path) if isinstance(path, str) else path
        found = self.field_at(where)
        if found is not None and found.env:
            return found.env
        return "SCALER_" + re.sub(r"[^A-Z0-9]+", "_", path_str(where).upper()).strip("_")

    # -- vault -------------------------------------------------------------------------------

    def vault_keys(self, provider: str) -> dict[str, str]:
        """``{vault key: dotted config path}`` for the vault section ``auto_scaler.v1.<provider>``:
        the keys declared by every section that applies to ``provider`` (``Field.vault``)."""
        keys: dict[str, str] = {}
        for section in self.top_sections:
            if not self.applies(section.name, provider):
                continue
            for path, item in leaves(section.fields, section.name):
                for key in item.vault:
                    keys.setdefault(key, path)
        return keys


class ProviderChoiceError(ConfigError):
    """No ``--provider`` was given and the configuration does not say which provider it is for
    (no cloud section, or several): a usage error. ``found`` lists the providers whose sections
    it holds."""

    def __init__(self, message: str, found: list[str]) -> None:
        super().__init__(message)
        self.found = found


_installed_factory: Callable[[], Catalog] | None = None


def use_installed(factory: Callable[[], Catalog]) -> None:
    """Publish how to build the catalog of the installed plugins (the plugin host does)."""
    global _installed_factory
    _installed_factory = factory


def installed() -> Catalog:
    """The catalog of the installed plugins (core's own sections when no host was ever imported)."""
    return _installed_factory() if _installed_factory is not None else Catalog(CORE_SECTIONS)


def path_str(path: Path) -> str:
    """``resources[0].mycloud.disk.size_gb``: the spelling of validation messages."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def parse_path(text: str) -> Path:
    """The inverse of :func:`path_str`."""
    parts: list[str | int] = []
    for index, name in _PART.findall(text):
        parts.append(int(index) if index else name)
    return tuple(parts)
