"""``scaler init``, ``export`` and ``import``: writing and moving configuration files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scaler.cli.app import (
    EXIT_INVALID,
    EXIT_UNREADABLE,
    app,
    fail,
    make_host,
)
from scaler.errors import ConfigError


@app.command()
def init(
    provider: Annotated[str | None, typer.Option(help="Cloud provider (`scaler providers` lists them).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Configuration file to write.")] = Path("scaler.conf"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    interactive: Annotated[
        bool | None,
        typer.Option("--interactive/--no-interactive", help="Ask on standard input (default: when it is a terminal)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Scaler name (tags its machines).")] = None,
    workers_prefix: Annotated[str | None, typer.Option(help="Worker id prefix.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A setting, repeatable: a dotted config path and its value, e.g. --set mycloud.region=eu-2 "
            "--set resources[0].mycloud.size=large. Not for secrets: export their variable instead.",
        ),
    ] = None,
    git_user: Annotated[str | None, typer.Option(help="Git user of the agents.")] = None,
    git_token: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Refused: a secret on the command line stays in the shell history and `ps`; "
            "export SCALER_GIT_TOKEN or answer the hidden prompt.",
        ),
    ] = None,
    docker_image: Annotated[str | None, typer.Option(help="Default docker image of tasks.")] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            help="A resource, repeatable: key=value,… with its common keys (name, queue, max_instances, spot, "
            "cpu_only, init_script=…|@FILE, …), the provider's resource keys by name "
            "or the short keys providers share (instance_type, image, zone, disk)."
        ),
    ] = None,
    max_idle_time: Annotated[str | None, typer.Option(help="Terminate machines idle this long (e.g. 15m).")] = None,
    polling_interval: Annotated[str | None, typer.Option(help="Time between ticks (e.g. 30s).")] = None,
    env_file: Annotated[
        Path | None, typer.Option(help="Where the secrets you type are written (default: OUTPUT with .env).")
    ] = None,
    write_env_file: Annotated[
        bool, typer.Option("--env-file-write/--no-env-file", help="Write the secrets you type to an env file.")
    ] = True,
) -> None:
    """Write a configuration by answering questions (every setting can also be given with --set)."""
    from rich.console import Console

    from scaler.config import wizard
    from scaler.config.paths import write_private

    console = Console(markup=False, highlight=False, soft_wrap=True)
    ask = sys.stdin.isatty() if interactive is None else interactive
    host = make_host()
    providers = host.provider_names()
    catalog = host.catalog()
    try:
        specs = [wizard.parse_resource_spec(spec) for spec in resource or []]
        settings = [wizard.parse_set(item) for item in set_ or []]
        if provider is None:
            if not ask:
                raise wizard.WizardError(
                    "no terminal to ask on (standard input is not a TTY; use --interactive to answer from it anyway); "
                    "pass --provider" + ("" if specs else ", --resource name=…,…")
                )
            provider = typer.prompt(f"Cloud provider ({', '.join(providers)})", default=providers[0])
            while provider not in providers:
                console.print(f"  ✗ unknown provider {provider!r}; installed: {', '.join(providers)}")
                provider = typer.prompt("Cloud provider")
        if output.exists() and not force:
            if not ask or not typer.confirm(f"{output} exists; overwrite it?", default=False):
                raise wizard.WizardError(f"{output} exists; pass --force to overwrite it", code=1)
        given = {path: wizard.Given(f"--set {path}", value) for path, value in settings}
        flags = {
            "scaler.name": ("--name", name),
            "scaler.workers_prefix": ("--workers-prefix", workers_prefix),
            "scaler.git.user": ("--git-user", git_user),
            "scaler.default_docker_image": ("--docker-image", docker_image),
            "scaler.max_idle_time": ("--max-idle-time", max_idle_time),
            "scaler.polling_interval": ("--polling-interval", polling_interval),
        }
        given.update({path: wizard.Given(label, value) for path, (label, value) in flags.items() if value is not None})
        if git_token is not None:  # refused by the wizard with the variable to export instead
            given["scaler.git.password"] = wizard.Given("--git-token", git_token)
        if ask:
            console.rule(f"clearml-scaler setup: {output}")
        chosen = provider
        answers = wizard.Wizard(
            catalog,
            interactive=ask,
            say=lambda text: console.print(text) if ask else None,
            given=given,
            resources=specs,
            check=lambda tree: host.validate(tree, chosen, providers),
        ).run(provider, providers)
    except wizard.WizardError as exc:
        fail(str(exc), exc.code)
    except typer.Abort:
        fail("input ended before every question was answered", 2)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(wizard.render(answers, provider, str(output), catalog), encoding="utf-8")
    secrets_path = None
    if answers.secrets and write_env_file:
        secrets_path = env_file or output.with_suffix(".env")
        write_private(secrets_path, wizard.env_file_text(answers.secrets))
    from scaler.config.loading import load_config

    saved = {name: os.environ.get(name) for name in answers.secrets}
    os.environ.update(answers.secrets)  # checked as it will run: with its secrets in the environment
    try:
        result = load_config(output, host, provider=provider)
    finally:
        for env_name, value in saved.items():
            if value is None:
                os.environ.pop(env_name, None)
            else:
                os.environ[env_name] = value
    for problem in result.problems:
        console.print(("error: " if problem.severity == "error" else "") + problem.render())
    if result.errors:
        fail(
            f"{output} was written but is not valid; fix it and run `scaler validate-config {output} "
            f"--provider {provider}`",
            EXIT_INVALID,
        )
    assert result.config is not None
    names = ", ".join(r.name for r in result.config.resources)
    console.print(f"wrote {output}: valid (provider {provider}; {len(result.config.resources)} resource(s): {names})")
    if secrets_path is not None:
        console.print(f"secrets: {secrets_path} (mode 600); load them before running the scaler:")
        console.print(f"  set -a; . {secrets_path}; set +a")
    console.print(f"next: scaler run --provider {provider} --config {output} --once --dry-run")


@app.command("export")
def export_command(
    config: Annotated[Path, typer.Argument(help="Configuration file (HOCON or JSON).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON file to write (default: stdout).")] = None,
    include_secrets: Annotated[
        bool, typer.Option("--include-secrets", help="Export secrets in clear instead of masked.")
    ] = False,
) -> None:
    """Export a configuration as JSON (secrets masked unless --include-secrets)."""
    from scaler.config.exporting import export_config
    from scaler.config.loading import ConfigFileError

    try:
        document = export_config(config, include_secrets=include_secrets, catalog=make_host().catalog())
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except ConfigError as exc:
        fail(f"{config}: {exc}", EXIT_INVALID)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    if include_secrets:
        from scaler.config.paths import write_private

        write_private(output, text)
    else:
        output.write_text(text, encoding="utf-8")
    typer.echo(f"exported {config} to {output}" + (" (with secrets, mode 600)" if include_secrets else ""), err=True)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSON written by `scaler export` (- for stdin).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HOCON file to write (default: stdout).")
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Write secrets present in the export in clear (file mode 600); default: as ${?VAR} substitutions.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    provider: Annotated[str | None, typer.Option(help="Validate the result for this provider.")] = None,
) -> None:
    """Turn an exported JSON configuration back into a commented HOCON file."""
    from scaler.config.exporting import import_config
    from scaler.config.loading import ConfigFileError, load_config, read_text
    from scaler.config.paths import write_private

    try:
        text = sys.stdin.read() if str(file) == "-" else read_text(file, "export file")
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    try:
        document = json.loads(text)
    except ValueError as exc:
        fail(f"{file}: not JSON: {exc}", EXIT_UNREADABLE)
    host = make_host()
    try:
        imported = import_config(document, include_secrets=include_secrets, source=str(file), catalog=host.catalog())
    except ConfigError as exc:
        fail(f"{file}: {exc}", EXIT_INVALID)
    for path in imported.dropped_secrets:
        typer.echo(
            f"warning: {path} was in the export in clear; written as ${{?{imported.env[path]}}} "
            "(pass --include-secrets to keep the value)",
            err=True,
        )
    for path in imported.masked_text:
        typer.echo(
            f"warning: {path} holds text the export masked (********): put the secret back, or read it "
            "from where the machine keeps it",
            err=True,
        )
    if output is None:
        typer.echo(imported.text, nl=False)
        return
    if output.exists() and not force:
        fail(f"{output} exists; pass --force to overwrite it")
    if imported.clear_secrets:
        write_private(output, imported.text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(imported.text, encoding="utf-8")
    result = load_config(output, host, provider=provider)
    for problem in result.problems:
        typer.echo(("error: " if problem.severity == "error" else "") + problem.render(), err=True)
    state = "valid" if not result.errors else f"invalid ({len(result.errors)} error(s))"
    typer.echo(f"imported {file} to {output}: {state}", err=True)
    if imported.env:
        typer.echo("secrets are read from: " + ", ".join(sorted(set(imported.env.values()))), err=True)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)
