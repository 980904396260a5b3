"""``scaler demo``: the real policy and reconciler on the simulated cloud, with a timeline.

The run and its figures are ``scaler simulate``'s (:func:`scaler.sim.run.run_scaler_policy`,
:func:`scaler.sim.report.build_report`): the demo adds the timeline of every action with its
reason, and shows the same report as a short summary.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from scaler.sim.report import Report, summary_rows
from scaler.sim.run import load, run_scaler_policy
from scaler.sim.world import demo_paths

if TYPE_CHECKING:
    from scaler.engine.reconciler import TickReport
    from scaler.host import PluginHost


def clock(seconds: float) -> str:
    """``02:14:30``: virtual time since the start of the trace."""
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


def run_demo(
    host: PluginHost,
    config_path: Path | None,
    trace_path: Path | None,
    *,
    json_output: bool = False,
    quiet: bool = False,
) -> Report:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    default_config, default_trace = demo_paths()
    config, spec = load(host, config_path or default_config, trace_path or default_trace)
    trace = spec.trace

    console = Console(stderr=json_output, markup=False, highlight=False)
    logging.getLogger("scaler").setLevel(logging.CRITICAL)  # the timeline shows every action instead
    show = not quiet and not json_output
    if show:
        console.print(f"clearml-scaler demo: {trace.name}")
        if trace.description:
            console.print(trace.description)
        console.print(
            f"{len(trace.tasks)} tasks, {len(config.resources)} resources, a tick every "
            f"{config.scaler.polling_interval:g}s of virtual time; it ends when every task is done and no "
            f"machine is left (at {clock(trace.horizon)} at the latest)\n"
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
        progress.update(job, completed=report.now, clock=clock(report.now), pending=pending, fleet=fleet)
        if show:
            for line in report.actions:
                progress.console.print(f"[{clock(report.now)}] {line}", soft_wrap=True)

    with progress:
        job = progress.add_task("demo", total=trace.horizon, clock="00:00:00", pending=0, fleet=0)
        report = run_scaler_policy(config, host, spec, on_tick=on_tick)

    if json_output:
        print(json.dumps(report.as_dict(), indent=2))
        return report
    table = Table(title=f"Summary: {report.trace}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for figure, value in summary_rows(report, clock):
        table.add_row(figure, value)
    console.print()
    console.print(table)
    return report
