"""``scaler run --remote`` asks the agent for what runs here (issue 17): the installed versions
by default, ``--package`` to override; an editable checkout or an unreleased version is refused
(exit 1, nothing created) with how to fix it. This repository's own venv is an editable install."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaler import __version__
from scaler.clearml import requirements
from scaler.clearml.requirements import default_requirements, requirement_of
from scaler.cli import app
from tests.fakes.clearml_server import FakeClearML

runner = CliRunner()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "scaler.conf"
    path.write_text(
        f"""scaler {{ name = "pkg-fleet", workers_prefix = "pkg" }}
simulated {{ state_file = "{tmp_path / "cloud.json"}" }}
resources = [ {{ name = "cpu", queue = "cpu", max_instances = 1 }} ]
"""
    )
    return path


def remote(config: Path, *extra: str) -> tuple[int, str]:
    args = ["run", "--remote", "--provider", "simulated", "--config", str(config), "--queue", "services", *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def test_this_editable_checkout_is_refused(fake_clearml: FakeClearML, tmp_path: Path) -> None:
    fake_clearml.create_queue("services")
    code, output = remote(write_config(tmp_path))
    assert code == 1, output
    assert "the agent serving 'services' would not be able to install the scaler; nothing was created" in output
    assert f"clearml-scaler {__version__} is installed from an editable checkout" in output
    assert "--package" in output and "publish" in output and "pre-install" in output
    assert not fake_clearml.tasks()


@pytest.mark.parametrize(
    "specs",
    [
        ["clearml-scaler==0.1.0"],
        ["https://example.com/wheels/clearml_scaler-0.1.0-py3-none-any.whl"],
        ["clearml-scaler @ git+https://github.com/example/clearml-scaler@v0.1.0", "clearml-scaler-aws==0.1.0"],
    ],
    ids=["version", "wheel-url", "git-url"],
)
def test_package_overrides_the_requirements(fake_clearml: FakeClearML, tmp_path: Path, specs: list[str]) -> None:
    fake_clearml.create_queue("services")
    extra = [arg for spec in specs for arg in ("--package", spec)]
    code, output = remote(write_config(tmp_path), *extra)
    assert code == 0, output
    [task] = fake_clearml.tasks().values()
    lines = task["script"]["requirements"]["pip"].splitlines()
    assert lines[: len(specs)] == specs and set(lines[len(specs) :]) <= {"clearml"}  # the SDK adds itself


def test_released_installs_are_pinned_as_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution installed from the index is pinned at its version; from a git URL, at its
    commit; a development or local version, a local directory or a source tree is refused."""

    class Dist:
        def __init__(self, version: str, direct: dict[str, object] | None, root: str = "/site") -> None:
            self.version = version
            self.direct = direct
            self.root = root

        def read_text(self, name: str) -> str | None:
            return json.dumps(self.direct) if self.direct is not None and name == "direct_url.json" else None

        def locate_file(self, path: str) -> str:
            return self.root

    dists: dict[str, Dist] = {}
    monkeypatch.setattr(requirements.importlib.metadata, "distribution", lambda name: dists[name])
    monkeypatch.setattr(requirements.importlib.metadata, "distributions", lambda name: [dists[name]])

    dists["a"] = Dist("1.2.0", None)
    assert requirement_of("a", "/site/a/__init__.py").spec == "a==1.2.0"
    assert not requirement_of("a", "/site/a/__init__.py").problem
    assert "runs from a source tree (/src/a)" in requirement_of("a", "/src/a/__init__.py").problem
    dists["a"] = Dist("1.3.0.dev4", None)
    assert requirement_of("a").problem == "a 1.3.0.dev4 is not a released version"
    dists["a"] = Dist("1.2.0+g1a2b3c", None)
    assert requirement_of("a").problem == "a 1.2.0+g1a2b3c is not a released version"
    dists["a"] = Dist("1.2.0", {"url": "file:///src/a", "dir_info": {}})
    assert requirement_of("a").problem == "a 1.2.0 is installed from a local directory (file:///src/a)"
    dists["a"] = Dist("1.2.0", {"url": "https://github.com/o/a", "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    found = requirement_of("a")
    assert (found.spec, found.problem) == ("a @ git+https://github.com/o/a@abc123", "")
    dists["a"] = Dist("1.2.0", {"url": "https://example.com/a-1.2.0.whl", "archive_info": {}})
    assert requirement_of("a").spec == "a @ https://example.com/a-1.2.0.whl"


def test_the_default_names_core_and_the_plugin() -> None:
    found = default_requirements("clearml-scaler-aws")
    assert [item.distribution for item in found] == ["clearml-scaler", "clearml-scaler-aws"]
    assert [item.spec for item in found] == [f"clearml-scaler=={__version__}", f"clearml-scaler-aws=={__version__}"]
    assert [item.distribution for item in default_requirements(None)] == ["clearml-scaler"]
