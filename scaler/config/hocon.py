"""HOCON written by someone else, read as data.

A vault (the ClearML server's or a ``--vault`` file) and a configuration edited in a ClearML
task are written by people who must not be able to make the scaler do anything: HOCON's
``include url(...)``/``file(...)``/``package(...)`` would make it fetch a URL, read a local file
or import a package, and ``${VAR}``/``${?VAR}`` (and ``+=``, an implicit ``${?key}``) would copy
the scaler host's environment, its cloud keys included, into user data. :func:`parse_data`
parses such text with pyhocon's own grammar while every include is recorded instead of read
(nothing is fetched, opened, listed or imported) and every substitution left unresolved, then
refuses the text with one :class:`Refusal` per include or substitution: where (the key path),
what, and the line. A caller may allow some substitutions (a ClearML task's configuration
names each secret field's own variable, ``${?SCALER_GIT_TOKEN}`` at ``scaler.git.password``).

pyhocon resolves includes inside its parser, through the module-level ``ConfigFactory``,
``glob`` and ``ConfigParser.resolve_package_path``; those three are wrapped once (the
wrappers hand every call through unchanged unless the calling thread is parsing data), and a
self-test refuses to read any data if a pyhocon version no longer goes through them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from scaler.errors import ConfigError

#: ``(key path, variable, optional)`` → whether that substitution may be resolved
AllowSubstitution = Callable[[tuple[str | int, ...], str, bool], bool]

_MARK = "\x00scaler-include-"
_PACKAGE = "\x00package:"


@dataclass(frozen=True)
class Include:
    """An include seen in data: never read."""

    kind: str  # url | file | package
    target: str

    def spelling(self) -> str:
        return f'include {self.kind}("{self.target}")'


@dataclass(frozen=True)
class Refusal:
    """One include or substitution found in data."""

    path: str  # dotted key path ('' at the top level)
    what: str  # e.g. 'include url("http://…")', '${?AWS_SECRET_ACCESS_KEY}', '+='
    line: int | None


class _Guard(threading.local):
    active = False
    seen: list[Include]

    def __init__(self) -> None:
        self.seen = []


_guard = _Guard()
_install_lock = threading.Lock()
_installed = False
_self_tested = False


def _record(kind: str, target: str) -> Any:
    from pyhocon.config_tree import ConfigTree

    if target.startswith(_PACKAGE):
        kind, target = "package", target[len(_PACKAGE) :]
    include = Include(kind, str(target))
    _guard.seen.append(include)
    tree = ConfigTree()
    tree.put(f"{_MARK}{len(_guard.seen)}", include)
    return tree


class _FactoryGuard:
    """Stands in for ``pyhocon.config_parser.ConfigFactory``, which pyhocon's include action
    calls; everything but the two readers is the real factory's."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def parse_URL(self, url: str, *args: Any, **kwargs: Any) -> Any:  # pyhocon's name
        if _guard.active:
            return _record("url", url)
        return self._real.parse_URL(url, *args, **kwargs)

    def parse_file(self, filename: str, *args: Any, **kwargs: Any) -> Any:
        if _guard.active:
            return _record("file", filename)
        return self._real.parse_file(filename, *args, **kwargs)


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        from pyhocon import config_parser

        if not isinstance(config_parser.ConfigFactory, _FactoryGuard):
            config_parser.ConfigFactory = _FactoryGuard(config_parser.ConfigFactory)  # type: ignore[misc]
        real_glob = config_parser.glob

        def glob(pattern: str, *args: Any, **kwargs: Any) -> list[str]:
            # `include "/**/*.conf"` would walk the whole file system before anything is read
            return [pattern] if _guard.active else list(real_glob(pattern, *args, **kwargs))

        config_parser.glob = glob  # type: ignore[assignment]
        _installed = True


def _parser() -> Any:
    from pyhocon.config_parser import ConfigParser

    class DataParser(ConfigParser):  # type: ignore[misc]
        @classmethod
        def resolve_package_path(cls, package_path: str) -> str:
            # the real one imports the package to find it: never, for data
            return _PACKAGE + package_path

    return DataParser


def _self_test() -> None:
    """Fail closed: if this pyhocon reads includes some other way, no data is read at all."""
    global _self_tested
    if _self_tested:
        return
    for kind in ("url", "file", "package"):
        target = "http://127.0.0.1:9/x.conf" if kind == "url" else "scaler/self-test:x.conf"
        _, seen = _parse_guarded(f'a {{ include {kind}("{target}") }}')
        if [i.kind for i in seen] != [kind]:
            import pyhocon

            raise ConfigError(
                f"pyhocon {getattr(pyhocon, '__version__', '?')} reads HOCON includes in a way clearml-scaler "
                "cannot refuse, so vaults and task configurations cannot be read safely; install pyhocon 0.3.x"
            )
    _self_tested = True


def _parse_guarded(text: str) -> tuple[Any, list[Include]]:
    _install()
    _guard.active = True
    _guard.seen = []
    try:
        tree = _parser().parse(text, None, False)
        return tree, list(_guard.seen)
    finally:
        _guard.active = False
        _guard.seen = []


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _include_line(text: str, include: Include) -> int | None:
    index = text.find(f'"{include.target}"')
    return _line(text, index) if index >= 0 else None


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every include marker and substitution in an unresolved pyhocon tree, with its path."""
    from pyhocon.config_tree import ConfigSubstitution, ConfigTree, ConfigValues

    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, ConfigTree):
            for key, item in reversed(list(node.items())):
                stack.append((where if str(key).startswith(_MARK) else (*where, str(key)), item))
        elif isinstance(node, list):
            stack.extend(((*where, i), item) for i, item in reversed(list(enumerate(node))))
        elif isinstance(node, ConfigValues):
            stack.extend((where, token) for token in reversed(node.tokens))
        elif isinstance(node, (ConfigSubstitution, Include)):
            yield where, node


def dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_data(text: str, *, allow: AllowSubstitution | None = None) -> tuple[Any, list[Refusal]]:
    """``(tree, refusals)``: the plain tree of ``text`` when nothing was refused, else ``None``.

    Nothing an include names is fetched, opened, listed or imported; no substitution reads the
    environment unless ``allow`` accepts it. Syntax errors raise pyhocon's/pyparsing's own
    exceptions, as :func:`pyhocon.ConfigFactory.parse_string` does.
    """
    from pyhocon.config_parser import ConfigParser
    from pyhocon.config_tree import ConfigSubstitution, ConfigTree

    _self_test()
    tree, seen = _parse_guarded(text)
    refusals: list[Refusal] = []
    located: set[int] = set()
    for where, node in _walk(tree, ()):
        if isinstance(node, Include):
            located.add(id(node))
            refusals.append(Refusal(dotted(where), node.spelling(), _include_line(text, node)))
        elif isinstance(node, ConfigSubstitution):
            variable = str(node.variable).strip()
            if not isinstance(node.instring, str):  # `key += value` is `key = ${?key} value`
                refusals.append(Refusal(dotted(where), "+=", None))
            elif allow is None or not allow(where, variable, bool(node.optional)):
                spelling = "${" + ("?" if node.optional else "") + variable + "}"
                refusals.append(Refusal(dotted(where), spelling, _line(node.instring, node.loc)))
    # an include the walk did not place (e.g. inside a list) is refused all the same
    refusals += [Refusal("", i.spelling(), _include_line(text, i)) for i in seen if id(i) not in located]
    if refusals:
        return None, refusals
    if isinstance(tree, ConfigTree):
        ConfigParser.resolve_substitutions(tree)  # in place; only allowed ones are left
    return tree, []
