"""``scaler demo``: the real policy and reconciler on the simulated cloud, with a timeline."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from scaler.config.loading import ConfigFileError, load_config
from scaler.errors import ConfigError
from scaler.sim.world import Summary, Trace, demo_paths, run_simulation

if TYPE_CHECKING:
    from scaler.engine.reconciler import TickReport
    from scaler.host import PluginHost


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


def run_demo(
    host: PluginHost,
    config_path: Path | None,
    trace_path: Path | None,
    *,
    json_output: bool = False,
    quiet: bool = False,
) -> Summary:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    default_config, default_trace = demo_paths()
    config_path = config_path or default_config
    try:
        result = load_config(config_path, host, provider="simulated")
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    if not result.ok or result.config is None:
        raise ConfigError("; ".join(p.render() for p in result.errors))
    config = result.config
    try:
        trace = Trace.load(trace_path or default_trace)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"trace {trace_path}: cannot be read: {type(exc).__name__}: {exc}") from None

    console = Console(stderr=json_output, markup=False, highlight=False)
    logging.getLogger("scaler").setLevel(logging.CRITICAL)  # the timeline shows every action instead
    show = not quiet and not json_output
    if show:
        console.print(f"clearml-scaler demo: {trace.name}")
        if trace.description:
            console.print(trace.description)
        console.print(
            f"{len(trace.tasks)} tasks, {len(config.resources)} resources, virtual time "
            f"{_clock(trace.horizon)}, ticks every {config.scaler.polling_interval:g}s\n"
        )
    progress = Progress(
        TextColumn("virtual time {task.fields[clock]}"),
        BarColumn(),
        TextColumn("pending {task.fields[pending]:>3}  fleet {task.fields[fleet]:>2}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not show,
    )

    def on_tick(report: TickReport) -> None:
        fleet = sum(s["alive"] for s in report.fleet.values())
        pending = sum(report.pending.values())
        progress.update(job, completed=report.now, clock=_clock(report.now), pending=pending, fleet=fleet)
        if show:
            for line in report.actions:
                progress.console.print(f"[{_clock(report.now)}] {line}", soft_wrap=True)

    with progress:
        job = progress.add_task("demo", total=trace.horizon, clock="00:00:00", pending=0, fleet=0)
        summary = run_simulation(config, host, trace, on_tick=on_tick)

    if json_output:
        print(json.dumps(summary.as_dict(), indent=2))
        return summary
    table = Table(title=f"Summary: {summary.trace}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    launched = sum(summary.launched.values())
    table.add_row(
        "instances launched", f"{launched} ({', '.join(f'{k}: {v}' for k, v in sorted(summary.launched.items()))})"
    )
    table.add_row(
        "instances terminated",
        f"{sum(summary.terminated.values())} ("
        + (", ".join(f"{k}: {v}" for k, v in sorted(summary.terminated.items())) or "none")
        + ")",
    )
    table.add_row("spot reclaims / tasks re-enqueued", f"{summary.preempted} / {summary.requeued}")
    table.add_row("tasks completed", f"{summary.completed} of {summary.tasks}")
    table.add_row(
        "task wait p50 / p95 / max", f"{summary.wait_p50:.0f}s / {summary.wait_p95:.0f}s / {summary.wait_max:.0f}s"
    )
    table.add_row(
        "instance-minutes",
        f"{sum(summary.instance_minutes.values()):.0f} ("
        + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(summary.instance_minutes.items()))
        + ")",
    )
    table.add_row("fleet cost", f"${summary.cost:.2f}")
    table.add_row("peak fleet", str(summary.peak_fleet))
    table.add_row("ticks", str(summary.ticks))
    console.print()
    console.print(table)
    return summary
