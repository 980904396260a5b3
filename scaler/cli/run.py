"""``scaler run``: the loop, locally or as a ClearML task (``--remote``)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scaler.cli.app import (
    PROVIDER_HELP,
    app,
    complete_provider,
    fail,
    load_or_exit,
    make_host,
    resolve_providers,
    stop_before_start,
)
from scaler.errors import ScalerError
from scaler.types import fleet_identity

if TYPE_CHECKING:
    from scaler.host import PluginHost


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


RETRY_START_READ = 10.0  # seconds between a daemon's tries to read the ClearML server at start


def _wait_for_server(read: Callable[[], Any], say: Callable[[], None]) -> Any:
    """``read()`` again every RETRY_START_READ seconds until it answers (not ``None``), saying
    ``say()`` before each wait: a daemon's start waits for its ClearML server. SIGTERM/SIGINT stop
    the wait (exit 0: nothing was started)."""
    import signal
    import threading

    found = None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while found is None and not stop.is_set():
            say()
            stop.wait(RETRY_START_READ)
            found = read()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if found is None:
        raise typer.Exit(0)  # asked to stop while waiting: nothing was started
    return found


def _read_server_vaults(source: Any, give_up: bool) -> list[tuple[str, str]] | None:
    """The server's vaults; a daemon waits for the server (it could not act without it anyway),
    a one-shot run gives up at once."""
    found = source.read_vaults()
    if found is not None or give_up:
        return found
    return _wait_for_server(
        source.read_vaults,
        lambda: typer.echo(
            f"warning: cannot read the ClearML server's vaults; retrying in {RETRY_START_READ:g}s "
            "(--no-server-vault to start without them)",
            err=True,
        ),
    )


def _whoami(source: Any, give_up: bool) -> Any:
    """The scaler's identity on its ClearML server (user, workspace): the fleet identity is made
    of it, so nothing is listed or touched before it is known. A daemon waits for the server, a
    one-shot run gives up at once."""
    found = source.whoami()
    if found is not None:
        return found
    if give_up:
        fail(
            "cannot read the ClearML server to establish the fleet identity (its user and workspace); "
            "nothing was listed or changed. Start again when the server is reachable"
        )
    return _wait_for_server(
        source.whoami,
        lambda: logging.getLogger("scaler").warning(
            f"cannot read the ClearML server to establish the fleet identity; retrying in {RETRY_START_READ:g}s "
            "(nothing is listed or changed until then)"
        ),
    )


def _ensure_queues(source: Any, queues: list[str], *, create: bool, dry_run: bool, give_up: bool) -> None:
    """Make sure every queue of the configuration exists on the ClearML server: a queue that does
    not would count as "0 pending" forever. ``create`` (``scaler.create_queues``): create the missing
    ones, one INFO line each (a dry run only says it would); otherwise stop (exit 1) naming them.
    A server that cannot be read stops a one-shot run (exit 1); a daemon goes on and says so."""
    log = logging.getLogger("scaler")
    missing = source.missing_queues(queues)
    if missing is None:
        if give_up:
            fail("cannot read the ClearML server to check the configured queues; nothing was listed or changed")
        log.warning("cannot read the ClearML server to check that the queues %s exist; going on", ", ".join(queues))
        return
    if not missing:
        return
    names = ", ".join(f"'{name}'" for name in missing)
    if not create:
        fail(
            f"queue(s) {names} do not exist on the ClearML server (scaler.create_queues = false): create them "
            "(the web UI, or `clearml-agent daemon --create-queue`), fix the queue names in `resources`, or set scaler.create_queues = true"
        )
    for name in missing:
        if dry_run:
            log.info("[dry-run] would create queue '%s' (it does not exist on the ClearML server)", name)
        elif source.create_queue(name):
            log.info("created queue '%s' on the ClearML server (scaler.create_queues = true)", name)
        elif give_up:
            fail(f"cannot create queue '{name}' on the ClearML server; nothing was listed or changed")
        else:
            log.warning("could not create queue '%s' on the ClearML server: it counts as 0 pending", name)


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option(help="Configuration file (HOCON or JSON). Inside a ClearML task: the task's configuration."),
    ] = None,
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP, autocompletion=complete_provider)] = None,
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
    metrics_host: Annotated[
        str,
        typer.Option(
            help="Address the metrics server listens on (default: this machine only; 0.0.0.0 for a scrape "
            "from elsewhere, as in a container)."
        ),
    ] = "127.0.0.1",
    remote: Annotated[
        bool, typer.Option("--remote", help="Create a ClearML task running this scaler and enqueue it, then exit.")
    ] = False,
    task_here: Annotated[
        bool,
        typer.Option(
            "--task",
            help="Create a ClearML task for this scaler (as --remote does, not enqueued) and run here, reporting "
            "to it: settings in HYPER PARAMETERS > General and 'resources', scalars, console, console artifacts.",
        ),
    ] = False,
    queue: Annotated[str, typer.Option(help="With --remote: queue the task is enqueued in.")] = "services",
    project: Annotated[str, typer.Option(help="With --remote or --task: ClearML project of the task.")] = "DevOps",
    package: Annotated[
        list[str] | None,
        typer.Option(
            help="With --remote or --task: pip requirement of the task (repeatable: a version, a wheel URL, a git "
            "URL; replaces the default: this clearml-scaler and the provider's plugin as installed here, pinned)."
        ),
    ] = None,
    docker: Annotated[
        str | None, typer.Option(help="With --remote or --task: docker image an agent runs the task in.")
    ] = None,
    upload_secrets: Annotated[
        bool,
        typer.Option(
            "--upload-secrets",
            help="With --remote or --task: store secrets written in clear in the configuration or vault file in "
            "the task anyway (anyone who can open the task reads them; default: refuse).",
        ),
    ] = False,
) -> None:
    """Run the loop: launch machines for waiting tasks, terminate idle ones.

    SIGINT/SIGTERM finish the current tick and exit 0, leaving the fleet as it is. With --once, exit 1
    when the tick could not do its job (ClearML or the cloud unreadable, the lease held by another
    scaler, the server's vaults unreadable); docs/operating.md lists the exit codes.
    """
    import signal

    # until the loop installs its own handlers nothing has been changed: SIGTERM just stops
    signal.signal(signal.SIGTERM, stop_before_start)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}", 2)
    created = None
    if remote or task_here:
        option = "--remote" if remote else "--task"
        if remote and task_here:
            fail(
                "--remote and --task exclude each other: --remote enqueues the task for an agent, --task runs it here",
                2,
            )
        if config is None:
            fail(f"missing option '--config': {option} stores that file in the task", 2)
        host = make_host()
        clouds = resolve_providers(host, config, provider)
        # the task's entry point names the provider when the run has one; a fleet across clouds runs them all
        chosen_one = provider or (clouds[0] if len(clouds) == 1 else None)
        created = _run_remote(
            host,
            provider,
            clouds,
            config,
            vault,
            queue=None if task_here else queue,
            project=project,
            packages=package,
            docker=docker,
            upload_secrets=upload_secrets,
            args=_remote_args(chosen_one, dry_run, log_format.value, metrics_port, metrics_host, server_vault),
            log_level=log_level,
        )
        if remote:
            return

    from scaler.clearml import task as clearml_task
    from scaler.clearml.queues import ClearMLSource
    from scaler.engine.reconciler import Reconciler
    from scaler.ops import observers
    from scaler.ops.logs import setup_logging

    # before logging is set up: the SDK wraps the output streams
    task = clearml_task.attach() if created is None else clearml_task.run_here(created, project)
    # inside its task (run by an agent, or --task here) the scaler reads the task's configuration
    from_task = task is not None and (clearml_task.running_in_agent() or created is not None)
    if from_task:
        config, task_vault = clearml_task.config_from_task(task)
        vault = vault or task_vault
    elif config is None:
        fail("missing option '--config' (only a scaler running inside a ClearML task reads the task's)", 2)
    setup_logging(log_level, log_format.value)
    host = make_host()
    # an unknown or broken provider (or none given, and the configuration does not say which) is
    # reported before anything is contacted
    resolve_providers(host, config, provider, from_task=from_task)
    if from_task:
        # values edited in HYPER PARAMETERS > General and the 'resources' object: data, validated below
        edited = clearml_task.apply_task_edits(task, config, host.catalog())
        if edited:
            logging.getLogger("scaler").info("task edits applied over its configuration: %s", ", ".join(edited))
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
    cfg = load_or_exit(host, config, provider, vault, vaults, from_task=from_task, task_copy=from_task)
    # one fleet may span several clouds: each resource's provider serves it
    chosen = {name: host.provider(name) for name in cfg.provider_names}
    from scaler.engine.render import check_agent_auth

    # machines launched without ClearML credentials would never register: say so before any launch
    check_agent_auth(cfg, source.server_info())
    _ensure_queues(source, cfg.queues, create=cfg.scaler.create_queues, dry_run=dry_run, give_up=once or dry_run)
    from scaler.clearml.lease import Lease

    who = _whoami(source, once or dry_run)
    cfg = replace(cfg, fleet_id=fleet_identity(cfg.scaler.name, who.server, who.company))
    logging.getLogger("scaler").info(
        "fleet identity %s: scaler '%s' serving %s", cfg.fleet_id, cfg.scaler.name, who.describe()
    )
    ttl = 3 * cfg.scaler.polling_interval
    lease = None if dry_run else Lease(source, cfg.scaler.name, ttl=ttl, identity=who)
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
    failures = reconciler.history[-1].failures() if once and reconciler.history else []
    if failures:
        # cron and CI gate on the exit code (docs/operating.md): a tick that could not do its job is a failure
        fail(f"--once: the tick could not do its job: {'; '.join(failures)}")


def _remote_args(
    provider: str | None,
    dry_run: bool,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    server_vault: bool,
) -> list[str]:
    """The ``scaler run`` arguments of the task's entry point (no ``--provider`` for a fleet across clouds)."""
    args = ["run", *(["--provider", provider] if provider else []), "--log-format", log_format]
    if dry_run:
        args.append("--dry-run")
    if not server_vault:
        args.append("--no-server-vault")
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
    return args


def _run_remote(
    host: PluginHost,
    provider: str | None,
    clouds: list[str],
    config: Path,
    vault: Path | None,
    *,
    queue: str | None,
    project: str,
    packages: list[str] | None,
    docker: str | None,
    upload_secrets: bool,
    args: list[str],
    log_level: str,
) -> Any:
    """Create the task (``--remote``: enqueued in ``queue``; ``--task``: ``queue`` is None, this
    process runs it). Returns the task."""
    from scaler.clearml.task import create_task
    from scaler.config.loading import read_text

    # the task's configuration must load here as it will on the agent: as data, each secret at most
    # a reference to its own variable
    cfg = load_or_exit(host, config, provider, vault, from_task=True)
    config_text = read_text(config)
    vault_text = read_text(vault, "vault file") if vault is not None else None
    option = "--remote" if queue is not None else "--task"
    variables = _check_secrets_stay(
        host, clouds, config, config_text, vault, vault_text, project, upload_secrets, option
    )
    if not packages:
        packages = list(dict.fromkeys(spec for name in clouds for spec in _default_packages(host, name, queue)))
    from scaler.clearml.task import task_view

    general, resources_text = task_view(config_text, host.catalog())
    try:
        task = create_task(
            name=cfg.scaler.name,
            provider=" + ".join(clouds),
            config_text=config_text,
            vault_text=vault_text,
            args=args,
            project=project,
            queue=queue,
            log_level=log_level,
            packages=packages,
            docker=docker,
            general=general,
            resources_text=resources_text,
        )
    except ScalerError as exc:
        fail(str(exc))
    if queue is None:
        typer.echo(f"created task {task.id} '{cfg.scaler.name}' in project '{project}'; this scaler reports to it")
    else:
        typer.echo(f"created task {task.id} '{cfg.scaler.name}' in project '{project}' and enqueued it in '{queue}'")
    try:
        typer.echo(f"  {task.get_output_log_web_page()}")
    except Exception:  # only a convenience link: the task exists and is queued either way
        typer.echo("  (no web link: the server did not say where its web UI is)")
    typer.echo(
        "  configuration: HYPER PARAMETERS > General, the configuration objects 'resources' and 'scaler' "
        "(edit a clone of the task, then enqueue it)"
        if queue is None
        else "  configuration: HYPER PARAMETERS > General, the configuration objects 'resources' and 'scaler' "
        "(edit them in the UI, then restart the task)"
    )
    typer.echo("  log level: the task's user property 'log_level' (read every tick)")
    if variables and queue is not None:
        typer.echo(
            f"  secrets: {', '.join(variables)}, read on the agent (set them in the environment of the agent "
            f"serving '{queue}', or in your ClearML vault)"
        )
    return task


def _default_packages(host: PluginHost, provider: str, queue: str | None) -> list[str]:
    """The task's requirements when no ``--package`` is given: core and the provider's plugin as
    installed here. ``--remote`` exits 1 when the agent could not install them (an editable
    checkout, an unreleased version); ``--task`` (``queue`` None) runs here, so it only warns that
    an agent could not run a clone of the task as it is."""
    from scaler.clearml.requirements import default_requirements, refusal

    info = host.plugins[provider]
    found = default_requirements(None if info.builtin else info.distribution)
    problems = [item for item in found if item.problem]
    if problems and queue is not None:
        fail(refusal(problems, queue))
    for item in problems:
        typer.echo(
            f"warning: an agent could not install what the task asks for ({item.problem}): before enqueueing a "
            "clone, pass --package or edit the clone's installed packages",
            err=True,
        )
    return [item.spec for item in found]


def _check_secrets_stay(
    host: Any,
    clouds: list[str],
    config: Path,
    config_text: str,
    vault: Path | None,
    vault_text: str | None,
    project: str,
    upload_secrets: bool,
    option: str = "--remote",
) -> list[str]:
    """Refuse (exit 1, nothing created) to store a secret written in clear in the task, unless
    ``--upload-secrets``, which stores it with a warning. Returns the variables the secret
    fields name (read on the agent)."""
    from scaler.config.catalog import parse_path
    from scaler.config.exporting import substitutions
    from scaler.config.loading import parse_hocon
    from scaler.config.upload import secrets_in_config, secrets_in_vault

    catalog = host.catalog()
    raw, _ = parse_hocon(config_text, source=str(config))  # it loaded as data already: no include in it
    references = substitutions(config_text)
    found = []
    tree = None
    if vault is not None and vault_text is not None:
        tree, _ = parse_hocon(vault_text, source=str(vault), data="a vault")
    for provider in clouds:  # each cloud's keys (and its vault section) in turn, each secret said once
        found += secrets_in_config(raw, references, catalog, provider)
        if tree is not None:
            found += secrets_in_vault(tree, catalog, provider, str(vault))
    found = list({(item.where, item.what): item for item in found}.values())

    def owner(where: str) -> str:  # the cloud whose vault section the advice names
        return next((c for c in clouds if where.startswith(c + ".") or f".{c}." in where), clouds[0])

    variables = sorted({name for where, name in references.items() if catalog.is_secret(parse_path(where))})
    if not found:
        return variables
    where = ", ".join(dict.fromkeys(item.where for item in found))
    if upload_secrets:
        typer.echo(
            f"warning: --upload-secrets: the task stores {len(found)} secret(s) in clear ({where}); anyone who "
            f"can open project '{project}' can read them",
            err=True,
        )
        return variables
    lines = [
        f"{option} would store secrets in clear in the task, where anyone who can open project '{project}' "
        "reads them; nothing was created:"
    ]
    lines += [f"  {item.where}: {item.what}; {item.advice(owner(item.where))}" for item in found]
    lines.append(
        "Secrets stay on the machine that runs the task: in the environment of the clearml-agent that runs it, "
        "or in your ClearML vault, which the scaler reads there (docs/operating.md). "
        "--upload-secrets stores them in the task anyway."
    )
    fail("\n".join(lines))
