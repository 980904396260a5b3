"""``scaler init``, ``export`` and ``import``: writing and moving configuration files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scaler.cli.app import (
    EXIT_INVALID,
    EXIT_UNREADABLE,
    app,
    fail,
    make_host,
)
from scaler.errors import ConfigError

if TYPE_CHECKING:
    from scaler.config.loading import LoadResult
    from scaler.host import PluginHost


def _check_written(path: Path, host: PluginHost, provider: str | None, secrets: dict[str, str]) -> LoadResult:
    """Load a configuration just written, as it will run: with its secrets in the environment
    (only for the check; the environment is restored after)."""
    from scaler.config.loading import load_config

    saved = {name: os.environ.get(name) for name in secrets}
    os.environ.update(secrets)
    try:
        return load_config(path, host, provider=provider)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    result = _check_written(output, host, provider, answers.secrets)
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
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A `scaler export` JSON (- for stdin), or ClearML's autoscaler configuration "
            "(aws_autoscaler.yaml: hyper_params + configurations, YAML or JSON)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HOCON file to write (default: stdout).")
    ] = None,
    from_task: Annotated[
        str | None,
        typer.Option(
            "--from-task",
            metavar="TASK_ID",
            help="Read ClearML's autoscaler configuration from its task (hyper-parameters and configuration "
            "objects) on the ClearML server instead of a file.",
        ),
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Write secrets present in the export in clear (file mode 600); default: as ${?VAR} substitutions. "
            "Secrets of ClearML's configuration always go to the env file.",
        ),
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(help="Where the secrets of ClearML's configuration are written (default: OUTPUT with .env)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    provider: Annotated[
        str | None,
        typer.Option(
            help="Validate the result for this provider; for ClearML's configuration, the provider it maps onto "
            "(default: the installed provider that declares its keys)."
        ),
    ] = None,
) -> None:
    """Turn a `scaler export` JSON, or ClearML's own autoscaler configuration, into HOCON.

    The input is an exported JSON configuration, or ClearML's own autoscaler configuration (its
    YAML file or its task); the output is a commented HOCON file.

    Exit codes: 0 imported and valid; 1 invalid result or input; 2 unreadable input."""
    from scaler.config.clearml_import import is_clearml_autoscaler, parse_text
    from scaler.config.loading import ConfigFileError, read_text

    if (file is None) == (from_task is None):
        fail("give a FILE or --from-task TASK_ID (one of them)", 2)
    host = make_host()
    if from_task is not None:
        _import_clearml_task(host, from_task, output, env_file, force, provider)
        return
    assert file is not None
    try:
        text = sys.stdin.read() if str(file) == "-" else read_text(file, "export file")
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = parse_text(text, str(file))
        except ConfigError as exc:
            fail(f"{file}: not JSON (a `scaler export`) nor ClearML's autoscaler YAML: {exc}", EXIT_UNREADABLE)
        if not is_clearml_autoscaler(document):
            fail(
                f"{file}: not JSON (a `scaler export`), and not ClearML's autoscaler configuration "
                "(hyper_params and configurations) either",
                EXIT_UNREADABLE,
            )
    if is_clearml_autoscaler(document):
        _import_clearml(host, document, [], str(file), output, env_file, force, provider)
        return
    _import_export(host, document, str(file), output, include_secrets, force, provider)


def _import_export(
    host: PluginHost,
    document: Any,
    source: str,
    output: Path | None,
    include_secrets: bool,
    force: bool,
    provider: str | None,
) -> None:
    """Today's import: a `scaler export` document back to HOCON."""
    from scaler.config.exporting import import_config
    from scaler.config.loading import ProviderChoiceError, load_config
    from scaler.config.paths import write_private

    try:
        imported = import_config(document, include_secrets=include_secrets, source=source, catalog=host.catalog())
    except ConfigError as exc:
        fail(f"{source}: {exc}", EXIT_INVALID)
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
    try:  # checked for its provider: --provider, or the one whose section it holds
        result = load_config(output, host, provider=provider, infer_provider=True)
    except ProviderChoiceError:  # no cloud section, or several: checked for none
        result = load_config(output, host, provider=provider)
    for problem in result.problems:
        typer.echo(("error: " if problem.severity == "error" else "") + problem.render(), err=True)
    state = "valid" if not result.errors else f"invalid ({len(result.errors)} error(s))"
    typer.echo(f"imported {source} to {output}: {state}", err=True)
    if imported.env:
        typer.echo("secrets are read from: " + ", ".join(sorted(set(imported.env.values()))), err=True)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)


def _import_clearml_task(
    host: PluginHost, task_id: str, output: Path | None, env_file: Path | None, force: bool, provider: str | None
) -> None:
    from scaler.clearml.autoscaler_task import read_autoscaler_task
    from scaler.config.clearml_import import document_from_task
    from scaler.errors import ScalerError

    try:
        name, hyperparams, configuration = read_autoscaler_task(task_id)
    except ScalerError as exc:
        fail(str(exc))
    try:
        document, entries = document_from_task(hyperparams, configuration)
    except ConfigError as exc:
        fail(f"task {task_id}: {exc}", EXIT_INVALID)
    if not document:
        fail(
            f"task {task_id} ({name!r}) holds no ClearML autoscaler configuration: no hyper-parameters of section "
            "'General' and no configuration object 'General'",
            EXIT_INVALID,
        )
    _import_clearml(host, document, entries, f"task {task_id} ({name!r})", output, env_file, force, provider)


def _import_clearml(
    host: PluginHost,
    document: Any,
    entries: list[Any],
    source: str,
    output: Path | None,
    env_file: Path | None,
    force: bool,
    provider: str | None,
) -> None:
    """ClearML's autoscaler configuration to HOCON, its secrets to a private env file, and the report."""
    from scaler.config.clearml_import import guess_provider, import_clearml, report_lines
    from scaler.config.paths import write_private
    from scaler.config.wizard import env_file_text
    from scaler.config.writer import render_config

    catalog = host.catalog()
    if provider is None:
        provider = guess_provider(document, catalog)
        if provider is None:
            fail(f"{source}: cannot tell which provider its keys are for; pass --provider", 2)
    else:
        host.provider(provider)  # an unknown provider is reported with the installed ones
    try:
        imported = import_clearml(document, catalog, provider, entries)
    except ConfigError as exc:
        fail(f"{source}: {exc}", EXIT_INVALID)
    header = (
        f"clearml-scaler configuration for provider '{provider}', imported from ClearML's autoscaler "
        f"configuration ({source}) by `scaler import`."
    )
    if imported.secrets:
        header += "\nSecrets are read from the environment: " + ", ".join(sorted(imported.secrets))
    text = render_config(imported.tree, header=header, catalog=catalog)
    secrets_path = None
    if imported.secrets:
        secrets_path = env_file or (output.with_suffix(".env") if output is not None else None)
    for path in (output, secrets_path):
        if path is not None and path.exists() and not force:
            fail(f"{path} exists; pass --force to overwrite it")
    for line in report_lines(imported):
        typer.echo(line, err=True)
    if output is None:
        typer.echo(text, nl=False)
    elif imported.secret_in_text:
        write_private(output, text)  # a secret's value is in a script or text of it: not for others to read
        typer.echo(
            f"warning: {', '.join(imported.secret_in_text)} hold(s) a secret's value in clear; {output} is written "
            "readable by its owner only (mode 600); move the value into an environment variable",
            err=True,
        )
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    if secrets_path is not None:
        write_private(secrets_path, env_file_text(imported.secrets, "scaler import"))
    elif imported.secrets:
        typer.echo(
            "warning: the secrets were written nowhere (no --output or --env-file); provide "
            + ", ".join(sorted(imported.secrets))
            + " in the environment",
            err=True,
        )
    if output is None:
        return
    result = _check_written(output, host, provider, imported.secrets)
    for problem in result.problems:
        typer.echo(("error: " if problem.severity == "error" else "") + problem.render(), err=True)
    state = "valid" if not result.errors else f"invalid ({len(result.errors)} error(s))"
    count = len(imported.tree.get("resources") or [])
    typer.echo(f"imported {source} to {output}: {state} (provider {provider}, {count} resource(s))", err=True)
    if secrets_path is not None:
        typer.echo(f"secrets: {secrets_path} (mode 600); load them before running the scaler:", err=True)
        typer.echo(f"  set -a; . {secrets_path}; set +a", err=True)
    typer.echo(f"next: scaler run --provider {provider} --config {output} --once --dry-run", err=True)
    typer.echo(
        f"then (docs/migrating-from-clearml.md): stop ClearML's autoscaler, and take over its machines with "
        f"scaler adopt --provider {provider} --config {output} --from-prefix "
        f"{imported.tree.get('scaler', {}).get('workers_prefix', 'dynamic_worker')}",
        err=True,
    )
    if result.errors:
        raise typer.Exit(EXIT_INVALID)
