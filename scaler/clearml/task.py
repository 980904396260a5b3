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
    queue: str | None = DEFAULT_QUEUE,
    log_level: str = "INFO",
    packages: list[str] | None = None,
    docker: str | None = None,
    general: dict[str, str] | None = None,
    resources_text: str | None = None,
) -> Any:
    """Create the scaler's task with its configuration, and enqueue it in ``queue`` (``None``: not
    enqueued; ``scaler run --task`` runs it here). Returns the task."""
    from clearml import Task
    from clearml.backend_api.session.client import APIClient

    if queue is not None:
        try:
            found = APIClient().queues.get_all(name=f"^{re.escape(queue)}$", only_fields=["id", "name"])
        except Exception as exc:
            raise ScalerError(
                f"cannot reach the ClearML server to create the task: {type(exc).__name__}: {exc}"
            ) from None
        if not found:
            raise ScalerError(f"there is no queue named '{queue}' on the ClearML server; create it or pass --queue")
    try:
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
    except Exception as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise ScalerError(f"cannot create the task on the ClearML server: {type(exc).__name__}: {first}") from None
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
    show_configuration(task, general or {}, resources_text)
    task.set_user_properties(
        **{
            LOG_LEVEL_PROPERTY: {
                "value": log_level.upper(),
                "description": "DEBUG, INFO, WARNING or ERROR; read every tick",
            }
        }
    )
    if queue is not None:
        Task.enqueue(task, queue_name=queue)
    return task


#: what a scaler reporting to its task leaves alone: no framework is patched, and the task's script
#: (the agent's command line, set by :func:`create_task`) is not replaced by this process's
_NO_FRAMEWORKS = dict.fromkeys(
    (
        "matplotlib tensorflow tensorboard pytorch xgboost scikit fastai lightgbm hydra detect_repository "
        "tfdefines joblib megengine catboost gradio"
    ).split(),
    False,
)


def run_here(task: Any, project: str) -> Any:
    """Report to ``task`` (made by :func:`create_task`, not enqueued) from this process, as the task
    does when an agent runs it: this process's console goes to the task's, and :func:`attach`
    finds the task."""
    from clearml import Task

    Task._report_subprocess_enabled = False  # type: ignore[assignment]
    return Task.init(
        project_name=project,
        task_name=task.name,
        task_type=Task.TaskTypes.service,
        continue_last_task=task.id,
        auto_connect_arg_parser=False,
        auto_connect_frameworks=_NO_FRAMEWORKS,
        auto_resource_monitoring=False,
    )


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
        several = self.config.multi_cloud
        if report.cloud_ok:
            clouds: dict[str, int] = dict.fromkeys(self.config.provider_names, 0)
            for resource in self.config.resources:
                stats = report.fleet.get(resource.name, {})
                # one fleet across clouds: each resource's plot names its cloud
                title = f"resource {resource.name}" + (f" ({resource.provider_name})" if several else "")
                scalar(title, "running", stats.get("alive", 0), it)
                for state in ("booting", "idle", "busy"):
                    scalar(title, state, stats.get(state, 0), it)
                if resource.provider_name in clouds:
                    clouds[resource.provider_name] += stats.get("alive", 0)
            if several:
                for name, count in clouds.items():
                    scalar("clouds", f"{name} running", count, it)
                    scalar("clouds", f"{name} listed", 0 if name in report.unlisted else 1, it)
        for resource in self.config.resources:
            scalar("launches", resource.name, report.launched.get(resource.name, 0), it)
        for reason in sorted(set(TERMINATION_REASONS) | set(report.terminated)):
            scalar("terminations", reason, report.terminated.get(reason, 0), it)
        for kind, count in sorted(report.errors.items()):
            scalar("errors", kind, count, it)
        scalar("tick", "duration (s)", round(report.duration, 3), it)
        self.logger.flush()
        for instance_id, text in report.consoles.items():
            self.save_console(instance_id, text)
        self.apply_log_level()

    def save_console(self, instance_id: str, text: str) -> None:
        """Save the console output of a stuck or stopped machine (already bounded and masked by the
        reconciler) as the artifact ``console-<instance id>``, besides the log line."""
        name = console_artifact_name(instance_id)
        text = text[-CONSOLE_ARTIFACT_CHARS:]
        try:
            # bytes, not str: the SDK would upload a str naming an existing file as that file, and
            # register a str that looks like a URL as a link
            self.task.upload_artifact(
                name,
                artifact_object=text.encode("utf-8", "replace"),
                serialization_function=bytes,
                extension_name=".txt",
                preview=text[-CONSOLE_PREVIEW_CHARS:] or "(empty)",
                metadata={"instance": instance_id[:200]},
            )
        except Exception as exc:  # the log line has it anyway
            log.warning("could not save the console output of %s as task artifact '%s': %s", instance_id, name, exc)
            return
        log.info("console output of instance %s saved as artifact '%s' of task %s", instance_id, name, self.task.id)

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


#: characters of a machine's console output kept in its artifact (the reconciler keeps no more), and in its preview
CONSOLE_ARTIFACT_CHARS = 64 * 1024
CONSOLE_PREVIEW_CHARS = 4000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def console_artifact_name(instance_id: str) -> str:
    """``console-<instance id>``: the artifact holding a machine's console output (an id is the
    provider's, so anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``; at most 120)."""
    return "console-" + (_UNSAFE.sub("_", instance_id).strip("._") or "unknown")[:112]


GENERAL_SECTION = "General"
RESOURCES_OBJECT = "resources"
UPLOADED_OBJECT = "uploaded view"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def task_view(config_text: str, catalog: Any) -> tuple[dict[str, str], str | None]:
    """What the task shows where ClearML users look: the scalar settings of the ``scaler``
    section (HYPER PARAMETERS > General) and the resources as JSON (configuration object
    ``resources``). Secret fields are never shown; resources holding one are not shown at all
    (editing them there would lose it)."""
    import json

    from scaler.config.catalog import parse_path
    from scaler.config.loading import own_secret_variables, parse_hocon

    raw, problems = parse_hocon(config_text, source="task", data="a task", allow=own_secret_variables(catalog))
    if problems or not isinstance(raw, dict):
        return {}, None
    section = raw.get("scaler") if isinstance(raw.get("scaler"), dict) else {}
    general = {
        key: json.dumps(value)
        if isinstance(value, bool)
        else f"{_seconds(value):g}s"
        if _seconds(value) is not None
        else str(value)
        for key, value in (section or {}).items()
        if (isinstance(value, str | int | float | bool) or _seconds(value) is not None)
        and not catalog.is_secret(parse_path(f"scaler.{key}"))
    }
    resources = raw.get("resources")
    if not isinstance(resources, list) or _holds_secret(resources, "resources", catalog, parse_path):
        return general, None
    return general, json.dumps(resources, indent=2)


def _seconds(value: Any) -> float | None:
    """Seconds of a HOCON period (``30s``: a timedelta or dateutil's relativedelta), else None."""
    if isinstance(value, str | int | float | bool):
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    parts = ("days", "hours", "minutes", "seconds")
    if all(hasattr(value, part) for part in parts):
        return float(value.days * 86400 + value.hours * 3600 + value.minutes * 60 + value.seconds)
    return None


def _holds_secret(value: Any, path: str, catalog: Any, parse_path: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_secret(v, f"{path}.{k}", catalog, parse_path) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_secret(v, f"{path}[{i}]", catalog, parse_path) for i, v in enumerate(value))
    try:
        return bool(catalog.is_secret(parse_path(path)))
    except Exception:
        return True


def show_configuration(task: Any, general: dict[str, str], resources_text: str | None) -> None:
    """Put the view of :func:`task_view` on the task (editable in the UI)."""
    if general:
        task.set_parameters({f"{GENERAL_SECTION}/{key}": value for key, value in general.items()})
    import json

    task.set_configuration_object(
        UPLOADED_OBJECT,
        config_text=json.dumps({"general": general, "resources": resources_text}),
        config_type="JSON",
        description="what General and 'resources' showed when the task was created (edits are told apart from it); do not edit",
    )
    if resources_text is not None:
        task.set_configuration_object(
            RESOURCES_OBJECT,
            config_text=resources_text,
            config_type="JSON",
            description="the configuration's resources; edit, then restart the task to apply",
        )


def apply_task_edits(task: Any, config: Path, catalog: Any) -> list[str]:
    """Write the values edited in the task's General section and ``resources`` object over the
    configuration copied from the task (only those that differ from it). The edits are data: each
    value is written as a HOCON literal, and the result is loaded and validated as any task
    configuration is. Returns the edited keys."""
    import json

    text = config.read_text()
    general, resources_text = task_view(text, catalog)
    try:
        uploaded = json.loads(task.get_configuration_object(UPLOADED_OBJECT) or "{}")
        general = {str(k): str(v) for k, v in dict(uploaded.get("general") or general).items()}
        resources_text = uploaded.get("resources", resources_text)
    except (ValueError, TypeError, AttributeError):
        pass
    try:
        params = task.get_parameters_as_dict().get(GENERAL_SECTION) or {}
    except Exception:
        params = {}
    lines = []
    for key, value in params.items():
        value = str(value)
        if not _NAME.fullmatch(key) or general.get(key) == value:
            continue
        if catalog.is_secret(_parse(f"scaler.{key}")):
            continue
        lines.append(f"scaler.{key} = {_literal(value)}")
    edited = task.get_configuration_object(RESOURCES_OBJECT)
    if edited and resources_text is not None and _json_or_text(edited) != _json_or_text(resources_text):
        try:
            lines.append(f"resources = {json.dumps(json.loads(edited))}")
        except ValueError:
            lines.append(f"resources = {edited}")  # HOCON: parsed as data with the rest
    if lines:
        write_private(
            config,
            text
            + "\n# edited in the ClearML task (HYPER PARAMETERS > General, 'resources')\n"
            + "\n".join(lines)
            + "\n",
        )
    return [line.split(" = ", 1)[0] for line in lines]


def _parse(path: str) -> Any:
    from scaler.config.catalog import parse_path

    return parse_path(path)


def _json_or_text(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _literal(value: str) -> str:
    """A HOCON literal of a value typed in the UI: a number or boolean as is, anything else quoted
    (so no substitution or include can come from it)."""
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        return json.dumps(value)
    return value if isinstance(parsed, bool | int | float) else json.dumps(value)
