"""One version for the three distributions, complete package metadata, the licence in each,
a changelog entry for the version, and ``scaler --version`` naming every installed plugin."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from scaler import __version__
from tests.support import REPO
from tests.support.cli import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CORE = REPO
PLUGINS = {"aws": REPO / "plugins" / "aws", "gcp": REPO / "plugins" / "gcp"}
PROJECTS = {"clearml-scaler": CORE, "clearml-scaler-aws": PLUGINS["aws"], "clearml-scaler-gcp": PLUGINS["gcp"]}


def pyproject(root: Path) -> dict[str, Any]:
    with open(root / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


def version_in(module: Path) -> str:
    """``__version__`` of a module, read without importing it (the way setuptools' ``attr:`` does)."""
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError(f"no __version__ in {module}")


def test_one_version_for_the_three_distributions() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", __version__), __version__
    core = pyproject(CORE)
    assert "version" not in core and "version" in core["dynamic"]
    for name, root in PLUGINS.items():
        project = pyproject(root)
        assert "version" not in project and "version" in project["dynamic"], f"{name}: the version is dynamic"
        found = version_in(root / f"scaler_{name}" / "__init__.py")
        assert found == __version__, (
            f"clearml-scaler-{name} is {found}, clearml-scaler is {__version__}: "
            f"the three are released together under one version (docs/releasing.md)"
        )
        # a plugin requires the core released with it, or a later patch of that release
        core_requirement = [d for d in project["dependencies"] if re.match(r"clearml-scaler\b(?!-)", d)]
        assert core_requirement == [f"clearml-scaler~={__version__}"], core_requirement


def test_the_installed_versions_are_the_checkout() -> None:
    """An editable install made before a version bump reports the old version: reinstall."""
    for name in PROJECTS:
        assert metadata.version(name) == __version__, f"{name}: pip install -e again after a version bump"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_metadata_is_complete(name: str) -> None:
    root = PROJECTS[name]
    project = pyproject(root)
    assert project["name"] == name
    assert project["readme"] == "README.md" and (root / "README.md").is_file()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert (root / "LICENSE").read_text() == (REPO / "LICENSE").read_text(), f"{root}/LICENSE is a copy of LICENSE"
    assert project["requires-python"] == pyproject(CORE)["requires-python"]
    classifiers = project["classifiers"]
    assert not [c for c in classifiers if c.startswith("License ::")], "the SPDX `license` replaces License classifiers"
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert {"Homepage", "Documentation", "Source", "Changelog", "Issues"} <= set(project["urls"])
    # one home for the three
    assert project["urls"]["Homepage"] == pyproject(CORE)["urls"]["Homepage"]
    assert project["urls"]["Issues"] == pyproject(CORE)["urls"]["Issues"]


def test_the_licence_is_apache_2() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_changelog_has_an_entry_for_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[0] == "Unreleased", "keep-a-changelog: an [Unreleased] section on top"
    assert __version__ in headings, f"CHANGELOG.md has no '## [{__version__}]' section"
    links = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", text, re.M))
    assert set(headings) <= set(links), "every heading has its compare/release link at the bottom"


def test_version_lists_core_and_every_installed_plugin() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"clearml-scaler {__version__}"
    installed = {ep.name: ep.dist for ep in metadata.entry_points(group="scaler")}
    assert {"aws", "gcp"} <= set(installed)
    for name, dist in installed.items():
        assert dist is not None
        assert f"  plugin {name}: {dist.name} {dist.version}" in lines, result.stdout
    assert len(lines) == 1 + len(installed)


def test_the_documented_bump_moves_every_version(tmp_path: Path) -> None:
    """docs/releasing.md's bump commands, run on a copy: every place that carries the version
    (tests above, tests/release/test_kubernetes.py) says the new one, and none the old."""
    text = (REPO / "docs" / "releasing.md").read_text()
    block = re.search(r"<!-- bump -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/releasing.md: no bump block"
    lines = block.group(1).strip().splitlines()
    assert lines[0].startswith("OLD=")
    major, minor, _patch = (int(n) for n in re.findall(r"\d+", __version__)[:3])
    new = f"{major}.{minor + 1}.0"
    carriers = [
        "scaler/__init__.py",
        "plugins/aws/scaler_aws/__init__.py",
        "plugins/gcp/scaler_gcp/__init__.py",
        "plugins/aws/pyproject.toml",
        "plugins/gcp/pyproject.toml",
        "Dockerfile",
        *(str(p.relative_to(REPO)) for p in (REPO / "deploy" / "kubernetes").glob("*.yaml")),
    ]
    for name in carriers:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    script = "set -eu\n" + f"OLD={__version__} NEW={new}\n" + "\n".join(lines[1:]) + "\n"
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, timeout=60)
    for name in ("scaler/__init__.py", "plugins/aws/scaler_aws/__init__.py", "plugins/gcp/scaler_gcp/__init__.py"):
        assert version_in(tmp_path / name) == new, name
    for name in ("plugins/aws", "plugins/gcp"):
        assert f"clearml-scaler~={new}" in pyproject(tmp_path / name)["dependencies"]
    assert f"clearml-scaler:{new}" in (tmp_path / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    assert f'newTag: "{new}"' in (tmp_path / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    for name in carriers:
        assert __version__ not in (tmp_path / name).read_text(), f"{name} still names {__version__}"
