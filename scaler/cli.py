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


def load_or_exit(
    host: PluginHost,
    path: Path,
    provider: str | None,
    vault: Path | None,
    server_vaults: list[tuple[str, str]] | None = None,
) -> Config:
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


class StoppedBeforeStart(BaseException):
    """SIGTERM reached ``scaler run`` before its loop (and its own handlers) started.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` on the way swallows it.
    """


def _stop_before_start(signum: int, frame: Any) -> None:
    raise StoppedBeforeStart()


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


def _read_server_vaults(source: Any, give_up: bool) -> list[tuple[str, str]] | None:
    """The server's vaults; a daemon waits for the server (it could not act without it anyway),
    a one-shot run gives up at once. SIGTERM/SIGINT stop the wait."""
    import signal
    import threading

    found = source.read_vaults()
    if found is not None or give_up:
        return found
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while found is None and not stop.is_set():
            typer.echo(
                "warning: cannot read the ClearML server's vaults; retrying in 10s "
                "(--no-server-vault to start without them)",
                err=True,
            )
            stop.wait(10)
            found = source.read_vaults()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if found is None:
        raise typer.Exit(0)  # asked to stop while waiting: nothing was started
    return found


@app.command()
def run(
    provider: Annotated[str, typer.Option(help="Cloud provider plugin (see `scaler providers`).")],
    config: Annotated[
        Path | None,
        typer.Option(help="Configuration file (HOCON or JSON). Inside a ClearML task: the task's configuration."),
    ] = None,
    vault: Annotated[Path | None, typer.Option(help="Vault file merged over the config.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Log the actions without calling the provider.")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_format: Annotated[LogFormat, typer.Option(help="Log line format.")] = LogFormat.text,
    server_vault: Annotated[
        bool,
        typer.Option("--server-vault/--no-server-vault", help="Merge the ClearML server's config vaults of this user."),
    ] = True,
    state_file: Annotated[
        Path | None,
        typer.Option(
            help="State file for `scaler status` (default ~/.cache/clearml-scaler/<name>.json; "
            "with --dry-run only when given)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics).", min=0, max=65535)
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server listens on.")] = "0.0.0.0",
    remote: Annotated[
        bool, typer.Option("--remote", help="Create a ClearML task running this scaler and enqueue it, then exit.")
    ] = False,
    queue: Annotated[str, typer.Option(help="With --remote: queue the task is enqueued in.")] = "services",
    project: Annotated[str, typer.Option(help="With --remote: ClearML project of the task.")] = "DevOps",
    package: Annotated[
        list[str] | None,
        typer.Option(
            help="With --remote: pip requirement of the task (repeatable; default: this clearml-scaler "
            "and the provider's plugin, pinned)."
        ),
    ] = None,
    docker: Annotated[str | None, typer.Option(help="With --remote: docker image the agent runs the task in.")] = None,
) -> None:
    """Run the loop: launch machines for waiting tasks, terminate idle ones.

    SIGINT/SIGTERM finish the current tick and exit 0, leaving the fleet as it is.
    """
    import signal

    # until the loop installs its own handlers nothing has been changed: SIGTERM just stops
    signal.signal(signal.SIGTERM, _stop_before_start)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}", 2)
    if remote:
        if config is None:
            fail("missing option '--config': --remote sends that file to the task", 2)
        _run_remote(
            provider,
            config,
            vault,
            queue=queue,
            project=project,
            packages=package,
            docker=docker,
            args=_remote_args(provider, dry_run, log_format.value, metrics_port, metrics_host),
            log_level=log_level,
        )
        return

    from scaler import observers
    from scaler import remote as clearml_task
    from scaler.clearml import ClearMLSource
    from scaler.logs import setup_logging
    from scaler.reconciler import Reconciler

    task = clearml_task.attach()  # before logging is set up: the SDK wraps the output streams
    if task is not None and clearml_task.running_in_agent():
        config, task_vault = clearml_task.config_from_task(task)
        vault = vault or task_vault
    elif config is None:
        fail("missing option '--config' (only a scaler running inside a ClearML task reads the task's)", 2)
    setup_logging(log_level, log_format.value)
    host = make_host()
    chosen = host.provider(provider)  # an unknown or broken provider is reported before anything is contacted
    source = ClearMLSource()
    vaults: list[tuple[str, str]] = []
    if server_vault:
        found = _read_server_vaults(source, once or dry_run)
        if found is None:
            fail(
                "cannot read the ClearML server's vaults; start again when the server is reachable, "
                "or pass --no-server-vault"
            )
        vaults = found
    cfg = load_or_exit(host, config, provider, vault, vaults)
    from scaler.lease import Lease

    lease = None if dry_run else Lease(source, cfg.scaler.name, ttl=3 * cfg.scaler.polling_interval)
    reconciler = Reconciler(cfg, host, chosen, source, dry_run=dry_run, lease=lease)
    try:
        metrics = observers.attach(
            reconciler, task=task, state_file=state_file, metrics_port=metrics_port, metrics_host=metrics_host
        )
    except OSError as exc:
        fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}")
    try:
        reconciler.run(once=once)
    finally:
        if metrics is not None:
            metrics.close()


def _remote_args(
    provider: str, dry_run: bool, log_format: str, metrics_port: int | None, metrics_host: str
) -> list[str]:
    """The ``scaler run`` arguments of the task's entry point."""
    args = ["run", "--provider", provider, "--log-format", log_format]
    if dry_run:
        args.append("--dry-run")
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
    return args


def _run_remote(
    provider: str,
    config: Path,
    vault: Path | None,
    *,
    queue: str,
    project: str,
    packages: list[str] | None,
    docker: str | None,
    args: list[str],
    log_level: str,
) -> None:
    from scaler.config.loader import read_text
    from scaler.remote import create_task

    host = make_host()
    cfg = load_or_exit(host, config, provider, vault)  # the task's configuration must be valid here already
    info = host.plugins[provider]
    if packages is None:
        packages = [f"clearml-scaler=={__version__}"]
        if not info.builtin and info.distribution:
            packages.append(f"{info.distribution}=={info.version}" if info.version else info.distribution)
    try:
        task = create_task(
            name=cfg.scaler.name,
            provider=provider,
            config_text=read_text(config),
            vault_text=read_text(vault, "vault file") if vault is not None else None,
            args=args,
            project=project,
            queue=queue,
            log_level=log_level,
            packages=packages,
            docker=docker,
        )
    except ScalerError as exc:
        fail(str(exc))
    typer.echo(f"created task {task.id} '{cfg.scaler.name}' in project '{project}' and enqueued it in '{queue}'")
    try:
        typer.echo(f"  {task.get_output_log_web_page()}")
    except Exception:  # only a convenience link: the task exists and is queued either way
        typer.echo("  (no web link: the server did not say where its web UI is)")
    typer.echo("  configuration: the task's configuration object 'scaler' (edit it in the UI, then restart the task)")
    typer.echo("  log level: the task's user property 'log_level' (read every tick)")


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


# -- operator experience: init, export/import, status --------------------------------------


@app.command()
def init(
    provider: Annotated[str | None, typer.Option(help="Cloud provider: aws, gcp or simulated.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Configuration file to write.")] = Path("scaler.conf"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    interactive: Annotated[
        bool | None,
        typer.Option("--interactive/--no-interactive", help="Ask on standard input (default: when it is a terminal)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Scaler name (tags its machines).")] = None,
    workers_prefix: Annotated[str | None, typer.Option(help="Worker id prefix.")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    use_iam_role: Annotated[
        bool | None, typer.Option("--use-iam-role/--no-use-iam-role", help="AWS: use the default credential chain.")
    ] = None,
    aws_access_key_id: Annotated[
        str | None, typer.Option(help="AWS access key id (written as ${?AWS_ACCESS_KEY_ID}).")
    ] = None,
    aws_secret_access_key: Annotated[
        str | None, typer.Option(help="AWS secret access key (written as ${?AWS_SECRET_ACCESS_KEY}).")
    ] = None,
    iam_instance_profile: Annotated[str | None, typer.Option(help="AWS: instance profile of the machines.")] = None,
    project: Annotated[str | None, typer.Option(help="GCP project id.")] = None,
    credentials_file: Annotated[str | None, typer.Option(help="GCP service account key file.")] = None,
    git_user: Annotated[str | None, typer.Option(help="Git user of the agents.")] = None,
    git_token: Annotated[str | None, typer.Option(help="Git token (written as ${?SCALER_GIT_TOKEN}).")] = None,
    docker_image: Annotated[str | None, typer.Option(help="Default docker image of tasks.")] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            help="A resource, repeatable: name=…,queue=…,instance_type=…,spot=…,zone=…,image=…,disk=…,"
            "max_instances=…,cpu_only=…,init_script=…|@FILE."
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
    """Write a configuration by answering questions (every question also has a flag)."""
    from rich.console import Console

    from scaler import wizard
    from scaler.files import write_private

    console = Console(markup=False, highlight=False, soft_wrap=True)
    ask = sys.stdin.isatty() if interactive is None else interactive
    host = make_host()
    providers = host.provider_names()
    try:
        specs = [wizard.parse_resource_spec(spec) for spec in resource or []]
        if provider is None:
            if not ask:
                raise wizard.WizardError(
                    "no terminal to ask on (standard input is not a TTY; use --interactive to answer from it anyway); "
                    "pass --provider" + ("" if specs else ", --resource name=…,…")
                )
            provider = typer.prompt(
                f"Cloud provider ({', '.join(providers)})", default="aws" if "aws" in providers else providers[0]
            )
            while provider not in providers:
                console.print(f"  ✗ unknown provider {provider!r}; installed: {', '.join(providers)}")
                provider = typer.prompt("Cloud provider")
        if output.exists() and not force:
            if not ask or not typer.confirm(f"{output} exists; overwrite it?", default=False):
                raise wizard.WizardError(f"{output} exists; pass --force to overwrite it", code=1)
        flags = {
            "--name": name,
            "--workers-prefix": workers_prefix,
            "--region": region,
            "--use-iam-role": use_iam_role,
            "--aws-access-key-id": aws_access_key_id,
            "--aws-secret-access-key": aws_secret_access_key,
            "--iam-instance-profile": iam_instance_profile,
            "--project": project,
            "--credentials-file": credentials_file,
            "--git-user": git_user,
            "--git-token": git_token,
            "--docker-image": docker_image,
            "--max-idle-time": max_idle_time,
            "--polling-interval": polling_interval,
        }
        if ask:
            console.rule(f"clearml-scaler setup: {output}")
        answers = wizard.Wizard(
            flags, interactive=ask, say=lambda text: console.print(text) if ask else None, resources=specs
        ).run(provider, providers)
    except wizard.WizardError as exc:
        fail(str(exc), exc.code)
    except typer.Abort:
        fail("input ended before every question was answered", 2)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(wizard.render(answers, provider, str(output)), encoding="utf-8")
    secrets_path = None
    if answers.secrets and write_env_file:
        secrets_path = env_file or output.with_suffix(".env")
        write_private(secrets_path, wizard.env_file_text(answers.secrets))
    from scaler.config.loader import load_config

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
    from scaler.config.loader import ConfigFileError
    from scaler.exporting import export_config

    try:
        document = export_config(config, include_secrets=include_secrets)
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except ConfigError as exc:
        fail(f"{config}: {exc}", EXIT_INVALID)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    if include_secrets:
        from scaler.files import write_private

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
    from scaler.config.loader import ConfigFileError, load_config, read_text
    from scaler.exporting import import_config
    from scaler.files import write_private

    try:
        text = sys.stdin.read() if str(file) == "-" else read_text(file, "export file")
    except ConfigFileError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    try:
        document = json.loads(text)
    except ValueError as exc:
        fail(f"{file}: not JSON: {exc}", EXIT_UNREADABLE)
    try:
        imported = import_config(document, include_secrets=include_secrets, source=str(file))
    except ConfigError as exc:
        fail(f"{file}: {exc}", EXIT_INVALID)
    for path in imported.dropped_secrets:
        typer.echo(
            f"warning: {path} was in the export in clear; written as ${{?{imported.env[path]}}} "
            "(pass --include-secrets to keep the value)",
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
    host = make_host()
    result = load_config(output, host, provider=provider)
    for problem in result.problems:
        typer.echo(("error: " if problem.severity == "error" else "") + problem.render(), err=True)
    state = "valid" if not result.errors else f"invalid ({len(result.errors)} error(s))"
    typer.echo(f"imported {file} to {output}: {state}", err=True)
    if imported.env:
        typer.echo("secrets are read from: " + ", ".join(sorted(set(imported.env.values()))), err=True)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def status(
    config: Annotated[Path, typer.Option(help="Configuration file.")],
    provider: Annotated[str, typer.Option(help="Provider of the fleet.")],
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

    from scaler.clearml import ClearMLSource
    from scaler.logs import setup_logging
    from scaler.statefile import default_path
    from scaler.status import collect, render

    setup_logging("ERROR")  # unreadable sources are part of the output, not log lines
    host = make_host()
    chosen = host.provider(provider)
    source = ClearMLSource()
    vaults = (source.read_vaults() or []) if server_vault else []
    cfg = load_or_exit(host, config, provider, vault, vaults)
    path = state_file or default_path(cfg.scaler.name)
    # piped or captured: wide enough for instance ids and reasons (a terminal, or COLUMNS, decides otherwise)
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    console = Console(markup=False, highlight=False, width=wide)
    shown = 0
    ok = True
    try:
        while True:
            snapshot = collect(cfg, chosen, source, state_path=path, actions=actions)
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


if __name__ == "__main__":
    main()
