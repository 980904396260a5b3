"""Typed values shared by core and plugins (scaler.types)."""

from __future__ import annotations

import json

import pytest

from scaler.types import Problem, Severity


def test_problem_severity_is_an_enum_that_still_reads_as_text() -> None:
    warning = Problem("a.b", "is odd", severity="warning")  # the spelling plugins use
    assert warning.severity is Severity.WARNING and warning.severity == "warning"
    assert Problem("a.b", "is wrong").severity is Severity.ERROR
    assert Problem("a.b", "is odd", Severity.WARNING) == warning
    assert warning.render() == "a.b: warning: is odd" and Problem("", "bad").render() == "(top level): bad"
    assert f"{warning.severity}" == str(warning.severity) == "warning"
    assert json.dumps({"severity": warning.severity}) == '{"severity": "warning"}'
    with pytest.raises(ValueError):
        Problem("a.b", "?", severity="fatal")
