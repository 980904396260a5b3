"""Helpers of the release and deploy tests (no tests here): the options ``scaler run`` accepts,
the environment variables the code reads, PromQL selectors, a /metrics scrape parsed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO

DEPLOY = REPO / "deploy"


def source_files() -> list[str]:
    """What a clean clone has, plus the working tree's new files: tracked and untracked, not
    ignored (relative paths)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is needed to list the repository's files")
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def run_options() -> set[str]:
    """Every option ``scaler run`` accepts (``--provider``, ``--no-server-vault``, ...)."""
    import typer.main

    from scaler.cli import app

    command = typer.main.get_command(app)
    run = command.commands["run"]  # type: ignore[attr-defined]
    names: set[str] = set()
    for param in run.params:
        names.update(param.opts)
        names.update(getattr(param, "secondary_opts", []))
    return names


def check_run_arguments(args: list[str], where: str) -> None:
    """``args`` of ``scaler run`` name only options it has, and each option with a value has one."""
    options = run_options()
    flags = {"--once", "--dry-run", "--remote", "--server-vault", "--no-server-vault"}
    i = 0
    while i < len(args):
        arg = args[i]
        assert arg.startswith("--"), f"{where}: {arg!r} is not an option of `scaler run` (it takes no arguments)"
        name = arg.split("=", 1)[0]
        assert name in options, f"{where}: `scaler run` has no option {name}"
        if name in flags or "=" in arg:
            i += 1
            continue
        assert i + 1 < len(args) and not args[i + 1].startswith("--"), f"{where}: {name} needs a value"
        i += 2


def variables_read_by_the_code() -> set[str]:
    """``SCALER_*`` names that appear in core, the plugins or the examples."""
    found: set[str] = set()
    for root in (REPO / "scaler", REPO / "plugins", REPO / "examples"):
        for path in root.rglob("*"):
            if path.suffix in (".py", ".conf") and "build" not in path.parts:
                found.update(re.findall(r"\bSCALER_[A-Z0-9_]+", path.read_text()))
    return found


#: variables that other programs read: the ClearML SDK, boto3, Google's auth library
SDK_VARIABLES = {
    "CLEARML_API_HOST",
    "CLEARML_WEB_HOST",
    "CLEARML_FILES_HOST",
    "CLEARML_API_ACCESS_KEY",
    "CLEARML_API_SECRET_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
}


def check_variable_names(names: Iterable[str], where: str) -> None:
    """Each name is one the scaler or an SDK it uses reads (a typo is caught here)."""
    known = variables_read_by_the_code() | SDK_VARIABLES
    for name in names:
        assert name in known, f"{where}: nothing reads the environment variable {name}"


def tool(name: str, why: str) -> str:
    """The path of a command-line tool; skipped when it is missing, unless CI (where .ci/run installs it)."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI ({why}); .ci/run installs it")
    pytest.skip(f"{name} is not installed ({why}); .ci/run installs it")


# -- PromQL -----------------------------------------------------------------------------------

#: words of PromQL that are not metric names
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "le",
}  # fmt: skip
#: series Prometheus makes itself for each target (not on /metrics)
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: labels Prometheus adds to every series of a target (not on /metrics)
TARGET_LABELS = {"job", "instance"}


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # (label, op, value)


def promql_selectors(expr: str) -> tuple[list[Selector], set[str]]:
    """The metric selectors of a PromQL expression, and the labels it groups by."""
    grouping: set[str] = set()
    for words in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        grouping |= {w.strip() for w in words.split(",") if w.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    selectors: list[Selector] = []
    pattern = re.compile(r'(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\{(?:[^{}"]|"[^"]*")*\})?\s*(\()?')
    for match in pattern.finditer(_blank_strings_outside_selectors(text)):
        name, braces, call = match.groups()
        if call or name in PROMQL_WORDS:
            continue
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', braces or "")
        selectors.append(Selector(name, matchers))
    for braces in re.findall(r'(?<![\w}])\{((?:[^{}"]|"[^"]*")*)\}', text):  # {__name__=...} selectors
        assert "__name__" not in braces, f"select metrics by name, not by __name__: {expr}"
    return selectors, grouping


def _blank_strings_outside_selectors(text: str) -> str:
    """``label_replace(x, "dst", "$1", ...)``: the words in those strings are not metrics."""
    out, depth, i = [], 0, 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = text.index('"', i + 1)
            out.append(text[i : end + 1] if depth else '""')
            i = end + 1
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        out.append(char)
        i += 1
    return "".join(out)


def label_values_query(query: str) -> tuple[str, str]:
    """A Grafana ``label_values(metric{...}, label)`` query: the selector expression and the label."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
    assert match, f"unexpected variable query {query!r}"
    return match.group(1), match.group(2)


@dataclass
class Scrape:
    """A /metrics text: every sample name with the label sets it was exported with."""

    text: str
    samples: dict[str, list[dict[str, str]]]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[str, list[dict[str, str]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(dict(sample.labels))
        return cls(text, samples)

    def check(self, expr: str, where: str) -> set[str]:
        """Every metric of ``expr`` is exported, with the labels it selects and groups by; the names."""
        selectors, grouping = promql_selectors(expr)
        names = {s.metric for s in selectors}
        assert names, f"{where}: no metric in {expr!r}"
        labels_of_expr: set[str] = set(TARGET_LABELS)
        for selector in selectors:
            if selector.metric in SYNTHETIC:
                continue
            assert selector.metric in self.samples, f"{where}: {selector.metric} is not exported by /metrics ({expr})"
            series = self.samples[selector.metric]
            labels = {label for labelset in series for label in labelset}
            labels_of_expr |= labels
            for label, op, value in selector.matchers:
                if label in TARGET_LABELS:
                    continue
                assert label in labels, f"{where}: {selector.metric} has no label {label} ({expr})"
                if op == "=" and "$" not in value:
                    values = {labelset.get(label) for labelset in series}
                    assert value in values, f"{where}: {selector.metric}{{{label}={value!r}}} is never exported"
        missing = grouping - labels_of_expr
        assert not missing, f"{where}: groups by {sorted(missing)}, which no metric of {expr!r} has"
        return names
