"""What a plugin author reads matches the code.

* docs/plugin-hooks.md documents every hook with the exact signature of its spec in
  scaler/hookspecs.py (names, annotations, return type, ``firstresult``), under the right
  kind of hook, and each of its examples loads as a plugin and works when called;
* docs/writing-a-provider.md shows exactly the code of examples/provider-plugin;
* the example provider is at most 40 lines of code and imports nothing of core but scaler.api.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import types
import uuid
from pathlib import Path
from typing import Any

import pluggy
import pytest

from scaler import hookspecs
from scaler.api import (
    TAG_FLEET,
    Instance,
    Problem,
    ProviderError,
    RenderContext,
    ResourceSettings,
    ScriptPart,
    Section,
    ServerInfo,
)
from scaler.host import hook_names
from tests.support import REPO

HOOKS_DOC = REPO / "docs" / "plugin-hooks.md"
PROVIDER_DOC = REPO / "docs" / "writing-a-provider.md"
EXAMPLE = REPO / "examples" / "provider-plugin"
MAX_EXAMPLE_LINES = 40

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def spec_names() -> list[str]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return hook_names(pm)


def hook_sections() -> dict[str, tuple[str, str, str]]:
    """hook name -> (kind heading, argument list of the heading, section text)."""
    text = HOOKS_DOC.read_text()
    found: dict[str, tuple[str, str, str]] = {}
    kind = ""
    for block in re.split(r"^(?=##+ )", text, flags=re.M):
        heading = block.splitlines()[0] if block.strip() else ""
        if heading.startswith("## "):
            kind = heading[3:].strip()
        match = re.match(r"### (scaler_\w+)\((.*)\)$", heading)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is documented twice"
            found[match.group(1)] = (kind, match.group(2), block)
    return found


def python_blocks(text: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == "python"]


def spec_def(name: str) -> ast.FunctionDef:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return node


def signature(node: ast.FunctionDef) -> tuple[str, list[str], list[tuple[str, str]], str]:
    args = [(a.arg, ast.unparse(a.annotation) if a.annotation else "") for a in node.args.args]
    returns = ast.unparse(node.returns) if node.returns else ""
    return node.name, [ast.unparse(d) for d in node.decorator_list], args, returns


# -- docs/plugin-hooks.md ----------------------------------------------------------------------


def test_every_hook_is_documented_once_under_its_kind() -> None:
    sections = hook_sections()
    assert sorted(sections) == spec_names(), "docs/plugin-hooks.md and scaler/hookspecs.py list different hooks"
    for name, (kind, _, _) in sections.items():
        expected = "Provider hooks" if name in hookspecs.PROVIDER_HOOKS else "Contribution hooks"
        assert kind == expected, f"{name} is documented under '{kind}', not '{expected}'"


@pytest.mark.parametrize("name", spec_names())
def test_the_documented_signature_is_the_specs(name: str) -> None:
    _, heading_args, text = hook_sections()[name]
    spec = spec_def(name)
    blocks = python_blocks(text)
    assert blocks, f"{name}: no python block with its signature"
    documented = ast.parse(blocks[0]).body
    assert len(documented) == 1 and isinstance(documented[0], ast.FunctionDef), (
        f"{name}: the first python block must be the spec's def, got:\n{blocks[0]}"
    )
    assert signature(documented[0]) == signature(spec), f"{name}: the documented signature differs from the spec"
    assert [a.strip() for a in heading_args.split(",") if a.strip()] == [a.arg for a in spec.args.args], (
        f"{name}: the heading's arguments differ from the spec's"
    )
    for part in ("**Called by**", "**Returns**", "**Example:**"):
        assert part in text, f"{name}: the section says nothing under {part}"


# the arguments the examples are called with: a toy cloud with three machines of this fleet
@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import scaler_toycloud
    from scaler_toycloud.cloud import ToyCloud

    from scaler.api import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
    from scaler.testing import config_for, provider_for

    state = tmp_path / "toy.json"
    host = provider_for(scaler_toycloud, "toycloud").host
    config = config_for("toycloud", {"size": "large"}, top={"state_file": str(state)}, host=host)
    tags = {TAG_SCALER: config.scaler.name, TAG_RESOURCE: "res-a", TAG_LAUNCH_TOKEN: "seeded"}
    seeded = [m["id"] for m in ToyCloud(str(state)).run(3, "small", tags, "", False, "seeded")]
    settings = ResourceSettings(0, "resources[0].toycloud", {"size": "large"}, {"spot": True, "name": "res-a"})
    return {
        "config": config,
        "resource": config.resources[0],
        "count": 2,
        "init_script": "#!/bin/bash\necho example\n",
        "launch_token": str(uuid.uuid4()),
        "spot": False,
        "instance_ids": [seeded[0], "toy-unknown"],
        "instance_id": seeded[1],
        "provider": "toycloud",
        "context": RenderContext(ServerInfo("http://clearml.invalid:8008")),
        "section": "toycloud",
        "settings": {"state_file": str(state)},
        "resources": [settings],
        "applies": True,
        "seeded": seeded,
        "include_foreign": False,
        "tags": {TAG_FLEET: config.fleet_id},
        # the machines listed now, as the example provider lists them
        "list": lambda: provider_for(scaler_toycloud, "toycloud").list_instances(config),
    }


def check_answer(name: str, answer: Any, world: dict[str, Any]) -> None:
    """What each example's answer must be, called with ``world``."""
    if name == "scaler_launch":
        assert len(answer) == world["count"] and all(isinstance(i, Instance) for i in answer)
    elif name == "scaler_list_instances":
        assert {i.id for i in answer} >= set(world["seeded"]) and all(i.state.alive for i in answer)
    elif name == "scaler_terminate":
        assert answer is True
    elif name == "scaler_console_output":
        assert answer == ""
    elif name == "scaler_check_cloud":
        assert answer == []
    elif name == "scaler_describe_instances":  # the known machine, not the unknown id
        assert [i.id for i in answer] == [world["instance_ids"][0]] and answer[0].resource == "res-a"
    elif name == "scaler_tag_instances":  # the known machine is tagged, the unknown id skipped
        assert answer is True
        tagged = [i for i in world["list"]() if i.id == world["instance_ids"][0]]
        assert tagged and tagged[0].fleet == world["tags"][TAG_FLEET]
    elif name == "scaler_config_sections":
        assert [s for found in answer for s in found] and all(isinstance(s, Section) for f in answer for s in f)
    elif name == "scaler_validate_config":
        assert [p.path for found in answer for p in found if isinstance(p, Problem)] == ["resources[0].toycloud.size"]
    elif name == "scaler_init_script_parts":
        parts = [p for found in answer for p in found]
        assert all(isinstance(p, ScriptPart) for p in parts) and any(p.order == 200 for p in parts)
    elif name == "scaler_clearml_conf_parts":
        assert all(isinstance(text, str) for found in answer for text in found)
    else:  # pragma: no cover - a new hook needs its check here
        raise AssertionError(f"no check for the example of {name}")


@pytest.mark.parametrize("name", spec_names())
def test_the_examples_load_as_plugins_and_work(name: str, world: dict[str, Any]) -> None:
    _, _, text = hook_sections()[name]
    examples = [block for block in python_blocks(text)[1:] if "@hookimpl" in block]
    assert examples, f"{name}: no example"
    for index, source in enumerate(examples):
        module = types.ModuleType(f"example_{name}_{index}")
        exec(compile(source, f"docs/plugin-hooks.md ({name} example {index + 1})", "exec"), module.__dict__)
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(module)  # pluggy checks each implementation's arguments against its spec
        pm.check_pending()
        assert hasattr(module, name), f"the example of {name} does not implement it"
        hook = getattr(pm.hook, name)
        kwargs = {arg: world[arg] for arg in hook.spec.argnames}
        check_answer(name, hook(**kwargs), world)


def test_console_output_example_raises_the_typed_error_for_an_unknown_id(world: dict[str, Any]) -> None:
    _, _, text = hook_sections()["scaler_console_output"]
    module = types.ModuleType("example_console")
    exec(python_blocks(text)[1], module.__dict__)
    with pytest.raises(ProviderError, match="NotFound"):
        module.scaler_console_output(world["config"], "toy-unknown")


# -- docs/writing-a-provider.md and the example ----------------------------------------------------


def shown_files() -> dict[str, str]:
    """The code the page shows, per example file (blocks marked ``<!-- example: FILE -->``)."""
    text = PROVIDER_DOC.read_text()
    shown: dict[str, list[str]] = {}
    for match in re.finditer(r"<!-- example: (\S+) -->\n```\w*\n(.*?)^```$", text, re.S | re.M):
        shown.setdefault(match.group(1), []).append(match.group(2))
    return {path: "\n".join(blocks) for path, blocks in shown.items()}


def code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_writing_a_provider_builds_exactly_the_example() -> None:
    shown = shown_files()
    assert set(shown) == {"pyproject.toml", "scaler_toycloud/__init__.py", "tests/test_toycloud.py"}
    for path, code in shown.items():
        actual = (EXAMPLE / path).read_text()
        assert code_lines(code) == code_lines(actual), f"docs/writing-a-provider.md shows another {path}"


def count_code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(
            node, clean=False
        ):
            first = node.body[0]
            docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def test_the_line_counter_counts_code_only() -> None:
    source = '"""Doc\n\nstring."""\n\n# a comment\nimport os  # trailing\n\n\ndef f(\n    a,\n):\n    """Doc."""\n    return a\n'
    assert count_code_lines(source) == 5  # import, def (3 lines), return


def test_the_example_provider_is_at_most_40_lines_of_code() -> None:
    lines = count_code_lines((EXAMPLE / "scaler_toycloud" / "__init__.py").read_text())
    assert lines <= MAX_EXAMPLE_LINES, f"the example provider has {lines} lines of code"


def test_the_example_provider_imports_only_scaler_api_from_core() -> None:
    tree = ast.parse((EXAMPLE / "scaler_toycloud" / "__init__.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            imported |= set(names) if node.module == "scaler" else {node.module or ""}
    core = {name for name in imported if name == "scaler" or name.startswith("scaler.")}
    assert core == {"scaler.api"}, f"the example imports {sorted(core)} from core"
    assert "scaler_config_sections" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
