"""Private files and the state file are written without following symlinks (issue 12,
finding 14): a symlink planted at the target, or at the temporary name the old code used
(``.<name>.<pid>.tmp``), never sends a byte to the file it points to."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from scaler.config.paths import write_private
from scaler.ops.statefile import write_json


def _write_state(path: Path, text: str) -> None:
    write_json(path, {"text": text})


WRITERS: list[tuple[str, Callable[[Path, str], None]]] = [("private", write_private), ("state", _write_state)]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of someone else's that a planted symlink points to."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


@pytest.mark.parametrize("write", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_a_symlink_at_the_target_is_replaced_not_followed(
    tmp_path: Path, victim: Path, write: Callable[[Path, str], None]
) -> None:
    target = tmp_path / "cache" / "scaler.json"
    target.parent.mkdir()
    target.symlink_to(victim)
    write(target, "secret-ish")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and "secret-ish" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("write", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_no_predictable_temporary_name_is_opened(
    tmp_path: Path, victim: Path, write: Callable[[Path, str], None]
) -> None:
    target = tmp_path / "scaler.json"
    planted = tmp_path / f".{target.name}.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    write(target, "secret-ish")
    write(target, "again")
    assert victim.read_text() == "precious"
    assert "again" in target.read_text()
    # nothing is left behind but the planted link
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["elsewhere", target.name, planted.name])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "private.env"
    write_private(target, "old")

    with pytest.raises(TypeError):
        write_private(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["private.env"]
