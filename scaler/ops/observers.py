"""What ``scaler run`` hangs on the loop's tick listeners: the state file for
``scaler status``, Prometheus metrics, the ClearML task's scalars and log level, the polling
results at INFO (:class:`PollSummary`) and a DEBUG summary line per tick."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.engine.reconciler import Reconciler, TickReport
    from scaler.ops.metrics import Metrics

log = logging.getLogger("scaler")

#: seconds between two INFO lines while the polling results do not change (the scaler is alive)
HEARTBEAT = 300.0


def poll_line(config: Config, report: TickReport) -> str:
    """What one poll found, per queue: ``queue gpu: 4 pending, 1 idle, 2 booting; cpu: 0 pending``
    (machines of the queue's resources; busy ones too; a count of 0 machines is left out)."""
    parts = []
    for name in config.queues:
        pending = f"{report.pending[name]} pending" if report.clearml_ok and name in report.pending else "? pending"
        counts = {"idle": 0, "booting": 0, "busy": 0}
        for resource in config.resources_for_queue(name):
            stats = report.fleet.get(resource.name) or {}
            for state in counts:
                counts[state] += int(stats.get(state, 0))
        if not report.cloud_ok:
            machines = ["machines unknown"]
        elif not report.clearml_ok:
            alive = sum(int((report.fleet.get(r.name) or {}).get("alive", 0)) for r in config.resources_for_queue(name))
            machines = [f"{alive} running"] if alive else []
        else:
            machines = [f"{n} {state}" for state, n in counts.items() if n]
        parts.append(", ".join([f"{name}: {pending}", *machines]))
    line = "queue " + "; ".join(parts) if parts else "no queues"
    unread = [what for what, ok in (("ClearML", report.clearml_ok), ("the cloud", report.cloud_ok)) if not ok]
    if unread:
        line += f" ({' and '.join(unread)} unreadable)"
    return line


class PollSummary:
    """A tick listener that logs the polling results at INFO: one line whenever the picture changes,
    and the same line again every :data:`HEARTBEAT` seconds while it does not, so a console (the
    ClearML task's, a terminal, journald) shows the scaler is alive."""

    def __init__(self, config: Config, heartbeat: float = HEARTBEAT) -> None:
        self.config = config
        self.heartbeat = heartbeat
        self._last = ""
        self._said_at = 0.0

    def __call__(self, report: TickReport) -> None:
        line = poll_line(self.config, report)
        if line != self._last:
            self._last, self._said_at = line, report.now
            log.info("%s", line)
        elif report.now - self._said_at >= self.heartbeat:
            self._said_at = report.now
            log.info("%s (unchanged; alive)", line)


def tick_summary(report: TickReport) -> None:
    """One DEBUG line per tick with what it saw and did."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug(
        "tick: pending %s; fleet %s; launched %s; terminated %s; requeued %d; errors %s; clearml %s, cloud %s; %.3fs",
        report.pending if report.clearml_ok else "unknown",
        report.fleet if report.cloud_ok else "unknown",
        dict(report.launched),
        dict(report.terminated),
        report.requeued,
        dict(report.errors),
        "ok" if report.clearml_ok else "unreadable",
        "ok" if report.cloud_ok else "unreadable",
        report.duration,
    )


def attach(
    reconciler: Reconciler,
    *,
    task: Any = None,
    state_file: Path | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
) -> Metrics | None:
    """Add the listeners; the metrics exporter (to close at exit) when one was started.

    The state file is written unless this is a dry run without an explicit ``state_file``
    (a dry run must not overwrite the state of the real scaler of the same name).
    Raises ``OSError`` when the metrics port cannot be bound.
    """
    from scaler.ops.statefile import StateWriter, default_path

    reconciler.listeners.append(PollSummary(reconciler.config))
    reconciler.listeners.append(tick_summary)
    if state_file is not None or not reconciler.dry_run:
        path = state_file or default_path(reconciler.config.scaler.name)
        reconciler.listeners.append(StateWriter(path, reconciler))
        log.info("state for `scaler status`: %s", path)
    metrics = None
    if metrics_port is not None:
        from scaler.ops.metrics import Metrics

        metrics = Metrics(reconciler.config)
        port = metrics.serve(metrics_port, metrics_host)
        reconciler.listeners.append(metrics)
        log.info("Prometheus metrics on http://%s:%d/metrics", metrics_host, port)
    if task is not None:
        from scaler.clearml.task import TaskReporter

        reporter = TaskReporter(task, reconciler.config)
        reporter.apply_log_level()
        reconciler.listeners.append(reporter)
        log.info("reporting to ClearML task %s (scalars; log level from its user property log_level)", task.id)
    return metrics
