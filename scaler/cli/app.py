"""The ``scaler`` typer app and what every command shares: loading plugins and a valid
configuration, failing with one clear line, the console entry point. Commands live in the
sibling modules, one per group; heavy modules (cloud SDKs, clearml) load lazily so ``--help``
stays instant (set ``SCALER_DEBUG=1`` to see a traceback)."""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from scaler import __version__
from scaler.errors import ScalerError

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.host import PluginHost

PROG = "scaler"


class _Commands(TyperGroup):
    """The top-level group: ``--help`` lists each command with the first sentence of its help in
    full (wrapped to the terminal, never cut with "...")."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command.short_help or command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def summary(help_text: str) -> str:
    """The first sentence of a command's help (its first paragraph up to the first full stop)."""
    words = help_text.partition("\n\n")[0].split()
    for index, word in enumerate(words):
        if word.endswith(".") and (index == len(words) - 1 or not words[index + 1][0].islower()):
            return " ".join(words[: index + 1])
    return " ".join(words)


app = typer.Typer(
    name=PROG,
    cls=_Commands,
    help="Keep a fleet of cloud machines sized to the work waiting in ClearML queues.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, enum.Enum):
    text = "text"
    json = "json"


EXIT_INVALID = 1
EXIT_UNREADABLE = 2
EXIT_USAGE = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    """``clearml-scaler X.Y.Z``, then one line per installed plugin (entry point of group
    ``scaler``): its name, distribution and version. Plugins are listed, not imported."""
    if value:
        from importlib import metadata

        from scaler.host import ENTRY_POINT_GROUP

        typer.echo(f"clearml-scaler {__version__}")
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
            typer.echo(f"  plugin {ep.name}: {dist}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Keep a fleet of cloud machines sized to the work waiting in ClearML queues."""


def make_host() -> PluginHost:
    from scaler.host import PluginHost

    host = PluginHost()
    for failure in host.failures:
        typer.echo(
            f"warning: plugin '{failure.name}' ({failure.distribution or 'unknown package'}) "
            f"failed to load: {failure.error}",
            err=True,
        )
    return host


def complete_provider(incomplete: str) -> list[str]:
    """Shell completion of ``--provider``: the names of the plugins that would load (entry points
    allowed by ``SCALER_LOAD_PLUGINS``, not imported) and the built-in simulated provider."""
    from importlib import metadata

    from scaler.host import ENTRY_POINT_GROUP, LOAD_ENV

    allowed = os.environ.get(LOAD_ENV)
    allow = None if allowed is None else {item.strip() for item in allowed.split(",") if item.strip()}
    names = {"simulated"}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if allow is None or {ep.name, dist, ep.module.split(".")[0]} & allow:
            names.add(ep.name)
    return sorted(name for name in names if name.startswith(incomplete))


#: the ``--provider`` option of a command that reads a configuration: optional, inferred from it
PROVIDER_HELP = (
    "Provider plugin (`scaler providers`); default: the one whose section the configuration holds (e.g. `mycloud { }`)."
)


def resolve_providers(host: PluginHost, path: Path, provider: str | None, *, from_task: bool = False) -> list[str]:
    """``[--provider]``, or the providers the resources of the configuration at ``path`` run on
    (one fleet may span several clouds; a usage error, exit 2, when it names none). For commands
    that need them before they load the configuration (to reject an unknown or broken provider
    before contacting anything)."""
    from scaler.config.loading import ConfigFileError, ProviderChoiceError, providers_of

    if provider is not None:
        host.provider(provider)  # unknown provider → PluginError listing the installed ones
        return [provider]
    try:
        found, problems = providers_of(path, host.catalog(), from_task=from_task)
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except ProviderChoiceError as exc:
        fail(str(exc), EXIT_USAGE)
    if found is None:
        for problem in problems:
            typer.echo(f"error: {problem.render()}", err=True)
        fail(f"{path}: {len(problems)} problem(s); fix them or run `scaler validate-config {path}`", EXIT_INVALID)
    for name in found:
        host.provider(name)
    return found


def resolve_provider(
    host: PluginHost, path: Path, provider: str | None, *, from_task: bool = False, command: str = ""
) -> str:
    """``--provider``, or the one provider of the configuration at ``path`` (:func:`resolve_providers`),
    for a command that works on one provider: exit 2 when its resources run on several."""
    found = resolve_providers(host, path, provider, from_task=from_task)
    if len(found) > 1:
        fail(
            f"{path}: its resources run on several providers ({', '.join(found)}); {command or 'this command'} works "
            f"on one: pass --provider {' or --provider '.join(found)}",
            EXIT_USAGE,
        )
    return found[0]


def load_or_exit(
    host: PluginHost,
    path: Path,
    provider: str | None,
    vault: Path | None,
    server_vaults: list[tuple[str, str]] | None = None,
    *,
    from_task: bool = False,
    task_copy: bool = False,
) -> Config:
    """Load a config for a command that needs a valid one; print every problem otherwise.
    With no ``provider``, each resource runs on its own (``Config.provider_names``; exit 2 when
    the configuration names none); ``provider`` restricts it to that provider's resources. ``from_task``: the file is a ClearML
    task's configuration, read as data; ``task_copy``: it is the copy read from the task the
    scaler runs in (problems are fixed in the task)."""
    from scaler.config.loading import ConfigFileError, ProviderChoiceError, load_config

    if provider is not None:
        host.provider(provider)  # unknown provider → PluginError listing the installed ones
    try:
        result = load_config(
            path,
            host,
            provider=provider,
            vault_path=vault,
            server_vaults=server_vaults or (),
            from_task=from_task,
            infer_provider=True,
        )
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except ProviderChoiceError as exc:
        fail(str(exc), EXIT_USAGE)
    for problem in result.warnings:
        typer.echo(f"warning: {problem.render()}", err=True)
    if not result.ok or result.config is None:
        for problem in result.errors:
            typer.echo(f"error: {problem.render()}", err=True)
        if task_copy:
            fail(
                f"the task's configuration has {len(result.errors)} problem(s); nothing was started: fix them in the "
                "task (HYPER PARAMETERS > General, configuration objects 'resources' and 'scaler') and run it again",
                EXIT_INVALID,
            )
        fail(f"{path}: {len(result.errors)} problem(s); fix them or run `scaler validate-config {path}`", EXIT_INVALID)
    if result.dropped:
        typer.echo(
            f"note: --provider {provider} leaves out the resources of other providers: {', '.join(result.dropped)}",
            err=True,
        )
    return result.config


class StoppedBeforeStart(BaseException):
    """SIGTERM reached ``scaler run`` before its loop (and its own handlers) started.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` on the way swallows it.
    """


def stop_before_start(signum: int, frame: Any) -> None:
    raise StoppedBeforeStart()


def main() -> None:
    """Console entry point: run the app and turn any error into one line and an exit code."""
    try:
        # named `scaler` however it was started (python -m scaler.cli too): usage lines, completion
        code = app(standalone_mode=False, prog_name=PROG)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except ScalerError as exc:  # ConfigError is one
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except StoppedBeforeStart:
        typer.echo("stopped (SIGTERM) before the loop started; nothing was changed", err=True)
        sys.exit(0)
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
