"""Config and vault fuzzing: whatever the input, exit 0 or 1 with a message, never a traceback,
never a launch."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scaler.cli import app
from scaler.default_plugins import simulated

# 500 configs + 400 vaults + 125 raw texts + 100 hostile documents = 1,125 generated inputs per CI
# run; raise for a longer hunt
EXAMPLES = int(os.environ.get("SCALER_FUZZ_EXAMPLES", "500"))
runner = CliRunner()

BASE: dict[str, Any] = {
    "scaler": {
        "name": "fuzz",
        "workers_prefix": "fuzz",
        "polling_interval": "30s",
        "max_idle_time": "1m",
        "git": {"user": "bot", "password": "fuzz-git-token"},
        "max_instances_total": 5,
    },
    "simulated": {"boot_time": "0s"},
    "aws": {"region": "us-east-1"},
    "resources": [
        {
            "name": "gpu",
            "queue": "gpu",
            "max_instances": 2,
            "spot": True,
            "aws": {
                "instance_type": "g5.xlarge",
                "ami_id": "ami-0abcdef1234567890",
                "tags": "a=b",
                "ebs": {"size_gb": 100, "type": "gp3"},
                "subnet_ids": ["subnet-0123456789abcdef0"],
            },
        },
        {"name": "cpu", "queue": "cpu", "max_instances": 3, "cpu_only": True, "simulated": {"instance_type": "x"}},
    ],
}

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "$(touch /tmp/pwned)",
            "`id`",
            "'; rm -rf / #",
            "${HOME}",
            "é✓🚀",
            "\x00",
            "\n\n",
            "30x",
            "-5m",
            "1e309",
            "NaN",
            "ami-",
            "sg-",
            "subnet-zz",
            "a=b,,c",
            "k=v=w",
            "../../etc/passwd",
            # issue 12: numbers and durations past every bound
            "99999999999999999999s",
            "1" + "0" * 400 + "ms",
            "1e400",
            10**30,
            -(10**30),
            1e308,
            "${?HOME}",
        ]
    ),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(config)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = config
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(HOSTILE)
    return config


def _dump(config: dict[str, Any]) -> str:
    return json.dumps(config, allow_nan=True, ensure_ascii=False)


@pytest.fixture
def world(tmp_path: Path, fake_clearml: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from scaler.clearml.queues import ClearMLSource

    # one SDK client for every run of this test: a new session re-reads the SDK's own config (~0.2 s)
    shared = ClearMLSource(timeout=5).client()
    monkeypatch.setattr(ClearMLSource, "client", lambda self: shared)
    for queue in ("gpu", "cpu"):
        for _ in range(3):
            fake_clearml.enqueue(queue)  # work is waiting: a launch would happen if anything let it
    cloud = simulated.SimulatedCloud()
    simulated.use_cloud(cloud)
    yield {"dir": tmp_path, "cloud": cloud}
    simulated.use_cloud(None)


def _check(result: Any, allowed: tuple[int, ...] = (0, 1)) -> None:
    assert result.exit_code in allowed, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        from scaler.errors import ScalerError

        assert isinstance(result.exception, ScalerError), repr(result.exception)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=configs())
def test_fuzzed_configs_validate_and_dry_run_without_launching(world: dict[str, Any], config: dict[str, Any]) -> None:
    path = world["dir"] / "fuzz.conf"
    path.write_text(_dump(config), encoding="utf-8")
    for provider in ("aws", "simulated"):
        result = runner.invoke(app, ["validate-config", str(path), "--provider", provider, "--format", "json"])
        _check(result)
        if result.exit_code == 1:
            assert json.loads(result.output)["problems"], "invalid means at least one problem with a path"
        assert "fuzz-git-token" not in result.output
    result = runner.invoke(
        app,
        [
            "run",
            "--provider",
            "simulated",
            "--config",
            str(path),
            "--once",
            "--dry-run",
            "--no-server-vault",
            "--log-level",
            "ERROR",
        ],
    )
    _check(result)
    assert not world["cloud"].instances, "a dry run never launches"


@settings(max_examples=EXAMPLES * 4 // 5, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda body, key: (
                f'auto_scaler.v1.aws {{ {key} = {body} , match {{ "{key}" {{ aws_region = {body} }} }} }}'
            ),
            st.text(max_size=30),
            st.text(max_size=10),
        ),
    )
)
def test_fuzzed_vaults_never_crash(world: dict[str, Any], text: str) -> None:
    config = world["dir"] / "base.conf"
    config.write_text(_dump(BASE), encoding="utf-8")
    vault = world["dir"] / "vault.conf"
    vault.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate-config", str(config), "--provider", "aws", "--vault", str(vault)])
    _check(result)


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=300))
def test_fuzzed_hocon_text_never_crashes(world: dict[str, Any], text: str) -> None:
    path = world["dir"] / "raw.conf"
    path.write_text(text, encoding="utf-8")
    # no --provider: a text that parses to a configuration without a cloud section, or with several,
    # is a usage error (exit 2) that says so
    result = runner.invoke(app, ["validate-config", str(path)])
    _check(result, (0, 1, 2))
    if result.exit_code == 2:
        assert "so its provider cannot be inferred; pass --provider" in result.output, result.output


# issue 12, finding 9: documents that used to end in "internal error" (exit 70) instead of a
# clear error: deep nesting (JSON and HOCON), unreadable includes, numbers past every bound
_NEST = st.integers(min_value=1, max_value=6000)
HOSTILE_DOCUMENTS = st.one_of(
    _NEST.map(lambda n: '{"scaler": ' * n + "{}" + "}" * n),
    _NEST.map(lambda n: "scaler " + "{ a " * n + "}" * n),
    _NEST.map(lambda n: "resources = " + "[" * n + "]" * n),
    st.sampled_from(
        [
            'include required(file("/missing/scaler.conf"))',
            'include required("/missing/scaler.conf")',
            'include required(url("http://127.0.0.1:9/scaler.conf"))',
            'include "/dev/null"',
        ]
    ),
    st.builds(
        # over a valid configuration: what validates runs a tick (and sleeps) with that value
        lambda key, digits, unit: f'include "base.json"\nscaler.{key} = {digits}{unit}',
        st.sampled_from(
            ["polling_interval", "max_idle_time", "stuck_timeout", "max_instances_total", "max_hourly_cost"]
        ),
        st.integers(min_value=0, max_value=400).map(lambda n: "9" * (n + 1)),
        st.sampled_from(["", "s", "ms", "m", "h", "d", "w", ".5", "e400"]),
    ),
)


@settings(max_examples=EXAMPLES // 5, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=HOSTILE_DOCUMENTS)
def test_hostile_documents_get_a_clear_error(world: dict[str, Any], text: str) -> None:
    (world["dir"] / "base.json").write_text(_dump(BASE), encoding="utf-8")
    path = world["dir"] / "hostile.conf"
    path.write_text(text + "\n", encoding="utf-8")
    for args in (
        ["validate-config", str(path), "--provider", "simulated"],
        ["run", "--provider", "simulated", "--config", str(path), "--once", "--dry-run", "--no-server-vault"],
    ):
        result = runner.invoke(app, [*args, "--log-level", "ERROR"] if args[0] == "run" else args)
        _check(result, (0, 1, 2))
        assert "internal error" not in result.output
    assert not world["cloud"].instances
