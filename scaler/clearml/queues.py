"""Observations from, and reports to, the ClearML server through the real ``clearml`` SDK.

Server and credentials resolve as the SDK resolves them (``CLEARML_*`` environment, then
``clearml.conf``). Every read is one API call; any failure (server down, 5xx, garbage,
timeout) becomes a missing observation (``None``) so the policy fails safe: nothing is
scaled down while ClearML cannot be read. The SDK's default retries would block a call for
hours, so the session here is built to fail fast and let the next tick try again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaler.engine.fleet import WorkerObs
from scaler.engine.policy import QueueObs, RequeueResult
from scaler.types import Secret, ServerInfo

log = logging.getLogger("scaler.clearml.queues")

#: seconds an API call may take before this tick treats ClearML as unreadable
DEFAULT_TIMEOUT = 15.0
#: worker ids of running scalers' leases (:mod:`scaler.clearml.lease`): not agents
LEASE_PREFIX = "scaler-lease:"
#: system tag ``clearml-scaler-requeues=<n>`` on a task: how often the scaler re-enqueued it
REQUEUE_TAG = "clearml-scaler-requeues"


@dataclass(frozen=True)
class ClearMLIdentity:
    """Who the scaler is on its ClearML server: the server's address and the user and workspace
    (company) of its credentials, as ``users.get_current_user`` answers."""

    server: str
    user: str
    company: str
    user_name: str = ""
    company_name: str = ""

    def describe(self) -> str:
        user = f"'{self.user_name}' ({self.user})" if self.user_name else self.user
        company = f"'{self.company_name}' ({self.company})" if self.company_name else self.company
        return f"user {user} of workspace {company} on {self.server}"


def requeue_count(system_tags: Any) -> int:
    """How often the scaler re-enqueued a task, from its :data:`REQUEUE_TAG` system tag (0: never)."""
    for tag in system_tags or ():
        key, _, value = str(tag).partition("=")
        if key == REQUEUE_TAG and value.isdigit():
            return int(value)
    return 0


def server_info() -> ServerInfo:
    """The ClearML server and the scaler's own credentials, without logging in: keys from
    ``CLEARML_API_ACCESS_KEY``/``CLEARML_API_SECRET_KEY`` or clearml.conf's ``api.credentials``,
    and ``CLEARML_AUTH_TOKEN`` (which the SDK keeps refreshed once it has logged in)."""
    import os.path

    from clearml.backend_api import Session
    from clearml.backend_api.session.defs import ENV_ACCESS_KEY, ENV_AUTH_TOKEN, ENV_SECRET_KEY
    from clearml.backend_config.defs import get_active_config_file
    from clearml.config import config_obj

    def attempt(fn: Any) -> str:
        try:
            return str(fn(config_obj))
        except Exception:
            return ""

    access = ENV_ACCESS_KEY.get(default=config_obj.get("api.credentials.access_key", None) or "") or ""
    secret = ENV_SECRET_KEY.get(default=config_obj.get("api.credentials.secret_key", None) or "") or ""
    return ServerInfo(
        api_host=attempt(Session.get_api_server_host),
        web_host=attempt(Session.get_app_server_host),
        files_host=attempt(Session.get_files_server_host),
        access_key=Secret(str(access)),
        secret_key=Secret(str(secret)),
        auth_token=Secret(str(ENV_AUTH_TOKEN.get() or "")),
        config_file=os.path.expanduser(get_active_config_file() or ""),
    )


def timestamp(value: Any) -> float:
    """Unix seconds of a time the ClearML API returns (datetime, ISO text or a number); 0 when unknown."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return float(value or 0.0)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


class ClearMLSource:
    """The :class:`~scaler.engine.reconciler.QueueSource` backed by a ClearML server."""

    #: why the latest failed call failed (``"<call>: <error>"``; reset by each :meth:`read`): the
    #: reason ``scaler status`` and ``validate-config --check-clearml`` show, secrets masked there
    last_error: str = ""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._client: Any = None
        self._queue_ids: dict[str, str] = {}
        # lease entries (scaler-lease:*) seen by the latest workers read, by worker id (one per
        # ClearML user that registered it); None before any read
        self.lease_entries: dict[str, list[Any]] | None = None
        self._identity: ClearMLIdentity | None = None
        # task id -> re-enqueues done by this process (a floor under the count kept in the task)
        self._requeues: dict[str, int] = {}

    # The SDK reads host and keys when the session is created; one client per process.
    def client(self) -> Any:
        if self._client is None:
            from clearml.backend_api.session.client import APIClient, StrictSession

            timeout = self.timeout

            class _FastSession(StrictSession):  # type: ignore[misc]
                _session_timeout = (min(5.0, timeout), timeout)
                _session_initial_timeout = (min(5.0, timeout), timeout)

            no_retries = {"total": 0, "connect": 0, "read": 0, "redirect": 0, "status": 0}
            session = _FastSession(http_retries_config=no_retries, initialize_logging=False)
            self._client = APIClient(session=session)
        return self._client

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn(self.client())
        except Exception as exc:
            log.warning("ClearML %s failed: %s", what, _describe(exc))
            self.last_error = f"{what}: {_describe(exc)}"
            if "login" in str(exc).lower() or self._client is None:
                self._client = None  # re-login next time
            return None

    def read(self, queues: list[str]) -> tuple[dict[str, QueueObs] | None, list[WorkerObs] | None]:
        self.last_error = ""
        return self._read_queues(queues), self.read_workers()

    def _read_queues(self, names: list[str]) -> dict[str, QueueObs] | None:
        if not names:
            return {}
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        found = self._call(
            "queues.get_all",
            lambda c: c.queues.get_all(name=pattern, only_fields=["id", "name", "entries"], search_hidden=True),
        )
        if found is None:
            return None
        out: dict[str, QueueObs] = {}
        for queue in found:
            name = getattr(queue, "name", None)
            if name in names:
                self._queue_ids[name] = queue.id
                out[name] = QueueObs(name=name, pending=len(getattr(queue, "entries", None) or []), id=queue.id)
        for name in names:
            if name not in out:
                out[name] = QueueObs(name=name, pending=0)  # not created yet: nothing waits in it
        return out

    def missing_queues(self, names: list[str]) -> list[str] | None:
        """The queues of ``names`` that do not exist on the server (in the order given); ``None``
        when the server cannot be read."""
        if not names:
            return []
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        found = self._call(
            "queues.get_all",
            lambda c: c.queues.get_all(name=pattern, only_fields=["id", "name"], search_hidden=True),
        )
        if found is None:
            return None
        have = {getattr(q, "name", None) for q in found}
        return [name for name in dict.fromkeys(names) if name not in have]

    def create_queue(self, name: str) -> bool:
        """Create the queue ``name`` (``queues.create``); False when it could not be done. A queue
        that another process created meanwhile counts as done."""
        created = self._call("queues.create", lambda c: c.queues.create(name=name))
        if created is not None:
            return True
        missing = self.missing_queues([name])
        return missing is not None and not missing

    def read_workers(self) -> list[WorkerObs] | None:
        self.lease_entries = None
        found = self._call("workers.get_all", lambda c: c.workers.get_all())
        if found is None:
            return None
        workers = []
        leases: dict[str, list[Any]] = {}
        for worker in found:
            if str(worker.id).startswith(LEASE_PREFIX):
                # a running scaler's lease (scaler.clearml.lease), not an agent: kept for the lease check
                leases.setdefault(str(worker.id), []).append(worker)
                continue
            task = getattr(worker, "task", None)
            queues = tuple(q.name for q in (getattr(worker, "queues", None) or []) if getattr(q, "name", None))
            workers.append(
                WorkerObs(
                    id=str(worker.id),
                    queues=queues,
                    task=(getattr(task, "id", None) or None) if task else None,
                    task_name=(getattr(task, "name", "") or "") if task else "",
                    last_activity=timestamp(getattr(worker, "last_activity_time", None)),
                )
            )
        self.lease_entries = leases
        return workers

    # -- the lease (scaler.clearml.lease): worker entries of running scalers -----------------

    def read_lease_entries(self) -> dict[str, list[Any]] | None:
        """Every lease entry registered now, by worker id (one fresh read; one entry per ClearML
        user that registered the id); ``None`` when ClearML cannot be read.
        :attr:`lease_entries` holds those of the latest :meth:`read_workers`."""
        found = self._call("workers.get_all", lambda c: c.workers.get_all())
        if found is None:
            return None
        leases: dict[str, list[Any]] = {}
        for worker in found:
            if str(worker.id).startswith(LEASE_PREFIX):
                leases.setdefault(str(worker.id), []).append(worker)
        return leases

    def whoami(self) -> ClearMLIdentity | None:
        """The scaler's own identity on the server (``users.get_current_user``, asked once per
        process); ``None`` while the server cannot be read."""
        if self._identity is not None:
            return self._identity

        def fetch(client: Any) -> Any:
            res = client.session.send_request("users", "get_current_user", json={})
            res.raise_for_status()
            return (res.json().get("data") or {}).get("user") or {}, str(client.session.host)

        found = self._call("users.get_current_user", fetch)
        if found is None:
            return None
        user, host = found
        company = user.get("company")
        company = company if isinstance(company, dict) else {"id": company}
        if not user.get("id") or not company.get("id"):
            log.warning("ClearML users.get_current_user named no user or workspace: %s", str(user)[:300])
            return None
        self._identity = ClearMLIdentity(
            server=host,
            user=str(user["id"]),
            company=str(company["id"]),
            user_name=str(user.get("name") or ""),
            company_name=str(company.get("name") or ""),
        )
        return self._identity

    def register_lease(self, entry: str, timeout: int, tags: list[str]) -> bool:
        """Register (or renew) the lease entry ``entry`` for ``timeout`` seconds; False when it
        could not be done."""
        done = self._call("workers.register", lambda c: c.workers.register(worker=entry, timeout=timeout, tags=tags))
        return done is not None

    def release_lease(self, entry: str) -> bool:
        """Unregister the lease entry ``entry``; False when it could not be done."""
        return self._call("workers.unregister", lambda c: c.workers.unregister(worker=entry)) is not None

    def requeue(self, task_id: str, queue: str, reason: str, max_requeues: int) -> RequeueResult:
        """Put an interrupted task back in ``queue``, at most ``max_requeues`` times per task.

        The count is kept in the task itself (system tag ``clearml-scaler-requeues=<n>``), so it
        survives restarts of the scaler; this process's own count is a floor under it. Past the
        bound the task is marked failed, the reason in its status message. Returns what was done;
        ``RETRY`` when the server could not be asked (the loop tries again)."""
        tasks = self._call(
            "tasks.get_all",
            lambda c: c.tasks.get_all(id=[task_id], only_fields=["id", "status", "system_tags"]),
        )
        if tasks is None:
            return RequeueResult.RETRY
        if not tasks:
            return RequeueResult.SKIPPED
        status = getattr(tasks[0], "status", "") or ""
        status = str(getattr(status, "value", status))  # the SDK returns a TaskStatusEnum, not a str
        if status not in ("in_progress", "stopped", "failed"):
            log.info("task %s is %s now; not re-enqueued", task_id, status)
            return RequeueResult.SKIPPED
        system_tags = list(getattr(tasks[0], "system_tags", None) or [])
        done_before = max(requeue_count(system_tags), self._requeues.get(task_id, 0))
        if done_before >= max_requeues:
            return self._give_up(task_id, reason, done_before, max_requeues)
        queue_id = self._queue_ids.get(queue)
        if queue_id is None:
            return RequeueResult.SKIPPED
        note = f"clearml-scaler: {reason}"[:250]
        if status == "in_progress":
            done = self._call("tasks.stopped", lambda c: c.tasks.stopped(task=task_id, force=True, status_reason=note))
            if done is None:
                return RequeueResult.RETRY
        enqueued = self._call(
            "tasks.enqueue", lambda c: c.tasks.enqueue(task=task_id, queue=queue_id, status_reason=note)
        )
        if enqueued is None:
            return RequeueResult.RETRY
        count = done_before + 1
        self._requeues[task_id] = count
        tags = [t for t in system_tags if str(t).partition("=")[0] != REQUEUE_TAG] + [f"{REQUEUE_TAG}={count}"]
        if self._call("tasks.update", lambda c: c.tasks.update(task=task_id, system_tags=tags)) is None:
            log.warning(
                "task %s: could not record its re-enqueue count (%d) in ClearML; counted in this process only",
                task_id,
                count,
            )
        return RequeueResult.REQUEUED

    def _give_up(self, task_id: str, reason: str, done_before: int, max_requeues: int) -> RequeueResult:
        why = (
            f"clearml-scaler: {reason}; not re-enqueued: already re-enqueued {done_before} time(s) "
            f"(max_requeues = {max_requeues})"
        )
        failed = self._call(
            "tasks.failed",
            lambda c: c.tasks.failed(task=task_id, force=True, status_reason=why[:250], status_message=why[:1000]),
        )
        if failed is None:
            return RequeueResult.RETRY
        log.error(
            "task %s left failed: %s; not re-enqueued again (re-enqueued %d time(s), max_requeues = %d). "
            "Find out why its machines die (console output, spot reclaims), then enqueue it by hand",
            task_id,
            reason,
            done_before,
            max_requeues,
        )
        return RequeueResult.GAVE_UP

    def server_info(self) -> ServerInfo:
        return server_info()

    def read_vaults(self) -> list[tuple[str, str]] | None:
        """The owner's enabled config vaults on the server, as (description, HOCON text);
        ``None`` when they cannot be read (a server without vault support answers none)."""

        def fetch(client: Any) -> Any:
            res = client.session.send_request("users", "get_vaults", params="enabled=true&types=config")
            if res.status_code == 404:
                return []
            res.raise_for_status()
            return res.json().get("data", {}).get("vaults", []) or []

        vaults = self._call("users.get_vaults", fetch)
        if vaults is None:
            return None
        return [
            (f"server vault {v.get('description') or v.get('id') or i}", str(v.get("data") or ""))
            for i, v in enumerate(vaults)
            if isinstance(v, dict) and v.get("data")
        ]
