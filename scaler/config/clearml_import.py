"""ClearML's own autoscaler configuration, read as a clearml-scaler configuration.

ClearML's autoscaler (the ``aws_autoscaler.py`` example of the clearml repository, and the app
built on the same code) keeps its configuration as two dictionaries: ``hyper_params`` (the
task's hyper-parameters, section ``General``) and ``configurations`` (the task's configuration
object), written together to ``aws_autoscaler.yaml``::

    hyper_params:   {cloud_credentials_key, git_user, default_docker_image, max_idle_time_min, ...}
    configurations: {resource_configurations: {<name>: {instance_type, is_spot, ami_id, ...}},
                     queues: {<queue>: [[<resource>, <max instances>], ...]},
                     extra_clearml_conf, extra_vm_bash_script}

:func:`import_clearml` maps every key onto the declared configuration, from the declarations
alone (core names no cloud here): a hyper-parameter is a vault key (``Field.vault``: the
ClearML app's names, ``git_pass`` → ``scaler.git.password``, ``cloud_credentials_key`` → the
provider's access key), a resource key is declared with ``Field.clearml``
(``is_spot`` → ``spot``, ``ebs_volume_size`` → the provider's volume size), and core maps the
rest itself (queues, scripts, clearml.conf text, fleet-wide tags). Durations in minutes become
``20m``; secrets become ``${?VAR}`` with their values kept apart (for a private env file).
Every input key gets one :class:`Entry` of the report: mapped to which setting, or not, and why.

Pure: the text is parsed as data (JSON or YAML through PyYAML's safe loader, bounded in size,
depth and expanded nodes); nothing is executed, fetched or resolved.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.config.catalog import Catalog, Path, parse_path, path_str
from scaler.config.fields import Field, FieldKind, check_section, format_duration
from scaler.config.sections import NAME_PATTERN
from scaler.config.writer import EnvRef
from scaler.errors import ConfigError

#: the largest document read (an autoscaler configuration is a few KiB)
MAX_BYTES = 1024 * 1024
#: the deepest nesting accepted (a ClearML configuration nests about 5 deep)
MAX_DEPTH = 32
#: values (scalars, lists, mappings) a document may expand to: YAML aliases repeat a node
#: without repeating its text, so "a few KiB" could otherwise expand to billions of values
MAX_NODES = 100_000

#: the two top-level keys of ClearML's autoscaler configuration
TOP_KEYS = ("hyper_params", "configurations")
#: hyper-parameters ClearML's autoscaler reads that need no setting here, and why
NOT_NEEDED = {
    "cloud_provider": "the provider is chosen with --provider",
    "use_iam_instance_profile": "ClearML's driver attaches the instance profile named by iam_arn or iam_name "
    "whatever this says; so does clearml-scaler",
}
#: configuration keys ClearML's autoscaler writes but does not read, and what to do instead
NOT_READ = {
    "docker_force_pull": "ClearML's autoscaler does not read it; clearml-agent's own setting is "
    "agent.docker_force_pull (add it to extra_clearml_conf)",
}

#: statuses of a report entry
MAPPED, SECRET, EMPTY, UNUSED, UNSUPPORTED = "mapped", "secret", "empty", "not needed", "not supported"


@dataclass(frozen=True)
class Entry:
    """What became of one input key (``hyper_params.git_pass``,
    ``configurations.resource_configurations.gpu.is_spot``)."""

    key: str
    status: str
    targets: tuple[str, ...] = ()  # config paths it set
    note: str = ""

    def render(self) -> str:
        if self.status in (MAPPED, SECRET):
            return f"{self.key} → {', '.join(self.targets)}" + (f" ({self.note})" if self.note else "")
        if self.status == EMPTY:
            return self.key + (f" ({', '.join(self.targets)})" if self.targets else "")
        return f"{self.key}: {self.status}" + (f": {self.note}" if self.note else "")


@dataclass
class ClearMLImport:
    """The configuration tree (secrets as :class:`EnvRef`), the secrets' values by variable,
    and the report."""

    tree: dict[str, Any]
    provider: str
    secrets: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the import chose itself (not an input key)
    #: config paths of free text (scripts, clearml.conf text, launch specs) holding a secret's value
    secret_in_text: list[str] = field(default_factory=list)

    @property
    def unsupported(self) -> list[Entry]:
        return [e for e in self.entries if e.status == UNSUPPORTED]


# -- reading the text -------------------------------------------------------------------------


def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        """PyYAML's safe loader (plain data only: no tags that build objects)."""

    return Loader


def parse_text(text: str, source: str) -> Any:
    """The document in ``text`` (JSON, or YAML as ``aws_autoscaler.yaml`` is written) as plain
    data: mappings with string keys, lists, strings, numbers, booleans and ``None``. Raises
    :class:`ConfigError` when it is neither, or too large, too deep or expands to too much."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1024} KiB; that is not a configuration")
    if text.lstrip()[:1] in ("{", "["):
        try:
            return _bounded(json.loads(text), source)
        except RecursionError:
            raise ConfigError(f"{source}: nesting is deeper than {MAX_DEPTH} levels") from None
        except ValueError:
            pass  # YAML's flow style looks like JSON too
    import yaml

    try:
        loaded = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: plain data only
    except RecursionError:
        raise ConfigError(f"{source}: nesting is deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{source}: not JSON, and not YAML either: {first}") from None
    return _bounded(loaded, source)


def _bounded(value: Any, source: str) -> Any:
    """A plain copy of a parsed document; refuses more than :data:`MAX_NODES` values (aliases
    expanded) and nesting deeper than :data:`MAX_DEPTH`. Never recurses."""
    budget = [MAX_NODES]

    def scalar(item: Any) -> Any:
        if item is None or isinstance(item, (str, bool, int, float)):
            return item
        if isinstance(item, (datetime.date, datetime.datetime)):
            return item.isoformat()
        raise ConfigError(f"{source}: holds a {type(item).__name__} value, which a configuration does not")

    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 1)]
    while stack:
        item, parent, slot, level = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"{source}: expands to more than {MAX_NODES} values; that is not a configuration")
        if level > MAX_DEPTH:
            raise ConfigError(f"{source}: nesting is deeper than {MAX_DEPTH} levels")
        if isinstance(item, Mapping):
            out: dict[str, Any] = {}
            parent[slot] = out
            for key, child in item.items():
                out[str(key)] = None
                stack.append((child, out, str(key), level + 1))
        elif isinstance(item, (list, tuple, set, frozenset)):
            items = sorted(item, key=str) if isinstance(item, (set, frozenset)) else list(item)
            seq: list[Any] = [None] * len(items)
            parent[slot] = seq
            stack.extend((child, seq, i, level + 1) for i, child in enumerate(items))
        else:
            parent[slot] = scalar(item)
    return root[0]


def is_clearml_autoscaler(document: Any) -> bool:
    """Whether ``document`` is ClearML's autoscaler configuration (``hyper_params`` and/or
    ``configurations`` at the top, and nothing of a clearml-scaler export)."""
    return (
        isinstance(document, Mapping)
        and any(isinstance(document.get(key), Mapping) for key in TOP_KEYS)
        and not {"format", "config", "scaler", "resources"} & set(document)
    )


# -- mapping ------------------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _resource_keys(catalog: Catalog, provider: str) -> dict[str, tuple[tuple[str, ...], Field]]:
    """``{ClearML resource key: (path inside a resource, field)}`` from ``Field.clearml``: the
    common keys (``spot``, ...) and the provider's ``resources[i].<provider>`` fields."""
    found: dict[str, tuple[tuple[str, ...], Field]] = {}

    def walk(fields: tuple[Field, ...], prefix: tuple[str, ...]) -> None:
        for item in fields:
            here = (*prefix, item.name)
            if item.kind == FieldKind.SECTION:
                walk(item.fields, here)
            for key in item.clearml:
                found.setdefault(key, (here, item))

    walk(catalog.inline_fields, ())
    section = catalog.section(provider)
    if section is not None:
        walk(section.resource_fields, (provider,))
    return found


def _put(tree: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = tree
    for step, nxt in itertools.pairwise(path):
        if isinstance(step, int):
            node = node[step]
            continue
        if step not in node:
            node[step] = [] if isinstance(nxt, int) else {}
        node = node[step]
    node[path[-1]] = value


def _get(tree: Any, path: Path) -> Any:
    node = tree
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


class _Mapper:
    def __init__(self, catalog: Catalog, provider: str) -> None:
        self.catalog = catalog
        self.provider = provider
        self.tree: dict[str, Any] = {}
        self.result = ClearMLImport(self.tree, provider)

    def entry(self, key: str, status: str, targets: list[str] | tuple[str, ...] = (), note: str = "") -> None:
        self.result.entries.append(Entry(key, status, tuple(targets), note))

    def value(self, spec: Field, path: Path, raw: Any) -> tuple[Any, str]:
        """The value to write for ``raw`` at ``path`` (declared by ``spec``) and a note; a
        secret becomes ``${?VAR}`` with its value kept for the env file."""
        where = path_str(path)
        if spec.kind == FieldKind.SECRET:
            env = self.catalog.env_for(path)
            self.result.secrets[env] = str(raw)
            return EnvRef(env), f"${{?{env}}}, value in the env file"
        checked = check_section({spec.name: raw}, (spec,), where.rpartition(".")[0])
        if checked.problems or spec.name not in checked.values:
            return raw, ""  # written as given: validation says what is wrong with it
        normal = checked.values[spec.name]
        if spec.kind == FieldKind.DURATION:
            text = format_duration(normal)
            minutes = re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(raw)) and not isinstance(raw, bool)
            return text, (f"{str(raw).strip()} min → {text}" if minutes else "")
        return normal, ""

    # -- hyper_params -------------------------------------------------------------------------

    def hyper_params(self, hyper: Mapping[str, Any]) -> str:
        """Map the hyper-parameters; returns the fleet-wide ``tags`` text."""
        vault = self.catalog.vault_keys(self.provider)
        order: dict[str, list[str]] = {}
        for key, dotted in vault.items():
            order.setdefault(dotted, []).append(key)
        tags = ""
        for key, raw in hyper.items():
            where = f"hyper_params.{key}"
            if key == "tags":
                tags = "" if _empty(raw) else str(raw)
                continue  # mapped with the resources
            if key in NOT_NEEDED:
                self.entry(where, UNUSED, note=NOT_NEEDED[key])
                continue
            if key not in vault:
                self.entry(where, UNSUPPORTED, note="not a setting of ClearML's autoscaler that clearml-scaler knows")
                continue
            target = vault[key]
            if _empty(raw):
                self.entry(where, EMPTY, [target])
                continue
            first = next(k for k in order[target] if not _empty(hyper.get(k)))
            if first != key:
                self.entry(where, UNUSED, note=f"{first} sets {target} too and comes first, as in ClearML")
                continue
            path = parse_path(target)
            spec = self.catalog.field_at(path)
            assert spec is not None  # vault keys come from declared fields
            value, note = self.value(spec, path, raw)
            _put(self.tree, path, value)
            self.entry(where, SECRET if isinstance(value, EnvRef) else MAPPED, [target], note)
        return tags

    # -- configurations -----------------------------------------------------------------------

    def configurations(self, confs: Mapping[str, Any], fleet_tags: str, hyper_has_tags: bool) -> None:
        texts: dict[str, str] = {}
        for key, raw in confs.items():
            where = f"configurations.{key}"
            if key in ("resource_configurations", "queues"):
                continue
            if key in ("extra_vm_bash_script", "extra_clearml_conf", "extra_trains_conf"):
                if raw is not None and not isinstance(raw, str):
                    self.entry(where, UNSUPPORTED, note=f"must be text, got {type(raw).__name__}")
                    continue
                texts[key] = raw or ""
                continue
            if key in NOT_READ:
                self.entry(where, UNUSED, note=NOT_READ[key])
                continue
            self.entry(where, UNSUPPORTED, note="not a setting of ClearML's autoscaler that clearml-scaler knows")
        self.texts(texts)
        self.resources(confs, fleet_tags, hyper_has_tags)

    def texts(self, texts: Mapping[str, str]) -> None:
        script = texts.get("extra_vm_bash_script", "")
        if "extra_vm_bash_script" in texts:
            if script.strip():
                _put(self.tree, ("scaler", "init_script"), script)
                self.entry(
                    "configurations.extra_vm_bash_script",
                    MAPPED,
                    ["scaler.init_script"],
                    "run on every machine before the agent starts",
                )
            else:
                self.entry("configurations.extra_vm_bash_script", EMPTY)
        conf = texts.get("extra_clearml_conf", "")
        older = texts.get("extra_trains_conf", "")
        if "extra_clearml_conf" in texts:
            if conf.strip():
                self.entry("configurations.extra_clearml_conf", MAPPED, ["scaler.extra_clearml_conf"])
            else:
                self.entry("configurations.extra_clearml_conf", EMPTY)
        if "extra_trains_conf" in texts:
            if not older.strip():
                self.entry("configurations.extra_trains_conf", EMPTY)
            elif older.strip() == conf.strip():
                self.entry(
                    "configurations.extra_trains_conf",
                    UNUSED,
                    note="the same text as extra_clearml_conf, written once",
                )
                older = ""
            else:
                self.entry(
                    "configurations.extra_trains_conf",
                    MAPPED,
                    ["scaler.extra_clearml_conf"],
                    "its former name, read by clearml < 1.0: appended after extra_clearml_conf",
                )
        joined = "\n".join(text.strip("\n") for text in (conf, older) if text.strip())
        if joined:
            _put(self.tree, ("scaler", "extra_clearml_conf"), joined + "\n")

    def resources(self, confs: Mapping[str, Any], fleet_tags: str, hyper_has_tags: bool) -> None:
        defined = confs.get("resource_configurations")
        queues = confs.get("queues")
        if defined is None:
            defined = {}
        if queues is None:
            queues = {}
        if not isinstance(defined, Mapping):
            self.entry("configurations.resource_configurations", UNSUPPORTED, note="must be a mapping of resources")
            defined = {}
        if not isinstance(queues, Mapping):
            self.entry("configurations.queues", UNSUPPORTED, note="must map each queue to [[resource, max], ...]")
            queues = {}
        keys = _resource_keys(self.catalog, self.provider)
        made: list[dict[str, Any]] = []
        uses: dict[str, list[int]] = {}  # ClearML resource name -> indexes of the resources made from it
        names: set[str] = set()
        for queue, items in queues.items():
            where = f"configurations.queues.{queue}"
            pairs = list(items.items()) if isinstance(items, Mapping) else items
            if not isinstance(pairs, list):
                self.entry(where, UNSUPPORTED, note="must be a list of [resource, max instances]")
                continue
            targets = []
            for position, pair in enumerate(pairs):
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
                    self.entry(
                        f"{where}[{position}]", UNSUPPORTED, note=f"must be [resource, max instances], got {pair!r}"
                    )
                    continue
                source, most = pair
                if not isinstance(defined.get(source), Mapping):
                    self.entry(
                        f"{where}[{position}]",
                        UNSUPPORTED,
                        note=f"resource {source!r} is not in resource_configurations",
                    )
                    continue
                name = self._name(source, str(queue), names)
                names.add(name)
                index = len(made)
                made.append({"name": name, "queue": str(queue), "max_instances": most})
                uses.setdefault(source, []).append(index)
                targets.append(f"resources[{index}]")
                if name != source:
                    self.result.notes.append(
                        f"resources[{index}].name = {name!r}: resource {source!r} serves an earlier queue too, so "
                        f"the one of queue {queue!r} is a resource of its own (as ClearML's wizard names it)"
                    )
            if targets:
                self.entry(
                    where,
                    MAPPED,
                    targets,
                    "queue and max_instances of each; the order is the spill-over order",
                )
        self.tree["resources"] = made
        for source, conf in defined.items():
            where = f"configurations.resource_configurations.{source}"
            if source not in uses:
                self.entry(where, UNUSED, note="no queue uses it, so ClearML never launched it; not imported")
                continue
            if not isinstance(conf, Mapping):
                self.entry(where, UNSUPPORTED, note="must be a mapping")
                continue
            for key, raw in conf.items():
                self._resource_key(f"{where}.{key}", key, raw, uses[source], keys)
        tag_spec = keys.get("tags")
        if hyper_has_tags:
            self._fleet_tags(fleet_tags, made, tag_spec)

    @staticmethod
    def _name(source: str, queue: str, taken: set[str]) -> str:
        name = source if source not in taken else f"{source}_{queue}"
        if not re.fullmatch(NAME_PATTERN, name):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:63] or "resource"
        base, n = name, 2
        while name in taken:
            name = f"{base}-{n}"
            n += 1
        return name

    def _resource_key(
        self, where: str, key: str, raw: Any, indexes: list[int], keys: dict[str, tuple[tuple[str, ...], Field]]
    ) -> None:
        if key not in keys:
            self.entry(where, UNSUPPORTED, note=f"no setting of provider '{self.provider}' takes it")
            return
        inside, spec = keys[key]
        if _empty(raw):
            self.entry(where, EMPTY)
            return
        targets, note = [], ""
        for index in indexes:
            path: Path = ("resources", index, *inside)
            value, note = self.value(spec, path, raw)
            _put(self.tree, path, value)
            targets.append(path_str(path))
        status = SECRET if spec.kind == FieldKind.SECRET else MAPPED
        self.entry(where, status, targets, note)

    def _fleet_tags(self, tags: str, made: list[dict[str, Any]], spec: tuple[tuple[str, ...], Field] | None) -> None:
        where = "hyper_params.tags"
        if not tags.strip():
            self.entry(where, EMPTY)
            return
        if spec is None or spec[1].kind not in (FieldKind.STR, FieldKind.LIST):
            self.entry(where, UNSUPPORTED, note=f"provider '{self.provider}' declares no resource tags")
            return
        inside, field_spec = spec
        targets = []
        for index in range(len(made)):
            path: Path = ("resources", index, *inside)
            own = _get(self.tree, path)
            if field_spec.kind == FieldKind.LIST:
                merged: Any = [*[t.strip() for t in tags.split(",") if t.strip()], *(own or [])]
            else:
                merged = ",".join(text for text in (tags.strip(), str(own or "").strip()) if text)
            _put(self.tree, path, merged)
            targets.append(path_str(path))
        self.entry(where, MAPPED, targets, "the fleet's tags, before each resource's own")

    # -- the fleet ------------------------------------------------------------------------------

    def name_the_fleet(self) -> None:
        scaler = self.tree["scaler"]
        prefix = scaler.get("workers_prefix")
        name = prefix if isinstance(prefix, str) and re.fullmatch(NAME_PATTERN, prefix) else "clearml-autoscaler"
        self.tree["scaler"] = {"name": name, **scaler}
        self.result.notes.append(
            f"scaler.name = {name!r}: it tags every machine the scaler launches or adopts; one name per fleet"
        )

    def secrets_in_text(self) -> None:
        values = [v for v in self.result.secrets.values() if len(v) >= 4]
        if not values:
            return

        def walk(node: Any, path: Path) -> None:
            if isinstance(node, Mapping):
                for key, item in node.items():
                    walk(item, (*path, key))
            elif isinstance(node, list):
                for index, item in enumerate(node):
                    walk(item, (*path, index))
            elif isinstance(node, str) and any(v in node for v in values):
                self.result.secret_in_text.append(path_str(path))

        walk(self.tree, ())


def guess_provider(document: Mapping[str, Any], catalog: Catalog) -> str | None:
    """The installed provider whose declarations claim the most keys of ``document`` (its own
    vault keys among the hyper-parameters, its own resource keys among the resources); ``None``
    when none claims any, or two claim as many."""
    hyper = document.get("hyper_params")
    confs = document.get("configurations")
    hyper_keys = set(hyper) if isinstance(hyper, Mapping) else set()
    defined = confs.get("resource_configurations") if isinstance(confs, Mapping) else None
    resource_keys = {
        key
        for conf in (defined.values() if isinstance(defined, Mapping) else ())
        if isinstance(conf, Mapping)
        for key in conf
    }
    common = {key for f in catalog.inline_fields for key in f.clearml}
    scores: dict[str, int] = {}
    for provider in catalog.providers:
        section = catalog.section(provider)
        if section is None:
            continue
        own_vault = {key for path, f in _leaf_fields(section.fields) for key in f.vault}
        own_resource = {key for path, f in _leaf_fields(section.resource_fields) for key in f.clearml} - common
        scores[provider] = len(hyper_keys & own_vault) + len(resource_keys & own_resource)
    best = max(scores.values(), default=0)
    winners = [p for p, score in scores.items() if score == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def _leaf_fields(fields: tuple[Field, ...]) -> list[tuple[str, Field]]:
    out: list[tuple[str, Field]] = []
    stack = [(f.name, f) for f in fields]
    while stack:
        path, item = stack.pop()
        out.append((path, item))
        if item.kind == FieldKind.SECTION:
            stack.extend((f"{path}.{f.name}", f) for f in item.fields)
    return out


def import_clearml(
    document: Mapping[str, Any], catalog: Catalog, provider: str, entries: list[Entry] | None = None
) -> ClearMLImport:
    """The clearml-scaler configuration for ``provider`` of ClearML's autoscaler configuration
    ``document`` (``{"hyper_params": …, "configurations": …}``), with the report of every key
    (``entries``: what reading the document already reported, e.g. of a task's other parts)."""
    if not isinstance(document, Mapping):
        raise ConfigError("ClearML's autoscaler configuration must be a mapping")
    if provider not in catalog.providers:
        raise ConfigError(f"unknown provider '{provider}'; installed providers: {', '.join(catalog.providers)}")
    mapper = _Mapper(catalog, provider)
    mapper.result.entries.extend(entries or ())
    hyper = document.get("hyper_params")
    confs = document.get("configurations")
    for key in document:
        if key not in TOP_KEYS:
            mapper.entry(key, UNSUPPORTED, note="not part of ClearML's autoscaler configuration")
    if hyper is not None and not isinstance(hyper, Mapping):
        mapper.entry("hyper_params", UNSUPPORTED, note="must be a mapping")
        hyper = None
    if confs is not None and not isinstance(confs, Mapping):
        mapper.entry("configurations", UNSUPPORTED, note="must be a mapping")
        confs = None
    mapper.tree["scaler"] = {}
    fleet_tags = mapper.hyper_params(hyper or {})
    mapper.tree.setdefault(provider, {})
    mapper.configurations(confs or {}, fleet_tags, "tags" in (hyper or {}))
    mapper.name_the_fleet()
    if not mapper.tree.get(provider):
        mapper.tree[provider] = {}
    # the order of a written configuration: scaler, the provider, resources (common keys first)
    common = [f.name for f in catalog.inline_fields]
    mapper.tree["resources"] = [
        {**{k: item[k] for k in common if k in item}, **{k: v for k, v in item.items() if k not in common}}
        for item in mapper.tree.get("resources", [])
    ]
    ordered = {key: mapper.tree[key] for key in ("scaler", provider, "resources") if key in mapper.tree}
    mapper.tree.clear()
    mapper.tree.update(ordered)
    mapper.secrets_in_text()
    return mapper.result


def report_lines(result: ClearMLImport) -> list[str]:
    """The report, one line per input key, grouped: mapped, secrets, not imported."""
    lines = []
    groups = (
        ("mapped", (MAPPED,)),
        ("secrets (written as ${?VAR}; their values are in the env file)", (SECRET,)),
        ("empty (the default is kept)", (EMPTY,)),
        ("not imported", (UNUSED, UNSUPPORTED)),
    )
    for title, statuses in groups:
        chosen = [e for e in result.entries if e.status in statuses]
        if chosen:
            lines.append(f"{title}:")
            lines += [f"  {e.render()}" for e in chosen]
    if result.notes:
        lines.append("chosen by the import:")
        lines += [f"  {note}" for note in result.notes]
    return lines


# -- a ClearML task -----------------------------------------------------------------------------

#: the hyper-parameter section ``task.connect(hyper_params)`` writes
HYPER_SECTION = "General"
#: the configuration object ``task.connect_configuration(configurations)`` (or the example's
#: ``set_configuration_object(name="General", …)``) writes
CONFIG_OBJECT = "General"
_TEXT_KEYS = ("extra_vm_bash_script", "extra_clearml_conf", "extra_trains_conf")
_DATA_KEYS = ("resource_configurations", "queues")


def cast_parameter(value: Any, kind: str) -> Any:
    """A hyper-parameter's value from its text and the type ClearML stored with it (``int``,
    ``float``, ``bool``, ``str``, ``list``, ``dict``, …; empty for ``None``). Data only."""
    kind = (kind or "").strip().lower()
    if not isinstance(value, str):
        return value
    if not kind:
        return None if value == "" else value
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "on"):
            return True
        if lowered in ("false", "0", "no", "n", "off", ""):
            return False
        return value
    if kind in ("int", "float"):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            return value
    if kind.split("/")[0] in ("list", "tuple", "dict"):
        try:
            return parse_text(value, "hyper-parameter")
        except ConfigError:
            return value
    if kind == "nonetype":
        return None
    return value


def _object_data(name: str, text: str, kind: str) -> Any:
    """A configuration object's text as data: JSON, HOCON (as data: no include, no
    substitution) or YAML, as its type says or whichever parses."""
    from scaler.config.loading import parse_hocon

    where = f"configuration object {name!r}"
    order = ["json", "yaml", "hocon"] if "yaml" in kind.lower() else ["json", "hocon", "yaml"]
    errors = []
    for form in order:
        if form == "json":
            if text.lstrip()[:1] not in ("{", "["):
                continue
            try:
                return _bounded(json.loads(text), where)
            except (ValueError, RecursionError) as exc:
                errors.append(f"JSON: {exc}")
        elif form == "hocon":
            tree, problems = parse_hocon(text, source=where, data="a ClearML task's configuration")
            if not problems:
                return _bounded(tree, where)
            errors.append("HOCON: " + "; ".join(p.message for p in problems))
        else:
            try:
                found = parse_text(text, where)
            except ConfigError as exc:
                errors.append(str(exc))
            else:
                if isinstance(found, Mapping):
                    return found
    raise ConfigError(f"{where} cannot be read as data ({' | '.join(errors)[:500]})")


def document_from_task(
    hyperparams: Mapping[str, Mapping[str, tuple[Any, str]]], configuration: Mapping[str, tuple[str, str]]
) -> tuple[dict[str, Any], list[Entry]]:
    """ClearML's autoscaler configuration (``{"hyper_params", "configurations"}``) as a task
    holds it: ``hyperparams`` is ``{section: {name: (value text, type)}}``, ``configuration``
    ``{object name: (text, type)}``. Also returns the report entries of what is not used (other
    hyper-parameter sections, other configuration objects)."""
    entries: list[Entry] = []
    hyper: dict[str, Any] = {}
    for section, params in hyperparams.items():
        if section == HYPER_SECTION:
            hyper = {name: cast_parameter(value, kind) for name, (value, kind) in params.items()}
            continue
        names = ", ".join(sorted(params)) or "none"
        why = (
            "the user properties of the task"
            if section == "properties"
            else "the command line of the autoscaler script"
            if section == "Args"
            else "not a section ClearML's autoscaler reads"
        )
        entries.append(Entry(f"hyper-parameters {section}/ ({names})", UNUSED, note=why))
    confs: dict[str, Any] = {}
    for name, (text, kind) in configuration.items():
        if name == CONFIG_OBJECT:
            data = _object_data(name, text or "", kind or "")
            if not isinstance(data, Mapping):
                raise ConfigError(f"configuration object {name!r} must hold a mapping of the autoscaler's settings")
            confs = {**dict(data), **confs}
        elif name in _TEXT_KEYS:
            confs[name] = text or ""
        elif name in _DATA_KEYS:
            confs[name] = _object_data(name, text or "", kind or "") if (text or "").strip() else {}
        else:
            entries.append(Entry(f"configuration object {name!r}", UNUSED, note="not one ClearML's autoscaler reads"))
    document: dict[str, Any] = {}
    if hyper or HYPER_SECTION in hyperparams:
        document["hyper_params"] = hyper
    if confs or CONFIG_OBJECT in configuration:
        document["configurations"] = confs
    return document, entries
