"""The running scaler's small state file, read by ``scaler status``.

``scaler run`` rewrites it (atomically) at the end of every tick: when it last ticked, what
that tick saw, the idle timers it keeps in memory, and its recent actions with their
reasons. It is a window for operators, never an input to decisions: the cloud and ClearML
remain the source of truth, and a missing or stale file changes nothing in the loop.

Default location: ``$XDG_CACHE_HOME/clearml-scaler/<name>.json`` (``~/.cache/...``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.config.paths import write_atomic

if TYPE_CHECKING:
    from scaler.engine.reconciler import Reconciler, TickReport

VERSION = 1
KEEP_ACTIONS = 50


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clearml-scaler"


def default_path(name: str) -> Path:
    return cache_dir() / f"{name}.json"


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace the state file atomically (a fresh ``mkstemp`` file renamed over it: a symlink
    planted at ``path`` is replaced, never followed), readable by its owner only."""
    write_atomic(path, json.dumps(data, indent=1))


class StateWriter:
    """A tick listener of :class:`~scaler.engine.reconciler.Reconciler` that writes the state file."""

    def __init__(self, path: Path, reconciler: Reconciler, *, keep: int = KEEP_ACTIONS) -> None:
        self.path = path
        self.reconciler = reconciler
        self.keep = keep
        self.started_at = time.time()
        previous = read_state(path) or {}
        # actions survive a restart of the scaler (same name, same file)
        same = previous.get("name") == reconciler.config.scaler.name
        self.actions: list[dict[str, Any]] = list(previous.get("actions") or []) if same else []

    def __call__(self, report: TickReport) -> None:
        if report.errors.get("lease"):
            return  # another scaler of this name holds the lease: the file is its to write
        self.actions.extend({"at": report.now, "action": line} for line in report.actions)
        del self.actions[: -self.keep]
        config = self.reconciler.config
        write_json(
            self.path,
            {
                "version": VERSION,
                "name": config.scaler.name,
                "provider": " + ".join(self.reconciler.providers),
                "providers": list(self.reconciler.providers),
                "pid": os.getpid(),
                "started_at": self.started_at,
                "dry_run": self.reconciler.dry_run,
                "polling_interval": config.scaler.polling_interval,
                "last_tick": {
                    "at": report.now,
                    "duration": round(report.duration, 4),
                    "clearml_ok": report.clearml_ok,
                    "cloud_ok": report.cloud_ok,
                    "pending": report.pending,
                    "fleet": report.fleet,
                    "launched": dict(report.launched),
                    "terminated": dict(report.terminated),
                    "requeued": report.requeued,
                    "errors": dict(report.errors),
                },
                "idle_since": dict(self.reconciler.state.idle_since),
                "actions": self.actions,
            },
        )
