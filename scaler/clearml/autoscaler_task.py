"""Reading the configuration of a task of ClearML's own autoscaler, for ``scaler import --from-task``.

ClearML's autoscaler (the ``aws_autoscaler.py`` example and the app built on it) keeps its
settings on its task: the hyper-parameters of section ``General`` (``task.connect(hyper_params)``)
and the configuration object ``General`` (``task.connect_configuration(configurations)``).
This module asks the ClearML server for that task through the SDK (one ``tasks.get_all``,
failing fast) and hands the raw values to :func:`scaler.config.clearml_import.document_from_task`,
which reads them as data.
"""

from __future__ import annotations

from typing import Any

from scaler.clearml.queues import ClearMLSource
from scaler.errors import ScalerError


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def read_autoscaler_task(task_id: str, *, timeout: float = 15.0) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(task name, hyper-parameters, configuration objects)`` of task ``task_id``:
    ``{section: {name: (value, type)}}`` and ``{name: (text, type)}``.

    Raises :class:`ScalerError` when the server cannot be asked or has no such task."""
    source = ClearMLSource(timeout=timeout)
    try:
        found = source.client().tasks.get_all(
            id=[task_id], only_fields=["id", "name", "hyperparams", "configuration"], search_hidden=True
        )
    except Exception as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise ScalerError(
            f"cannot read task {task_id} from the ClearML server: {type(exc).__name__}: {first}"
        ) from None
    if not found:
        raise ScalerError(f"the ClearML server has no task {task_id}")
    task = found[0]
    hyperparams: dict[str, dict[str, tuple[Any, str]]] = {}
    for section, params in (getattr(task, "hyperparams", None) or {}).items():
        items = params.items() if isinstance(params, dict) else ()
        hyperparams[str(section)] = {
            str(name): (_text(getattr(item, "value", None)), _text(getattr(item, "type", None))) for name, item in items
        }
    configuration = {
        str(name): (_text(getattr(item, "value", None)), _text(getattr(item, "type", None)))
        for name, item in (getattr(task, "configuration", None) or {}).items()
    }
    return str(getattr(task, "name", "") or task_id), hyperparams, configuration
