"""``scaler adopt``: take over the machines ClearML's own autoscaler launched (see
:mod:`scaler.engine.adopt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaler.cli.app import PROVIDER_HELP, app, complete_provider, fail, load_or_exit, make_host, resolve_provider


@app.command()
def adopt(
    config: Annotated[Path, typer.Option(help="Configuration file (e.g. written by `scaler import`).")],
    from_prefix: Annotated[
        str,
        typer.Option(
            "--from-prefix",
            help="workers_prefix of ClearML's autoscaler: its workers are <prefix>:<resource>:<instance type>:<id>.",
        ),
    ],
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP, autocompletion=complete_provider)] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be adopted; tag nothing.")] = False,
) -> None:
    """Take over the machines ClearML's own autoscaler launched.

    Every machine whose ClearML worker is <prefix>:<resource>:<instance type>:<instance id> and
    whose resource is a resource of the configuration gets this fleet's ownership tags; `scaler run` then manages it (idle ones are
    terminated after max_idle_time, busy ones are left alone). Stop ClearML's autoscaler first.

    Exit codes: 0 done (also when nothing was found); 1 invalid configuration, ClearML or the
    cloud unreadable, or a provider that cannot adopt; 2 usage errors."""
    from dataclasses import replace

    from scaler.clearml.queues import ClearMLSource
    from scaler.engine.adopt import ADOPTED, ALREADY, LEFT, WOULD_ADOPT
    from scaler.engine.adopt import adopt as adopt_machines
    from scaler.errors import ProviderError
    from scaler.types import fleet_identity

    if not from_prefix or ":" in from_prefix:
        fail("--from-prefix is a workers_prefix: text without ':'", 2)
    host = make_host()
    # ClearML's autoscaler ran on one cloud: adopt from one provider at a time
    provider = resolve_provider(host, config, provider, command="adopt")
    cfg = load_or_exit(host, config, provider, vault)
    chosen = host.provider(provider)
    source = ClearMLSource()
    who = source.whoami()
    if who is None:
        fail("cannot read the ClearML server (the fleet identity is made of it); nothing was changed")
    cfg = replace(cfg, fleet_id=fleet_identity(cfg.scaler.name, who.server, who.company))
    workers = source.read_workers()
    if workers is None:
        fail("cannot read the ClearML server's workers; nothing was changed")
    try:
        report = adopt_machines(cfg, chosen, workers, from_prefix, dry_run=dry_run)
    except ProviderError as exc:
        fail(f"{exc}; nothing {'would be' if dry_run else 'was'} tagged")
    done = report.of(ADOPTED, WOULD_ADOPT)
    typer.echo(
        f"{'dry run: ' if dry_run else ''}workers with prefix '{from_prefix}' on {who.server}: "
        f"{sum(len(o.workers) for o in report.outcomes)} of ClearML's form, naming {len(report.outcomes)} machine(s)"
    )
    for outcome in report.outcomes:
        typer.echo(f"  {outcome.render()}")
    if report.other_workers:
        typer.echo(
            f"  not of ClearML's form <prefix>:<resource>:<instance type>:<id> (skipped): "
            f"{', '.join(report.other_workers)}"
        )
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    verb = "would adopt" if dry_run else "adopted"
    typer.echo(
        f"{verb} {len(done)}, already this fleet's {len(report.of(ALREADY))}, left {len(report.of(LEFT))} "
        f"(fleet '{cfg.scaler.name}', identity {cfg.fleet_id})"
    )
    if report.of(LEFT):
        typer.echo(
            "machines left are not touched by clearml-scaler; machines whose agent is not registered are not found"
        )
    if done and not dry_run:
        typer.echo(f"next: scaler run --provider {provider} --config {config}")
