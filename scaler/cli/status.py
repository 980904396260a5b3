"""``scaler status``: what the fleet looks like now."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from scaler.cli.app import (
    PROVIDER_HELP,
    Format,
    app,
    complete_provider,
    load_or_exit,
    make_host,
    resolve_providers,
)


@app.command()
def status(
    config: Annotated[Path, typer.Option(help="Configuration file.")],
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP, autocompletion=complete_provider)] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="The running scaler's state file (default ~/.cache/clearml-scaler/<name>.json)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until interrupted.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.", min=0.1)] = 5.0,
    actions: Annotated[int, typer.Option(help="How many recent actions to show.", min=0)] = 10,
    count: Annotated[int, typer.Option(hidden=True, help="Stop --watch after this many refreshes (0: never).")] = 0,
    server_vault: Annotated[
        bool,
        typer.Option("--server-vault/--no-server-vault", help="Merge the ClearML server's config vaults of this user."),
    ] = True,
) -> None:
    """Queues, resources, instances and the last actions with their reasons. Exit 1 when a source is unreadable."""
    import time as clock

    from rich.console import Console

    from scaler.clearml.queues import ClearMLSource
    from scaler.config import redact
    from scaler.ops.logs import setup_logging
    from scaler.ops.statefile import default_path
    from scaler.ops.status import collect, render
    from scaler.types import fleet_identity

    setup_logging("ERROR")  # unreadable sources are part of the output, not log lines
    host = make_host()
    resolve_providers(host, config, provider)
    source = ClearMLSource()
    vaults = (source.read_vaults() or []) if server_vault else []
    cfg = load_or_exit(host, config, provider, vault, vaults)
    chosen = [host.provider(name) for name in cfg.provider_names]  # every cloud of the fleet
    who = source.whoami()  # the fleet identity is made of it; unknown while ClearML cannot be read
    if who is not None:
        cfg = replace(cfg, fleet_id=fleet_identity(cfg.scaler.name, who.server, who.company))
    path = state_file or default_path(cfg.scaler.name)
    known = redact.known_secrets(cfg, source.server_info())
    # piped or captured: wide enough for instance ids and reasons (a terminal, or COLUMNS, decides otherwise)
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    console = Console(markup=False, highlight=False, width=wide)
    shown = 0
    ok = True
    try:
        while True:
            snapshot = collect(cfg, chosen, source, state_path=path, actions=actions, identity=who)
            # errors, actions and task names are text others wrote: secrets masked, control characters escaped
            snapshot = redact.shown(snapshot, known)
            ok = snapshot["clearml_ok"] and snapshot["cloud_ok"]
            if fmt is Format.json:
                typer.echo(json.dumps(snapshot, indent=None if watch else 2))
            else:
                if watch and console.is_terminal:
                    console.clear()
                render(snapshot, console)
            shown += 1
            if not watch or (count and shown >= count):
                break
            clock.sleep(interval)
    except KeyboardInterrupt:
        return
    if not ok and not watch:
        raise typer.Exit(1)
