"""Text written by someone else is data (issue 12, findings 3, 8, 9, 10).

* A vault (``--vault`` file or the ClearML server's) and a ClearML task's configuration may not
  include anything or substitute anything: the scaler fetches no URL (a loopback server counts
  the requests), opens no file and reads no environment variable (a variable holding a secret
  appears nowhere), and says which vault, key and line. The main configuration file keeps
  ``include`` and ``${?VAR}``.
* A vault ``match`` regex runs under a time bound: ``^(a+)+$`` cannot hang, and one that
  backtracks past the bound is reported with its pattern.
* Hostile files end in a clear error and exit 1 or 2, never "internal error" (70).
* Counts and durations have upper bounds that say what is valid.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.config import vault as vault_module
from scaler.config.loading import MAX_DEPTH, load_config, parse_hocon
from scaler.host import PluginHost

runner = CliRunner()
SECRET = "host-secret-value-8d1f0c"  # in the scaler's environment: must never be read into a config

CONFIG = """\
scaler { name = "data", workers_prefix = "%s" }
simulated { boot_time = 0s }
resources = [ { name = "cpu", queue = "cpu", max_instances = 2 } ]
"""


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b'auto_scaler.v1.simulated { workers_prefix = "fetched" }'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[str]]]:
    """A URL on loopback that answers a valid vault, and the list of requests it got."""
    requests: list[str] = []
    handler = type("Handler", (Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/vault.conf", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALER_TEST_HOST_SECRET", SECRET)
    (tmp_path / "scaler.conf").write_text(CONFIG % "dyn")
    return tmp_path


def validate(folder: Path, vault_text: str, *extra: str) -> Any:
    (folder / "vault.conf").write_text(textwrap.dedent(vault_text))
    return runner.invoke(
        app,
        [
            "validate-config",
            str(folder / "scaler.conf"),
            "--provider",
            "simulated",
            "--vault",
            str(folder / "vault.conf"),
            *extra,
        ],
    )


# -- finding 3: a vault is data ---------------------------------------------------------------


def test_a_vault_include_url_is_not_fetched(files: Path, loopback: tuple[str, list[str]]) -> None:
    url, requests = loopback
    result = validate(
        files,
        f"""\
        auto_scaler.v1.simulated {{
          include url("{url}")
        }}
        """,
    )
    assert result.exit_code == 1, result.output
    assert f'vault (line 2): {files / "vault.conf"}: include url("{url}")' in result.output
    assert "at 'auto_scaler.v1.simulated' refused: a vault is data" in result.output
    assert requests == [], "the scaler fetched what a vault named"


def test_a_vault_substitution_reads_nothing_from_the_environment(files: Path) -> None:
    text = """\
    auto_scaler.v1.simulated {
      workers_prefix = "dyn"
      extra_vm_bash_script = ${?SCALER_TEST_HOST_SECRET}
    }
    """
    result = validate(files, text)
    assert result.exit_code == 1
    assert "vault (line 3)" in result.output
    assert "${?SCALER_TEST_HOST_SECRET} at 'auto_scaler.v1.simulated.extra_vm_bash_script' refused" in result.output
    assert SECRET not in result.output
    # ignore_vault_parsing_errors: the vault is skipped with a warning, still nothing read
    (files / "scaler.conf").write_text(CONFIG % "dyn" + "scaler.ignore_vault_parsing_errors = true\n")
    result = validate(files, text)
    assert result.exit_code == 0, result.output
    assert "vault ignored (ignore_vault_parsing_errors)" in result.output
    script = runner.invoke(
        app,
        [
            "render-init-script",
            "--config",
            str(files / "scaler.conf"),
            "--resource",
            "cpu",
            "--vault",
            str(files / "vault.conf"),
            "--show-secrets",
        ],
        # the agents need ClearML credentials, or rendering is refused
        env={"CLEARML_API_ACCESS_KEY": "AGENTKEY", "CLEARML_API_SECRET_KEY": "agent-secret"},
    )
    assert script.exit_code == 0, script.output
    assert SECRET not in script.output


def test_a_server_vault_is_data_too(files: Path, loopback: tuple[str, list[str]]) -> None:
    url, requests = loopback
    text = f'auto_scaler.v1.simulated {{ include url("{url}"), aws_x = ${{SCALER_TEST_HOST_SECRET}} }}'
    result = load_config(
        files / "scaler.conf", PluginHost(), provider="simulated", server_vaults=[("server vault of alice", text)]
    )
    messages = [p.render() for p in result.errors]
    assert len(messages) == 2, messages
    assert all(m.startswith("vault (line 1): server vault of alice: ") for m in messages)
    assert requests == [] and SECRET not in repr(result.problems)


REFUSED = [
    ("url", 'a { include url("http://127.0.0.1:9/x") }', "a", 'include url("http://127.0.0.1:9/x")', 1),
    ("file", 'a {\n  include file("/etc/hostname")\n}', "a", 'include file("/etc/hostname")', 2),
    ("required", 'a { include required(file("/etc/hostname")) }', "a", 'include file("/etc/hostname")', 1),
    ("bare", 'include "other.conf"', "", 'include file("other.conf")', 1),
    ("glob", 'a { include "/**/*.conf" }', "a", 'include file("/**/*.conf")', 1),
    ("package", 'a { include package("os:x.conf") }', "a", 'include package("os:x.conf")', 1),
    ("in-list", 'a = [ include "x.conf" ]', "", 'include file("x.conf")', 1),
    ("optional", "a {\n b = 1\n c = ${?SCALER_TEST_HOST_SECRET}\n}", "a.c", "${?SCALER_TEST_HOST_SECRET}", 3),
    ("required-var", "a = ${SCALER_TEST_HOST_SECRET}", "a", "${SCALER_TEST_HOST_SECRET}", 1),
    ("concatenated", 'a = "x-"${?SCALER_TEST_HOST_SECRET}', "a", "${?SCALER_TEST_HOST_SECRET}", 1),
    ("list-item", "a = [1, ${?HOME}]", "a[1]", "${?HOME}", 1),
    ("self", "a = 1\nb = ${a}", "b", "${a}", 2),
    ("append", 'SCALER_TEST_HOST_SECRET += "x"', "SCALER_TEST_HOST_SECRET", "+=", None),
]


@pytest.mark.parametrize(("text", "path", "what", "line"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_every_include_and_substitution_is_refused_with_its_key_and_line(
    text: str, path: str, what: str, line: int | None, files: Path, loopback: tuple[str, list[str]]
) -> None:
    started = time.monotonic()
    tree, problems = parse_hocon(text, source="my vault", data="a vault")
    assert time.monotonic() - started < 5, "a glob include must not walk the file system"
    assert tree == {}
    [problem] = problems
    where = f"'{path}'" if path else "the top level"
    assert problem.message.startswith(f"{what} at {where} refused: a vault is data"), problem.message
    assert problem.path == "my vault" and problem.line == line
    assert SECRET not in problem.render()


def test_data_is_still_hocon_and_json(files: Path) -> None:
    text = 'a { b = 30s, c = "${not-a-substitution}", d = [1, 2] } a.e = x y\n// comment\n'
    tree, problems = parse_hocon(text, source="vault", data="a vault")
    assert not problems
    assert tree["a"]["c"] == "${not-a-substitution}" and tree["a"]["e"] == "x y" and tree["a"]["d"] == [1, 2]
    tree, problems = parse_hocon('{"a": "${?SCALER_TEST_HOST_SECRET}"}', source="vault", data="a vault")
    assert tree == {"a": "${?SCALER_TEST_HOST_SECRET}"} and not problems  # a JSON string is a string


def test_the_main_configuration_keeps_includes_and_substitutions(files: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SCALER_GIT_TOKEN", "git-token-1234")
    (files / "common.conf").write_text('scaler { git { user = "bot" } }\n')
    (files / "scaler.conf").write_text(
        'include "common.conf"\n' + CONFIG % "dyn" + "scaler.git.password = ${?SCALER_GIT_TOKEN}\n"
    )
    result = load_config(files / "scaler.conf", PluginHost(), provider="simulated")
    assert result.ok, result.problems
    assert result.config is not None
    assert result.config.scaler.git.user == "bot"
    assert result.config.scaler.git.password.reveal() == "git-token-1234"


def test_a_task_configuration_may_name_only_each_secrets_own_variable(files: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SCALER_GIT_TOKEN", "git-token-1234")
    allowed = CONFIG % "dyn" + "scaler.git.password = ${?SCALER_GIT_TOKEN}\n"
    (files / "task.conf").write_text(allowed)
    result = load_config(files / "task.conf", PluginHost(), provider="simulated", from_task=True)
    assert result.ok and result.config is not None, result.problems
    assert result.config.scaler.git.password.reveal() == "git-token-1234"
    for hostile, key in [
        ("scaler.git.password = ${?SCALER_TEST_HOST_SECRET}", "scaler.git.password"),  # another variable
        ("scaler.init_script = ${?SCALER_GIT_TOKEN}", "scaler.init_script"),  # not a secret field
        ('include "/etc/hostname"', ""),
    ]:
        (files / "task.conf").write_text(CONFIG % "dyn" + hostile + "\n")
        result = load_config(files / "task.conf", PluginHost(), provider="simulated", from_task=True)
        [problem] = result.errors
        assert problem.line == 4
        assert (f"at '{key}' refused" if key else "at the top level refused") in problem.message
        assert "a ClearML task's configuration is data" in problem.message
        assert SECRET not in problem.render() and "git-token-1234" not in problem.render()


# -- finding 8: match regexes under a time bound ----------------------------------------------


def test_a_catastrophic_match_regex_cannot_hang_validation(files: Path, scaler_cli: Any) -> None:
    prefix = "a" * 40 + "!"  # Python's re needs ~2**40 steps for ^(a+)+$ on this
    (files / "scaler.conf").write_text(CONFIG % prefix)
    (files / "vault.conf").write_text('auto_scaler.v1.simulated { match { "^(a+)+$" { max_idle_time_min = 5 } } }')
    started = time.monotonic()
    proc = scaler_cli(
        "validate-config",
        str(files / "scaler.conf"),
        "--provider",
        "simulated",
        "--vault",
        str(files / "vault.conf"),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 30


def test_a_match_regex_past_the_time_bound_is_reported_with_its_pattern(files: Path) -> None:
    (files / "scaler.conf").write_text(CONFIG % ("a" * 40 + "!"))
    vault = (
        'auto_scaler.v1.simulated { match { "(a|aa)+$" { max_idle_time_min = 5 }, "^a" { max_idle_time_min = 7 } } }'
    )
    started = time.monotonic()
    result = validate(files, vault)
    assert time.monotonic() - started < 10
    assert result.exit_code == 1, result.output
    assert 'vault.auto_scaler.v1.simulated.match."(a|aa)+$": took too long to match the workers prefix' in result.output
    (files / "scaler.conf").write_text(CONFIG % ("a" * 40 + "!") + "scaler.ignore_vault_parsing_errors = true\n")
    loaded = load_config(files / "scaler.conf", PluginHost(), provider="simulated", vault_path=files / "vault.conf")
    assert loaded.ok and loaded.config is not None
    assert any("(a|aa)+$" in p.path and "skipped (ignore_vault_parsing_errors)" in p.message for p in loaded.warnings)
    assert loaded.config.scaler.max_idle_time == 7 * 60  # the other section still applies


def test_the_regexes_of_one_vault_share_a_time_budget(files: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(vault_module, "MATCH_BUDGET", 0.0)
    result = validate(files, 'auto_scaler.v1.simulated { match { "^dyn$" { max_idle_time_min = 5 } } }')
    assert result.exit_code == 1 and "took too long" in result.output


def test_match_keeps_search_semantics(files: Path) -> None:
    loaded = load_config(files / "scaler.conf", PluginHost(), provider="simulated", vault_text="")
    assert loaded.ok
    text = 'auto_scaler.v1.simulated { match { "y" { max_idle_time_min = 5 }, "^d" { max_idle_time_min = 6 } } }'
    (files / "scaler.conf").write_text(CONFIG % "dyn")
    loaded = load_config(files / "scaler.conf", PluginHost(), provider="simulated", vault_text=text)
    assert loaded.vault is not None and loaded.vault.matched == ["y", "^d"]  # unanchored search, in file order


# -- finding 9: hostile files end in a clear error --------------------------------------------


def _deep_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


HOSTILE_FILES = [
    ("missing-include", 'include required(file("/missing/scaler.conf"))\n', 1, "include '/missing/scaler.conf' cannot"),
    ("deep-json", _deep_json(5000), 1, f"nesting is deeper than {MAX_DEPTH} levels"),
    ("deep-json-65", _deep_json(MAX_DEPTH + 1), 1, f"nesting is deeper than {MAX_DEPTH} levels"),
    ("deep-hocon", "a {" * 5000 + "}" * 5000, 1, "nesting is too deep to parse"),
    ("deep-hocon-list", "a = " + "[" * 5000 + "]" * 5000, 1, "nesting is too deep to parse"),
    ("huge", "# " + "x" * (1024 * 1024) + "\n", 2, "is larger than 1024 KiB"),
    ("huge-duration", "scaler.polling_interval = 99999999999999999999s\n", 1, "must be at most 1h, got 1e+20s"),
    ("overflow", "scaler.polling_interval = 1" + "0" * 400 + "ms\n", 1, "number too large"),
    ("infinite", '{"scaler": {"polling_interval": 1e400}}', 1, "must be a finite duration"),
    ("nan", '{"scaler": {"max_idle_time": NaN}}', 1, "must be a finite duration"),
    ("huge-weeks", "scaler.max_idle_time = 1" + "0" * 400 + "w\n", 1, "must be a finite duration (at most 7d)"),
    ("huge-int", "scaler.max_instances_total = 1" + "0" * 400 + "\n", 1, "≤ 10000, got a number beyond ±1e+308"),
]


@pytest.mark.parametrize(("text", "code", "message"), [h[1:] for h in HOSTILE_FILES], ids=[h[0] for h in HOSTILE_FILES])
def test_hostile_files_get_a_clear_error(tmp_path: Path, text: str, code: int, message: str) -> None:
    path = tmp_path / "scaler.conf"
    path.write_text(text)
    started = time.monotonic()
    result = runner.invoke(app, ["validate-config", str(path), "--provider", "simulated"])
    assert time.monotonic() - started < 30
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_is_not_a_configuration(tmp_path: Path, kind: str, scaler_cli: Any) -> None:
    if kind == "fifo":
        path = tmp_path / "scaler.conf"
        os.mkfifo(path)  # no writer: reading it would block forever
    else:
        path = Path("/dev/zero")  # reading it would never end
    for args in (
        ["validate-config", str(path)],
        ["run", "--provider", "simulated", "--config", str(path), "--once", "--no-server-vault"],
        ["validate-config", str(tmp_path / "x.conf") if kind == "fifo" else "/dev/null", "--vault", str(path)],
    ):
        if args[1].endswith("x.conf"):
            (tmp_path / "x.conf").write_text(CONFIG % "dyn")
        proc = scaler_cli(*args, timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert "not a regular file" in proc.stderr


def test_a_huge_polling_interval_stops_before_the_loop(files: Path, scaler_cli: Any) -> None:
    (files / "scaler.conf").write_text(CONFIG % "dyn" + "scaler.polling_interval = 99999999999999999999s\n")
    proc = scaler_cli(
        "run", "--provider", "simulated", "--config", str(files / "scaler.conf"), "--no-server-vault", timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    assert "error: scaler.polling_interval: must be at most 1h, got 1e+20s" in proc.stderr


# -- finding 10: upper bounds ----------------------------------------------------------------

BOUNDS = [
    ("resources[0].max_instances", "resources = [ { name = cpu, queue = cpu, max_instances = %s } ]", 10**30, "≤ 1000"),
    ("scaler.max_instances_total", "scaler.max_instances_total = %s", 10**30, "≤ 10000"),
    ("scaler.max_hourly_cost", "scaler.max_hourly_cost = %s", 1e30, "≤ 1e+06"),
    ("scaler.max_launch_per_tick", "scaler.max_launch_per_tick = %s", 1001, "≤ 1000"),
    (
        "resources[0].price_per_hour",
        "resources = [ { name = c, queue = c, max_instances = 1, price_per_hour = %s } ]",
        1e9,
        "≤ 10000",
    ),
    ("scaler.polling_interval", "scaler.polling_interval = %s", "2h", "at most 1h"),
    ("scaler.max_idle_time", "scaler.max_idle_time = %s", "8d", "at most 7d"),
    ("scaler.stuck_timeout", "scaler.stuck_timeout = %s", "25h", "at most 1d"),
    (
        "resources[0].spot_blackout_period",
        "resources = [ { name = c, queue = c, max_instances = 1, spot_blackout_period = %s } ]",
        "30d",
        "at most 7d",
    ),
    ("simulated.boot_time", "simulated.boot_time = %s", "400d", "at most 365d"),
]


@pytest.mark.parametrize(("path", "line", "value", "limit"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_counts_caps_and_durations_have_upper_bounds(
    tmp_path: Path, path: str, line: str, value: Any, limit: str
) -> None:
    config = tmp_path / "scaler.conf"
    config.write_text(CONFIG % "dyn" + (line % value) + "\n")
    result = runner.invoke(app, ["validate-config", str(config), "--provider", "simulated", "--format", "json"])
    assert result.exit_code == 1, result.output
    problems = {p["path"]: p["message"] for p in json.loads(result.output)["problems"]}
    assert path in problems, problems
    assert problems[path].startswith("must be") and limit in problems[path]


# -- docs/reliability.md's Security table counts these tests ----------------------------------


def test_the_security_table_counts_what_the_tests_try() -> None:
    from tests.support import REPO

    text = (REPO / "docs" / "reliability.md").read_text()
    section = text.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = int(cells[1].replace(",", ""))
    counted = {
        "Include and substitution forms": len(REFUSED),
        "Hostile files": len(HOSTILE_FILES),
        "Values past an upper bound": len(BOUNDS),
        "A FIFO and `/dev/zero`": 2 * 3 + 1,
    }
    for start, count in counted.items():
        [row] = [n for name, n in rows.items() if name.startswith(start)]
        assert row == count, start
    total = re.search(r"\| Hostile inputs tried \| ([\d,]+) \|", section)
    assert total and int(total.group(1).replace(",", "")) == sum(rows.values())
