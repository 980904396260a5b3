"""deploy/grafana: the dashboard and the alert rules use only metrics (and labels) that a real
running scaler exports on /metrics; the rules pass ``promtool check rules`` and their unit
tests (tests/release/alerts-test.yml); the scrape itself passes ``promtool check metrics``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.clearml_server import FakeClearML
from tests.release.support import DEPLOY, Scrape, label_values_query, tool
from tests.support.metrics import free_port, scrape_after_ticks, start_metrics_run

DASHBOARD = DEPLOY / "grafana" / "clearml-scaler.json"
RULES = DEPLOY / "grafana" / "clearml-scaler-alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts-test.yml")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    """/metrics of ``scaler run --provider simulated --metrics-port P`` against the fake
    ClearML server, after two ticks with tasks waiting in two queues."""
    tmp = tmp_path_factory.mktemp("metrics")
    home = tmp / "home"
    home.mkdir()
    (home / "clearml.conf").write_text("# empty: everything comes from the CLEARML_* environment variables\n")
    config = tmp / "scaler.conf"
    config.write_text(
        f"""
        scaler {{ name = "dashboard-fleet", workers_prefix = "dash", polling_interval = 1s }}
        simulated {{ state_file = "{tmp / "cloud.json"}", boot_time = 0s }}
        resources = [
          {{ name = "cpu", queue = "cpu", max_instances = 2 }}
          {{ name = "gpu", queue = "gpu", max_instances = 1 }}
        ]
        """
    )
    fake = FakeClearML().start()
    try:
        fake.enqueue("cpu")
        fake.enqueue("gpu")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        env.update(fake.env(), HOME=str(home), CLEARML_CONFIG_FILE=str(home / "clearml.conf"))
        port = free_port()
        proc = start_metrics_run(
            config, port, "--metrics-host", "127.0.0.1", "--state-file", str(tmp / "state.json"), env=env
        )
        try:
            text = scrape_after_ticks(port, 2)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output
        assert "scaler_ticks_total" in text, output
        yield Scrape.parse(text)
    finally:
        fake.stop()


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows
    return found


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_every_dashboard_query_uses_exported_metrics(scrape: Scrape) -> None:
    board = dashboard()
    used: set[str] = set()
    for panel in panels(board):
        for target in panel.get("targets", []):
            used |= scrape.check(target["expr"], f"panel {panel['title']!r}")
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            expr, label = label_values_query(variable["query"]["query"])
            used |= scrape.check(f"sum by ({label}) ({expr})", f"variable {variable['name']}")
    # what the dashboard is for: queues, fleet, launches, terminations, errors, ticks
    assert {
        "scaler_pending_tasks",
        "scaler_fleet_instances",
        "scaler_max_instances",
        "scaler_launches_total",
        "scaler_terminations_total",
        "scaler_errors_total",
        "scaler_tick_duration_seconds_bucket",
        "scaler_source_up",
        "scaler_lease_held",
        "scaler_last_tick_timestamp_seconds",
    } <= used


def test_the_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] == "clearml-scaler" and board["title"] and board["schemaVersion"] >= 36
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[0] == "datasource" and board["templating"]["list"][0]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(board):
        assert panel["title"] and panel.get("description"), panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']}: wider than the 24-column grid"
        for target in panel["targets"]:
            for variable in ("$job", "$instance"):
                assert variable in target["expr"], f"{panel['title']}: {target['expr']} ignores {variable}"


def test_every_alert_uses_exported_metrics(scrape: Scrape) -> None:
    alerts = rules()
    assert len(alerts) >= 5
    for rule in alerts:
        assert rule["alert"] and rule["labels"]["severity"] in ("critical", "warning", "info"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        scrape.check(rule["expr"], f"alert {rule['alert']}")


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    promtool = tool("promtool", "Debian's prometheus package")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # every alert has a unit test that fires it
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")
    }  # fmt: skip
    untested = {rule["alert"] for rule in rules()} - fired
    assert not untested, f"no promtool unit test fires {sorted(untested)}"


def test_promtool_checks_a_real_scrape(scrape: Scrape) -> None:
    promtool = tool("promtool", "Debian's prometheus package")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape.text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr
