"""The plugin host: entry-point discovery, load-time checks, provider dispatch, contribution
hooks, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from scaler.config.loading import build_config
from scaler.engine.render import render_init_script
from scaler.errors import NotImplementedByProvider, PluginError
from scaler.hookspecs import hookimpl
from scaler.host import PluginBugError, PluginHost
from scaler.types import Instance, InstanceState, RenderContext, ScriptPart, Secret, ServerInfo
from tests.support import REPO
from tests.support.cli import run_cli

ALLOW = "clearml-scaler-aws,clearml-scaler-gcp,clearml-scaler-toycloud,clearml-scaler-broken,clearml-scaler-typo"
DATA = REPO / "tests" / "data"


class FakeProvider:
    """A provider plugin object recording the calls it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    @hookimpl
    def scaler_list_instances(self, config: Any) -> list[Instance]:
        self.calls.append("list")
        return [Instance(f"{self.name}-1", "gpu", InstanceState.RUNNING, 0.0)]

    @hookimpl
    def scaler_launch(self, config: Any, resource: Any, count: int, launch_token: str) -> list[Instance]:
        self.calls.append(f"launch {count} {launch_token}")
        return []

    @hookimpl
    def scaler_terminate(self, instance_ids: list[str]) -> bool:
        self.calls.append(f"terminate {instance_ids}")
        return True

    @hookimpl
    def scaler_console_output(self, instance_id: str) -> str:
        return ""

    @hookimpl
    def scaler_init_script_parts(self, provider: str) -> list[ScriptPart]:
        return (
            [ScriptPart(200, f"identity ({self.name})", f"export SCALER_INSTANCE_ID={self.name}")]
            if (provider == self.name)
            else [ScriptPart(350, f"extra from {self.name}", f"echo {self.name}")]
        )

    @hookimpl
    def scaler_clearml_conf_parts(self) -> list[str]:
        return [f"# from {self.name}"]


def config(provider: str = "simulated"):  # type: ignore[no-untyped-def]
    return build_config(
        {"scaler": {"name": "t"}, "resources": [{"name": "gpu", "queue": "gpu", "max_instances": 1}]}, provider=provider
    )


def test_only_the_chosen_provider_answers() -> None:
    host = PluginHost(load_entry_points=False)
    alpha, beta = FakeProvider("alpha"), FakeProvider("beta")
    host.register(alpha, "alpha")
    host.register(beta, "beta")
    instances = host.provider("beta").list_instances(config("beta"))
    assert [i.id for i in instances] == ["beta-1"]
    host.provider("beta").launch(config("beta"), config().resources[0], 2, "#!/bin/bash", "tok", False)
    assert beta.calls == ["list", "launch 2 tok"]
    assert alpha.calls == []


def test_contribution_hooks_collect_from_every_plugin_core_first() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(FakeProvider("alpha"), "alpha")
    host.register(FakeProvider("beta"), "beta")
    cfg = config("alpha")
    # the agents' credentials (rendering the script without any is an error)
    context = RenderContext(ServerInfo("http://api", access_key=Secret("key"), secret_key=Secret("secret")))
    conf = host.clearml_conf_parts(cfg, cfg.resources[0], "alpha", context)
    assert conf[0].startswith("api {")  # core's own part comes first
    assert conf[1:] == ["# from alpha"]  # a provider contributes to its own machines only
    script = render_init_script(host, cfg, cfg.resources[0], context)
    assert script.index("export SCALER_INSTANCE_ID=alpha") < script.index("clearml-agent")
    assert "echo beta" not in script
    assert "SCALER_INSTANCE_ID=beta" not in script and "# from beta" not in script
    assert "# from alpha" in script  # the conf parts reach the written clearml.conf


def test_missing_optional_hook_and_plugin_bug_are_typed_errors() -> None:
    class Buggy(FakeProvider):
        @hookimpl
        def scaler_list_instances(self, config: Any) -> list[Instance]:
            raise KeyError("boom")

    host = PluginHost(load_entry_points=False)
    host.register(Buggy("buggy"), "buggy")
    with pytest.raises(PluginBugError, match="provider 'buggy' failed in scaler_list_instances: KeyError") as err:
        host.provider("buggy").list_instances(config())
    assert err.value.code == "KeyError"
    with pytest.raises(NotImplementedByProvider, match="does not implement scaler_check_cloud"):
        host.provider("buggy").check_cloud(config())


# -- load-time checks: what pluggy alone lets pass silently ----------------------------------


def test_a_misspelt_hook_names_the_plugin_the_function_and_the_closest_hook() -> None:
    class Typos(FakeProvider):
        @hookimpl
        def scaler_lauch(self, config: Any) -> list[Instance]:
            return []

        @hookimpl
        def scaler_validate_confg(self) -> list[Any]:
            return []

    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginError) as err:
        host.register(Typos("typos"), "typos")
    message = str(err.value)
    assert message.startswith("plugin 'typos': ")
    assert "function scaler_lauch matches no hook (did you mean scaler_launch?)" in message
    assert "function scaler_validate_confg matches no hook (did you mean scaler_validate_config?)" in message
    assert "typos" not in host.plugins and not host.pm.has_plugin("typos")  # never called
    host.pm.check_pending()  # nothing of it is left registered


def test_a_far_off_hook_name_points_to_the_reference() -> None:
    class Odd:
        @hookimpl
        def scaler_xyzzy(self) -> None:
            return None

    with pytest.raises(
        PluginError, match=r"scaler_xyzzy matches no hook \(the hooks are listed in docs/plugin-hooks.md\)"
    ):
        PluginHost(load_entry_points=False).register(Odd(), "odd")


def test_a_hook_without_hookimpl_is_reported() -> None:
    class Unmarked(FakeProvider):
        def scaler_clearml_conf_parts(self) -> list[str]:  # pluggy would ignore it
            return ["# unmarked"]

    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginError, match=r"function scaler_clearml_conf_parts is not marked @hookimpl"):
        host.register(Unmarked("unmarked"), "unmarked")
    assert not host.pm.has_plugin("unmarked")


def test_a_provider_missing_required_hooks_is_rejected_naming_them() -> None:
    class Partial:
        @hookimpl
        def scaler_launch(self, config: Any) -> list[Instance]:
            return []

        @hookimpl
        def scaler_list_instances(self, config: Any) -> list[Instance]:
            return []

    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginError, match=r"implements provider hooks but not scaler_terminate, scaler_console_output"):
        host.register(Partial(), "partial")
    assert "partial" not in host.provider_names()


def test_a_hook_with_arguments_the_spec_lacks_is_rejected_whole() -> None:
    class Misnamed(FakeProvider):
        @hookimpl
        def scaler_terminate(self, config: Any, ids: list[str]) -> bool:
            return True

    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginError, match=r"plugin 'misnamed': .*Argument\(s\) \{'ids'\}"):
        host.register(Misnamed("misnamed"), "misnamed")
    assert not host.pm.has_plugin("misnamed")  # pluggy had registered the hooks before the bad one


def test_a_rejected_entry_point_shows_as_failed_and_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA / "typo-plugin"))
    typo = metadata.EntryPoint(name="typo", value="scaler_typo", group="scaler")
    monkeypatch.setattr("scaler.host._entry_points", lambda: (typo,))
    monkeypatch.setenv("SCALER_LOAD_PLUGINS", "typo")
    host = PluginHost()
    [failure] = host.failures
    assert failure.name == "typo"
    assert "function scaler_lauch matches no hook (did you mean scaler_launch?)" in failure.error
    assert "function scaler_console_output is not marked @hookimpl" in failure.error
    with pytest.raises(PluginError, match="provider 'typo' is installed but failed to load: function scaler_lauch"):
        host.provider("typo")
    cfg = config()
    conf = host.clearml_conf_parts(cfg, cfg.resources[0], "simulated", RenderContext(ServerInfo("http://api")))
    assert "# from the typo plugin" not in conf
    import scaler_typo

    assert scaler_typo.CALLS == []


def test_core_and_the_shipped_plugins_pass_the_load_time_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistake in a built-in plugin raises (a bug); in the shipped providers it would show here."""
    monkeypatch.setenv("SCALER_LOAD_PLUGINS", "clearml-scaler-aws,clearml-scaler-gcp")
    host = PluginHost()
    assert host.failures == []
    assert host.provider_names() == ["aws", "gcp", "simulated"]


def test_unknown_provider_names_the_installed_ones() -> None:
    host = PluginHost()
    with pytest.raises(PluginError, match=r"unknown provider 'azure'; installed providers: aws, gcp, simulated"):
        host.provider("azure")


def test_load_plugins_env_restricts_what_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALER_LOAD_PLUGINS", "clearml-scaler-gcp")
    assert PluginHost().provider_names() == ["gcp", "simulated"]
    monkeypatch.setenv("SCALER_LOAD_PLUGINS", "")
    assert PluginHost().provider_names() == ["simulated"]  # core's own provider always exists


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the example third-party provider and two broken plugins, as a user would (pip).

    Each is built from a copy: a build in the source folder leaves build/ and *.egg-info there,
    and an egg-info on sys.path makes importlib.metadata report a distribution that is not
    installed."""
    target = tmp_path_factory.mktemp("site")
    sources = tmp_path_factory.mktemp("sources")
    packages = [REPO / "examples" / "provider-plugin", DATA / "broken-plugin", DATA / "typo-plugin"]
    copies = []
    for package in packages:
        ignore = shutil.ignore_patterns("build", "*.egg-info", "tests", "__pycache__")
        copies.append(str(shutil.copytree(package, sources / package.name, ignore=ignore)))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *copies,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def env_with(site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    env["SCALER_LOAD_PLUGINS"] = ALLOW
    env.update(extra)
    return env


def test_third_party_provider_is_discovered_and_a_broken_one_reported(installed_plugins: Path) -> None:
    result = run_cli(
        "providers",
        "--format",
        "json",
        env=env_with(installed_plugins),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = {p["name"]: p for p in report["providers"]}
    assert names["toycloud"]["package"] == "clearml-scaler-toycloud" and names["toycloud"]["version"] == "0.3.0"
    assert {"aws", "gcp", "simulated"} <= set(names)
    failed = {f["name"]: f for f in report["failed"]}
    assert failed["broken"] == {
        "name": "broken",
        "package": "clearml-scaler-broken",
        "error": "ModuleNotFoundError: No module named 'scaler_dependency_that_is_not_installed'",
    }
    assert failed["typo"]["package"] == "clearml-scaler-typo"
    assert failed["typo"]["error"].startswith("function scaler_lauch matches no hook (did you mean scaler_launch?)")
    assert set(failed) == {"broken", "typo"} and "typo" not in names
    assert "plugin 'broken' (clearml-scaler-broken) failed to load" in result.stderr
    assert "plugin 'typo' (clearml-scaler-typo) failed to load: function scaler_lauch" in result.stderr
    assert "Traceback" not in result.stderr


def test_choosing_the_broken_provider_says_why(installed_plugins: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text('resources = [ { name = "a", queue = "q", max_instances = 1 } ]')
    result = run_cli(
        "run",
        "--provider",
        "broken",
        "--config",
        str(path),
        "--once",
        env=env_with(installed_plugins),
        timeout=60,
    )
    assert result.returncode == 1
    assert "provider 'broken' is installed but failed to load: ModuleNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


def test_third_party_provider_runs_the_loop(installed_plugins: Path, tmp_path: Path, fake_clearml: Any) -> None:
    state = tmp_path / "toy.json"
    path = tmp_path / "toy.conf"
    path.write_text(
        textwrap.dedent(f"""
        scaler {{ name = "toy-fleet", workers_prefix = "toy" }}
        toycloud {{ state_file = "{state}" }}
        resources = [ {{ name = "small", queue = "work", max_instances = 2, toycloud {{ size = small }} }} ]
    """)
    )
    for _ in range(3):
        fake_clearml.enqueue("work")
    env = env_with(installed_plugins, HOME=str(tmp_path), **fake_clearml.env())
    result = run_cli(
        "run",
        "--provider",
        "toycloud",
        "--config",
        str(path),
        "--once",
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    machines = json.loads(state.read_text())["machines"].values()
    assert len(machines) == 2  # 3 pending, max_instances 2
    assert {m["tags"]["clearml-scaler-name"] for m in machines} == {"toy-fleet"}
    assert all("--queue work" in m["user_data"] for m in machines)
    assert "launch 2 x small (on-demand)" in result.stderr
