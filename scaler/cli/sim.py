"""``scaler demo`` and ``scaler simulate``: the loop on the simulated cloud, on a virtual clock."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scaler.cli.app import (
    Format,
    app,
    make_host,
)

if TYPE_CHECKING:
    pass


@app.command()
def demo(
    trace: Annotated[Path | None, typer.Option(help="Trace file (default: the bundled demo trace).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (default: the bundled demo fleet).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Summary format.")] = Format.text,
    quiet: Annotated[bool, typer.Option("--quiet", help="No timeline, only the summary.")] = False,
) -> None:
    """Run the real loop against the built-in simulated cloud and queue (no account needed)."""
    from scaler.sim.demo import run_demo

    run_demo(make_host(), config, trace, json_output=fmt is Format.json, quiet=quiet)


class SimPolicy(str, enum.Enum):
    scaler = "scaler"
    clearml = "clearml"


@app.command()
def simulate(
    config: Annotated[
        Path, typer.Option(help="Config file (one cloud: run on the simulated provider; several: each simulated).")
    ],
    trace: Annotated[Path, typer.Option(help="Trace file (JSON; see docs/simulate.md).")],
    policy: Annotated[
        SimPolicy, typer.Option(help="scaler: this project's loop; clearml: ClearML's own autoscaler.")
    ] = SimPolicy.scaler,
    seed: Annotated[
        int | None, typer.Option(help="Vary the trace deterministically (arrivals, durations, boots).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write pending tasks and fleet size over time to this PNG.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.text,
) -> None:
    """Replay a trace on a virtual clock; report cost against a lower bound, waits, launches."""
    from scaler.sim import run as simulation

    if plot is not None:
        simulation.require_matplotlib()
    host = make_host()
    cfg, spec = simulation.load(host, config, trace)
    report = simulation.simulate(cfg, host, spec, policy.value, seed)
    if plot is not None:
        simulation.plot([report], plot)
    if fmt is Format.json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(simulation.render_text(report), nl=False)
        if plot is not None:
            typer.echo(f"plot: {plot}")
