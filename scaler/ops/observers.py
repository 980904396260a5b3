"""What ``scaler run`` hangs on the loop's tick listeners: the state file for
``scaler status``, Prometheus metrics, the ClearML task's scalars and log level, and a
DEBUG summary line per tick."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaler.engine.reconciler import Reconciler, TickReport
    from scaler.ops.metrics import Metrics

log = logging.getLogger("scaler")


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
