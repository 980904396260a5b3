"""A third-party provider gets from its declaration alone what the shipped clouds get: validation
and normalised settings, ``scaler init`` questions, export comments, secret masking, the
environment variable of each secret and vault key mapping. Core knows nothing else of it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.api import Ask, Field, Instance, Problem, ResourceSettings, Section, hookimpl
from scaler.cli import app
from scaler.config.exporting import export_config, import_config
from scaler.config.loading import build_config, load_config
from scaler.host import PluginHost

runner = CliRunner()

CREDENTIAL = "mycloud-credential-0123456789"  # the name "credential" is no secret by the name rules


class MyCloud:
    """A provider declaring one section, with a secret, a vault key, questions and a cross-check."""

    def __init__(self) -> None:
        self.validated: list[tuple[str, dict[str, Any], list[ResourceSettings], bool]] = []

    @hookimpl
    def scaler_config_sections(self) -> list[Section]:
        return [
            Section(
                "mycloud",
                "Settings of the mycloud fleet.",
                fields=(
                    Field(
                        "region",
                        "choice",
                        "Region of the mycloud fleet.",
                        default="eu-1",
                        choices=("eu-1", "eu-2", "us-1"),
                        vault=("mycloud_region",),
                        ask="MyCloud region",
                    ),
                    Field(
                        "credential",
                        "secret",
                        "Credential of the mycloud account.",
                        default="",
                        env="MYCLOUD_CREDENTIAL",
                        vault=("mycloud_credential",),
                        ask="MyCloud credential (hidden)",
                    ),
                    Field("boot_timeout", "duration", "How long a machine may take to boot.", default=300.0),
                ),
                resource_fields=(
                    Field(
                        "size",
                        "choice",
                        "Machine size.",
                        required=True,
                        choices=("small", "large"),
                        ask=Ask("Machine size (small or large)", key="instance_type"),
                    ),
                ),
            )
        ]

    @hookimpl
    def scaler_validate_config(
        self, section: str, settings: dict[str, Any], resources: list[ResourceSettings], applies: bool
    ) -> list[Problem]:
        self.validated.append((section, settings, resources, applies))
        return [
            Problem(f"{r.path}.size", "large machines exist in eu-2 only")
            for r in resources
            if r.settings.get("size") == "large" and settings.get("region") != "eu-2"
        ]

    @hookimpl
    def scaler_launch(self, config: Any, resource: Any, count: int) -> list[Instance]:
        return []

    @hookimpl
    def scaler_list_instances(self, config: Any) -> list[Instance]:
        return []

    @hookimpl
    def scaler_terminate(self, config: Any, instance_ids: list[str]) -> bool:
        return True

    @hookimpl
    def scaler_console_output(self, config: Any, instance_id: str) -> str:
        return ""


CONFIG = """
scaler { name = "my-fleet", workers_prefix = "dynamic_mycloud" }
mycloud {
  region = "eu-2"
  credential = "mycloud-credential-0123456789"
  boot_timeout = 10m
}
resources = [ { name = "big", queue = "gpu", max_instances = 2, mycloud { size = large } } ]
"""


@pytest.fixture
def plugin() -> MyCloud:
    return MyCloud()


@pytest.fixture
def host(plugin: MyCloud) -> PluginHost:
    host = PluginHost(load_entry_points=False)
    host.register(plugin, "mycloud")
    return host


@pytest.fixture
def cli_host(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """The command line sees the plugin as if it were installed."""
    monkeypatch.setattr("scaler.cli.config.make_host", lambda: host)
    yield host


def test_validation_normalisation_and_cross_checks(host: PluginHost, plugin: MyCloud, tmp_path: Path) -> None:
    path = tmp_path / "my.conf"
    path.write_text(CONFIG)
    result = load_config(path, host, provider="mycloud")
    assert result.ok, [p.render() for p in result.problems]
    config = result.config
    assert config is not None
    # the provider hooks get typed, defaulted settings
    assert config.provider_settings["boot_timeout"] == 600.0
    assert config.provider_settings["credential"].reveal() == CREDENTIAL
    assert CREDENTIAL not in repr(config.provider_settings)
    assert config.resources[0].provider == {"size": "large"}
    # the plugin's cross-check ran once, on its own normalised section only
    [(section, settings, resources, applies)] = plugin.validated
    assert (section, settings["region"], applies) == ("mycloud", "eu-2", True)
    assert [(r.path, dict(r.settings), r.common["name"]) for r in resources] == [
        ("resources[0].mycloud", {"size": "large"}, "big")
    ]

    path.write_text(CONFIG.replace('"eu-2"', '"eu-1"').replace("size = large", "size = huge, colour = red"))
    problems = {p.path: p.message for p in load_config(path, host, provider="mycloud").problems}
    assert problems["resources[0].mycloud.size"].startswith("must be one of small, large, got 'huge'")
    assert problems["resources[0].mycloud.colour"].startswith("unknown key 'colour'")
    path.write_text(CONFIG.replace('"eu-2"', '"eu-1"'))
    problems = {p.path: p.message for p in load_config(path, host, provider="mycloud").problems}
    assert problems == {"resources[0].mycloud.size": "large machines exist in eu-2 only"}
    path.write_text(CONFIG.replace("mycloud { size = large }", ""))
    problems = {p.path: p.message for p in load_config(path, host, provider="mycloud").problems}
    assert problems == {"resources[0].mycloud": "is required for provider 'mycloud' (with size)"}
    assert build_config({"resources": []}, provider="mycloud", catalog=host.catalog()).provider_settings == {
        "region": "eu-1",
        "credential": build_config({}, catalog=host.catalog()).scaler.git.password,  # an empty secret
        "boot_timeout": 300.0,
    }


def test_export_masks_the_declared_secret_and_import_comments(host: PluginHost, tmp_path: Path) -> None:
    path = tmp_path / "my.conf"
    path.write_text(CONFIG)
    catalog = host.catalog()
    document = export_config(path, catalog=catalog)
    assert CREDENTIAL not in json.dumps(document)
    assert document["config"]["mycloud"]["credential"] == "********"
    assert document["config"]["mycloud"]["boot_timeout"] == "10m"  # a declared duration
    assert document["env"]["mycloud.credential"] == "MYCLOUD_CREDENTIAL"  # the declared variable

    imported = import_config(document, catalog=catalog)
    assert "credential = ${?MYCLOUD_CREDENTIAL}" in imported.text
    assert "# Credential of the mycloud account." in imported.text
    assert "# Settings of the mycloud fleet." in imported.text
    assert "# Machine size." in imported.text
    assert "boot_timeout = 10m" in imported.text
    assert imported.env == {"mycloud.credential": "MYCLOUD_CREDENTIAL"}


def test_vault_keys_map_onto_the_declared_fields(host: PluginHost, tmp_path: Path) -> None:
    path = tmp_path / "my.conf"
    path.write_text(CONFIG.replace("credential = ", "# "))
    vault = textwrap.dedent("""
        auto_scaler.v1.mycloud {
          mycloud_region = "us-1"
          mycloud_credential = "from-the-vault-0001"
          mycloud_regoin = "x"
          match { "^dynamic_mycloud$" { mycloud_region = "eu-2" } }
        }
    """)
    assert host.catalog().vault_keys("mycloud")["mycloud_credential"] == "mycloud.credential"
    result = load_config(path, host, provider="mycloud", vault_text=vault)
    assert result.ok, [p.render() for p in result.errors]
    assert result.config is not None
    assert result.config.provider_settings["region"] == "eu-2"
    assert result.config.provider_settings["credential"].reveal() == "from-the-vault-0001"
    [unknown] = [p for p in result.problems if "mycloud_regoin" in p.path]
    assert unknown.severity == "warning" and "did you mean 'mycloud_region'?" in unknown.message
    # another provider's vault keys do not apply to this one
    assert "aws_region" not in host.catalog().vault_keys("mycloud")


def test_init_asks_the_declared_questions(cli_host: PluginHost, tmp_path: Path) -> None:
    out = tmp_path / "my.conf"
    answers = "\n".join(
        [
            "my-fleet",  # name
            "",  # workers prefix
            "mars",  # region: not a choice, asked again
            "eu-1",
            CREDENTIAL,  # the credential, hidden
            "",  # git user
            "",  # git token
            "",  # docker image
            "big",  # resource name
            "gpu",  # queue
            "huge",  # size: not a choice, asked again
            "large",  # size: refused by the plugin's cross-check in eu-1, asked again
            "small",
            "",  # max instances
            "",  # spot
            "",  # init script
            "n",  # no more resources
            "",
            "",
        ]
    )
    result = runner.invoke(
        app, ["init", "--provider", "mycloud", "--interactive", "-o", str(out)], input=answers + "\n"
    )
    assert result.exit_code == 0, result.output
    for question in ("MyCloud region", "MyCloud credential (hidden)", "Machine size (small or large)"):
        assert question in result.output
    assert "must be one of eu-1, eu-2, us-1, got 'mars'" in result.output
    assert "must be one of small, large, got 'huge'" in result.output
    assert "large machines exist in eu-2 only" in result.output
    text = out.read_text()
    assert CREDENTIAL not in text and CREDENTIAL not in result.output
    assert "credential = ${?MYCLOUD_CREDENTIAL}" in text
    assert "# Credential of the mycloud account." in text and "# Machine size." in text
    assert 'size = "small"' in text
    env = (tmp_path / "my.env").read_text()
    assert f"MYCLOUD_CREDENTIAL={CREDENTIAL}" in env
    assert f"wrote {out}: valid (provider mycloud; 1 resource(s): big)" in result.output


def test_init_flags_for_a_third_party_provider(cli_host: PluginHost, tmp_path: Path) -> None:
    out = tmp_path / "my.conf"
    base = ["init", "--provider", "mycloud", "-o", str(out)]
    result = runner.invoke(app, [*base, "--set", "mycloud.region=eu-2", "--resource", "name=big,instance_type=large"])
    assert result.exit_code == 0, result.output
    assert 'region = "eu-2"' in out.read_text() and 'size = "large"' in out.read_text()
    out.unlink()

    result = runner.invoke(app, [*base, "--set", f"mycloud.credential={CREDENTIAL}", "--resource", "name=big"])
    assert result.exit_code == 2
    assert "--set mycloud.credential: mycloud.credential is a secret" in result.output
    assert "export MYCLOUD_CREDENTIAL=… instead" in result.output
    assert CREDENTIAL not in result.output
    result = runner.invoke(app, [*base, "--resource", "name=big"])
    assert result.exit_code == 2
    assert "pass --resource instance_type=… (resource 1)" in result.output  # the declared short key
    assert not out.exists()
