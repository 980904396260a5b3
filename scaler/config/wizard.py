"""``scaler init``: ask what ClearML's autoscaler wizard asks, check each answer as it is
given, and write a commented HOCON file that ``validate-config`` accepts.

The questions come from the declared sections (``Field.ask``), core's and the plugins' alike:
core asks for the fleet (name, workers prefix), then every field with a question of the
sections that apply to the chosen provider (its own section, and any section of a plugin that
is no provider), then git credentials and the default image, then each resource (name and
queue, the provider's resource questions, the remaining common questions), then timing. Each
answer is checked against its field and against the declaring plugin's cross-field checks
(``scaler_validate_config``, with every secret assumed set: secrets come at run time).

Every setting can also be given on the command line: ``--set path=value`` (dotted config
paths: ``--set mycloud.region=eu-2``, ``--set resources[0].mycloud.size=large``), and a
resource as ``--resource key=value,…`` (its common keys, the provider's resource keys by
name, or the short keys a provider declares: ``instance_type``, ``image``, ``zone``,
``disk``). A given answer is checked the same way as a typed one. Without a terminal (or
with ``--no-interactive``) nothing is read from standard input: questions with a default
take it, and the ones without are reported all at once, by flag. Secrets are written to the
configuration as ``${?VAR}`` substitutions, never in clear; a value typed at the hidden
prompt goes to a separate environment file readable by its owner, and a secret given with
``--set`` is refused (it would stay in the shell history): export its variable instead.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from scaler.config.catalog import Catalog, parse_path, path_str
from scaler.config.catalog import Path as ConfigPath
from scaler.config.fields import Ask, Field, FieldKind, check_section, format_duration, suggest
from scaler.config.redact import find
from scaler.config.sections import RESOURCES, SCALER
from scaler.config.writer import EnvRef, render_config
from scaler.types import Problem

NO_DEFAULT: Any = object()
#: stands for a secret while an answer is checked: secrets come from the environment at run time
_SECRET_PLACEHOLDER = "set-at-run-time"

#: ``(configuration tree) -> problems``: validate-config on a partial configuration
Checker = Callable[[dict[str, Any]], list[Problem]]


class WizardError(Exception):
    """Answers are missing (no terminal to ask on) or invalid (given as flags)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def parse_resource_spec(spec: str) -> dict[str, str]:
    """``name=gpu,queue=gpu,spot=true`` → dict (its keys are checked once the provider is known)."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise WizardError(f"--resource {spec!r}: {item.strip()!r} is not key=value")
        out[name] = value.strip()
    return out


def parse_set(item: str) -> tuple[str, str]:
    """``mycloud.region=eu-2`` → ``("mycloud.region", "eu-2")`` (the path in its canonical spelling)."""
    name, sep, value = item.partition("=")
    where = parse_path(name.strip())
    if not sep or not where or not isinstance(where[0], str):
        raise WizardError(f"--set {item!r}: expected path=value, e.g. --set scaler.name=my-fleet")
    return path_str(where), value


def _as_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("y", "yes", "true", "1", "on"):
        return True
    if lowered in ("n", "no", "false", "0", "off"):
        return False
    return None


def check_field(spec: Field, raw: Any, path: str) -> tuple[Any, str | None]:
    """The normalised value of one answer, or the validation message of its declared field."""
    if spec.kind == FieldKind.LIST and isinstance(raw, str):
        raw = [item for item in re.split(r"[\s,]+", raw) if item]  # typed lists: spaces or commas
    elif spec.kind in (FieldKind.DICT, FieldKind.ANY) and isinstance(raw, str) and raw.strip()[:1] in ("{", "["):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            return None, f"is not valid JSON: {exc}"
    elif spec.kind == FieldKind.TEXT and isinstance(raw, str) and raw.startswith("@"):
        try:
            raw = Path(raw[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            return None, f"cannot read {raw[1:]}: {exc.strerror or exc}"
    checked = check_section({spec.name: raw}, (spec,), path.rsplit(".", 1)[0] if "." in path else "")
    if checked.problems:
        return None, checked.problems[0].message
    return checked.values.get(spec.name), None


def _written(spec: Field, value: Any) -> Any:
    """How a normalised answer is written to the file."""
    if spec.kind == FieldKind.DURATION and isinstance(value, (int, float)):
        return format_duration(value)
    return value


def _shown(spec: Field, value: Any) -> Any:
    """A default as the prompt shows it."""
    if spec.kind == FieldKind.DURATION and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_duration(value)
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return value


def _get(node: Any, step: str | int) -> Any:
    if isinstance(node, list):
        return node[step] if isinstance(step, int) and step < len(node) else None
    return node.get(step) if isinstance(node, dict) else None


def _put(node: Any, step: str | int, value: Any) -> None:
    if isinstance(node, list):
        assert isinstance(step, int)
        while len(node) <= step:
            node.append({})
        node[step] = value
    else:
        node[step] = value


def _set(tree: dict[str, Any], path: ConfigPath, value: Any) -> None:
    """Set ``path`` in nested dicts and lists, making the missing levels."""
    node: Any = tree
    for step, nxt in itertools.pairwise(path):
        child = _get(node, step)
        if not isinstance(child, (dict, list)):
            child = [] if isinstance(nxt, int) else {}
            _put(node, step, child)
        node = child
    _put(node, path[-1], value)


def _leaves(fields: Sequence[Field], prefix: ConfigPath) -> list[tuple[ConfigPath, Field]]:
    out: list[tuple[ConfigPath, Field]] = []
    for item in fields:
        if item.kind == FieldKind.SECTION:
            out += _leaves(item.fields, (*prefix, item.name))
        else:
            out.append(((*prefix, item.name), item))
    return out


@dataclass
class Given:
    """An answer given on the command line, and how (``label``, for messages). A secret given
    this way is refused: it would stay in the shell history and in ``ps``."""

    label: str
    value: Any


@dataclass
class Answers:
    """What the wizard collected: the configuration tree and the secrets typed."""

    tree: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> value


class Wizard:
    """The questions of ``scaler init`` for one provider, from ``catalog``'s declarations.

    ``given`` maps dotted config paths to answers given on the command line; ``resources``
    are the ``--resource key=value,…`` specs; ``check`` validates a partial configuration
    (through the plugins' cross-field checks).
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        interactive: bool,
        say: Callable[[str], None],
        given: Mapping[str, Given] | None = None,
        resources: list[dict[str, str]] | None = None,
        check: Checker | None = None,
    ) -> None:
        self.catalog = catalog
        self.interactive = interactive
        self.say = say
        self.given: dict[str, Given] = {k: v for k, v in (given or {}).items() if v.value is not None}
        self.resource_specs = list(resources or [])
        self.check = check
        self.provider = ""
        self.missing: list[str] = []
        self.errors: list[str] = []
        self.secrets: dict[str, str] = {}
        self.tree: dict[str, Any] = {}

    # -- one answer ----------------------------------------------------------------------------

    def _default(self, spec: Field, default: Any) -> Any:
        if default is not NO_DEFAULT:
            return default
        question = spec.question
        if question is not None and question.has_default:
            return question.default
        return spec.default if spec.has_default and spec.default is not None else NO_DEFAULT

    def _cross_check(self, where: str) -> str | None:
        """The first error the plugins' cross-field checks find at ``where``, secrets assumed set."""
        if self.check is None:
            return None
        tree = copy.deepcopy(self.tree)
        for section in self.catalog.top_sections:
            if not self.catalog.applies(section.name, self.provider):
                continue
            for path, spec in _leaves(section.fields, (section.name,)):
                if spec.kind == FieldKind.SECRET:
                    _set(tree, path, _SECRET_PLACEHOLDER)
        tree = _without_env_refs(tree)
        for problem in self.check(tree):
            if problem.path == where and problem.severity == "error":
                return problem.message
        return None

    def _accept(self, spec: Field, path: ConfigPath, raw: Any, extra: Callable[[Any], str | None] | None) -> Any:
        """Check one answer: its field, the question's own check, the cross-field checks.
        Returns the normalised value, or raises ``ValueError`` with the message."""
        where = path_str(path)
        value, error = check_field(spec, raw, where)
        if error is None and extra is not None:
            error = extra(value)
        if error is None:
            before = copy.deepcopy(self.tree)
            _set(self.tree, path, _written(spec, value))
            error = self._cross_check(where)
            if error is not None:
                self.tree = before
        if error is not None:
            raise ValueError(error)
        return value

    def answer(
        self,
        spec: Field,
        path: ConfigPath,
        *,
        label: str,
        default: Any = NO_DEFAULT,
        ask: bool = True,
        extra: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The value of one field: given on the command line, else asked (when ``ask`` and the
        field has a question), else its default. Written to the tree unless empty."""
        where = path_str(path)
        question = spec.question
        check = extra or (question.check if question is not None else None)
        if spec.kind == FieldKind.SECRET:
            return self._secret(path, question if ask else None)
        given = self.given.pop(where, None)
        default = self._default(spec, default)
        if given is not None:
            if isinstance(given.value, str) and not given.value.strip() and default is NO_DEFAULT:
                self.errors.append(f"{given.label}: an answer is required")
                return None
            text = given.value if spec.kind == FieldKind.TEXT and isinstance(given.value, str) else "@"
            hits = [] if text.startswith("@") else find(text)
            if hits:  # a script or a clearml.conf snippet with a password in it, typed on the command line
                self.errors.append(
                    f"{given.label}: holds what looks like a secret ({hits[0].what}), and a secret on the command "
                    "line stays in the shell history and in `ps`: put the text in a file and give @FILE"
                )
                return None
            try:
                return self._keep(spec, path, self._accept(spec, path, given.value, check))
            except ValueError as exc:
                self.errors.append(f"{given.label}: {exc}")
                return None
        if not ask or question is None:
            return None  # not asked: the field's default applies
        if not self.interactive:
            if default is NO_DEFAULT:
                self.missing.append(label)
                return None
            try:
                return self._keep(spec, path, self._accept(spec, path, _shown(spec, default), check))
            except ValueError:
                return None
        while True:
            try:
                raw = self._prompt(spec, question, default)
                return self._keep(spec, path, self._accept(spec, path, raw, check))
            except ValueError as exc:
                self.say(f"  ✗ {exc}")

    def _prompt(self, spec: Field, question: Ask, default: Any) -> Any:
        if spec.kind == FieldKind.BOOL:
            return bool(typer.confirm(question.question, default=bool(default) if default is not NO_DEFAULT else False))
        shown = None if default is NO_DEFAULT else str(_shown(spec, default))
        return typer.prompt(question.question, default=shown, type=str, show_default=shown not in (None, ""))

    def _keep(self, spec: Field, path: ConfigPath, value: Any) -> Any:
        """Leave an empty optional answer out of the file (its default is the same)."""
        if not spec.required and value in ("", [], {}):
            _drop(self.tree, path)
        return value

    def _secret(self, path: ConfigPath, question: Ask | None) -> Any:
        """A secret: never from the command line, taken from its environment variable or asked
        hidden, written as ``${?ENV}``; a typed value is kept for the env file. ``question`` is
        ``None`` when the secret is not asked (then it is left out)."""
        where = path_str(path)
        env = self.catalog.env_for(path)
        given = self.given.pop(where, None)
        if given is not None:
            self.errors.append(
                f"{given.label}: {where} is a secret, and a secret on the command line stays in the shell "
                f"history and in `ps`: export {env}=… instead, or answer the hidden prompt "
                f"(the configuration reads it as ${{?{env}}})"
            )
            return None
        if question is None:
            return None
        if env in os.environ:
            self.say(f"  {question.question}: taken from ${env} when the scaler runs")
        elif self.interactive:
            value = typer.prompt(question.question, default="", hide_input=True, show_default=False)
            if value:
                self.secrets[env] = str(value)
        _set(self.tree, path, EnvRef(env))
        return EnvRef(env)

    # -- groups of questions -------------------------------------------------------------------

    def fields(
        self,
        fields: Sequence[Field],
        prefix: ConfigPath,
        *,
        label: Callable[[ConfigPath, Field], str],
    ) -> dict[str, Any]:
        """Every field of a section (recursively): given, asked when it has a question whose
        ``when`` holds for the answers so far, or left to its default."""
        answers: dict[str, Any] = {}
        for item in fields:
            path = (*prefix, item.name)
            if item.kind == FieldKind.SECTION:
                answers[item.name] = self.fields(item.fields, path, label=label)
                continue
            question = item.question
            ask = question is None or question.when is None or question.when(answers)
            value = self.answer(item, path, label=label(path, item), ask=ask)
            if value is not None:
                answers[item.name] = value
        return answers

    def run(self, provider: str, providers: list[str]) -> Answers:
        if provider not in providers:
            raise WizardError(f"unknown provider {provider!r}; installed providers: {', '.join(providers)}")
        self.provider = provider
        self._check_given()
        fleet = {f.name: f for f in SCALER.fields}
        self.say(f"Fleet ({provider})")
        self.answer(
            fleet["name"], ("scaler", "name"), label=self._label(("scaler", "name")), default=f"{provider}-autoscaler"
        )
        self.answer(
            fleet["workers_prefix"],
            ("scaler", "workers_prefix"),
            label=self._label(("scaler", "workers_prefix")),
            default=f"dynamic_{provider}",
        )
        for section in self.catalog.top_sections:
            if section.name == SCALER.name or not self.catalog.applies(section.name, provider):
                continue
            if any(f.question for _, f in _leaves(section.fields, ())):
                self.say(section.doc or section.name)
            self.fields(section.fields, (section.name,), label=lambda path, _f: self._label(path))

        self.say("Git credentials the agents clone repositories with")
        git = {f.name: f for f in fleet["git"].fields}
        self.answer(git["user"], ("scaler", "git", "user"), label=self._label(("scaler", "git", "user")))
        self.answer(git["password"], ("scaler", "git", "password"), label=self._label(("scaler", "git", "password")))
        image = ("scaler", "default_docker_image")
        self.answer(fleet["default_docker_image"], image, label=self._label(image))

        self._resources(provider)

        self.say("Timing")
        for name in ("max_idle_time", "polling_interval"):
            self.answer(fleet[name], ("scaler", name), label=self._label(("scaler", name)))
        self._rest()
        self._raise_if_incomplete()
        tree = {"scaler": self.tree.pop("scaler", {})}
        tree.update(self.tree)  # the plugins' sections, then resources, in the order asked
        if "resources" in tree:
            tree["resources"] = tree.pop("resources")
        return Answers(tree, dict(self.secrets))

    def _label(self, path: ConfigPath) -> str:
        where = path_str(path)
        given = self.given.get(where)
        return given.label if given is not None else f"--set {where}=…"

    def _check_given(self) -> None:
        """Every ``--set`` path names a declared setting."""
        for where, given in list(self.given.items()):
            path = parse_path(where)
            if self.catalog.field_at(path) is None and not (len(path) > 1 and path[0] == "resources"):
                self.errors.append(f"{given.label}: {self._unknown(path)}")
                del self.given[where]

    def _unknown(self, path: ConfigPath) -> str:
        """``no such setting; did you mean 'region'?``"""
        parent = path[:-1]
        section = self.catalog.section(str(parent[-1])) if parent else None
        if not parent:
            siblings = self.catalog.top_level_keys()
        elif parent[0] == "resources" and len(parent) == 2:
            siblings = self.catalog.resource_keys()
        elif parent[0] == "resources" and len(parent) == 3 and section is not None:
            siblings = [f.name for f in section.resource_fields]
        elif len(parent) == 1 and section is not None:
            siblings = [f.name for f in section.fields]
        else:
            found = self.catalog.field_at(parent)
            siblings = [f.name for f in found.fields] if found is not None else []
        return f"no such setting{suggest(str(path[-1]), siblings)}"

    def _rest(self) -> None:
        """``--set`` answers no question took (settings without a question)."""
        for where in list(self.given):
            path = parse_path(where)
            spec = self.catalog.field_at(path)
            if spec is None:
                self.errors.append(f"{self.given.pop(where).label}: {self._unknown(path)}")
                continue
            self.answer(spec, path, label=self.given[where].label, ask=False)

    def _raise_if_incomplete(self) -> None:
        if self.errors:
            raise WizardError("invalid answers:\n  " + "\n  ".join(self.errors))
        if self.missing:
            flags = list(dict.fromkeys(self.missing))
            raise WizardError(
                "no terminal to ask on (standard input is not a TTY; use --interactive to answer from it anyway); "
                f"pass {', '.join(flags)}"
            )

    # -- resources -----------------------------------------------------------------------------

    def resource_hint(self, provider: str) -> str:
        """``--resource`` with the keys that have no default for ``provider``."""
        keys = ["name"]
        section = self.catalog.section(provider)
        if section is not None:
            for path, spec in _leaves(section.resource_fields, ()):
                if spec.required:
                    question = spec.question
                    keys.append(question.key if question is not None and question.key else path_str(path))
        return ",".join(f"{key}=…" for key in keys)

    def _resource_key(self, key: str, provider: str) -> ConfigPath | None:
        """The path inside a resource that ``--resource key=…`` sets: a common key, the
        provider's key (qualified or not: ``mycloud.size``, ``disk.size_gb``) or a short key
        the provider declares (``Ask.key``). A common key wins over a provider key of the same name."""
        where = parse_path(key)
        if not where or not all(isinstance(step, str) for step in where):
            return None
        known = self.catalog.field_at(("resources", 0, *where)) is not None
        if any(f.name == where[0] for f in self.catalog.inline_fields) or where[0] == provider:
            return where if known else None
        section = self.catalog.section(provider)
        for path, spec in _leaves(section.resource_fields if section is not None else (), ()):
            question = spec.question
            if path == where or (len(where) == 1 and question is not None and question.key == where[0]):
                return (provider, *path)
        return None

    def _resource_keys(self, provider: str) -> list[str]:
        keys = [f.name for f in self.catalog.inline_fields]
        section = self.catalog.section(provider)
        for path, spec in _leaves(section.resource_fields if section is not None else (), ()):
            question = spec.question
            keys.append(question.key if question is not None and question.key else path_str(path))
        return list(dict.fromkeys(keys))

    def _resource_specs(self, provider: str) -> list[dict[str, Given]]:
        """``--resource`` and ``--set resources[i]…`` answers, by resource."""
        specs: list[dict[str, Given]] = []
        for index, spec in enumerate(self.resource_specs):
            answers: dict[str, Given] = {}
            for key, value in spec.items():
                label = f"--resource {key}=… (resource {index + 1})"
                inner = self._resource_key(key, provider)
                if inner is None:
                    keys = ", ".join(self._resource_keys(provider))
                    self.errors.append(f"--resource {key}=…: unknown key {key!r}; keys: {keys}")
                    continue
                answers[path_str(("resources", index, *inner))] = Given(label, value)
            specs.append(answers)
        for where in list(self.given):
            path = parse_path(where)
            if len(path) > 2 and path[0] == "resources" and isinstance(path[1], int):
                if self.catalog.field_at(path) is None:
                    self.errors.append(f"{self.given.pop(where).label}: {self._unknown(path)}")
                    continue
                while len(specs) <= path[1]:
                    specs.append({})
                specs[path[1]][where] = self.given.pop(where)
        return specs

    def _resources(self, provider: str) -> None:
        specs = self._resource_specs(provider)
        if not specs and not self.interactive:
            self.missing.append("--resource " + self.resource_hint(provider))
            return
        self.tree["resources"] = []
        taken: list[Any] = []
        index = 0
        while True:
            self.given.update(specs[index] if index < len(specs) else {})
            taken.append(self._resource(provider, index, taken))
            index += 1
            if index < len(specs):
                continue
            if specs or not self.interactive or not typer.confirm("Add another resource?", default=False):
                break

    def _resource(self, provider: str, index: int, taken: list[Any]) -> Any:
        prefix: ConfigPath = ("resources", index)
        self.say(f"Resource {index + 1}")
        _set(self.tree, prefix, {})
        common = {f.name: f for f in RESOURCES.resource_fields}

        def label(path: ConfigPath, spec: Field) -> str:
            where = path_str(path)
            if where in self.given:
                return self.given[where].label
            question = spec.question
            key = question.key if question is not None and question.key else path_str(path[3:] or path[2:])
            return f"--resource {key}=… (resource {index + 1})"

        def unique(value: Any) -> str | None:
            return f"a resource named {value!r} already exists" if value in taken else None

        name = self.answer(
            common["name"], (*prefix, "name"), label=label((*prefix, "name"), common["name"]), extra=unique
        )
        queue_path = (*prefix, "queue")
        self.answer(common["queue"], queue_path, label=label(queue_path, common["queue"]), default=name or NO_DEFAULT)
        section = self.catalog.section(provider)
        if section is not None:
            _set(self.tree, (*prefix, provider), {})
            self.fields(section.resource_fields, (*prefix, provider), label=label)
        others = [f for f in self.catalog.inline_fields if f.name not in ("name", "queue")]
        self.fields(others, prefix, label=label)
        for where in [w for w in self.given if w.startswith(f"resources[{index}]")]:
            path = parse_path(where)
            spec = self.catalog.field_at(path)
            if spec is not None:
                self.answer(spec, path, label=self.given[where].label, ask=False)
        if section is not None:  # the provider's section last, as a hand-written resource reads
            node = self.tree["resources"][index]
            node[provider] = node.pop(provider)
        return name


def _drop(tree: Any, path: ConfigPath) -> None:
    node = tree
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _without_env_refs(value: Any) -> Any:
    if isinstance(value, EnvRef):
        return _SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: _without_env_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_env_refs(v) for v in value]
    return value


def render(answers: Answers, provider: str, file: str = "FILE", catalog: Catalog | None = None) -> str:
    header = (
        f"clearml-scaler configuration for provider '{provider}', written by `scaler init`.\n"
        f"Check it: scaler validate-config {file} --provider {provider}\n"
        f"Try it:   scaler run --provider {provider} --config {file} --once --dry-run"
    )
    env = sorted({ref.name for ref in _env_refs(answers.tree)})
    if env:
        header += "\nSecrets are read from the environment: " + ", ".join(env)
    return render_config(answers.tree, header=header, catalog=catalog)


def _env_refs(value: Any) -> list[EnvRef]:
    if isinstance(value, EnvRef):
        return [value]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in _env_refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _env_refs(item)]
    return []


def env_file_text(secrets: Mapping[str, str], written_by: str = "scaler init") -> str:
    """The env file of ``secrets`` (``NAME=value``, shell-quoted: ``set -a; . FILE; set +a``)."""
    lines = [f"# secrets for clearml-scaler (written by `{written_by}`); keep this file private", ""]
    lines += [f"{name}={shlex.quote(value)}" for name, value in sorted(secrets.items())]
    return "\n".join(lines) + "\n"
