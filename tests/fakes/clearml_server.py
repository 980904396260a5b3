"""A fake ClearML API server that the real ``clearml`` SDK can talk to over loopback HTTP.

Only the standard library is used.  The server listens on ``127.0.0.1`` (port 0 = pick a free
port) and speaks the ClearML wire protocol as far as the SDK's ``APIClient`` needs it:

* ``GET /auth.login`` with HTTP Basic (access key / secret key) returns a JWT (HS256 signed with
  a per-fake secret; the SDK never checks the signature) whose payload carries ``api_version``
  ``"2.31"``, ``server_version`` and ``feature_set: basic``.  The SDK then picks its newest
  bundled service module not above 2.31 (``v2_23`` for clearml 2.1.x) and calls
  ``/v2.23/<service>.<action>``.
* Every other call carries ``Authorization: Bearer <token>`` (Basic is accepted too, as on the
  real server) and a JSON body, even on ``GET``; ``events.add_batch`` sends
  ``application/json-lines``.  Query-string parameters are merged into the body.
* Every answer is ``{"meta": {"result_code", "result_subcode", "result_msg", ...}, "data": {...}}``
  with the HTTP status equal to ``result_code`` (as the real server does).  Error codes follow
  the real server's ``errors.conf`` (e.g. 400/101 invalid task id, 400/110 invalid task status,
  400/701 invalid queue id, 400/1004 worker not registered, 401/30 invalid token).

Behaviour that is modelled (the rest is recorded and answered with an empty-ish 200):

* queues: ``create``, ``get_all`` (``name`` is an unanchored, case-sensitive regex search as on
  the server - use ``^name$`` for an exact match; ``id``/``tags``/``system_tags``/``only_fields``
  /``search_hidden``), ``get_by_id``, ``get_default``, ``add_task``, ``remove_task``,
  ``get_next_task``, ``peek_task``, ``get_num_entries``, ``delete``, ``update``,
  ``move_task_to_front``/``move_task_to_back``.
* tasks: ``create``, ``edit``, ``update``, ``get_all``, ``get_by_id``, ``enqueue``, ``dequeue``,
  ``started``, ``stopped``, ``stop``, ``failed``, ``completed``, ``reset``, ``close``,
  ``publish``, ``ping``, ``edit_hyper_params``, ``get_hyper_params``, ``edit_configuration``,
  ``clone`` (what ``Task.clone`` and the UI's Clone do) and ``add_or_update_artifacts``.
  Status changes follow the real server's state machine (``apiserver/bll/task/utils.py``); in particular **enqueue of an
  ``in_progress`` task is rejected (400/110) unless ``force=true`` is sent** (the SDK's v2.23
  ``EnqueueRequest`` has no ``force`` parameter: pass ``_allow_extra_fields_=True, force=True``,
  or call ``tasks.stopped`` first - ``stopped``/``failed`` -> ``queued`` is allowed).  A task
  leaving status ``queued`` is removed from every queue.
* workers: ``register`` (queue *ids*; unknown ids -> 400/701), ``unregister`` (unknown worker ->
  400/1004), ``status_report`` (auto-registers unknown workers, as the server's default
  ``auto_register: true``), ``get_all`` (``last_seen`` filter; a worker expires ``timeout``
  seconds - default 600 - after its last registration/report, as the server's redis TTL),
  ``get_runtime_properties``/``set_runtime_properties`` (what the real ``clearml-agent daemon``
  asks before each poll of its queues; without it the agent never pulls a task).
* users: :meth:`FakeClearML.add_user` adds another user of the company with its own keys;
  ``auth.login``, ``users.get_current_user`` and what it registers (workers) are that user's.
  As on the real server a worker's key holds company, user and worker id: two users
  registering one worker id make two entries, each unregisters only its own.
* projects: ``create``/``get_all``/``get_by_id``; users: ``get_current_user``; ``server.info``;
  ``debug.ping``; ``events.add_batch``/``events.add`` (stored, see :meth:`FakeClearML.events`).
* Any other path (not ``<service>.<action>``) behaves like a tiny files server: a
  ``multipart/form-data`` ``POST`` (the SDK's http storage driver: artifacts, debug images) stores
  each form field at ``<URL path>/<field name>`` and answers the stored paths, as ClearML's
  fileserver does; any other ``PUT``/``POST`` stores the body at its path; ``GET`` returns it.

SDK facts the product code must respect (measured against clearml 2.1.12, see
``tests/test_fake_clearml.py``):

* Build the client as ``APIClient()`` (or ``APIClient(session=StrictSession(...))``) *after* the
  ``CLEARML_*`` environment variables are set; host and keys are read from the environment every
  time a session is created, so a fresh ``APIClient`` per process (or per server change) is
  enough.  ``clearml.config.ConfigWrapper`` caches the parsed ``clearml.conf`` for the life of
  the process (the first session created wins) and ``Session.api_version`` is class level -
  harmless for host/keys, but config-file based retry settings are frozen at the first use.
* Defaults make a failing call block for a *very* long time: urllib3 retries 240 times,
  sleeping 0, 2, 4, ... 64, then 120 s between attempts (about 7.8 h in all), on connection
  errors, read timeouts/resets and HTTP 502/503/509/429; the read timeout is 300 s (10 s for a
  session's first request, i.e. the login).  HTTP 500 and other 4xx are not retried
  (``APIError`` at once); a 401 makes the SDK log in again and resend - with the *old* token,
  so that one call still fails.  Pass ``StrictSession(http_retries_config={"total": 0,
  "connect": 0, "read": 0, "redirect": 0, "status": 0})`` and lower the class attributes
  ``_session_timeout``/``_session_initial_timeout`` (``(connect, read)`` seconds, e.g. in a
  subclass) to fail fast; transport failures are then ``requests.RequestException``
  subclasses (``ConnectionError`` - also for read timeouts -, ``RetryError`` for 502/503),
  **not** ``APIError``; a failed login is ``LoginError`` (``ValueError`` on a non-JSON answer).
* ``Task.init`` starts a thread that asks ``https://updates.clear.ml``; the ``fake_clearml``
  fixture disables that check (``CheckPackageUpdates._package_version_checked = True``).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]

API_VERSION = "2.31"
SERVER_VERSION = "1.16.0"
DEFAULT_TOKEN_TTL = 30 * 24 * 3600  # server default: 30 days
DEFAULT_WORKER_TIMEOUT = 600  # server default registration timeout
TASK_UPDATE_TIMEOUT = 600  # apiserver.workers.task_update_timeout

_API_PATH = re.compile(r"^/(?:api/)?(?:v(?P<version>\d+\.\d+)/)?(?P<service>[a-z_]+)\.(?P<action>[a-z_]+)/?$")
_TIME_FIELDS = frozenset(
    {
        "created",
        "started",
        "completed",
        "published",
        "last_update",
        "last_change",
        "status_changed",
        "last_worker_report",
        "added",
        "register_time",
        "last_activity_time",
        "last_report_time",
    }
)

# The real server's task state machine (apiserver/bll/task/utils.py).
STATE_MACHINE: dict[str, frozenset[str]] = {
    "created": frozenset({"queued", "in_progress"}),
    "queued": frozenset({"created", "in_progress", "stopped"}),
    "in_progress": frozenset({"stopped", "failed", "created", "completed"}),
    "stopped": frozenset(
        {"closed", "created", "failed", "queued", "in_progress", "published", "publishing", "completed"}
    ),
    "closed": frozenset({"created", "failed", "published", "publishing", "stopped"}),
    "failed": frozenset({"created", "stopped", "published", "queued"}),
    "publishing": frozenset({"published"}),
    "published": frozenset(),
    "completed": frozenset({"published", "in_progress", "created"}),
}


class ApiError(Exception):
    """An API-level error, answered as ``meta.result_code``/``result_subcode``/``result_msg``."""

    def __init__(self, code: int, subcode: int, msg: str) -> None:
        super().__init__(f"{code}/{subcode}: {msg}")
        self.code = code
        self.subcode = subcode
        self.msg = msg


def _new_id() -> str:
    return uuid.uuid4().hex


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _render(value: Any, key: str = "") -> Any:
    """Deep-copy ``value`` turning stored float timestamps of known time fields into ISO strings."""
    if isinstance(value, dict):
        return {k: _render(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    if key in _TIME_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _iso(float(value))
    return value


def _render_dict(value: JSON) -> JSON:
    rendered: JSON = _render(value)
    return rendered


def _project(item: JSON, only_fields: list[str] | None) -> JSON:
    """Apply an ``only_fields`` projection (dotted paths allowed); ``id`` is always kept."""
    if not only_fields:
        return item
    result: JSON = {"id": item.get("id")}
    for path in only_fields:
        parts = path.split(".")
        src: Any = item
        for part in parts:
            if not isinstance(src, dict) or part not in src:
                src = _MISSING
                break
            src = src[part]
        if src is _MISSING:
            continue
        dst = result
        for part in parts[:-1]:
            dst = dst.setdefault(part, {})
        dst[parts[-1]] = src
    return result


_MISSING = object()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _tags_match(have: list[str], wanted: list[str]) -> bool:
    """Simplified server tag filter: plain tags are OR-ed, ``-tag`` excludes."""
    include = [t for t in wanted if isinstance(t, str) and not t.startswith("-")]
    exclude = [t[1:] for t in wanted if isinstance(t, str) and t.startswith("-")]
    if any(t in have for t in exclude):
        return False
    return not include or any(t in have for t in include)


def _multipart_files(raw: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The (field name, content) of each part of a ``multipart/form-data`` body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    found = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name:
            payload = part.get_payload(decode=True)
            found.append((name, payload if isinstance(payload, bytes) else b""))
    return found


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeClearML) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet (the default prints a traceback for every dropped connection)."""


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # HTTP/1.0: one request per connection, so stopping the listener really makes the server
    # unreachable (no kept-alive connection keeps serving after stop()).
    protocol_version = "HTTP/1.0"
    server_version = "FakeClearML/1.0"
    disable_nagle_algorithm = True  # else the separate header/body writes cost ~40 ms per call
    caller: JSON | None = None  # the user the request authenticated as

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the server quiet."""

    def _serve(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def _caller(req: _Handler) -> JSON | None:
    return getattr(req, "caller", None)


class FakeClearML:
    """In-memory ClearML API server on loopback; see the module docstring for what is modelled.

    State survives :meth:`stop`/:meth:`start` (a "server restart" on the same port).  All helper
    methods are thread-safe.  Time stamps come from ``time.time()`` plus an offset that
    :meth:`advance_clock` moves (token expiry uses real time).
    """

    def __init__(
        self,
        access_key: str = "fake-access",
        secret_key: str = "fake-secret",
        port: int = 0,
        *,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        api_version: str = API_VERSION,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token_ttl = token_ttl
        self.api_version = api_version
        self._port = port
        self._lock = threading.RLock()
        self._jwt_secret = os.urandom(32)
        self._token_generation = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clock_offset = 0.0
        self.user: JSON = {"id": "fake-user-id", "name": "Fake User"}
        self.company: JSON = {"id": "fake-company-id", "name": "Fake Company"}
        # other users of the same company: access key -> (secret key, user)
        self._other_users: dict[str, tuple[str, JSON]] = {}
        self._init_state()
        self._init_faults()

    # ------------------------------------------------------------------ lifecycle
    def _init_state(self) -> None:
        self._queues: dict[str, JSON] = {}
        self._tasks: dict[str, JSON] = {}
        self._workers: dict[str, JSON] = {}
        self._projects: dict[str, JSON] = {}
        self._events: list[JSON] = []
        self._vaults: list[JSON] = []
        self._files: dict[str, bytes] = {}
        self._calls: list[tuple[str, JSON]] = []
        self._task_counter = 0
        # workers.set_runtime_properties: worker key -> [{"key", "value", "expiry"}]
        self._runtime_properties: dict[str, list[JSON]] = {}

    def _init_faults(self) -> None:
        self._fail_rules: list[list[Any]] = []
        self._down_mode: str | None = None
        self._slow = 0.0
        self._garbage = False
        # endpoint -> what its successful answers' data go through (rewrite_answers)
        self._rewrites: dict[str, Callable[[JSON], JSON]] = {}

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeClearML was never started; the port is not known yet")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> FakeClearML:
        """Start listening (again).  After a :meth:`stop` the same port is reused."""
        with self._lock:
            if self._down_mode == "refuse":
                self._down_mode = None
            if self._httpd is not None:
                return self
            self._stopping.clear()
            httpd = _HTTPServer(("127.0.0.1", self._port), self)
            self._port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FakeClearML:{self._port}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
            thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused; requests being delayed are dropped."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
            self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeClearML:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all state, recorded calls and injected faults (tokens stay valid)."""
        with self._lock:
            self._init_state()
            self._clock_offset = 0.0
        self.clear_faults()

    def env(self) -> dict[str, str]:
        """Environment for the SDK: hosts and keys, no clearml.conf needed."""
        return {
            "CLEARML_API_HOST": self.url,
            "CLEARML_WEB_HOST": self.url,
            "CLEARML_FILES_HOST": self.url,
            "CLEARML_API_ACCESS_KEY": self.access_key,
            "CLEARML_API_SECRET_KEY": self.secret_key,
        }

    # ------------------------------------------------------------------ clock & tokens
    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the server clock (worker expiry, ``last_seen``, time stamps) forward."""
        with self._lock:
            self._clock_offset += seconds

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (the SDK answers the resulting 401 by logging in again)."""
        with self._lock:
            self._token_generation += 1

    def add_user(self, access_key: str, secret_key: str, user_id: str, name: str = "") -> dict[str, str]:
        """Another user of the same company, with its own credentials: what it registers (a
        worker, a lease) is its own, as on the real server (a worker's key holds company, user
        and worker id, so two users registering one worker id make two entries). Returns the
        ``CLEARML_*`` environment of that user."""
        with self._lock:
            self._other_users[access_key] = (secret_key, {"id": user_id, "name": name or user_id})
        return dict(self.env(), CLEARML_API_ACCESS_KEY=access_key, CLEARML_API_SECRET_KEY=secret_key)

    def _user_by_id(self, user_id: Any) -> JSON:
        for _secret, user in self._other_users.values():
            if user["id"] == user_id:
                return user
        return self.user

    def _worker_key(self, user: JSON | None, worker_id: str) -> str:
        """The worker's key in :attr:`_workers`: its id for the main user (helpers keep indexing
        by worker id), ``<user id>/<worker id>`` for another user's."""
        if user is None or user["id"] == self.user["id"]:
            return worker_id
        return f"{user['id']}/{worker_id}"

    def make_token(self, ttl: int | None = None, user: JSON | None = None) -> str:
        user = user or self.user
        issued = int(time.time())
        payload = {
            "env": "fake",
            "api_version": self.api_version,
            "server_version": SERVER_VERSION,
            "server_build": "fake",
            "feature_set": "basic",
            "auth_type": "Bearer",
            "identity": {
                "user": user["id"],
                "user_name": user["name"],
                "company": self.company["id"],
                "company_name": self.company["name"],
                "role": "user",
            },
            "gen": self._token_generation,
            "iat": issued,
            "exp": issued + (self.token_ttl if ttl is None else ttl),
        }
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(payload).encode())
        signature = hmac.new(self._jwt_secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64url(signature)}"

    def _check_token(self, token: str) -> JSON:
        try:
            header, body, signature = token.split(".")
            expected = hmac.new(self._jwt_secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _b64url_decode(signature)):
                raise ValueError("bad signature")
            payload = json.loads(_b64url_decode(body))
        except (ValueError, TypeError) as ex:
            raise ApiError(401, 30, "Invalid token") from ex
        if payload.get("gen") != self._token_generation:
            raise ApiError(401, 30, "Invalid token: token revoked")
        if float(payload.get("exp", 0)) < time.time():
            raise ApiError(401, 30, "Invalid token: token expired")
        return self._user_by_id((payload.get("identity") or {}).get("user"))

    def _check_basic(self, value: str) -> JSON:
        try:
            key, _, secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as ex:
            raise ApiError(401, 21, "Unauthorized (malformed credentials)") from ex
        if key == self.access_key and secret == self.secret_key:
            return self.user
        other = self._other_users.get(key)
        if other is not None and other[0] == secret:
            return other[1]
        raise ApiError(401, 22, "Unauthorized (invalid credentials)")

    def _authorize(self, headers: Any) -> JSON:
        """Basic (key:secret) or Bearer (a token we issued, not revoked, not expired) - on every
        endpoint including ``auth.login`` (the SDK re-logs in with Bearer when it has no keys).
        Returns the calling user."""
        auth = str(headers.get("Authorization") or "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            return self._check_basic(value.strip())
        if scheme.lower() != "bearer":
            raise ApiError(401, 20, "Unauthorized (missing credentials)")
        return self._check_token(value.strip())

    # ------------------------------------------------------------------ fault injection
    def fail_next(self, endpoint: str | None = None, times: int = 1, status: int = 500, msg: str = "injected") -> None:
        """Answer the next ``times`` calls of ``endpoint`` (``"workers.get_all"``; None = any call,
        ``auth.login`` included) with HTTP ``status`` and a matching ``meta`` error.

        With the SDK's default retry settings 500 raises ``APIError`` at once, while 502/503/429
        are retried by urllib3 (with backoff) and mostly succeed once ``times`` is used up.
        """
        with self._lock:
            self._fail_rules.append([endpoint, times, status, msg])

    def set_down(self, down: bool, mode: str = "refuse") -> None:
        """Make the server unreachable.

        ``mode="refuse"``: stop listening (connection refused, like a stopped server);
        ``"reset"``: accept, then reset the connection without an answer;
        ``"503"``: answer HTTP 503 (the SDK retries 503 240 times with backoff, then by
        default waits forever for "maintenance" - use with a fast-fail session only).
        """
        if mode not in ("refuse", "reset", "503"):
            raise ValueError(f"unknown mode {mode!r}")
        if not down:
            with self._lock:
                was = self._down_mode
                self._down_mode = None
            if was == "refuse":
                self.start()
            return
        with self._lock:
            self._down_mode = mode
        if mode == "refuse":
            self.stop()
            with self._lock:
                self._down_mode = "refuse"

    def clear_faults(self) -> None:
        """Disarm every ``fail_next`` rule and undo ``set_down``/``set_slow``/``set_garbage``."""
        with self._lock:
            down = self._down_mode == "refuse"
            self._init_faults()
        if down:
            self.start()

    def set_slow(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (the request is recorded before the delay)."""
        with self._lock:
            self._slow = max(0.0, float(seconds))

    def set_garbage(self, on: bool) -> None:
        """Answer every request with HTTP 200 and a non-JSON body."""
        with self._lock:
            self._garbage = bool(on)

    def rewrite_answers(self, endpoint: str, rewrite: Callable[[JSON], JSON] | None) -> None:
        """Pass the ``data`` of every successful answer of ``endpoint`` (``"workers.get_all"``)
        through ``rewrite`` (a deep copy in, the data to send out) until it is ``None`` again or
        :meth:`clear_faults`: a server of another version, or a broken one, answering data of
        another shape (a field missing, a timestamp in another format)."""
        with self._lock:
            if rewrite is None:
                self._rewrites.pop(endpoint, None)
            else:
                self._rewrites[endpoint] = rewrite

    # ------------------------------------------------------------------ recorded calls
    @property
    def calls(self) -> list[tuple[str, JSON]]:
        """Snapshot of ``(endpoint, body)`` of every API call, in arrival order.

        ``endpoint`` is ``"service.action"``; the body is the parsed JSON (query parameters merged
        in); a json-lines batch (``events.add_batch``) is recorded as ``{"batch": [...]}``.
        """
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def calls_to(self, endpoint: str) -> list[JSON]:
        """Bodies of the recorded calls to ``endpoint``."""
        return [body for name, body in self.calls if name == endpoint]

    # ------------------------------------------------------------------ direct helpers (tests)
    def create_queue(self, name: str, *, tags: list[str] | None = None, system_tags: list[str] | None = None) -> str:
        """Create a queue (idempotent by name); returns its id."""
        with self._lock:
            existing = self._queue_by_name(name)
            if existing is not None:
                return str(existing["id"])
            return self._create_queue(name, tags or [], system_tags or [])

    def enqueue(self, queue: str, name: str | None = None) -> str:
        """Create a task and put it at the end of ``queue`` (by name; created if needed)."""
        with self._lock:
            qid = self.create_queue(queue)
            self._task_counter += 1
            task = self._new_task(name or f"task-{self._task_counter}")
            self._set_status(task, "queued", force=True)
            self._queues[qid]["entries"].append({"task": task["id"], "added": self.now()})
            task["execution"]["queue"] = qid
            return str(task["id"])

    def create_task(self, name: str, *, status: str = "created", project: str | None = None, **fields: Any) -> str:
        """Create a task directly in any status (not put in any queue); returns its id."""
        with self._lock:
            task = self._new_task(name, project=project, **fields)
            if status != "created":
                self._set_status(task, status, force=True)
            return str(task["id"])

    def pending(self, queue: str) -> int:
        """Number of entries in ``queue`` (name or id)."""
        with self._lock:
            return len(self._queues[self._resolve_queue(queue)]["entries"])

    def register_worker(self, worker_id: str, queues: list[str], *, timeout: int = DEFAULT_WORKER_TIMEOUT) -> None:
        """Register (or re-register) a worker listening on ``queues`` (names or ids; names are created)."""
        with self._lock:
            qids = [self._resolve_queue(q) if self._has_queue(q) else self.create_queue(q) for q in queues]
            self._register_worker(worker_id, qids, timeout, ip="127.0.0.1")

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def ping_worker(self, worker_id: str) -> None:
        """Refresh the worker's ``last_activity_time``/``last_report_time`` (like a status report)."""
        with self._lock:
            worker = self._live_workers()[worker_id]
            worker["last_activity_time"] = worker["last_report_time"] = self.now()

    def take_task(self, worker_id: str) -> str | None:
        """The worker pops the first task of its queues (in its queue order) and runs it."""
        with self._lock:
            worker = self._live_workers()[worker_id]
            for qid in worker["queues"]:
                queue = self._queues.get(qid)
                if queue is None or not queue["entries"]:
                    continue
                entry = queue["entries"].pop(0)
                task = self._tasks[entry["task"]]
                self._set_status(task, "in_progress", force=True, started=self.now())
                task["last_worker"] = worker_id
                task["last_worker_report"] = self.now()
                worker["task"] = task["id"]
                worker["queue"] = qid
                worker["last_activity_time"] = worker["last_report_time"] = self.now()
                return str(task["id"])
            worker["last_activity_time"] = self.now()
            return None

    def finish_task(self, worker_id: str, status: str = "completed") -> str | None:
        """The worker ends its current task with ``status``; returns the task id (None if idle)."""
        with self._lock:
            worker = self._live_workers()[worker_id]
            task_id = worker.get("task")
            if not task_id:
                return None
            task = self._tasks.get(task_id)
            if task is not None:
                extra: JSON = {"completed": self.now()} if status in ("completed", "failed", "stopped") else {}
                self._set_status(task, status, force=True, **extra)
            worker["task"] = None
            worker["last_activity_time"] = worker["last_report_time"] = self.now()
            return str(task_id)

    def task(self, task_id: str) -> JSON:
        """The stored task as the API renders it, plus ``queue`` = name of the queue whose entries
        currently hold the task (None if it waits in none) and ``queue_id``."""
        with self._lock:
            task = _render_dict(self._tasks[task_id])
            qid = self._queue_holding(task_id)
            task["queue_id"] = qid
            task["queue"] = self._queues[qid]["name"] if qid else None
            return task

    def tasks(self) -> dict[str, JSON]:
        with self._lock:
            return {tid: self.task(tid) for tid in self._tasks}

    def workers(self) -> dict[str, JSON]:
        """Live (not expired) workers, rendered as ``workers.get_all`` returns them, by id."""
        with self._lock:
            return {wid: self._render_worker(w) for wid, w in self._live_workers().items()}

    def queues(self) -> dict[str, JSON]:
        """Queues rendered as ``queues.get_all`` returns them, by name."""
        with self._lock:
            return {q["name"]: _render(q) for q in self._queues.values()}

    def events(self, task_id: str | None = None, type: str | None = None) -> list[JSON]:
        """Events received by ``events.add_batch``/``events.add``, optionally filtered."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._events
                if (task_id is None or e.get("task") == task_id) and (type is None or e.get("type") == type)
            ]

    def files(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._files)

    # ------------------------------------------------------------------ internal model
    def _has_queue(self, ref: str) -> bool:
        return ref in self._queues or self._queue_by_name(ref) is not None

    def _queue_by_name(self, name: str) -> JSON | None:
        return next((q for q in self._queues.values() if q["name"] == name), None)

    def _resolve_queue(self, ref: str) -> str:
        """Queue id from a name or id (KeyError if unknown)."""
        queue = self._queue_by_name(ref)
        if queue is not None:
            return str(queue["id"])
        if ref in self._queues:
            return ref
        raise KeyError(f"no queue {ref!r}")

    def _create_queue(self, name: str, tags: list[str], system_tags: list[str]) -> str:
        qid = _new_id()
        now = self.now()
        self._queues[qid] = {
            "id": qid,
            "name": name,
            "display_name": name,
            "user": self.user["id"],
            "company": self.company["id"],
            "created": now,
            "last_update": now,
            "tags": list(tags),
            "system_tags": list(system_tags),
            "entries": [],
            "metadata": {},
        }
        return qid

    def _queue_holding(self, task_id: str) -> str | None:
        for qid, queue in self._queues.items():
            if any(e["task"] == task_id for e in queue["entries"]):
                return qid
        return None

    def _remove_from_queues(self, task_id: str) -> int:
        removed = 0
        for queue in self._queues.values():
            before = len(queue["entries"])
            queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
            removed += before - len(queue["entries"])
        return removed

    def _new_task(self, name: str, *, project: str | None = None, **fields: Any) -> JSON:
        tid = _new_id()
        now = self.now()
        task: JSON = {
            "id": tid,
            "name": name,
            "type": "training",
            "status": "created",
            "status_reason": "",
            "status_message": "",
            "project": project,
            "user": self.user["id"],
            "company": self.company["id"],
            "created": now,
            "last_update": now,
            "last_change": now,
            "status_changed": now,
            "tags": [],
            "system_tags": [],
            "comment": "",
            "execution": {},
            "last_iteration": 0,
        }
        task.update(copy.deepcopy(fields))
        if not isinstance(task.get("execution"), dict):
            task["execution"] = {}
        self._tasks[tid] = task
        return task

    def _get_task(self, task_id: Any) -> JSON:
        task = self._tasks.get(str(task_id)) if task_id else None
        if task is None:
            raise ApiError(400, 101, f"Invalid task id: id={task_id}")
        return task

    def _set_status(
        self,
        task: JSON,
        new_status: str,
        *,
        force: bool = False,
        allow_same: bool = True,
        reason: str | None = None,
        message: str | None = None,
        **extra: Any,
    ) -> JSON:
        current = str(task.get("status", "created"))
        if new_status not in STATE_MACHINE:
            raise ApiError(400, 12, f"Validation error: invalid status {new_status!r}")
        if not force:
            if new_status != current and new_status not in STATE_MACHINE.get(current, frozenset()):
                raise ApiError(400, 110, f"Invalid status change: current_status={current}, new_status={new_status}")
            if new_status == current and not allow_same:
                raise ApiError(
                    400, 110, f"Task already in requested status: current_status={current}, new_status={new_status}"
                )
        now = self.now()
        fields: JSON = {
            "status": new_status,
            "status_reason": reason or "",
            "status_message": message or "",
            "status_changed": now,
            "last_update": now,
            "last_change": now,
        }
        fields.update(extra)
        task.update(fields)
        if new_status != "queued":
            self._remove_from_queues(str(task["id"]))
        return _render_dict(fields)

    def _register_worker(
        self, worker_id: str, qids: list[str], timeout: int, ip: str, user: JSON | None = None
    ) -> JSON:
        now = self.now()
        user = user or self.user
        worker: JSON = {
            "id": worker_id,
            "key": f"worker_{self.company['id']}_{user['id']}_{worker_id}",
            "user": dict(user),
            "company": dict(self.company),
            "ip": ip,
            "register_time": now,
            "register_timeout": int(timeout or DEFAULT_WORKER_TIMEOUT),
            "last_activity_time": now,
            "last_report_time": None,
            "task": None,
            "queue": None,
            "queues": list(qids),
            "tags": [],
            "system_tags": [],
        }
        self._workers[self._worker_key(user, worker_id)] = worker
        return worker

    def _live_workers(self) -> dict[str, JSON]:
        """Drop workers whose registration expired (server: redis TTL from the last save)."""
        now = self.now()
        for wid, worker in list(self._workers.items()):
            if worker["last_activity_time"] + worker["register_timeout"] < now:
                del self._workers[wid]
        return self._workers

    def _queue_entry(self, qid: str | None) -> JSON | None:
        if not qid:
            return None
        queue = self._queues.get(qid)
        if queue is None:
            return {"id": qid, "name": None, "num_tasks": 0, "next_task": None}
        next_task = None
        if queue["entries"]:
            first = queue["entries"][0]["task"]
            next_task = {"id": first, "name": self._tasks.get(first, {}).get("name")}
        return {
            "id": qid,
            "name": queue["name"],
            "display_name": queue.get("display_name"),
            "num_tasks": len(queue["entries"]),
            "next_task": next_task,
        }

    def _render_worker(self, worker: JSON) -> JSON:
        out: JSON = {k: v for k, v in worker.items() if k not in ("task", "queue", "queues", "register_timeout")}
        task_id = worker.get("task")
        out["task"] = None
        out["project"] = None
        if task_id:
            task = self._tasks.get(task_id, {})
            started = task.get("started")
            out["task"] = {
                "id": task_id,
                "name": task.get("name"),
                "running_time": int((self.now() - started) * 1000) if started else 0,
                "last_iteration": task.get("last_iteration", 0),
            }
            project = self._projects.get(task.get("project") or "")
            if project:
                out["project"] = {"id": project["id"], "name": project["name"]}
        out["queue"] = self._queue_entry(worker.get("queue"))
        out["queues"] = [self._queue_entry(q) for q in worker.get("queues", [])]
        return _render_dict(out)

    # ------------------------------------------------------------------ HTTP plumbing
    def _handle(self, req: _Handler) -> None:
        split = urlsplit(req.path)
        match = _API_PATH.match(split.path)
        if match is None:
            if self._down_mode == "reset":
                self._reset_connection(req)
            else:
                self._handle_file(req, split.path)
            return
        endpoint = f"{match.group('service')}.{match.group('action')}"
        version = match.group("version") or self.api_version
        raw = self._read_body(req)
        try:
            body = self._parse_body(raw, str(req.headers.get("Content-Type") or ""), split.query)
        except ApiError as err:
            with self._lock:
                self._calls.append((endpoint, {"_raw": raw.decode("utf-8", "replace")}))
            self._send_json(req, self._envelope(endpoint, version, err.code, err.subcode, err.msg, {}), err.code)
            return
        with self._lock:
            self._calls.append((endpoint, copy.deepcopy(body)))
            slow, garbage, down = self._slow, self._garbage, self._down_mode
            rule = self._take_fail_rule(endpoint)
        if down == "reset":
            self._reset_connection(req)
            return
        if slow > 0 and self._stopping.wait(slow):
            self._reset_connection(req)  # server stopped while the answer was delayed
            return
        if down == "503":
            msg = "Service Unavailable (fake server down)"
            self._send_json(req, self._envelope(endpoint, version, 503, 0, msg, {}), 503)
            return
        if garbage:
            self._send_raw(req, 200, b"<html><body>not json at all</body></html>", "text/html")
            return
        if rule is not None:
            status, msg = int(rule[2]), str(rule[3])
            self._send_json(req, self._envelope(endpoint, version, status, 0, msg, {}), status)
            return
        try:
            req.caller = self._authorize(req.headers)
            data = self._dispatch(endpoint, body, req)
            with self._lock:
                rewrite = self._rewrites.get(endpoint)
            if rewrite is not None:
                data = rewrite(copy.deepcopy(data))
            code, subcode, msg = 200, 0, "OK"
        except ApiError as err:
            data, code, subcode, msg = {}, err.code, err.subcode, err.msg
        except Exception as ex:  # a real server answers 500 on its own bugs too
            data, code, subcode, msg = {}, 500, 0, f"General server error: {type(ex).__name__}: {ex}"
        self._send_json(req, self._envelope(endpoint, version, code, subcode, msg, data), code)

    def _take_fail_rule(self, endpoint: str) -> list[Any] | None:
        for rule in self._fail_rules:
            if rule[0] is None or rule[0] == endpoint:
                rule[1] -= 1
                if rule[1] <= 0:
                    self._fail_rules.remove(rule)
                return rule
        return None

    @staticmethod
    def _read_body(req: _Handler) -> bytes:
        length = int(req.headers.get("Content-Length") or 0)
        return req.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _parse_body(raw: bytes, content_type: str, query: str) -> JSON:
        body: JSON = {}
        text = raw.decode("utf-8", "replace").strip()
        if text:
            try:
                if "json-lines" in content_type:
                    body = {"batch": [json.loads(line) for line in text.splitlines() if line.strip()]}
                else:
                    parsed = json.loads(text)
                    body = parsed if isinstance(parsed, dict) else {"batch": parsed}
            except ValueError as ex:
                raise ApiError(400, 12, f"Validation error: invalid JSON body ({ex})") from ex
        for key, values in parse_qs(query).items():
            body.setdefault(key, values[0] if len(values) == 1 else values)
        return body

    def _envelope(self, endpoint: str, version: str, code: int, subcode: int, msg: str, data: JSON) -> JSON:
        trx = _new_id()
        return {
            "meta": {
                "id": trx,
                "trx": trx,
                "endpoint": {"name": endpoint, "requested_version": version, "actual_version": version},
                "result_code": code,
                "result_subcode": subcode,
                "result_msg": msg,
                "error_stack": None,
                "error_data": {},
            },
            "data": data,
        }

    @staticmethod
    def _send_raw(req: _Handler, status: int, payload: bytes, content_type: str) -> None:
        try:
            req.send_response(status)
            req.send_header("Content-Type", content_type)
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            req.wfile.write(payload)
        except OSError:
            pass  # client went away

    def _send_json(self, req: _Handler, envelope: JSON, status: int) -> None:
        self._send_raw(req, status, json.dumps(envelope).encode(), "application/json")

    @staticmethod
    def _reset_connection(req: _Handler) -> None:
        req.close_connection = True
        try:
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            req.connection.close()
        except OSError:
            pass

    def _handle_file(self, req: _Handler, path: str) -> None:
        raw = self._read_body(req)
        content_type = str(req.headers.get("Content-Type") or "")
        if req.command == "POST" and content_type.startswith("multipart/form-data"):
            # the SDK's http storage driver (artifacts, debug images): one form field per file, named
            # by its path under the URL's path, as ClearML's fileserver stores it; answers the paths
            stored_paths = []
            with self._lock:
                for name, data in _multipart_files(raw, content_type):
                    target = "/" + "/".join(p for p in (path.strip("/"), name.lstrip("/")) if p)
                    self._calls.append(("files", {"method": "POST", "path": target, "size": len(data)}))
                    self._files[target] = data
                    stored_paths.append(target.lstrip("/"))
            self._send_raw(req, 200, json.dumps(stored_paths).encode(), "application/json")
            return
        with self._lock:
            self._calls.append(("files", {"method": req.command, "path": path, "size": len(raw)}))
            if req.command in ("POST", "PUT"):
                self._files[path] = raw
                stored: bytes | None = b""
            elif req.command == "DELETE":
                stored = self._files.pop(path, None)
            else:
                stored = self._files.get(path)
        if stored is None:
            self._send_raw(req, 404, b"not found", "text/plain")
        elif req.command == "GET":
            self._send_raw(req, 200, stored, "application/octet-stream")
        else:
            self._send_raw(req, 200, b'{"ok": true}', "application/json")

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, endpoint: str, body: JSON, req: _Handler) -> JSON:
        handler: Callable[[JSON, _Handler], JSON] | None = getattr(self, "_ep_" + endpoint.replace(".", "__"), None)
        with self._lock:
            if handler is not None:
                return handler(body, req)
            return self._generic(endpoint, body)

    @staticmethod
    def _generic(endpoint: str, body: JSON) -> JSON:
        """Record-only endpoints: an empty-ish, schema-compatible answer."""
        service, _, action = endpoint.partition(".")
        if action in ("get_all", "get_all_ex"):
            return {service: []}
        if action.startswith("get_"):
            return {}
        if action in ("delete", "delete_many", "archive_many", "unarchive_many"):
            return {"deleted": 1, "updated": 1}
        return {"updated": 1, "fields": {}}

    # --- auth / misc
    def _ep_auth__login(self, body: JSON, req: _Handler) -> JSON:
        ttl = body.get("expiration_sec")
        return {"token": self.make_token(int(ttl) if ttl else None, user=_caller(req))}

    def _ep_auth__logout(self, body: JSON, req: _Handler) -> JSON:
        return {}

    def _ep_debug__ping(self, body: JSON, req: _Handler) -> JSON:
        return {"msg": "ClearML server"}

    def _ep_server__info(self, body: JSON, req: _Handler) -> JSON:
        return {"version": SERVER_VERSION, "build": "fake", "commit": "fake", "api_version": self.api_version}

    def _ep_users__get_current_user(self, body: JSON, req: _Handler) -> JSON:
        user = dict(_caller(req) or self.user, company=dict(self.company), role="user", email="fake@example.invalid")
        return {"user": user, "getting_started": {}, "settings": {}}

    def _ep_users__get_vaults(self, body: JSON, req: _Handler) -> JSON:
        # the server's enabled config vaults of the caller (query params arrive merged into body)
        return {"vaults": [dict(v) for v in self._vaults if v.get("enabled", True)]}

    def add_vault(self, data: str, description: str = "", *, enabled: bool = True) -> None:
        """Store a config vault (HOCON text) for the user, as the web UI's settings page does."""
        with self._lock:
            self._vaults.append(
                {
                    "id": _new_id(),
                    "data": data,
                    "description": description,
                    "enabled": enabled,
                    "type": "config",
                    "format": "hocon",
                }
            )

    def _ep_users__get_all(self, body: JSON, req: _Handler) -> JSON:
        return {"users": [dict(self.user, company=self.company["id"])]}

    # --- queues
    def _queue_arg(self, body: JSON, key: str = "queue") -> JSON:
        qid = body.get(key)
        queue = self._queues.get(str(qid)) if qid else None
        if queue is None:
            raise ApiError(400, 701, f"Invalid queue id: id={qid}")
        return queue

    def _ep_queues__create(self, body: JSON, req: _Handler) -> JSON:
        name = body.get("name")
        if not name or not isinstance(name, str):
            raise ApiError(400, 11, "Missing required fields: name")
        if self._queue_by_name(name) is not None:
            raise ApiError(
                400, 801, f"Value combination already exists (unique field already contains this value): name={name}"
            )
        return {"id": self._create_queue(name, _as_list(body.get("tags")), _as_list(body.get("system_tags")))}

    def _filter_queues(self, body: JSON) -> list[JSON]:
        result = list(self._queues.values())
        ids = _as_list(body.get("id"))
        if ids:
            result = [q for q in result if q["id"] in ids]
        name = body.get("name")
        if name:
            try:
                pattern = re.compile(str(name))
            except re.error as ex:
                raise ApiError(400, 21, f"Malformed regular expression: {ex}") from ex
            result = [q for q in result if pattern.search(q["name"])]
        if body.get("tags"):
            result = [q for q in result if _tags_match(q["tags"], _as_list(body["tags"]))]
        if body.get("system_tags"):
            result = [q for q in result if _tags_match(q["system_tags"], _as_list(body["system_tags"]))]
        if not body.get("search_hidden") and not ids:
            result = [q for q in result if "hidden" not in q["system_tags"]]
        return result

    def _render_queue(self, queue: JSON, body: JSON) -> JSON:
        out = _render(queue)
        max_entries = body.get("max_task_entries")
        if isinstance(max_entries, int) and max_entries >= 0:
            out["entries"] = out["entries"][:max_entries]
        return _project(out, _as_list(body.get("only_fields")) or None)

    def _ep_queues__get_all(self, body: JSON, req: _Handler) -> JSON:
        queues = self._page(self._filter_queues(body), body)
        return {"queues": [self._render_queue(q, body) for q in queues]}

    _ep_queues__get_all_ex = _ep_queues__get_all

    def _ep_queues__get_by_id(self, body: JSON, req: _Handler) -> JSON:
        return {"queue": self._render_queue(self._queue_arg(body), body)}

    def _ep_queues__get_default(self, body: JSON, req: _Handler) -> JSON:
        defaults = [q for q in self._queues.values() if "default" in q["system_tags"]]
        if not defaults:
            raise ApiError(400, 707, "No queue is tagged as the default queue for this company")
        if len(defaults) > 1:
            raise ApiError(400, 708, "More than one queue is tagged as the default queue for this company")
        return {"id": defaults[0]["id"], "name": defaults[0]["name"]}

    def _ep_queues__delete(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        if queue["entries"] and not body.get("force"):
            raise ApiError(400, 702, f"Queue is not empty: queue={queue['id']}")
        del self._queues[queue["id"]]
        return {"deleted": 1}

    def _ep_queues__update(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        fields: JSON = {k: body[k] for k in ("name", "tags", "system_tags") if k in body}
        queue.update(fields)
        queue["last_update"] = self.now()
        return {"updated": 1, "fields": fields}

    def _ep_queues__add_task(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        task = self._get_task(body.get("task"))
        if any(e["task"] == task["id"] for e in queue["entries"]):
            raise ApiError(400, 706, f"Failed adding task to queue since task is already queued: task={task['id']}")
        queue["entries"].append({"task": task["id"], "added": self.now()})
        return {"added": 1}

    def _ep_queues__remove_task(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        before = len(queue["entries"])
        queue["entries"] = [e for e in queue["entries"] if e["task"] != body.get("task")]
        return {"removed": before - len(queue["entries"])}

    def _ep_queues__get_next_task(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        while queue["entries"]:
            entry = queue["entries"].pop(0)
            task = self._tasks.get(entry["task"])
            if task is None or task.get("status") != "queued":
                continue
            out: JSON = {"entry": _render(entry)}
            if body.get("get_task_info"):
                out["task_info"] = {"company": task["company"], "user": task["user"]}
            return out
        return {}

    def _ep_queues__peek_task(self, body: JSON, req: _Handler) -> JSON:
        queue = self._queue_arg(body)
        return {"task": queue["entries"][0]["task"] if queue["entries"] else None}

    def _ep_queues__get_num_entries(self, body: JSON, req: _Handler) -> JSON:
        return {"num": len(self._queue_arg(body)["entries"])}

    def _move(self, body: JSON, where: str) -> JSON:
        queue = self._queue_arg(body)
        entries = queue["entries"]
        index = next((i for i, e in enumerate(entries) if e["task"] == body.get("task")), None)
        if index is None:
            raise ApiError(400, 703, "Invalid queue id or task not in queue")
        entry = entries.pop(index)
        if where == "front":
            entries.insert(0, entry)
            return {"position": 0}
        entries.append(entry)
        return {"position": len(entries) - 1}

    def _ep_queues__move_task_to_front(self, body: JSON, req: _Handler) -> JSON:
        return self._move(body, "front")

    def _ep_queues__move_task_to_back(self, body: JSON, req: _Handler) -> JSON:
        return self._move(body, "back")

    # --- workers
    def _ep_workers__register(self, body: JSON, req: _Handler) -> JSON:
        worker = body.get("worker")
        if not worker:
            raise ApiError(400, 11, "Missing required fields: worker")
        qids = [str(q) for q in _as_list(body.get("queues"))]
        invalid = [q for q in qids if q not in self._queues]
        if invalid:
            raise ApiError(400, 701, f"Invalid queue id: ids={invalid}")
        entry = self._register_worker(
            str(worker), qids, int(body.get("timeout") or 0), ip=req.client_address[0], user=_caller(req)
        )
        entry["tags"] = _as_list(body.get("tags"))
        entry["system_tags"] = _as_list(body.get("system_tags"))
        return {}

    def _ep_workers__unregister(self, body: JSON, req: _Handler) -> JSON:
        worker = str(body.get("worker") or "")
        if self._live_workers().pop(self._worker_key(_caller(req), worker), None) is None:
            raise ApiError(400, 1004, f"Worker is not registered: worker={worker}")
        return {}

    def _ep_workers__status_report(self, body: JSON, req: _Handler) -> JSON:
        worker_id = str(body.get("worker") or "")
        if not worker_id:
            raise ApiError(400, 11, "Missing required fields: worker")
        worker = self._live_workers().get(self._worker_key(_caller(req), worker_id))
        if worker is None:  # apiserver.workers.auto_register: true
            worker = self._register_worker(
                worker_id, [], DEFAULT_WORKER_TIMEOUT, ip=req.client_address[0], user=_caller(req)
            )
        now = self.now()
        worker["ip"] = req.client_address[0]
        if body.get("tags") is not None:
            worker["tags"] = _as_list(body["tags"])
        if body.get("system_tags") is not None:
            worker["system_tags"] = _as_list(body["system_tags"])
        worker["last_activity_time"] = now
        worker["queue"] = body.get("queue")
        if body.get("queues"):
            worker["queues"] = [str(q) for q in _as_list(body["queues"])]
        task_id = body.get("task")
        if task_id:
            task = self._get_task(task_id)
            task.update(last_worker=worker_id, last_worker_report=now, last_update=now, last_change=now)
            worker["task"] = task["id"]
        else:
            worker["task"] = None
        worker["last_report_time"] = now
        return {}

    def _ep_workers__get_all(self, body: JSON, req: _Handler) -> JSON:
        workers = list(self._live_workers().values())
        last_seen = body.get("last_seen")
        if last_seen:
            ref = self.now() - max(1, int(last_seen))
            workers = [w for w in workers if w["last_activity_time"] >= ref]
        if body.get("tags"):
            workers = [w for w in workers if _tags_match(w["tags"], _as_list(body["tags"]))]
        if body.get("system_tags"):
            workers = [w for w in workers if _tags_match(w["system_tags"], _as_list(body["system_tags"]))]
        return {"workers": [self._render_worker(w) for w in workers]}

    def _ep_workers__get_runtime_properties(self, body: JSON, req: _Handler) -> JSON:
        """What ``clearml-agent daemon`` asks before each poll of its queues (uptime/downtime
        windows, ``max_num_instances``): the properties set for the worker, none by default."""
        worker = str(body.get("worker") or "")
        if not worker:
            raise ApiError(400, 11, "Missing required fields: worker")
        key = self._worker_key(_caller(req), worker)
        return {"runtime_properties": copy.deepcopy(self._runtime_properties.get(key, []))}

    def _ep_workers__set_runtime_properties(self, body: JSON, req: _Handler) -> JSON:
        worker = str(body.get("worker") or "")
        if not worker:
            raise ApiError(400, 11, "Missing required fields: worker")
        stored = self._runtime_properties.setdefault(self._worker_key(_caller(req), worker), [])
        for item in _as_list(body.get("runtime_properties")):
            if isinstance(item, dict) and item.get("key"):
                stored[:] = [p for p in stored if p.get("key") != item["key"]]
                stored.append(
                    {"key": str(item["key"]), "value": str(item.get("value", "")), "expiry": item.get("expiry")}
                )
        return {}

    # --- projects
    def _ep_projects__create(self, body: JSON, req: _Handler) -> JSON:
        name = body.get("name")
        if not name:
            raise ApiError(400, 11, "Missing required fields: name")
        if any(p["name"] == name for p in self._projects.values()):
            raise ApiError(
                400, 801, f"Value combination already exists (unique field already contains this value): name={name}"
            )
        pid = _new_id()
        now = self.now()
        self._projects[pid] = dict(
            {k: v for k, v in body.items() if k not in ("id", "method")},
            id=pid,
            user=self.user["id"],
            company=self.company["id"],
            created=now,
            last_update=now,
        )
        return {"id": pid}

    def _ep_projects__get_all(self, body: JSON, req: _Handler) -> JSON:
        result = list(self._projects.values())
        ids = _as_list(body.get("id"))
        if ids:
            result = [p for p in result if p["id"] in ids]
        if body.get("name"):
            pattern = re.compile(str(body["name"]))
            result = [p for p in result if pattern.search(p["name"])]
        only = _as_list(body.get("only_fields")) or None
        return {"projects": [_project(_render(p), only) for p in self._page(result, body)]}

    _ep_projects__get_all_ex = _ep_projects__get_all

    def _ep_projects__get_by_id(self, body: JSON, req: _Handler) -> JSON:
        project = self._projects.get(str(body.get("project")))
        if project is None:
            raise ApiError(400, 401, f"Invalid project id: id={body.get('project')}")
        return {"project": _render(project)}

    # --- tasks
    @staticmethod
    def _page(items: list[JSON], body: JSON) -> list[JSON]:
        page, size = body.get("page"), body.get("page_size")
        if isinstance(page, int) and isinstance(size, int) and size > 0:
            return items[page * size : (page + 1) * size]
        size = body.get("size")
        if isinstance(size, int) and size > 0:
            return items[:size]
        return items

    def _ep_tasks__create(self, body: JSON, req: _Handler) -> JSON:
        missing = [k for k in ("name", "type") if not body.get(k)]
        if missing:
            raise ApiError(400, 11, f"Missing required fields: {', '.join(missing)}")
        fields = {k: v for k, v in body.items() if k not in ("id", "name", "status", "user", "company", "method")}
        task = self._new_task(str(body["name"]), **fields)
        return {"id": task["id"]}

    def _ep_tasks__edit(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        allowed = ("created", "in_progress") if body.get("force") else ("created",)
        if task["status"] not in allowed:
            raise ApiError(400, 110, f"Invalid task status: expected=created, status={task['status']}")
        fields = {k: v for k, v in body.items() if k not in ("task", "force", "id", "status", "method")}
        task.update(copy.deepcopy(fields))
        task["last_update"] = task["last_change"] = self.now()
        return {"updated": 1, "fields": fields}

    def _ep_tasks__clone(self, body: JSON, req: _Handler) -> JSON:
        """As the server's ``TaskBLL.clone_task``: a new ``created`` task with the source's type, script,
        container, hyper-parameters, configuration and execution (its output artifacts and queue left
        behind); name, comment, parent, project and tags as given, else the source's. The SDK's
        ``Task.clone`` calls this."""
        source = self._get_task(body.get("task"))
        execution = copy.deepcopy(source.get("execution") or {})
        execution.pop("queue", None)
        execution.update(copy.deepcopy(body.get("execution_overrides") or {}))
        if isinstance(execution.get("artifacts"), list):
            execution["artifacts"] = [a for a in execution["artifacts"] if a.get("mode", "output") != "output"]
        fields = {
            key: copy.deepcopy(source[key])
            for key in ("type", "script", "container", "hyperparams", "configuration", "output")
            if key in source
        }
        for key in ("hyperparams", "configuration"):
            if body.get(f"new_{key}") is not None:
                fields[key] = copy.deepcopy(body[f"new_{key}"])
        task = self._new_task(
            str(body.get("new_task_name") or source["name"]),
            project=body.get("new_task_project") or source.get("project"),
            **fields,
            execution=execution,
            comment=body.get("new_task_comment") or source.get("comment", ""),
            parent=body.get("new_task_parent") or source.get("parent"),
            tags=list(body.get("new_task_tags") or source.get("tags") or []),
            system_tags=list(body.get("new_task_system_tags") or []),
        )
        return {"id": task["id"]}

    def _ep_tasks__add_or_update_artifacts(self, body: JSON, req: _Handler) -> JSON:
        """Add artifacts to a task, replacing those of the same key and mode; a task that is not
        ``created`` only with ``force`` (the SDK sends it)."""
        task = self._get_task(body.get("task"))
        if task["status"] != "created" and not body.get("force"):
            raise ApiError(400, 110, f"Invalid task status: expected=created, status={task['status']}")
        execution = task.setdefault("execution", {})
        artifacts = [a for a in execution.get("artifacts") or [] if isinstance(a, dict)]
        added = [dict(copy.deepcopy(a), mode=a.get("mode") or "output") for a in _as_list(body.get("artifacts"))]
        for item in added:
            if not item.get("key"):
                raise ApiError(400, 12, "Validation error: an artifact needs a key")
        keys = {(a["key"], a["mode"]) for a in added}
        execution["artifacts"] = [a for a in artifacts if (a.get("key"), a.get("mode", "output")) not in keys] + added
        task["last_update"] = task["last_change"] = self.now()
        return {"updated": len(added)}

    def _ep_tasks__update(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        fields = {k: v for k, v in body.items() if k in ("name", "comment", "tags", "system_tags", "project")}
        task.update(copy.deepcopy(fields))
        task["last_update"] = task["last_change"] = self.now()
        return {"updated": 1, "fields": fields}

    def _filter_tasks(self, body: JSON) -> list[JSON]:
        result = list(self._tasks.values())
        ids = _as_list(body.get("id"))
        if ids:
            result = [t for t in result if t["id"] in ids]
        if body.get("name"):
            try:
                pattern = re.compile(str(body["name"]))
            except re.error as ex:
                raise ApiError(400, 21, f"Malformed regular expression: {ex}") from ex
            result = [t for t in result if pattern.search(str(t.get("name", "")))]
        for key in ("project", "status", "type", "user", "parent"):
            wanted = _as_list(body.get(key))
            if wanted:
                result = [t for t in result if t.get(key) in wanted]
        for key in ("tags", "system_tags"):
            if body.get(key):
                result = [t for t in result if _tags_match(t.get(key) or [], _as_list(body[key]))]
        return result

    def _ep_tasks__get_all(self, body: JSON, req: _Handler) -> JSON:
        only = _as_list(body.get("only_fields")) or None
        tasks = self._page(self._filter_tasks(body), body)
        return {"tasks": [_project(_render(t), only) for t in tasks]}

    _ep_tasks__get_all_ex = _ep_tasks__get_all

    def _ep_tasks__get_by_id(self, body: JSON, req: _Handler) -> JSON:
        return {"task": _render(self._get_task(body.get("task")))}

    def _status_call(self, body: JSON, new_status: str, **extra: Any) -> JSON:
        task = self._get_task(body.get("task"))
        fields = self._set_status(
            task,
            new_status,
            force=bool(body.get("force")),
            reason=body.get("status_reason"),
            message=body.get("status_message"),
            **extra,
        )
        return {"updated": 1, "fields": fields}

    def _ep_tasks__started(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        result = self._status_call(body, "in_progress", started=task.get("started") or self.now())
        result["started"] = 1
        return result

    def _ep_tasks__stopped(self, body: JSON, req: _Handler) -> JSON:
        return self._status_call(body, "stopped", completed=self.now())

    def _ep_tasks__failed(self, body: JSON, req: _Handler) -> JSON:
        return self._status_call(body, "failed", completed=self.now())

    def _ep_tasks__completed(self, body: JSON, req: _Handler) -> JSON:
        return self._status_call(body, "completed", completed=self.now())

    def _ep_tasks__close(self, body: JSON, req: _Handler) -> JSON:
        return self._status_call(body, "closed")

    def _ep_tasks__publish(self, body: JSON, req: _Handler) -> JSON:
        return self._status_call(body, "published", published=self.now())

    def _ep_tasks__stop(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        last_update = task.get("last_update") or 0
        run_by_worker = bool(task.get("last_worker")) and self.now() - last_update < TASK_UPDATE_TIMEOUT
        development = "development" in (task.get("system_tags") or [])
        if task["status"] == "queued" or development or not run_by_worker:
            fields = self._set_status(
                task,
                "stopped",
                force=bool(body.get("force")),
                reason=body.get("status_reason"),
                message="Stopped by fake",
            )
        else:
            fields = self._set_status(
                task,
                task["status"],
                force=bool(body.get("force")),
                reason=body.get("status_reason"),
                message="stopping",
            )
        return {"updated": 1, "fields": fields}

    def _ep_tasks__enqueue(self, body: JSON, req: _Handler) -> JSON:
        queue_id, queue_name = body.get("queue"), body.get("queue_name")
        if queue_id and queue_name:
            raise ApiError(400, 12, "Validation error: Either queue id or queue name should be provided")
        if queue_name:
            existing = self._queue_by_name(str(queue_name))
            queue_id = existing["id"] if existing else self._create_queue(str(queue_name), [], [])
        if not queue_id:
            queue_id = self._ep_queues__get_default({}, req)["id"]
        queue = self._queue_arg({"queue": queue_id})
        task = self._get_task(body.get("task"))
        previous = task["status"]
        fields = self._set_status(
            task,
            "queued",
            force=bool(body.get("force")),
            allow_same=False,
            reason=body.get("status_reason"),
            message=body.get("status_message"),
            enqueue_status=previous,
        )
        if any(e["task"] == task["id"] for e in queue["entries"]):
            task["status"] = previous  # the server reverts the status change
            raise ApiError(400, 706, f"Failed adding task to queue since task is already queued: task={task['id']}")
        queue["entries"].append({"task": task["id"], "added": self.now()})
        task["execution"] = dict(task.get("execution") or {}, queue=queue["id"])
        task["system_tags"] = [t for t in task.get("system_tags") or [] if t != "development"]
        fields["execution.queue"] = queue["id"]
        return {"queued": 1, "updated": 1, "fields": fields}

    def _ep_tasks__dequeue(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        if task["status"] != "queued":
            raise ApiError(400, 110, f"Invalid task status: expected=queued, status={task['status']}")
        back_to = task.get("enqueue_status") or "created"
        if back_to not in ("created", "stopped", "failed"):
            back_to = "created"
        fields = self._set_status(
            task, back_to, force=True, reason=body.get("status_reason"), message=body.get("status_message")
        )
        return {"dequeued": 1, "updated": 1, "fields": fields}

    def _ep_tasks__reset(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        if task["status"] == "published" and not body.get("force"):
            raise ApiError(400, 110, f"Invalid task status: status={task['status']}")
        dequeued = self._remove_from_queues(str(task["id"]))
        execution = (
            {} if body.get("clear_all") else {k: v for k, v in (task.get("execution") or {}).items() if k != "queue"}
        )
        for key in ("started", "completed", "published", "last_worker", "last_worker_report", "enqueue_status"):
            task.pop(key, None)
        task["execution"] = execution
        task["last_iteration"] = 0
        fields = self._set_status(task, "created", force=True, reason="reset", message="reset")
        return {"updated": 1, "fields": fields, "dequeued": {"removed": dequeued} if dequeued else {}}

    def _ep_tasks__ping(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        task["last_update"] = self.now()
        return {}

    def _ep_tasks__edit_hyper_params(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        params = task.setdefault("hyperparams", {})
        if body.get("replace_hyperparams") == "all":
            params.clear()
        for item in _as_list(body.get("hyperparams")):
            if isinstance(item, dict):
                params.setdefault(str(item.get("section", "General")), {})[str(item.get("name"))] = copy.deepcopy(item)
        return {"updated": 1}

    def _ep_tasks__get_hyper_params(self, body: JSON, req: _Handler) -> JSON:
        params = []
        for task_id in _as_list(body.get("tasks")):
            task = self._get_task(task_id)
            items = [
                copy.deepcopy(item) for section in (task.get("hyperparams") or {}).values() for item in section.values()
            ]
            params.append({"task": task["id"], "hyperparams": items})
        return {"params": params}

    def _ep_tasks__edit_configuration(self, body: JSON, req: _Handler) -> JSON:
        task = self._get_task(body.get("task"))
        config = task.setdefault("configuration", {})
        if body.get("replace_configuration"):
            config.clear()
        for item in _as_list(body.get("configuration")):
            if isinstance(item, dict):
                config[str(item.get("name"))] = copy.deepcopy(item)
        return {"updated": 1}

    # --- events
    def _store_events(self, events: list[Any]) -> int:
        added = 0
        for event in events:
            if not isinstance(event, dict):
                continue
            self._events.append(copy.deepcopy(event))
            added += 1
            task = self._tasks.get(str(event.get("task")))
            it = event.get("iter")
            if task is not None and isinstance(it, int) and it > int(task.get("last_iteration") or 0):
                task["last_iteration"] = it
        return added

    def _ep_events__add_batch(self, body: JSON, req: _Handler) -> JSON:
        return {"added": self._store_events(_as_list(body.get("batch"))), "errors": 0, "errors_info": {}}

    def _ep_events__add(self, body: JSON, req: _Handler) -> JSON:
        self._store_events([body])
        return {}


# ---------------------------------------------------------------------- pytest fixtures
def _sdk_env_names() -> list[str]:
    return [name for name in os.environ if name.startswith(("CLEARML_", "TRAINS_"))]


def use_fake_clearml(fake: FakeClearML, monkeypatch: Any, home: Path, *, disable_update_check: bool = True) -> None:
    """Point the SDK (in this process and in children started later) at ``fake``.

    ``monkeypatch`` is a ``pytest.MonkeyPatch``.  Removes every ``CLEARML_*``/``TRAINS_*``
    variable (a stray ``CLEARML_AUTH_TOKEN`` would override the keys, ``CLEARML_OFFLINE_MODE``
    would stop all traffic), sets :meth:`FakeClearML.env`, points ``HOME`` at ``home`` and
    ``CLEARML_CONFIG_FILE`` at an empty ``home/clearml.conf`` so no real configuration is read
    (the SDK resolves ``~/clearml.conf`` when clearml is imported, but the override variable
    whenever the configuration is first loaded).  Unless ``disable_update_check`` is false it
    also marks the SDK's PyPI/updates.clear.ml check (run by ``Task.init``) as already done.
    """
    for name in _sdk_env_names():
        monkeypatch.delenv(name, raising=False)
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "clearml.conf"
    if not conf.exists():
        conf.write_text("# empty: everything comes from the CLEARML_* environment variables\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(conf))
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    try:
        from clearml.backend_interface.base import InterfaceBase
    except ImportError:  # pragma: no cover
        pass
    else:
        # Task/Model objects share one class-level session, bound to the host it first saw;
        # a test's new server needs a new one (a stale one retries a dead port for hours)
        monkeypatch.setattr(InterfaceBase, "_default_session", None)
    if disable_update_check:
        try:
            from clearml.utilities.check_updates import CheckPackageUpdates
        except ImportError:  # pragma: no cover - the fake itself does not need the SDK
            return
        monkeypatch.setattr(CheckPackageUpdates, "_package_version_checked", True)


try:
    import pytest
except ImportError:  # pragma: no cover - the server itself needs only the stdlib
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_clearml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeClearML]:
        """A fresh, started :class:`FakeClearML` (new port each test) with the SDK pointed at it.

        Sets ``CLEARML_API_HOST``/``CLEARML_WEB_HOST``/``CLEARML_FILES_HOST``/
        ``CLEARML_API_ACCESS_KEY``/``CLEARML_API_SECRET_KEY``, ``HOME=tmp_path/home`` and
        ``CLEARML_CONFIG_FILE`` (an empty file) with ``monkeypatch`` and removes every other
        ``CLEARML_*`` variable.  Create the ``APIClient`` inside the test, after this fixture.
        """
        fake = FakeClearML().start()
        use_fake_clearml(fake, monkeypatch, tmp_path / "home")
        try:
            yield fake
        finally:
            fake.stop()

    @pytest.fixture(scope="session")
    def fake_clearml_server() -> Iterator[FakeClearML]:
        """One started server for the whole session; no environment changes (see ``fake_clearml_shared``)."""
        fake = FakeClearML().start()
        try:
            yield fake
        finally:
            fake.stop()

    @pytest.fixture
    def fake_clearml_shared(
        fake_clearml_server: FakeClearML, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> FakeClearML:
        """The session server, :meth:`~FakeClearML.reset` (and restarted if a test stopped it),
        with the same environment as ``fake_clearml``."""
        fake_clearml_server.reset()
        fake_clearml_server.start()
        use_fake_clearml(fake_clearml_server, monkeypatch, tmp_path / "home")
        return fake_clearml_server


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone: ``python -m tests.fakes.clearml_server --port 8008``."""
    parser = argparse.ArgumentParser(description="Fake ClearML API server (loopback only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--access-key", default="fake-access")
    parser.add_argument("--secret-key", default="fake-secret")
    parser.add_argument("--queue", action="append", default=[], help="create this queue (repeatable)")
    args = parser.parse_args(argv)
    fake = FakeClearML(args.access_key, args.secret_key, port=args.port).start()
    for queue in args.queue:
        fake.create_queue(queue)
    for name, value in fake.env().items():
        print(f"{name}={value}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
