"""Write a configuration tree as commented HOCON that ``validate-config`` reads back identically.

Strings are JSON strings (HOCON's quoted strings), multi-line text uses ``\"\"\"`` blocks,
durations are written ``30s``/``15m``/``2h``, and an :class:`EnvRef` becomes the optional
substitution ``${?NAME}`` — the way secrets are written, so they never appear in the file.
Each key gets the documentation of its declared field as a comment (from a
:class:`~scaler.config.catalog.Catalog`, default: the installed plugins').
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaler.config.catalog import Catalog, Path
from scaler.config.catalog import installed as installed_catalog

INDENT = "  "
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_RESERVED = {"true", "false", "null", "include", "yes", "no", "on", "off"}
_SHORT_DURATION = re.compile(r"\d+[smhd]")


@dataclass(frozen=True)
class EnvRef:
    """A value read from the environment when the file is loaded: ``${?NAME}``."""

    name: str


def key(name: str) -> str:
    if _BARE_KEY.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return json.dumps(name, ensure_ascii=False)


def scalar(value: Any, path: Path = (), catalog: Catalog | None = None) -> str:
    if isinstance(value, EnvRef):
        return "${?" + value.name + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if path and catalog is not None and catalog.is_duration(path) and _SHORT_DURATION.fullmatch(text):
        return text
    if "\n" in text and '"""' not in text and not text.endswith('"'):
        return '"""' + text + '"""'
    return json.dumps(text, ensure_ascii=False)


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and any(isinstance(item, (Mapping, list)) for item in value)
    )


def _comment(lines: list[str], path: Path, depth: int, catalog: Catalog, comments: bool) -> None:
    if not comments:
        return
    if len(path) > 2 and path[0] == "resources" and isinstance(path[1], int) and path[1] > 0:
        return  # the first resource carries the comments; the others stay compact
    doc = catalog.doc_at(path)
    if doc:
        lines.append(f"{INDENT * depth}# {doc}")


def _mapping(
    lines: list[str], tree: Mapping[str, Any], path: Path, depth: int, catalog: Catalog, comments: bool
) -> None:
    pad = INDENT * depth
    for name, value in tree.items():
        here = (*path, name)
        if depth == 0 and lines:
            lines.append("")
        _comment(lines, here, depth, catalog, comments)
        if isinstance(value, Mapping):
            if not value:
                lines.append(f"{pad}{key(name)} {{}}")
                continue
            lines.append(f"{pad}{key(name)} {{")
            _mapping(lines, value, here, depth + 1, catalog, comments)
            lines.append(f"{pad}}}")
        elif isinstance(value, list) and _is_block(value):
            lines.append(f"{pad}{key(name)} = [")
            _list(lines, value, here, depth + 1, catalog, comments)
            lines.append(f"{pad}]")
        else:
            lines.append(f"{pad}{key(name)} = {inline(value, here, catalog)}")


def _list(lines: list[str], items: list[Any], path: Path, depth: int, catalog: Catalog, comments: bool) -> None:
    pad = INDENT * depth
    for index, item in enumerate(items):
        here = (*path, index)
        if isinstance(item, Mapping):
            lines.append(f"{pad}{{")
            _mapping(lines, item, here, depth + 1, catalog, comments)
            lines.append(f"{pad}}}")
        elif isinstance(item, list) and _is_block(item):
            lines.append(f"{pad}[")
            _list(lines, item, here, depth + 1, catalog, comments)
            lines.append(f"{pad}]")
        else:
            lines.append(f"{pad}{inline(item, here, catalog)}")


def inline(value: Any, path: Path = (), catalog: Catalog | None = None) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(inline(item, (*path, i), catalog) for i, item in enumerate(value)) + "]"
    if isinstance(value, Mapping):
        body = ", ".join(f"{key(k)} = {inline(v, (*path, k), catalog)}" for k, v in value.items())
        return "{ " + body + " }" if body else "{}"
    return scalar(value, path, catalog)


def render_config(
    tree: Mapping[str, Any], *, header: str = "", comments: bool = True, catalog: Catalog | None = None
) -> str:
    """HOCON text of ``tree`` (plain dicts/lists/scalars and :class:`EnvRef` values), commented
    from ``catalog`` (default: the installed plugins') unless ``comments`` is false."""
    lines: list[str] = []
    _mapping(lines, tree, (), 0, catalog or installed_catalog(), comments)
    head = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return head + ("\n" if head else "") + "\n".join(lines) + "\n"
