"""Reading HOCON files, merging the vault, validating against every plugin's declared sections,
building the typed :class:`~scaler.config.model.Config`."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.config.catalog import Catalog, leaf_values, parse_path
from scaler.config.catalog import ProviderChoiceError as ProviderChoiceError  # raised by load_config
from scaler.config.catalog import installed as installed_catalog
from scaler.config.fields import BARE_MINUTES_HINT
from scaler.config.hocon import AllowSubstitution, Refusal, parse_data
from scaler.config.model import NO_DOCKER, AgentCredentials, Config, GitSettings, Resource, ScalerSettings, is_no_docker
from scaler.config.redact import redact
from scaler.config.validation import check_config
from scaler.config.vault import VaultMerge, merge_vault
from scaler.errors import ConfigError
from scaler.types import Problem, Secret

if TYPE_CHECKING:
    from scaler.host import PluginHost


class ConfigFileError(ConfigError):
    """The file cannot be read at all (missing, a directory, not text): exit code 2."""


@dataclass
class LoadResult:
    """Everything ``validate-config`` and ``run`` need to know about a config file."""

    config: Config | None
    problems: list[Problem] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    vault: VaultMerge | None = None
    #: the provider the configuration was checked for (given, or inferred from its cloud section);
    #: ``None`` when its resources run on several (``providers``)
    provider: str | None = None
    inferred: bool = False  #: the provider was inferred (no --provider given)
    #: the providers of the run, in config order: ``--provider``, or every resource's
    providers: list[str] = field(default_factory=list)
    #: each provider's vault merge (``vault`` is them all, combined)
    vaults: dict[str, VaultMerge] = field(default_factory=dict)
    #: resources left out of the run by ``--provider`` (``name (provider)``)
    dropped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def read_text(path: str | Path, what: str = "config file") -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_TEXT_BYTES`.

    A FIFO, a device (``/dev/zero``), a socket or a larger file is refused without reading it
    (the open does not block on a FIFO without a writer).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
            if not stat.S_ISREG(info.st_mode):
                kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
                raise ConfigFileError(f"{what} {str(path)!r} is {kind}, not a regular file")
            data = handle.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise ConfigFileError(f"{what} {str(path)!r} is larger than {MAX_TEXT_BYTES // 1024} KiB")
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise ConfigFileError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{what} {str(path)!r} is a directory, not a file") from None
    except PermissionError:
        raise ConfigFileError(f"{what} {str(path)!r} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{what} {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigFileError(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def parse_hocon(
    text: str,
    *,
    source: str,
    base_dir: str | Path | None = None,
    data: str = "",
    allow: AllowSubstitution | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    """Parse HOCON (includes and ``${?ENV}`` substitution resolved) into plain nested dicts.

    ``data`` names text written by someone else (``"a vault"``, ``"a ClearML task's
    configuration"``): it is parsed as data, every include and substitution refused with its
    key and line (nothing fetched or read; ``allow`` may accept some substitutions, see
    :func:`scaler.config.hocon.parse_data`). Syntax errors, unresolved required substitutions,
    unreadable includes, text over :data:`MAX_TEXT_BYTES` and nesting deeper than
    :data:`MAX_DEPTH` come back as problems (with a line when known).
    """
    if len(text) > MAX_TEXT_BYTES:
        return {}, [Problem(source, f"is larger than {MAX_TEXT_BYTES // 1024} KiB; that is not a configuration")]
    stripped = text.lstrip()
    if stripped.startswith("{"):
        # JSON is valid HOCON with the same meaning (no includes, no substitutions outside strings);
        # json is ~100x faster than pyhocon, which rebuilds its grammar on every parse
        try:
            loaded = json.loads(text)
        except RecursionError:
            return {}, [Problem(source, f"nesting is deeper than {MAX_DEPTH} levels")]
        except ValueError:
            pass
        else:
            if isinstance(loaded, dict):
                if depth(loaded) > MAX_DEPTH:
                    return {}, [Problem(source, f"nesting is deeper than {MAX_DEPTH} levels")]
                return _plain(loaded), []
    from pyhocon import ConfigFactory  # imported here: it is slow to import and `--help` must be fast
    from pyhocon.exceptions import ConfigException

    try:
        import pyparsing
    except ImportError:  # pragma: no cover - pyhocon depends on pyparsing
        pyparsing = None  # type: ignore[assignment]

    parse_errors: tuple[type[BaseException], ...] = (ConfigException,)
    if pyparsing is not None:
        parse_errors += (pyparsing.ParseBaseException,)
    try:
        if data:
            tree, refused = parse_data(text, allow=allow)
            if refused:
                return {}, [_refusal(source, data, r) for r in refused]
        else:
            tree = ConfigFactory.parse_string(text, basedir=str(base_dir) if base_dir else None, resolve=True)
    except parse_errors as exc:
        line = getattr(exc, "lineno", None) or getattr(exc, "line_number", None)
        message = str(getattr(exc, "msg", None) or exc).strip()
        var = re.search(r"Cannot resolve variable \$\{(\w[^}]*)\}", message)
        if var:
            name = var.group(1)
            message = (
                f"${{{name}}} is not set: export {name} in the environment or write ${{?{name}}} to make it optional"
            )
            line = locate_text(text, "${" + name)
        else:
            message = f"HOCON syntax error: {message.splitlines()[0] if message else exc.__class__.__name__}"
        return {}, [Problem(source, message, line=line if isinstance(line, int) else None)]
    except RecursionError:
        return {}, [Problem(source, "nesting is too deep to parse (a configuration nests objects and lists ~5 deep)")]
    except OSError as exc:  # an include of the operator's own file that cannot be read
        what = getattr(exc, "filename", None) or getattr(exc, "url", None) or getattr(exc, "reason", None) or ""
        where = f" {str(what)!r}" if what else ""
        line = locate_text(text, str(what)) if what else None
        return {}, [Problem(source, f"include{where} cannot be read: {exc.strerror or exc}", line=line)]
    except OverflowError:  # e.g. a duration of 10**300 ms
        return {}, [Problem(source, "holds a number too large to be a duration or a count")]
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # pyhocon raises plain Python errors on some malformed input
        return {}, [Problem(source, f"cannot be parsed as HOCON: {exc.__class__.__name__}: {exc}")]
    plain = tree.as_plain_ordered_dict() if hasattr(tree, "as_plain_ordered_dict") else tree
    if depth(plain) > MAX_DEPTH:
        return {}, [Problem(source, f"nesting is deeper than {MAX_DEPTH} levels")]
    return _plain(plain), []


#: the largest configuration or vault text read (pyhocon reads about 25 KB a second)
MAX_TEXT_BYTES = 1024 * 1024
#: the deepest nesting of objects and lists accepted (a real configuration has about 5)
MAX_DEPTH = 64


def depth(value: Any) -> int:
    """How deeply objects and lists nest in ``value`` (a scalar: 0); never recurses."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:
            stack.extend((child, level + 1) for child in children)
    return deepest


def _refusal(source: str, data: str, refusal: Refusal) -> Problem:
    where = f"'{refusal.path}'" if refusal.path else "the top level"
    kind = "an include" if refusal.what.startswith("include") else "a substitution"
    fix = "write the value itself"
    catalog = installed_catalog()
    path = parse_path(refusal.path) if refusal.path else ()
    if kind == "a substitution" and path and catalog.is_secret(path):
        fix = f"a secret may name only its own variable there: ${{?{catalog.env_for(path)}}}"
    return Problem(
        source,
        f"{refusal.what} at {where} refused: {data} is data, so {kind} is not allowed "
        f"(nothing was fetched, opened or read from the environment); {fix}",
        line=refusal.line,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def locate_text(text: str, needle: str) -> int | None:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else None


def locate_line(text: str, path: str) -> int | None:
    """Best-effort line of a dotted path: the line of its last key when that key occurs once.

    pyhocon keeps no positions, so this searches the source; ambiguous keys get no line.
    """
    key = re.split(r"[.\[]", path.rstrip("]"))[-1].strip('"')
    if not key or key.isdigit():
        return None
    hits = [m for m in re.finditer(rf'(?m)(?:^|[\s{{,])"?{re.escape(key)}"?\s*(?:[=:{{]|\+=)', text)]
    if len(hits) != 1:
        return None
    return text.count("\n", 0, hits[0].start()) + 1 + (1 if text[hits[0].start()] == "\n" else 0)


def _secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value or ""))


def build_config(
    raw: Mapping[str, Any],
    *,
    provider: str = "",
    vault: VaultMerge | None = None,
    catalog: Catalog | None = None,
    vaults: Mapping[str, VaultMerge] | None = None,
) -> Config:
    """The typed config from a raw config that validated without errors.

    Each resource runs on its provider (:meth:`Catalog.resource_providers`); ``provider``
    (``--provider``) restricts the run to that provider's resources. ``Config.providers`` holds
    each provider's normalised top-level section, and each ``Resource.provider`` its normalised
    subsection (defaults applied, durations in seconds, secrets as :class:`Secret`), as declared
    in ``catalog`` (default: the installed plugins'); a provider that declares no section gets
    them as written. ``vaults`` are the vault merges of each provider (``vault``: of the one
    provider).
    """
    catalog = catalog if catalog is not None else installed_catalog()
    checked = check_config(raw, catalog, provider or None)
    scaler = dict(checked.sections.get("scaler", {}))
    if _says_no_docker(raw.get("scaler"), "default_docker_image"):
        scaler["default_docker_image"] = ""  # no docker (an explicit null is not "the default image")
    git = scaler.pop("git")
    creds = scaler.pop("agent_credentials")
    settings = ScalerSettings(
        **scaler,
        git=GitSettings(user=git["user"], password=_secret(git["password"])),
        agent_credentials=AgentCredentials(_secret(creds["access_key"]), _secret(creds["secret_key"])),
    )
    owners = checked.resource_providers
    resources = []
    for index, item in enumerate(raw.get("resources") or []):
        own = (owners[index] if index < len(owners) else "") or provider
        if provider and own != provider:
            continue  # --provider restricts the run to its own resources
        values = {k: v for k, v in (checked.common[index] or {}).items() if k in _RESOURCE_KEYS}
        values["extra_agent_args"] = tuple(values["extra_agent_args"])
        if _says_no_docker(item, "docker_image"):
            values["docker_image"] = NO_DOCKER  # an empty docker_image would mean the default image
        if own and catalog.section(own) is not None:
            section: Any = checked.subsections[index].get(own, {})
        else:
            section = item.get(own) if own else None
        resources.append(
            Resource(**values, provider=dict(section) if isinstance(section, Mapping) else {}, provider_name=own)
        )
    names = list(dict.fromkeys(r.provider_name for r in resources if r.provider_name)) or (
        [provider] if provider else []
    )
    providers: dict[str, dict[str, Any]] = {}
    for name in names:
        found = checked.sections.get(name, {}) if catalog.section(name) is not None else raw.get(name)
        providers[name] = dict(found) if isinstance(found, Mapping) else {}
    merges = dict(vaults or {})
    if vault is not None and not merges and len(names) == 1:
        merges[names[0]] = vault
    single = names[0] if len(names) == 1 else ""
    return Config(
        scaler=settings,
        resources=tuple(resources),
        provider_name=single,
        provider_settings=providers.get(single, {}),
        vault_scripts=tuple(t for m in merges.values() for t in m.scripts),
        vault_clearml_conf=tuple(t for m in merges.values() for t in m.clearml_conf),
        raw=dict(raw),
        providers=providers,
        provider_vaults={name: (tuple(m.scripts), tuple(m.clearml_conf)) for name, m in merges.items()},
    )


def _says_no_docker(section: Any, key: str) -> bool:
    """``key`` is written in ``section`` as ``null``, ``""`` or ``none`` (any case): no docker.
    A key left out is not: it takes the field's default."""
    return isinstance(section, Mapping) and key in section and is_no_docker(section[key])


#: the common keys of a resource that :class:`Resource` holds (a plugin may add inline keys of its own)
_RESOURCE_KEYS = frozenset(f.name for f in dataclasses.fields(Resource)) - {"provider", "provider_name"}


def load_config(
    path: str | Path,
    host: PluginHost,
    *,
    provider: str | None = None,
    vault_path: str | Path | None = None,
    vault_text: str | None = None,
    server_vaults: Sequence[tuple[str, str]] = (),
    from_task: bool = False,
    infer_provider: bool = False,
) -> LoadResult:
    """Read, merge the vaults, validate through every plugin, and build the typed config.

    With no ``provider``, each resource runs on its own provider (its ``provider`` key, its one
    provider subsection, or the configuration's one cloud section: one fleet may span several
    clouds); ``provider`` restricts the run to that provider's resources (the others are listed
    in ``LoadResult.dropped``). ``infer_provider``: a configuration that names no provider at
    all raises :class:`ProviderChoiceError`, a usage error; without it, it is checked for none.

    ``server_vaults`` are ``(description, HOCON text)`` pairs read from the ClearML server;
    they merge first, then the ``--vault`` file (the more explicit source wins).
    ``from_task``: the file holds a ClearML task's configuration, which anyone who can edit the
    task may have changed: it is data like a vault, except that a secret field may name its own
    variable (:func:`own_secret_variables`).
    Raises :class:`ConfigFileError` only when a file cannot be read; everything else is a
    problem in the result, so a caller can show all of them at once.
    """
    text = read_text(path)
    raw, problems = _parse_config(text, path, host.catalog(), from_task)
    if problems:
        return LoadResult(None, problems, provider=provider)

    if vault_path is not None and vault_text is None:
        vault_text = read_text(vault_path, "vault file")
    inferred = False
    catalog = host.catalog()
    run_providers = [provider] if provider else catalog.active_providers(raw)
    if provider is None and infer_provider:
        if not run_providers and len(catalog.cloud_sections(raw)) < 2:
            catalog.choose_provider(raw, str(path))  # raises: no cloud section says which
        inferred = True
    result = LoadResult(
        None,
        raw=raw,
        provider=run_providers[0] if len(run_providers) == 1 else provider,
        inferred=inferred,
        providers=run_providers,
    )
    sources = list(server_vaults)
    if vault_text is not None:
        sources.append((str(vault_path or "vault"), vault_text))
    vaults: dict[str, VaultMerge] = {}
    # each provider's auto_scaler.v1.<provider> merges in turn, in the order of the run's providers
    order: list[str | None] = [*run_providers] or [None]
    for name in order:
        vault: VaultMerge | None = None
        for source, body in sources:
            merged, raw = _apply_vault(raw, body, host, name, source, result.problems)
            vault = _combine(vault, merged)
        if vault is not None and name is not None:
            vaults[name] = vault
        result.vault = _combine(result.vault, vault)
    result.vaults = vaults
    result.raw = raw
    result.problems = list(dict.fromkeys(result.problems))  # a vault's problem is said once, not per cloud

    providers = host.provider_names()
    for found in host.validate(raw, provider, providers):
        origin = _vault_origin(result.vault, found.path)
        if origin.endswith("_min") and BARE_MINUTES_HINT in found.message:
            # ClearML's *_min vault keys are minutes by name: no "did you mean seconds?" for them
            if found.severity == "warning":
                continue
            hint = r" \([^()]*" + BARE_MINUTES_HINT + r"[^()]*\)"
            found = Problem(found.path, re.sub(hint, "", found.message), found.severity)
        if origin:  # the value came from the vault: say so instead of pointing into the config file
            found = Problem(f"{found.path} (from vault {origin})", found.message, found.severity)
        elif found.line is None and not found.path.startswith("vault"):
            found = Problem(found.path, found.message, found.severity, locate_line(text, found.path))
        result.problems.append(found)
    # a value that came from the environment may be a secret placed in the wrong key, and a plugin's
    # own check may quote a secret it was given: never echo either (fields quote no secret-looking
    # value themselves: scaler.config.fields.shown_value)
    hidden = [*_substituted_values(text, *(body for _, body in sources)), *_secret_values(raw, host.catalog())]
    result.problems = [_redact(p, hidden) for p in result.problems]
    if not result.errors:
        config = build_config(raw, provider=provider or "", vaults=vaults, catalog=host.catalog())
        if provider and not config.resources and isinstance(raw.get("resources"), list) and raw["resources"]:
            others = ", ".join(catalog.active_providers(raw)) or "none"
            result.problems.append(
                Problem(
                    "resources",
                    f"no resource runs on provider '{provider}' (the resources run on: {others}); "
                    "leave out --provider to run them all, or pass one of theirs",
                )
            )
            return result
        result.config = config
        result.dropped = [
            f"{item.get('name', index)} ({owner})"
            for index, (item, owner) in enumerate(
                zip(raw.get("resources") or [], catalog.resource_providers(raw, provider)[0], strict=False)
            )
            if provider and owner and owner != provider and isinstance(item, Mapping)
        ]
    return result


def _parse_config(
    text: str, path: str | Path, catalog: Catalog, from_task: bool
) -> tuple[dict[str, Any], list[Problem]]:
    if from_task:
        return parse_hocon(
            text, source=str(path), data="a ClearML task's configuration", allow=own_secret_variables(catalog)
        )
    return parse_hocon(text, source=str(path), base_dir=Path(path).resolve().parent)


def providers_of(
    path: str | Path, catalog: Catalog, *, from_task: bool = False
) -> tuple[list[str] | None, list[Problem]]:
    """The providers a configuration file's resources run on when no ``--provider`` is given
    (:meth:`Catalog.active_providers`), for a command that needs them before loading the
    configuration; ``(None, problems)`` when the file does not parse. Raises
    :class:`ConfigFileError` (unreadable) and :class:`ProviderChoiceError` (it names no provider)."""
    raw, problems = _parse_config(read_text(path), path, catalog, from_task)
    if problems:
        return None, problems
    found, unknown = catalog.resource_providers(raw)
    if unknown:  # e.g. several clouds and a resource that names none: every such resource is told
        return None, [Problem(where, message) for where, message in unknown]
    if not any(found):
        catalog.choose_provider(raw, str(path))  # raises: no cloud section says which
    return list(dict.fromkeys(name for name in found if name)), []


def own_secret_variables(catalog: Catalog) -> AllowSubstitution:
    """The substitutions a ClearML task's configuration may hold: a secret field naming its own
    environment variable (``password = ${?SCALER_GIT_TOKEN}`` at ``scaler.git.password``, as
    ``Catalog.env_for`` says), so secrets stay on the agent's machine. Any other substitution
    could move a variable of the agent's environment (a cloud key) into user data."""

    def allow(path: tuple[str | int, ...], variable: str, optional: bool) -> bool:
        return bool(path) and catalog.is_secret(path) and variable == catalog.env_for(path)

    return allow


_SUBSTITUTION = re.compile(r"\$\{\??\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}")


def _substituted_values(*texts: str) -> list[str]:
    values = {os.environ.get(name, "") for text in texts for name in _SUBSTITUTION.findall(text)}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _secret_values(raw: Any, catalog: Catalog) -> list[str]:
    """The values of the secret settings of a parsed configuration (vaults merged in)."""
    return [
        str(value)
        for path, value in leaf_values(raw)
        if path and value not in (None, "") and isinstance(value, (str, int, float)) and catalog.is_secret(path)
    ]


def _redact(problem: Problem, values: list[str]) -> Problem:
    message = redact(problem.message, values, shapes=False)
    return problem if message == problem.message else Problem(problem.path, message, problem.severity, problem.line)


def _combine(first: VaultMerge | None, then: VaultMerge | None) -> VaultMerge | None:
    """Two vault merges in a row: texts accumulate, the later settings win."""
    if first is None or then is None:
        return then or first
    return VaultMerge(
        raw=then.raw,
        scripts=first.scripts + then.scripts,
        clearml_conf=first.clearml_conf + then.clearml_conf,
        problems=first.problems + then.problems,
        matched=first.matched + then.matched,
        applied={**first.applied, **then.applied},
    )


def _vault_origin(vault: VaultMerge | None, path: str) -> str:
    if vault is None:
        return ""
    for config_path, vault_path in vault.applied.items():
        if path == config_path or path.startswith(config_path + ".") or path.startswith(config_path + "["):
            return vault_path
    return ""


def _apply_vault(
    raw: dict[str, Any],
    vault_text: str,
    host: PluginHost,
    provider: str | None,
    source: str,
    problems: list[Problem],
) -> tuple[VaultMerge | None, dict[str, Any]]:
    scaler = raw.get("scaler") if isinstance(raw.get("scaler"), Mapping) else {}
    assert isinstance(scaler, Mapping)
    if scaler.get("apply_vault", True) is False:
        if not any(p.message.startswith("not merged: scaler.apply_vault") for p in problems):
            problems.append(Problem("vault", "not merged: scaler.apply_vault is false", severity="warning"))
        return None, raw
    ignore = scaler.get("ignore_vault_parsing_errors", False) is True
    if not provider:
        problems.append(
            Problem("vault", "needs --provider to know which auto_scaler.v1.<provider> applies", severity="warning")
        )
        return None, raw
    vault_tree, parse_problems = parse_hocon(vault_text, source="vault", data="a vault")
    if parse_problems:
        for p in parse_problems:
            message = f"{source}: {p.message}"
            if ignore:
                message += "; vault ignored (ignore_vault_parsing_errors)"
            problems.append(Problem("vault", message, "warning" if ignore else "error", p.line))
        return None, raw
    prefix = str(scaler.get("workers_prefix", "dynamic_worker"))
    merged = merge_vault(
        raw,
        vault_tree,
        provider=provider,
        workers_prefix=prefix,
        key_map=host.catalog().vault_keys(provider),
        ignore_errors=ignore,
    )
    problems.extend(merged.problems)
    return merged, merged.raw


def problems_as_json(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    return [{"path": p.path, "line": p.line, "severity": p.severity, "message": p.message} for p in problems]
