"""Running the scaler as a ClearML task (a service on the ``services`` queue).

``scaler run --remote`` creates a task (project ``DevOps``, named after the scaler) whose
entry point is ``python -m scaler.cli run --provider P ...``, stores the configuration file
(as written: comments and ``${?VAR}`` substitutions, no resolved secret) as the task's
configuration object ``scaler`` (and a ``--vault`` file as ``vault``), adds the user
property ``log_level``, and enqueues it.

When ``scaler run`` then runs under clearml-agent, it attaches to that task and

* reads its configuration from the task's configuration object instead of ``--config``
  (edit it in the UI, restart the task, and the new configuration is used);
* reports scalars every tick (pending tasks per queue; running/booting/idle/busy per
  resource; launches; terminations; errors; tick duration), so the UI plots them;
* reads the task's ``log_level`` user property every tick: a change takes effect next tick;
* its log lines (one per decision, with the reason) go to the task's console, captured
  from the process output as for any task.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.config.paths import write_private
from scaler.engine.policy import TerminationKind
from scaler.errors import ScalerError
from scaler.ops.statefile import cache_dir

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.engine.reconciler import TickReport

log = logging.getLogger("scaler")

CONFIG_OBJECT = "scaler"
VAULT_OBJECT = "vault"
LOG_LEVEL_PROPERTY = "log_level"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_PROJECT = "DevOps"
DEFAULT_QUEUE = "services"
TERMINATION_REASONS = tuple(kind.value for kind in TerminationKind)


def running_in_agent() -> bool:
    """True when clearml-agent started this process for a task (``CLEARML_TASK_ID`` is set)."""
    return bool(os.environ.get("CLEARML_TASK_ID") or os.environ.get("TRAINS_TASK_ID"))


def create_task(
    *,
    name: str,
    provider: str,
    config_text: str,
    vault_text: str | None,
    args: list[str],
    project: str = DEFAULT_PROJECT,
    queue: str = DEFAULT_QUEUE,
    log_level: str = "INFO",
    packages: list[str] | None = None,
    docker: str | None = None,
) -> Any:
    """Create the scaler's task with its configuration, and enqueue it. Returns the task."""
    from clearml import Task
    from clearml.backend_api.session.client import APIClient

    try:
        found = APIClient().queues.get_all(name=f"^{re.escape(queue)}$", only_fields=["id", "name"])
    except Exception as exc:
        raise ScalerError(f"cannot reach the ClearML server to create the task: {type(exc).__name__}: {exc}") from None
    if not found:
        raise ScalerError(f"there is no queue named '{queue}' on the ClearML server; create it or pass --queue")
    task: Any = Task.create(
        project_name=project,
        task_name=name,
        task_type="service",
        module="scaler.cli " + shlex.join(args),
        packages=packages,
        docker=docker,
        detect_repository=False,
        add_task_init_call=False,
    )
    task.set_configuration_object(
        CONFIG_OBJECT,
        config_text=config_text,
        config_type="HOCON",
        description=f"clearml-scaler configuration (provider {provider}); edit, then restart the task to apply",
    )
    if vault_text is not None:
        task.set_configuration_object(
            VAULT_OBJECT, config_text=vault_text, config_type="HOCON", description="vault merged over the configuration"
        )
    task.set_user_properties(
        **{
            LOG_LEVEL_PROPERTY: {
                "value": log_level.upper(),
                "description": "DEBUG, INFO, WARNING or ERROR; read every tick",
            }
        }
    )
    Task.enqueue(task, queue_name=queue)
    return task


def attach() -> Any | None:
    """The ClearML task this process runs in, or ``None``.

    Under clearml-agent (``CLEARML_TASK_ID`` set) this attaches to the agent's task; in a
    program that called ``Task.init`` itself it is that task. Otherwise clearml is not even
    imported.
    """
    if not running_in_agent() and "clearml" not in sys.modules:
        return None
    from clearml import Task

    task: Any = Task.current_task()
    if task is None and running_in_agent():
        # a service reports a few scalars: background threads, not a reporting subprocess
        # (whose flushes wait for their timeout), and no framework or resource hooks
        Task._report_subprocess_enabled = False  # type: ignore[assignment]
        task = Task.init(auto_connect_arg_parser=False, auto_connect_frameworks=False, auto_resource_monitoring=False)
    return task


def config_from_task(task: Any) -> tuple[Path, Path | None]:
    """Files holding the task's configuration (and vault) objects, for the usual loader."""
    text = task.get_configuration_object(CONFIG_OBJECT)
    if not text:
        raise ScalerError(
            f"task {task.id} has no '{CONFIG_OBJECT}' configuration object; create the task with `scaler run --remote`"
        )
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"task-{task.id}.conf"
    write_private(config, text)  # the configuration may hold secrets
    vault_text = task.get_configuration_object(VAULT_OBJECT)
    vault = None
    if vault_text:
        vault = folder / f"task-{task.id}.vault.conf"
        write_private(vault, vault_text)
    return config, vault


class TaskReporter:
    """A tick listener: scalars to the task, ``log_level`` from the task."""

    def __init__(self, task: Any, config: Config) -> None:
        self.task = task
        self.config = config
        self.logger = task.get_logger()
        last = task.get_last_iteration() or 0
        self.iteration = last + 1 if last > 0 else 0
        self._ignored_level = ""

    def __call__(self, report: TickReport) -> None:
        it = self.iteration
        self.iteration += 1
        scalar = self.logger.report_scalar
        if report.clearml_ok:
            for queue, count in report.pending.items():
                scalar("pending tasks", queue, count, it)
        if report.cloud_ok:
            for resource in self.config.resources:
                stats = report.fleet.get(resource.name, {})
                title = f"resource {resource.name}"
                scalar(title, "running", stats.get("alive", 0), it)
                for state in ("booting", "idle", "busy"):
                    scalar(title, state, stats.get(state, 0), it)
        for resource in self.config.resources:
            scalar("launches", resource.name, report.launched.get(resource.name, 0), it)
        for reason in sorted(set(TERMINATION_REASONS) | set(report.terminated)):
            scalar("terminations", reason, report.terminated.get(reason, 0), it)
        for kind, count in sorted(report.errors.items()):
            scalar("errors", kind, count, it)
        scalar("tick", "duration (s)", round(report.duration, 3), it)
        self.logger.flush()
        self.apply_log_level()

    def apply_log_level(self) -> None:
        """Set the ``scaler`` logger's level from the task's ``log_level`` user property."""
        try:
            props = self.task.get_user_properties(value_only=True)
        except Exception as exc:
            log.debug("could not read the task's user properties: %s: %s", type(exc).__name__, exc)
            return
        level = str(props.get(LOG_LEVEL_PROPERTY) or "").strip().upper()
        if not level:
            return
        if level not in LEVELS:
            if level != self._ignored_level:
                log.warning("task property log_level=%r ignored: use DEBUG, INFO, WARNING or ERROR", level)
                self._ignored_level = level
            return
        logger = logging.getLogger("scaler")
        current = logging.getLevelName(logger.level)
        if current != level:
            log.info("log level %s -> %s (task property log_level)", current, level)
            logger.setLevel(level)
