"""deploy/systemd: the unit passes ``systemd-analyze verify`` (and its offline security review)
where systemd-analyze exists, and is read here everywhere: network-online, restart policy,
hardening, a non-root user, ``scaler run`` with arguments it accepts, every ``${VAR}`` it uses
defined; the environment template names only variables something reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.release.support import DEPLOY, check_run_arguments, check_variable_names

UNIT = DEPLOY / "systemd" / "clearml-scaler.service"
ENV_TEMPLATE = DEPLOY / "systemd" / "clearml-scaler.env"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values]}}`` (a key may repeat; continuation lines are joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def value(section: str, key: str) -> str:
    values = unit()[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def environment_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for line in unit()["Service"].get("Environment", []):
        for item in line.split():
            name, _, val = item.partition("=")
            defaults[name] = val
    return defaults


def template() -> dict[str, str]:
    """``KEY=value`` lines of the environment template, the commented-out ones included."""
    found = {}
    for line in ENV_TEMPLATE.read_text().splitlines():
        match = re.fullmatch(r"#?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"not KEY=value: {line!r}"
    return found


def test_the_unit_waits_for_the_network_restarts_and_is_hardened() -> None:
    assert "network-online.target" in value("Unit", "Wants").split()
    assert "network-online.target" in value("Unit", "After").split()
    assert value("Service", "Restart") in ("on-failure", "always")
    assert int(value("Service", "RestartSec")) >= 5
    assert value("Service", "User") not in ("root", "0")
    assert int(value("Service", "TimeoutStopSec")) >= 60, "time to finish a tick on SIGTERM"
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert value("Service", key) == expected, f"{key}={expected}"
    assert value("Install", "WantedBy") == "multi-user.target"


def test_execstart_is_scaler_run_with_known_options_and_defined_variables() -> None:
    words = value("Service", "ExecStart").split()
    assert words[0].startswith("/") and words[0].endswith("/bin/scaler") and words[1] == "run"
    check_run_arguments(words[2:], "ExecStart")
    used = set(re.findall(r"\$\{(\w+)\}", value("Service", "ExecStart")))
    defaults = environment_defaults()
    assert used <= set(defaults), f"${{...}} without a default in Environment=: {used - set(defaults)}"
    assert used <= set(template()), "the environment template shows every variable ExecStart uses"
    # the state file is where systemd lets the service write
    state = words[words.index("--state-file") + 1]
    assert state.startswith(f"/var/lib/{value('Service', 'StateDirectory')}/")
    assert defaults["HOME"] == f"/var/lib/{value('Service', 'StateDirectory')}", "the SDK's cache is writable"
    assert value("Service", "EnvironmentFile").lstrip("-").startswith("/etc/clearml-scaler/")


def test_the_environment_template_names_only_variables_something_reads() -> None:
    names = template()
    for required in ("CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "SCALER_PROVIDER"):
        assert required in names
    check_variable_names(set(names) - set(environment_defaults()), str(ENV_TEMPLATE))
    assert not [n for n, v in names.items() if re.search(r"(KEY|SECRET|TOKEN)", n) and v], "no secret value"


def fake_root(tmp: Path) -> Path:
    """A root with the unit, systemd's own units (copied from this machine) and an executable
    where ExecStart points, for ``systemd-analyze --root``."""
    root = tmp / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    for system_units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if system_units.is_dir():
            shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
            break
    else:
        pytest.skip("no systemd units on this machine to verify against")
    executable = root / value("Service", "ExecStart").split()[0].lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit is still read by the tests above)")
    root = fake_root(tmp_path)
    unit_path = f"/etc/systemd/system/{UNIT.name}"
    verify = subprocess.run(
        [analyze, f"--root={root}", "verify", unit_path], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr
    # the offline security review (systemd >= 250): exposure at most 2.5 of 10
    security = subprocess.run(
        [analyze, "security", "--offline=yes", f"--root={root}", "--threshold=25", unit_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "offline" in security.stderr and "unrecognized" in security.stderr:
        pytest.skip("this systemd-analyze has no offline security review")
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert security.returncode == 0 and exposure, security.stdout[-2000:] + security.stderr
    assert float(exposure.group(1)) <= 2.5
