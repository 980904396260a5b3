"""Vault merging, the same for every provider.

A vault is HOCON holding ``auto_scaler.v1.<provider> { settings..., extra_vm_bash_script,
extra_clearml_conf, match { "<regex>" { ... } } }``. Settings use ClearML's key names; the
plugins declare which fields they set (``Field.vault``; the key map comes from
``Catalog.vault_keys``). Top-level settings merge
over the config, then every ``match`` section whose regex matches the workers prefix
(``re.search``: the user's anchors decide), in file order, later wins; dict values merge
deeply. The two text fields accumulate instead, top level first. Pure: no I/O.

A vault is written by someone else, so its regexes run on the ``regex`` engine (the ``re``
syntax and ``search`` semantics) under a time bound: :data:`MATCH_TIMEOUT` each and
:data:`MATCH_BUDGET` for all of one vault. A regex that backtracks past it (``(a|aa)+$``)
is reported with its pattern like one that does not compile.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import regex

from scaler.config.fields import suggest
from scaler.types import Problem

SCRIPT_KEY = "extra_vm_bash_script"
CONF_KEY = "extra_clearml_conf"
MATCH_KEY = "match"
#: seconds one ``match`` regex may take against the workers prefix
MATCH_TIMEOUT = 0.1
#: seconds all the ``match`` regexes of one vault may take together
MATCH_BUDGET = 1.0


@dataclass
class VaultMerge:
    """What merging a vault did: the new raw config, accumulated texts and findings."""

    raw: dict[str, Any]
    scripts: list[str] = field(default_factory=list)
    clearml_conf: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)  # regexes that matched, in order
    applied: dict[str, str] = field(default_factory=dict)  # config path -> vault path that set it last


def strip_quotes(key: str) -> str:
    """pyhocon keeps the quotes of a quoted key (``'"^x$"'``); the regex is inside them."""
    if len(key) >= 2 and key[0] == key[-1] == '"':
        return key[1:-1]
    return key


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, deep-merging when both sides are mappings."""
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if not isinstance(child, Mapping) else dict(child)
            node[part] = child
        node = child
    if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping):
        node[leaf] = deep_merge(dict(node[leaf]), value)
    else:
        node[leaf] = copy.deepcopy(value)


def provider_section(vault: Mapping[str, Any], provider: str) -> Mapping[str, Any] | None:
    node: Any = vault
    for part in ("auto_scaler", "v1", provider):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def merge_vault(
    raw: Mapping[str, Any],
    vault: Mapping[str, Any],
    *,
    provider: str,
    workers_prefix: str,
    key_map: Mapping[str, str],
    ignore_errors: bool = False,
) -> VaultMerge:
    """Merge ``vault`` (a parsed vault document) over ``raw`` (a parsed config)."""
    result = VaultMerge(raw=copy.deepcopy(dict(raw)))
    base_path = f"auto_scaler.v1.{provider}"
    section = provider_section(vault, provider)
    if section is None:
        result.problems.append(Problem("vault", f"has no '{base_path}' section; nothing merged", severity="warning"))
        return result

    layers: list[tuple[str, Mapping[str, Any]]] = [(base_path, section)]
    matches = section.get(MATCH_KEY, {})
    if not isinstance(matches, Mapping):
        result.problems.append(Problem(f"vault.{base_path}.{MATCH_KEY}", "must be an object of regex { ... } sections"))
        matches = {}
    deadline = time.monotonic() + MATCH_BUDGET

    def unusable(where: str, message: str) -> None:
        result.problems.append(
            Problem(
                where,
                message + ("; skipped (ignore_vault_parsing_errors)" if ignore_errors else ""),
                severity="warning" if ignore_errors else "error",
            )
        )

    for raw_key, body in matches.items():
        pattern = strip_quotes(str(raw_key))
        where = f'vault.{base_path}.{MATCH_KEY}."{pattern}"'
        try:
            compiled = regex.compile(pattern)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            unusable(where, f"is not a valid regular expression ({exc})")
            continue
        if not isinstance(body, Mapping):
            result.problems.append(Problem(where, "must be an object of settings"))
            continue
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            hit = compiled.search(workers_prefix, timeout=min(MATCH_TIMEOUT, left))
        except TimeoutError:
            unusable(
                where,
                f"took too long to match the workers prefix '{workers_prefix}' (over {MATCH_TIMEOUT:g}s for one "
                f"regex or {MATCH_BUDGET:g}s for all of them: nested repetition such as (a+)+ or (a|aa)+ "
                "backtracks exponentially); write a simpler regex, e.g. ^prefix$ or ^prefix_.*$",
            )
            continue
        if hit:
            layers.append((where[len("vault.") :], body))
            result.matched.append(pattern)

    for layer_path, layer in layers:
        for key, value in layer.items():
            if key == MATCH_KEY and layer is section:
                continue
            if key == SCRIPT_KEY:
                if str(value).strip():
                    result.scripts.append(str(value))
            elif key == CONF_KEY:
                if str(value).strip():
                    result.clearml_conf.append(str(value))
            elif key in key_map:
                set_path(result.raw, key_map[key], value)
                result.applied[key_map[key]] = f"{layer_path}.{key}"
            else:
                known = [*key_map, SCRIPT_KEY, CONF_KEY]
                result.problems.append(
                    Problem(
                        f"vault.{layer_path}.{key}",
                        f"is not a vault key any installed plugin understands for provider '{provider}'; "
                        f"ignored{suggest(key, known)}",
                        severity="warning",
                    )
                )
    return result
