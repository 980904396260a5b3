"""The ``scaler`` command line (typer). Heavy modules (cloud SDKs, clearml) load lazily so
``--help`` stays instant; user errors exit non-zero with one clear message, never a
traceback (set ``SCALER_DEBUG=1`` to see one)."""

from __future__ import annotations

import enum
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from scaler import __version__
from scaler.errors import ConfigError, ScalerError

if TYPE_CHECKING:
    from scaler.config.loader import LoadResult
    from scaler.config.model import Config
    from scaler.plugins import PluginHost

app = typer.Typer(
    name="scaler",
    help="Keep a fleet of cloud machines sized to the work waiting in ClearML queues.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, enum.Enum):
    text = "text"
    json = "json"


EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clearml-scaler {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Keep a fleet of cloud machines sized to the work waiting in ClearML queues."""


def make_host() -> PluginHost:
    from scaler.plugins import PluginHost

    host = PluginHost()
    for failure in host.failures:
        typer.echo(
            f"warning: plugin '{failure.name}' ({failure.distribution or 'unknown package'}) "
            f"failed to load: {failure.error}",
            err=True,
        )
    return host


def load_or_exit(host: PluginHost, path: Path, provider: str | None, vault: Path | None,
                 server_vaults: list[tuple[str, str]] | None = None) -> Config:
    """Load a config for a command that needs a valid one; print every problem otherwise."""
    from scaler.config.loader import ConfigFileError, load_config

    if provider is not None:
        host.provider(provider)  # unknown provider → PluginError listing the installed ones
    try:
        result = load_config(path, host, provider=provider, vault_path=vault, server_vaults=server_vaults or ())
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    for problem in result.warnings:
        typer.echo(f"warning: {problem.render()}", err=True)
    if not result.ok or result.config is None:
        for problem in result.errors:
            typer.echo(f"error: {problem.render()}", err=True)
        fail(f"{path}: {len(result.errors)} problem(s); fix them or run `scaler validate-config {path}`", EXIT_INVALID)
    return result.config


@app.command("validate-config")
def validate_config(
    file: Annotated[Path, typer.Argument(help="HOCON (or JSON) configuration file.")],
    provider: Annotated[
        str | None, typer.Option(help="Provider the config is for (checks its sections as required).")
    ] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config first.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    check_cloud: Annotated[
        bool, typer.Option("--check-cloud", help="Also ask the cloud (images, types, network, permissions).")
    ] = False,
) -> None:
    """Check a configuration: every problem at once, with its path. Exit 0 valid, 1 invalid, 2 unreadable."""
    from scaler.config.loader import ConfigFileError, load_config

    host = make_host()
    if provider is not None and provider not in host.provider_names():
        host.provider(provider)
    try:
        result = load_config(file, host, provider=provider, vault_path=vault)
    except ConfigFileError as exc:
        if fmt is Format.json:
            typer.echo(json.dumps({"file": str(file), "valid": False, "readable": False, "error": str(exc)}))
            raise typer.Exit(EXIT_UNREADABLE) from None
        fail(str(exc), EXIT_UNREADABLE)
    if check_cloud and result.ok and result.config is not None:
        if not provider:
            fail("--check-cloud needs --provider", EXIT_INVALID)
        result.problems.extend(host.provider(provider).check_cloud(result.config))
    _report(file, result, fmt)
    raise typer.Exit(0 if not result.errors else EXIT_INVALID)


def _report(file: Path, result: LoadResult, fmt: Format) -> None:
    from scaler.config.loader import problems_as_json

    if fmt is Format.json:
        out: dict[str, Any] = {
            "file": str(file),
            "valid": not result.errors,
            "errors": len(result.errors),
            "warnings": len(result.warnings),
            "problems": problems_as_json(result.problems),
        }
        if result.config is not None:
            out["resources"] = [r.name for r in result.config.resources]
        typer.echo(json.dumps(out, indent=2))
        return
    for problem in result.problems:
        typer.echo(("error: " if problem.severity == "error" else "") + problem.render())
    if result.errors:
        typer.echo(f"{file}: invalid ({len(result.errors)} error(s), {len(result.warnings)} warning(s))")
    else:
        config = result.config
        assert config is not None
        names = ", ".join(r.name for r in config.resources)
        provider = f"provider {config.provider_name}; " if config.provider_name else ""
        typer.echo(
            f"{file}: valid ({provider}{len(config.resources)} resource(s): {names}"
            + (f"; {len(result.warnings)} warning(s)" if result.warnings else "")
            + ")"
        )


@app.command()
def providers(
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
) -> None:
    """List installed provider plugins (and plugins that failed to load)."""
    host = make_host()
    rows = [host.plugins[name] for name in host.provider_names()]
    if fmt is Format.json:
        typer.echo(
            json.dumps(
                {
                    "providers": [
                        {"name": p.name, "package": p.distribution, "version": p.version, "builtin": p.builtin}
                        for p in rows
                    ],
                    "failed": [{"name": f.name, "package": f.distribution, "error": f.error} for f in host.failures],
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Installed providers")
    for column in ("provider", "package", "version", ""):
        table.add_column(column)
    for info in rows:
        table.add_row(info.name, info.distribution, info.version, "built-in" if info.builtin else "")
    for failure in host.failures:
        table.add_row(failure.name, failure.distribution, "", f"FAILED: {failure.error}")
    Console(markup=False).print(table)


@app.command("render-init-script")
def render_init_script(
    config: Annotated[Path, typer.Option(help="Configuration file.")],
    resource: Annotated[str, typer.Option(help="Resource name.")],
    provider: Annotated[str, typer.Option(help="Provider whose machine will run the script.")] = "simulated",
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print secrets instead of masks.")] = False,
) -> None:
    """Print the init script a machine of RESOURCE boots with (secrets masked)."""
    from scaler.clearml import server_info
    from scaler.render import render_init_script as render
    from scaler.types import RenderContext

    host = make_host()
    cfg = load_or_exit(host, config, provider, vault)
    found = cfg.resource(resource)
    if found is None:
        fail(f"no resource named '{resource}' in {config}; resources: {', '.join(r.name for r in cfg.resources)}")
    context = RenderContext(server_info(), reveal_secrets=show_secrets)
    typer.echo(render(host, cfg, found, context), nl=False)


@app.command("console-output")
def console_output(
    instance: Annotated[str, typer.Argument(help="Instance id (as `scaler status` shows it).")],
    provider: Annotated[str, typer.Option(help="Provider of the instance.")],
    config: Annotated[Path, typer.Option(help="Configuration file.")],
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
) -> None:
    """Print an instance's console output (boot log)."""
    host = make_host()
    cfg = load_or_exit(host, config, provider, vault)
    typer.echo(host.provider(provider).console_output(cfg, instance), nl=False)


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


@app.command()
def run(
    provider: Annotated[str, typer.Option(help="Cloud provider plugin (see `scaler providers`).")],
    config: Annotated[Path, typer.Option(help="Configuration file (HOCON or JSON).")],
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Log the actions without calling the provider.")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_format: Annotated[LogFormat, typer.Option(help="Log line format.")] = LogFormat.text,
    server_vault: Annotated[bool, typer.Option("--server-vault/--no-server-vault",
                                               help="Merge the ClearML server's config vaults of this user.")] = True,
) -> None:
    """Run the loop: launch machines for waiting tasks, terminate idle ones.

    SIGINT/SIGTERM finish the current tick and exit 0, leaving the fleet as it is.
    """
    from scaler.clearml import ClearMLSource
    from scaler.logs import setup_logging
    from scaler.reconciler import Reconciler

    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}", 2)
    setup_logging(log_level, log_format.value)
    host = make_host()
    chosen = host.provider(provider)  # an unknown or broken provider is reported before anything is contacted
    source = ClearMLSource()
    vaults: list[tuple[str, str]] = []
    if server_vault:
        found = source.read_vaults()
        if found is None:
            fail("cannot read the ClearML server's vaults; start again when the server is reachable, "
                 "or pass --no-server-vault")
        vaults = found
    cfg = load_or_exit(host, config, provider, vault, vaults)
    reconciler = Reconciler(cfg, host, chosen, source, dry_run=dry_run)
    reconciler.run(once=once)


@app.command()
def demo(
    trace: Annotated[Path | None, typer.Option(help="Trace file (default: the bundled demo trace).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (default: the bundled demo fleet).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Summary format.")] = Format.text,
    quiet: Annotated[bool, typer.Option("--quiet", help="No timeline, only the summary.")] = False,
) -> None:
    """Run the real loop against the built-in simulated cloud and queue (no account needed)."""
    from scaler.demo import run_demo

    run_demo(make_host(), config, trace, json_output=fmt is Format.json, quiet=quiet)


class SimPolicy(str, enum.Enum):
    scaler = "scaler"
    clearml = "clearml"


@app.command()
def simulate(
    config: Annotated[Path, typer.Option(help="Config file (validated for the simulated provider).")],
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
    from scaler import simulate as simulation

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


def main() -> None:
    """Console entry point: run the app and turn any error into one line and an exit code."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except (ConfigError, ScalerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        # usage errors of (typer's vendored) click: show them the way click does
        code = getattr(exc, "exit_code", None)
        if hasattr(exc, "show") and isinstance(code, int):
            exc.show()
            sys.exit(code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        if os.environ.get("SCALER_DEBUG"):
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (set SCALER_DEBUG=1 for details)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
