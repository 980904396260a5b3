"""``scaler export`` / ``scaler import``: a configuration as one JSON document and back.

The export holds the configuration file's settings (the vault is not merged in), with

* durations spelled ``30s``/``15m``/``2h`` (the shortest exact form), so they import identically;
* every secret masked (``********``) unless ``--include-secrets``, and in every other string
  (an init script, a clearml.conf snippet) a secret's value and whatever looks like a secret
  (``--password …``, ``sdk.aws.s3.secret: …``: :mod:`scaler.config.redact`) masked too;
* ``env``: every setting whose value came from an environment substitution (``${?VAR}``),
  secrets included even when the variable is unset, so the import writes the same
  substitution back and the imported file reads its secrets from the same place.

Import writes commented HOCON: masked secrets (and secrets when not ``--include-secrets``)
become ``${?VAR}`` substitutions; secrets included in clear are written only with
``--include-secrets``, and then the file is created readable by its owner only.
"""

from __future__ import annotations

import copy
import datetime
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from scaler.config.catalog import Catalog, Path, parse_path, path_str
from scaler.config.catalog import installed as installed_catalog
from scaler.config.fields import format_duration, parse_duration
from scaler.config.redact import redact
from scaler.config.writer import EnvRef, render_config
from scaler.errors import ConfigError
from scaler.types import Secret

FORMAT = "clearml-scaler-config"
VERSION = 1
MASK = Secret.MASK


def _is_duration_object(value: Any) -> bool:
    if isinstance(value, datetime.timedelta):
        return True
    return hasattr(value, "normalized") and hasattr(value, "seconds") and hasattr(value, "days")


def substitutions(text: str) -> dict[str, str]:
    """``{path: VAR}`` for every value that is exactly one environment substitution
    (``password = ${?SCALER_GIT_TOKEN}``); best effort, ``{}`` when the text does not parse."""
    from pyhocon import ConfigFactory
    from pyhocon.config_tree import ConfigSubstitution, ConfigTree, ConfigValues

    try:
        tree = ConfigFactory.parse_string(text, resolve=False)
    except Exception:
        return {}
    top_keys = set(tree.keys()) if isinstance(tree, ConfigTree) else set()
    found: dict[str, str] = {}

    def walk(value: Any, path: Path) -> None:
        if isinstance(value, ConfigTree):
            for name, item in value.items():
                walk(item, (*path, str(name)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, index))
        elif isinstance(value, ConfigValues):
            tokens = [t for t in value.tokens if not (isinstance(t, str) and not t.strip())]
            if len(tokens) == 1 and isinstance(tokens[0], ConfigSubstitution):
                walk(tokens[0], path)
        elif isinstance(value, ConfigSubstitution):
            name = str(value.variable)
            if "." not in name and name not in top_keys:
                found[path_str(path)] = name

    walk(tree, ())
    return found


def export_config(
    path: str | FilePath, *, include_secrets: bool = False, catalog: Catalog | None = None
) -> dict[str, Any]:
    """The export document of the configuration file at ``path``; which values are secrets and
    durations comes from ``catalog`` (default: the installed plugins')."""
    from scaler.config.loading import parse_hocon, read_text

    catalog = catalog or installed_catalog()
    text = read_text(path)
    raw, problems = parse_hocon(text, source=str(path), base_dir=FilePath(path).resolve().parent)
    if problems:
        raise ConfigError("; ".join(p.render() for p in problems))
    env = substitutions(text)
    secret_values: set[str] = set()

    def walk(value: Any, where: Path) -> Any:
        if isinstance(value, Mapping):
            return {str(k): walk(v, (*where, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*where, i)) for i, v in enumerate(value)]
        if where and catalog.is_secret(where):
            env.setdefault(path_str(where), catalog.env_for(where))
            secret = "" if value is None else str(value)
            if secret:
                secret_values.add(secret)
            return secret if include_secrets or not secret else MASK
        if _is_duration_object(value) or (
            catalog.is_duration(where) and value is not None and not isinstance(value, bool)
        ):
            try:
                return format_duration(parse_duration(value))
            except ValueError:
                return value  # invalid: exported as written, validate-config will say why
        return value

    config = walk(raw, ())
    if not include_secrets:
        config = _scrub(config, sorted(secret_values))
    return {
        "format": FORMAT,
        "version": VERSION,
        "secrets": "included" if include_secrets else "masked",
        "env": dict(sorted(env.items())),
        "config": config,
    }


def _scrub(value: Any, secrets: list[str], *, shapes: bool = True) -> Any:
    """Mask secret values wherever else they appear (an init script, a custom launch spec) and,
    with ``shapes``, whatever looks like a secret in a string (:func:`scaler.config.redact.redact`)."""
    if isinstance(value, Mapping):
        return {k: _scrub(v, secrets, shapes=shapes) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets, shapes=shapes) for v in value]
    return redact(value, secrets, shapes=shapes) if isinstance(value, str) else value


@dataclass
class Imported:
    """The HOCON text of an import, and what the operator should know about it."""

    text: str
    env: dict[str, str] = field(default_factory=dict)  # secret path -> variable it is read from
    clear_secrets: list[str] = field(default_factory=list)  # secret paths written in clear
    dropped_secrets: list[str] = field(default_factory=list)  # secrets in the export not written
    masked_text: list[str] = field(default_factory=list)  # other settings holding a masked secret


def _set(tree: Any, where: Path, value: Any) -> None:
    node = tree
    for step, nxt in itertools.pairwise(where):
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return
            node = node[step]
            continue
        if not isinstance(node, dict):
            return
        if step not in node or not isinstance(node[step], (dict, list)):
            if isinstance(nxt, int):
                return  # a list that is not there: nothing to attach to
            node[step] = {}
        node = node[step]
    last = where[-1]
    if isinstance(last, int):
        if isinstance(node, list) and last < len(node):
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value


def import_config(
    document: Mapping[str, Any], *, include_secrets: bool = False, source: str = "", catalog: Catalog | None = None
) -> Imported:
    """HOCON text from an export document (or a bare configuration object), commented and with
    secrets recognised from ``catalog`` (default: the installed plugins')."""
    catalog = catalog or installed_catalog()
    if not isinstance(document, Mapping):
        raise ConfigError("the export must be a JSON object")
    if "config" in document and document.get("format", FORMAT) == FORMAT:
        version = document.get("version", VERSION)
        if not isinstance(version, int) or version > VERSION:
            raise ConfigError(f"export version {version!r} is newer than this scaler understands ({VERSION})")
        config = document["config"]
        env = document.get("env") or {}
    elif "format" in document:
        raise ConfigError(f"not a clearml-scaler export (format {document.get('format')!r}, expected {FORMAT!r})")
    else:
        config, env = document, {}
    if not isinstance(config, Mapping) or not isinstance(env, Mapping):
        raise ConfigError("the export's 'config' and 'env' must be JSON objects")
    tree = copy.deepcopy(dict(config))
    result = Imported("")

    def walk(value: Any, where: Path) -> Any:
        if isinstance(value, Mapping):
            return {str(k): walk(v, (*where, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*where, i)) for i, v in enumerate(value)]
        if where and catalog.is_secret(where):
            text = path_str(where)
            secret = "" if value is None else str(value)
            if not secret:
                return value if text not in env else EnvRef(str(env[text]))
            if secret != MASK and include_secrets:
                result.clear_secrets.append(text)
                return secret
            if secret != MASK:
                result.dropped_secrets.append(text)
                dropped.add(secret)
            name = str(env.get(text) or catalog.env_for(where))
            result.env[text] = name
            return EnvRef(name)
        if isinstance(value, str) and MASK in value:
            result.masked_text.append(path_str(where))
        return value

    dropped: set[str] = set()
    tree = walk(tree, ())
    if dropped:  # a dropped secret does not survive elsewhere either (a script keeps its text otherwise)
        tree = _scrub(tree, sorted(dropped), shapes=False)
    for text, name in env.items():
        where = parse_path(str(text))
        if not where or text in result.clear_secrets:
            continue
        _set(tree, where, EnvRef(str(name)))
        if catalog.is_secret(where):
            result.env[str(text)] = str(name)
    header = "clearml-scaler configuration" + (f", imported from {source}" if source else "")
    if result.env:
        header += "\nSecrets are read from the environment: " + ", ".join(sorted(set(result.env.values())))
    result.text = render_config(tree, header=header, catalog=catalog)
    return result
