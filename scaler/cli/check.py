"""``validate-config``, ``providers``, ``render-init-script``, ``console-output``: looking at a
configuration and the installed plugins without running the loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scaler.cli.app import (
    EXIT_INVALID,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    PROVIDER_HELP,
    Format,
    app,
    complete_provider,
    fail,
    load_or_exit,
    make_host,
)

if TYPE_CHECKING:
    from scaler.config.loading import LoadResult
    from scaler.config.model import Config
    from scaler.host import PluginHost, Provider
    from scaler.types import Problem


@app.command("validate-config")
def validate_config(
    file: Annotated[Path, typer.Argument(help="HOCON (or JSON) configuration file.")],
    provider: Annotated[
        str | None,
        typer.Option(
            help="Provider the config is for (checks its sections as required); default: the one whose "
            "section the configuration holds (e.g. `mycloud { }`).",
            autocompletion=complete_provider,
        ),
    ] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config first.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    check_cloud: Annotated[
        bool, typer.Option("--check-cloud", help="Also ask the cloud (images, types, network, permissions).")
    ] = False,
    check_clearml: Annotated[
        bool,
        typer.Option(
            "--check-clearml",
            help="Also ask the ClearML server: the scaler's credentials, and that every queue exists "
            "(nothing is created or changed).",
        ),
    ] = False,
) -> None:
    """Check a configuration: every problem at once, with its path.

    Exit 0 valid, 1 invalid, 2 unreadable, or no --provider and the configuration names no
    provider."""
    from scaler.config.loading import ConfigFileError, ProviderChoiceError, load_config

    host = make_host()
    if provider is not None and provider not in host.provider_names():
        host.provider(provider)
    try:
        result = load_config(file, host, provider=provider, vault_path=vault, infer_provider=True)
    except (ConfigFileError, ProviderChoiceError) as exc:
        code = EXIT_USAGE if isinstance(exc, ProviderChoiceError) else EXIT_UNREADABLE
        if fmt is Format.json:
            readable = isinstance(exc, ProviderChoiceError)
            typer.echo(json.dumps({"file": str(file), "valid": False, "readable": readable, "error": str(exc)}))
            raise typer.Exit(code) from None
        fail(str(exc), code)
    if check_cloud and result.ok and result.config is not None:
        for name in result.config.provider_names:  # each cloud of the fleet
            result.problems.extend(host.provider(name).check_cloud(result.config))
    if check_clearml and result.ok and result.config is not None:
        result.problems.extend(_check_clearml(result.config))
    _report(file, result, fmt)
    raise typer.Exit(0 if not result.errors else EXIT_INVALID)


def _check_clearml(config: Config) -> list[Problem]:
    """The configuration against the ClearML server, read only: the credentials log in, and every
    queue of ``resources`` exists (a missing one is created by ``scaler run`` unless
    ``scaler.create_queues = false``, which makes it an error)."""
    from scaler.clearml.queues import ClearMLSource
    from scaler.config import redact
    from scaler.types import Problem

    source = ClearMLSource()
    info = source.server_info()
    known = redact.known_secrets(config, info)
    server = info.api_host or "(no server configured)"
    # the first call logs in: its failure is the credentials' (or the server's)
    missing = source.missing_queues(config.queues or ["-"])
    if missing is None:
        why = redact.redact(source.last_error or "no answer", known)
        where = f"CLEARML_* environment or {info.config_file}" if info.config_file else "CLEARML_* environment"
        return [
            Problem(
                "clearml",
                f"cannot log in to or read the ClearML server {server} with the scaler's credentials "
                f"(from the {where}): {why}",
            )
        ]
    missing = [name for name in missing if name in config.queues]
    problems = []
    for name in missing:
        index = next(i for i, r in enumerate(config.resources) if r.queue == name)
        if config.scaler.create_queues:
            problems.append(
                Problem(
                    f"resources[{index}].queue",
                    f"queue '{name}' does not exist on the ClearML server {server}; `scaler run` creates it "
                    "(scaler.create_queues = true)",
                    "warning",
                )
            )
        else:
            problems.append(
                Problem(
                    f"resources[{index}].queue",
                    f"queue '{name}' does not exist on the ClearML server {server} and scaler.create_queues = "
                    "false: `scaler run` would stop; create it or fix the name",
                )
            )
    return problems


def _report(file: Path, result: LoadResult, fmt: Format) -> None:
    from scaler.config.loading import problems_as_json

    if fmt is Format.json:
        out: dict[str, Any] = {
            "file": str(file),
            "valid": not result.errors,
            "errors": len(result.errors),
            "warnings": len(result.warnings),
            "problems": problems_as_json(result.problems),
        }
        if result.config is not None:
            out["provider"] = result.config.provider_name or None
            out["providers"] = list(result.config.provider_names)
            out["provider_inferred"] = result.inferred
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
        if result.inferred:
            provider = f"provider {config.provider_name}, from its section; "
        if config.multi_cloud:  # one fleet across clouds: say where each resource runs
            names = ", ".join(f"{r.name} ({r.provider_name})" for r in config.resources)
            provider = f"providers {', '.join(config.provider_names)}; "
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
    provider: Annotated[
        str | None,
        typer.Option(
            help="Provider whose machine will run the script; default: the one whose section the "
            "configuration holds (e.g. `mycloud { }`).",
            autocompletion=complete_provider,
        ),
    ] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print secrets instead of masks.")] = False,
) -> None:
    """Print the init script a machine of RESOURCE boots with (secrets masked)."""
    from scaler.clearml.queues import server_info
    from scaler.engine.render import render_init_script as render
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
    config: Annotated[Path, typer.Option(help="Configuration file.")],
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP, autocompletion=complete_provider)] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
) -> None:
    """Print an instance's console output (boot log), secrets masked.

    The secrets the machine was given are masked and terminal control characters shown as escapes."""
    from scaler.clearml.queues import server_info
    from scaler.config import redact

    host = make_host()
    cfg = load_or_exit(host, config, provider, vault)
    text = _provider_of_instance(host, cfg, instance).console_output(cfg, instance)
    typer.echo(redact.machine_output(text, redact.known_secrets(cfg, server_info())), nl=False)


def _provider_of_instance(host: PluginHost, cfg: Config, instance: str) -> Provider:
    """The provider of ``instance``: the configuration's one, or, for a fleet across clouds, the
    one that lists it (exit 1 when none does)."""
    from scaler.errors import ProviderError

    if not cfg.multi_cloud:
        return host.provider(cfg.provider_name)
    for name in cfg.provider_names:
        provider = host.provider(name)
        try:
            listed = provider.list_instances(cfg, include_foreign=True)
        except ProviderError as exc:
            typer.echo(f"warning: provider '{name}' could not be listed ({exc.kind}): {exc}", err=True)
            continue
        if any(inst.id == instance for inst in listed):
            return provider
    names = ", ".join(cfg.provider_names)
    fail(f"no provider of this fleet ({names}) lists instance '{instance}'; pass --provider to ask one directly")
