"""What validation says to someone coming from ClearML's autoscaler: a duration without a unit
is minutes (ClearML's convention), and one over a day is questioned; a key of a provider's
section written flat on a resource (ClearML's spelling) is told where it goes, from the
declarations alone (a third party's section gets the same)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config.catalog import Catalog
from scaler.config.fields import Field, Section
from scaler.config.loading import load_config
from scaler.config.sections import CORE_SECTIONS
from scaler.config.validation import check_config
from scaler.host import PluginHost

runner = CliRunner()

SIM = 'simulated {}\nresources = [ { name = "a", queue = "q", max_instances = 1 } ]\n'


def problems(tmp_path: Path, text: str, *args: str) -> tuple[int, list[tuple[str, str, str]]]:
    path = tmp_path / "scaler.conf"
    path.write_text(textwrap.dedent(text))
    result = runner.invoke(app, ["validate-config", str(path), "--format", "json", *args])
    assert "Traceback" not in result.output, result.output
    report = json.loads(result.output)
    return result.exit_code, [(p["path"], p["severity"], p["message"]) for p in report["problems"]]


# -- durations without a unit ----------------------------------------------------------------


def test_a_bare_number_is_minutes(tmp_path: Path) -> None:
    path = tmp_path / "scaler.conf"
    path.write_text("scaler { max_idle_time = 900, polling_interval = 1 }\n" + SIM)
    result = load_config(path, PluginHost(), provider="simulated")
    assert result.config is not None and not result.problems, result.problems
    assert result.config.scaler.max_idle_time == 15 * 3600  # 900 minutes: 15 hours, ClearML's convention
    assert result.config.scaler.polling_interval == 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2000",
            "2000 without a unit is 2000 minutes (1d9h20m, more than a day); did you mean 2000s? "
            "Write the unit to say which.",
        ),
        (
            '"1800"',
            "1800 without a unit is 1800 minutes (1d6h, more than a day); did you mean 1800s? "
            "Write the unit to say which.",
        ),
        ("1441", "1441 without a unit is 1441 minutes (1d1m, more than a day); did you mean 1441s?"),
    ],
)
def test_a_bare_number_over_a_day_is_questioned(tmp_path: Path, value: str, expected: str) -> None:
    code, found = problems(tmp_path, f"scaler {{ max_idle_time = {value} }}\n" + SIM)
    assert code == 0  # a warning: it is valid, maybe not what was meant
    assert [(p, s) for p, s, _ in found] == [("scaler.max_idle_time", "warning")]
    assert expected in found[0][2]


@pytest.mark.parametrize("value", ["1440", "2000s", "2000m", "30h", "900"])
def test_a_day_or_less_or_a_unit_is_not_questioned(tmp_path: Path, value: str) -> None:
    code, found = problems(tmp_path, f"scaler {{ max_idle_time = {value} }}\n" + SIM)
    assert (code, found) == (0, [])


def test_a_bare_number_past_the_limit_says_it_was_minutes(tmp_path: Path) -> None:
    code, found = problems(tmp_path, "scaler { stuck_timeout = 1500, polling_interval = 600 }\n" + SIM)
    assert code == 1
    assert (
        "scaler.stuck_timeout",
        "error",
        "must be at most 1d, got 25h (1500 without a unit is 1500 minutes; did you mean 1500s?)",
    ) in found
    assert (
        "scaler.polling_interval",
        "error",
        "must be at most 1h, got 10h (600 without a unit is 600 minutes; did you mean 600s?)",
    ) in found
    # no question when that many seconds would not be valid either
    code, found = problems(tmp_path, "scaler { polling_interval = 5000 }\n" + SIM)
    assert found == [
        ("scaler.polling_interval", "error", "must be at most 1h, got 5000m (5000 without a unit is 5000 minutes)")
    ]


def test_clearml_vault_minutes_are_not_questioned(tmp_path: Path) -> None:
    # ClearML's *_min vault keys say minutes in their name
    config = tmp_path / "scaler.conf"
    config.write_text('scaler { workers_prefix = "w" }\n' + SIM)
    vault = tmp_path / "vault.conf"
    vault.write_text("auto_scaler.v1.simulated { max_idle_time_min = 2000, max_spin_up_time_min = 1500 }\n")
    result = load_config(config, PluginHost(), provider="simulated", vault_path=vault)
    assert [(p.path, p.severity, p.message) for p in result.problems] == [
        (
            "scaler.stuck_timeout (from vault auto_scaler.v1.simulated.max_spin_up_time_min)",
            "error",
            "must be at most 1d, got 25h",
        )
    ]


# -- keys of a section written flat on a resource ----------------------------------------------

AWS = 'aws { region = "us-east-1" }\n'
AWS_SUB = 'aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" }'


def resource(extra: str, sub: str = AWS_SUB) -> str:
    return f'resources = [ {{ name = "gpu", queue = "gpu", max_instances = 1, {extra} {sub} }} ]\n'


FLAT = [
    (
        'instance_type = "g5.xlarge",',
        "resources[0].instance_type",
        "unknown key 'instance_type' on a resource: move it into `aws { }` (resources[0].aws.instance_type)",
    ),
    (
        "ebs_volume_size = 100,",
        "resources[0].ebs_volume_size",
        "unknown key 'ebs_volume_size' on a resource (ClearML's name for it): move it into `aws { }` "
        "(resources[0].aws.ebs.size_gb)",
    ),
    (
        "is_spot = true,",
        "resources[0].is_spot",
        "unknown key 'is_spot' on a resource (ClearML's name for it): write it as resources[0].spot",
    ),
    (
        'region = "eu-west-1",',
        "resources[0].region",
        "unknown key 'region' on a resource: move it into the top-level `aws { }` (aws.region: fleet-wide)",
    ),
]


@pytest.mark.parametrize(("extra", "path", "expected"), FLAT, ids=[c[1].split(".")[-1] for c in FLAT])
def test_a_flat_provider_key_is_told_where_it_goes(tmp_path: Path, extra: str, path: str, expected: str) -> None:
    code, found = problems(tmp_path, AWS + resource(extra), "--provider", "aws")
    assert code == 1
    assert [(p, m) for p, _, m in found] == [(path, expected)]
    assert "did you mean" not in expected


def test_flat_keys_without_a_provider_name_every_home(tmp_path: Path) -> None:
    _, found = problems(
        tmp_path, 'aws { }\ngcp { project = "p" }\n' + resource('image = "x",', ""), "--provider", "aws"
    )
    assert (
        "resources[0].image",
        "error",
        "unknown key 'image' on a resource: a key of `gcp { }`, and the provider is 'aws'",
    ) in found
    # with no provider chosen (checked for none), each provider's section that declares it is named
    raw = {"resources": [{"name": "a", "queue": "q", "max_instances": 1, "instance_type": "x"}]}
    catalog = PluginHost().catalog()
    messages = [p.message for p in check_config(raw, catalog, None).problems if p.path == "resources[0].instance_type"]
    assert messages == [
        "unknown key 'instance_type' on a resource: for your provider: move it into `aws { }` "
        "(resources[0].aws.instance_type) or move it into `simulated { }` (resources[0].simulated.instance_type)"
    ]


def test_a_third_party_section_gets_the_same_hint() -> None:
    mycloud = Section(
        "mycloud",
        "A third party's cloud.",
        fields=(Field("endpoint", "str", default=""),),
        resource_fields=(
            Field("flavor", "str", required=True),
            Field("disk", "section", fields=(Field("size_gb", "int", default=10, clearml=("disk_gb",)),)),
        ),
    )
    catalog = Catalog([*CORE_SECTIONS, mycloud], ["mycloud"])
    raw: dict[str, Any] = {
        "mycloud": {},
        "resources": [
            {
                "name": "a",
                "queue": "q",
                "max_instances": 1,
                "flavor": "big",
                "disk_gb": 20,
                "endpoint": "x",
                "mycloud": {"flavor": "big"},
            }
        ],
    }
    found = {p.path: p.message for p in check_config(raw, catalog, "mycloud").problems}
    assert found == {
        "resources[0].flavor": "unknown key 'flavor' on a resource: move it into `mycloud { }` (resources[0].mycloud.flavor)",
        "resources[0].disk_gb": "unknown key 'disk_gb' on a resource (ClearML's name for it): move it into "
        "`mycloud { }` (resources[0].mycloud.disk.size_gb)",
        "resources[0].endpoint": "unknown key 'endpoint' on a resource: move it into the top-level `mycloud { }` "
        "(mycloud.endpoint: fleet-wide)",
    }


def test_a_typo_still_gets_its_did_you_mean(tmp_path: Path) -> None:
    _, found = problems(tmp_path, AWS + resource("max_instance = 3,"), "--provider", "aws")
    assert ("resources[0].max_instance", "error", "unknown key 'max_instance'; did you mean 'max_instances'?") in found
