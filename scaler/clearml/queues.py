"""Observations from, and reports to, the ClearML server through the real ``clearml`` SDK.

Server and credentials resolve as the SDK resolves them (``CLEARML_*`` environment, then
``clearml.conf``). Every read is one API call; any failure (server down, 5xx, garbage,
timeout) becomes a missing observation (``None``) so the policy fails safe: nothing is
scaled down while ClearML cannot be read. The SDK's default retries would block a call for
hours, so the session here is built to fail fast and let the next tick try again.

The large lists a tick reads (workers, queues with their entries) are read as plain JSON: the
SDK's own request goes through the SDK's session, but the answer is not turned into the SDK's
typed objects (which parsed every timestamp of every worker with dateutil); only the fields the
loop uses are read. An answer of the wrong shape fails the read like an error answer does.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
from collections.abc import Iterator
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
    """Unix seconds of a time the ClearML API returns (datetime, ISO text or a number); 0 when
    unknown or unreadable. ISO text without a zone is local time, as the SDK's parser reads it."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
        try:  # rarer ISO forms (Python 3.10's fromisoformat knows few): the SDK's own parser
            from dateutil.parser import isoparse

            return isoparse(value[:64]).timestamp()
        except (ValueError, OverflowError, OSError):
            return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a large answer is decoded: the hundreds of thousands
    of dicts and lists of 10,000 workers would otherwise trigger collections that walk every
    object of the process, several times per read. Decoded JSON holds no reference cycles, so
    reference counting frees it all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class BadAnswer(ValueError):
    """A ClearML answer whose data does not have the shape the API documents: the read fails
    (nothing is scaled down on data the scaler cannot understand)."""


class _Record:
    """Attribute access over one record of a plain-JSON answer (``record.id``, ``record.tags``),
    so the lease reads it as it read the SDK's typed objects; a missing field is ``None``."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._data.get(name)

    def __repr__(self) -> str:
        return f"_Record({self._data.get('id')!r})"


def _id_and_name(value: Any, what: str) -> tuple[str, str]:
    """``(id, name)`` of an ``{"id", "name"}`` entry of an answer (``None``: ``("", "")``)."""
    if value is None:
        return "", ""
    if isinstance(value, dict):
        ident, name = value.get("id"), value.get("name")
        return (ident if isinstance(ident, str) else ""), (name if isinstance(name, str) else "")
    if isinstance(value, str):
        return value, ""
    raise BadAnswer(f"{what} is {type(value).__name__}, not an id/name entry")


def worker_obs(record: Any) -> WorkerObs:
    """One worker of a plain-JSON ``workers.get_all`` answer, with only what the loop uses: its
    id, the names of its queues, its task (id, name) and its last activity (0: unknown).
    :class:`BadAnswer` when the record is not a worker."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise BadAnswer("a worker without an id")
    task_id, task_name = _id_and_name(record.get("task"), f"worker {record['id'][:100]}: its task")
    queues = record.get("queues") or ()
    if not isinstance(queues, list):
        raise BadAnswer(f"worker {record['id'][:100]}: its queues are not a list")
    names = []
    for queue in queues:
        name = _id_and_name(queue, f"worker {record['id'][:100]}: a queue")[1]
        if name:
            names.append(name)
    return WorkerObs(
        id=record["id"],
        queues=tuple(names),
        task=task_id or None,
        task_name=task_name if task_id else "",
        last_activity=timestamp(record.get("last_activity_time")),
    )


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

    def _json(self, client: Any, service: str, key: str, **fields: Any) -> list[Any]:
        """The list ``data[key]`` of one ``<service>.get_all``, as plain JSON: the request is the SDK's own
        (its API version, method and body, validated as the SDK validates it) sent through the
        SDK's session (login, token refresh, timeouts), but the answer is not turned into typed
        objects, and no timestamp in it is parsed: the large lists (workers, queues and their
        entries) are read field by field where they are used.

        Failures raise what the SDK's ``StrictSession`` raises for them (``APIError`` for an
        error answer or one that is not an answer, ``ValueError`` for a malformed envelope, the
        transport's exceptions), and :class:`BadAnswer` when ``data[key]`` is not a list."""
        from clearml.backend_api import services
        from clearml.backend_api.session.callresult import CallResult
        from clearml.backend_api.session.client import APIError
        from clearml.backend_api.session.response import ResponseMeta

        request = getattr(services, service).GetAllRequest(**fields)
        session = client.session
        session.validate_request(request)
        res = session.send_request(
            service=request._service,
            action=request._action,
            version=request._version,
            method=request._method,
            json=request.to_dict(),
        )
        cls = type(request)
        if res is None:  # the SDK's offline mode
            raise APIError(CallResult._make_raw_response(request_cls=cls), extra_info="Invalid response")
        try:
            payload = res.json()
        except ValueError:
            raw = CallResult._make_raw_response(request_cls=cls, status_code=res.status_code, text=res.text[:1000])
            raise APIError(raw, extra_info=None if not raw.ok() else "Invalid response") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
            raise ValueError("Missing meta section in response payload")
        try:
            meta = ResponseMeta(**payload["meta"])
        except Exception as exc:
            raise ValueError(f"Failed parsing meta section in response payload ({type(exc).__name__})") from None
        data = payload.get("data")
        result = CallResult(meta=meta, response_data=data if isinstance(data, dict) else {}, request_cls=cls)
        if not result.ok():
            raise APIError(result)
        if not isinstance(data, dict):
            raise APIError(result, extra_info="Invalid response")
        found = data.get(key)
        if not isinstance(found, list):
            raise BadAnswer(f"{service}.get_all answered no list of {key}")
        return found

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
        found = self._call("queues.get_all", lambda c: self._queue_counts(c, pattern, names))
        if found is None:
            return None
        out: dict[str, QueueObs] = {}
        for name, (queue_id, pending) in found.items():
            self._queue_ids[name] = queue_id
            out[name] = QueueObs(name=name, pending=pending, id=queue_id)
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
            lambda c: self._json(c, "queues", "queues", name=pattern, only_fields=["id", "name"], search_hidden=True),
        )
        if found is None:
            return None
        have = {q.get("name") for q in found if isinstance(q, dict)}
        return [name for name in dict.fromkeys(names) if name not in have]

    def _queue_counts(self, client: Any, pattern: str, names: list[str]) -> dict[str, tuple[str, int]]:
        """Queue name -> (id, pending entries) of the queues of ``names`` that exist."""
        wanted = set(names)
        out: dict[str, tuple[str, int]] = {}
        with _collector_paused():  # the decoded answer (every entry) is gone when the collector runs again
            found = self._json(
                client, "queues", "queues", name=pattern, only_fields=["id", "name", "entries"], search_hidden=True
            )
            for queue in found:
                if not isinstance(queue, dict) or queue.get("name") not in wanted:
                    continue
                queue_id, entries = queue.get("id"), queue.get("entries")
                if not isinstance(queue_id, str) or not isinstance(entries, (list, type(None))):
                    raise BadAnswer(f"queue {str(queue.get('name'))[:100]}: no id, or its entries are not a list")
                out[queue["name"]] = (queue_id, len(entries or ()))
            del found
        return out

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
        found = self._call("workers.get_all", self._workers)
        if found is None:
            return None
        workers, leases = found
        self.lease_entries = leases
        return workers

    def _workers(self, client: Any) -> tuple[list[WorkerObs], dict[str, list[Any]]]:
        """The agents' workers and the lease entries, by worker id, of one ``workers.get_all``."""
        workers = []
        leases: dict[str, list[Any]] = {}
        with _collector_paused():  # the decoded answer is gone when the collector runs again
            for record in self._json(client, "workers", "workers"):
                if isinstance(record, dict) and str(record.get("id")).startswith(LEASE_PREFIX):
                    # a running scaler's lease (scaler.clearml.lease), not an agent: kept for the lease check
                    leases.setdefault(str(record["id"]), []).append(_Record(record))
                    continue
                workers.append(worker_obs(record))
        return workers, leases

    # -- the lease (scaler.clearml.lease): worker entries of running scalers -----------------

    def read_lease_entries(self) -> dict[str, list[Any]] | None:
        """Every lease entry registered now, by worker id (one fresh read; one entry per ClearML
        user that registered the id); ``None`` when ClearML cannot be read.
        :attr:`lease_entries` holds those of the latest :meth:`read_workers`."""
        found = self._call("workers.get_all", self._workers)
        if found is None:
            return None
        return found[1]

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
