"""The folder tree is the architecture: these tests keep the imports pointing inward.

They read the source (every import, including the ones inside functions; only imports under
``if TYPE_CHECKING:`` are left out, they never run) and check what DESIGN.md promises:
no import cycles; the pure policy imports nothing that does I/O; nothing in the production loop
imports the simulator; configuration knows nothing of the loop; plugins import only
``scaler.api`` from core; core names no shipped cloud.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.support import REPO

CORE = REPO / "scaler"
PLUGIN_SOURCES = [REPO / "plugins" / "aws", REPO / "plugins" / "gcp", REPO / "examples" / "provider-plugin"]


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module named by an import that can run (``from a import b`` yields ``a`` and ``a.b``)."""

    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                yield child.module
                yield from (f"{child.module}.{alias.name}" for alias in child.names)
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")))


@cache
def core_graph() -> dict[str, frozenset[str]]:
    modules = {_module_name(path, REPO): path for path in CORE.rglob("*.py")}
    return {name: frozenset(m for m in _imports(path) if m in modules and m != name) for name, path in modules.items()}


def _find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = core_graph()
    # a module imported inside a function counts; one imported under TYPE_CHECKING does not
    assert "scaler.engine.reconciler" in graph["scaler.cli.run"]
    assert "scaler.host" not in graph["scaler.engine.reconciler"]
    assert _find_cycle({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": frozenset({"b"}), "b": frozenset()}) is None


def test_no_import_cycles_in_core() -> None:
    cycle = _find_cycle(dict(core_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _importers_of(prefix: str) -> set[str]:
    return {
        name
        for name, deps in core_graph().items()
        if not name.startswith(prefix) and any(d == prefix or d.startswith(prefix + ".") for d in deps)
    }


def test_only_the_simulator_commands_import_the_simulator() -> None:
    assert _importers_of("scaler.sim") <= {"scaler.cli.sim"}


def test_the_policy_is_pure() -> None:
    """The decision function and the fleet join import only values and pure helpers."""
    allowed_core = {"scaler.types", "scaler.config.fields", "scaler.config.model", "scaler.engine.fleet"}
    io_modules = re.compile(
        r"^(os|sys|io|socket|subprocess|threading|time|logging|pathlib|shutil|tempfile|signal|http|urllib|"
        r"requests|clearml|boto3|botocore|google|pyhocon)(\.|$)"
    )
    for name in ("scaler.engine.policy", "scaler.engine.fleet"):
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.exists():
            continue
        imported = set(_imports(path))
        core = {m for m in imported if m.startswith("scaler.") and m in core_graph()}
        assert core <= allowed_core, f"{name} imports {sorted(core - allowed_core)}"
        assert not [m for m in imported if io_modules.match(m)], f"{name} imports I/O modules"


@pytest.mark.parametrize(
    "part, forbidden",
    [
        ("scaler.types", ("scaler.",)),
        ("scaler.errors", ("scaler.",)),
        ("scaler.config", ("scaler.engine", "scaler.clearml", "scaler.ops", "scaler.sim", "scaler.cli", "scaler.host")),
        ("scaler.engine", ("scaler.clearml", "scaler.ops", "scaler.sim", "scaler.cli")),
        ("scaler.clearml", ("scaler.sim", "scaler.cli")),
        ("scaler.ops", ("scaler.sim", "scaler.cli")),
    ],
)
def test_imports_point_inward(part: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        f"{name} -> {dep}"
        for name, deps in core_graph().items()
        if name == part or name.startswith(part + ".")
        for dep in deps
        if dep.startswith(forbidden) and not (dep == part or dep.startswith(part + "."))
    }
    assert not wrong, sorted(wrong)


def _all_imports(path: Path) -> set[str]:
    """Every import of a file, those under ``TYPE_CHECKING`` included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("source", PLUGIN_SOURCES, ids=lambda p: p.name)
def test_plugins_import_only_the_api_from_core(source: Path) -> None:
    files = [p for p in source.rglob("*.py") if "tests" not in p.relative_to(source).parts]
    assert files
    wrong = {
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in _all_imports(path)
        if (name == "scaler" or name.startswith("scaler."))
        and name not in ("scaler.api", "scaler.__version__")
        and not name.startswith("scaler.api.")
    }
    assert not wrong, sorted(wrong)


SHIPPED_CLOUD = re.compile(r"\b(aws|gcp|ec2|gce|scaler_aws|scaler_gcp|boto3|botocore|google)\b", re.IGNORECASE)


def _code_words(path: Path) -> Iterator[tuple[int, str]]:
    """Identifiers, imported names and string literals of a module (docstrings and comments left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            yield node.lineno, node.name
        elif isinstance(node, ast.alias):
            yield getattr(node, "lineno", 0), node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module


def test_core_names_no_shipped_cloud() -> None:
    """Core's code (not its prose) never names a cloud the project ships a plugin for: a third
    party's provider gets exactly what the AWS and GCP plugins get. ClearML's own AutoScaler,
    which the simulator drives, is ClearML's code and speaks of AWS in its own keys."""
    allowed = {CORE / "sim" / "clearml_autoscaler.py"}
    found = [
        f"{path.relative_to(REPO)}:{line}: {word!r}"
        for path in sorted(CORE.rglob("*.py"))
        if path not in allowed
        for line, word in _code_words(path)
        if SHIPPED_CLOUD.search(word)
    ]
    assert not found, found


def test_the_cloud_check_sees_code_not_prose(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Talks of AWS in prose."""\n# and of gcp in a comment\nimport scaler_aws\nX = "aws"\n')
    assert [word for _, word in _code_words(module) if SHIPPED_CLOUD.search(word)] == ["scaler_aws", "aws"]


def test_tests_run_the_cli_through_the_one_runner() -> None:
    """Tests start the real command line only through tests/support/cli.py (which also checks
    that no traceback reaches the user)."""
    runner = REPO / "tests" / "support" / "cli.py"
    starts = re.compile(r"""["']-m["'],\s*["']scaler\.cli["']""")
    found = [
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("*.py")
        if path != runner and starts.search(path.read_text(encoding="utf-8"))
    ]
    assert not found, found
