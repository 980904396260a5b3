"""A fake Compute Engine v1 REST server for tests (standard library only).

The real ``google-cloud-compute`` client talks to it over plain HTTP on loopback::

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1

    opts = {"api_endpoint": fake.url}
    ops = compute_v1.ZoneOperationsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=opts
    )
    instances = compute_v1.InstancesClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=opts
    )
    # insert(...).result() polls through this client; without it the poll goes to
    # compute.googleapis.com.
    instances._transport._extended_operations_services["zone_operations"] = ops

Implemented: instances insert/get/list/aggregatedList/delete/getSerialPortOutput/setLabels
(the label fingerprint must be the instance's current one, else 412 conditionNotMet),
zoneOperations get/wait/list, images get/getFromFamily, machineTypes get,
acceleratorTypes get, zones get. Answers use the real camelCase JSON shapes and the
real error body ``{"error": {"code", "message", "errors": [{"domain", "reason",
"message"}], "status"}}``.

Knobs (public attributes, restored by :meth:`FakeGCE.reset`):

* ``operation_polls`` (0): the N-th read (get or wait) of an operation answers
  ``DONE``; 0 means the insert/delete answer itself is already ``DONE`` (and
  ``.result()`` then never polls).
* ``booting_reads`` (0): an inserted instance shows ``PROVISIONING`` (``STAGING`` on
  the last one) for its first N reads through get/list/aggregatedList, ``RUNNING``
  afterwards; 0 means ``RUNNING`` at once.
* ``stopping_reads`` (0): a deleted instance shows ``STOPPING`` for N reads, then
  vanishes; 0 means it vanishes at once.
* ``strict`` (True): validate insert bodies (name, zone, machine type, image,
  accelerator types, labels, requestId UUID, GPUs need onHostMaintenance TERMINATE).
* ``aggregated_warnings`` (True): aggregatedList answers zones without instances
  on the page with the real ``NO_RESULTS_ON_PAGE`` warning entry (else omits them).
* ``page_size`` (None): the largest page any list answers, whatever ``maxResults`` asks
  (GCE caps pages at 500 the same way); a client must follow ``nextPageToken``.
* ``clock``: a callable returning an aware ``datetime``, used for timestamps.

Run standalone: ``python -m tests.fakes.gce_server --port 8089``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

BASE_URL = "https://www.googleapis.com/compute/v1/"

DEFAULT_ZONES: tuple[str, ...] = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-c",
    "europe-west4-a",
)

# name -> (guestCpus, memoryMb, accelerators)
DEFAULT_MACHINE_TYPES: dict[str, tuple[int, int, list[dict[str, Any]]]] = {
    "n1-standard-4": (4, 15360, []),
    "e2-standard-4": (4, 16384, []),
    "g2-standard-8": (
        8,
        32768,
        [{"guestAcceleratorType": "nvidia-l4", "guestAcceleratorCount": 1}],
    ),
}

# name -> (description, maximumCardsPerInstance)
DEFAULT_ACCELERATOR_TYPES: dict[str, tuple[str, int]] = {
    "nvidia-l4": ("NVIDIA L4", 8),
    "nvidia-tesla-t4": ("NVIDIA T4", 4),
}

# (project, name, family)
DEFAULT_IMAGES: tuple[tuple[str, str, str | None], ...] = (
    ("debian-cloud", "debian-12-bookworm-v20250610", "debian-12"),
    (
        "deeplearning-platform-release",
        "common-cu124-v20250325-debian-11-py310",
        "common-cu124-debian-11-py310",
    ),
    ("deeplearning-platform-release", "common-cu124-v20250325", "common-cu124"),
)

# Operation error code -> httpErrorStatusCode reported by GCE.
OPERATION_ERROR_HTTP_STATUS: dict[str, int] = {
    "ZONE_RESOURCE_POOL_EXHAUSTED": 503,
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": 503,
    "QUOTA_EXCEEDED": 403,
    "RESOURCE_NOT_FOUND": 404,
    "RESOURCE_ALREADY_EXISTS": 409,
}

# HTTP status -> canonical status string in the error body.
CANONICAL_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_PAGE = 500


class RecordedRequest(NamedTuple):
    """One request as the fake saw it. ``query`` keeps the last value per key."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


class RequestLog:
    """Thread-safe list of :class:`RecordedRequest` (iterate, index, len, clear)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def matching(self, method: str | None = None, path_regex: str | None = None) -> list[RecordedRequest]:
        """Requests whose method equals ``method`` and path matches ``path_regex``."""
        return [
            r
            for r in self.snapshot()
            if (method is None or r.method == method.upper()) and (path_regex is None or re.search(path_regex, r.path))
        ]

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> RecordedRequest:
        with self._lock:
            return self._items[index]

    def __repr__(self) -> str:
        return f"RequestLog({self.snapshot()!r})"


class GCEError(Exception):
    """Raised inside handlers; answered as a GCE error body."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
        }
        if self.status in CANONICAL_STATUS:
            err["status"] = CANONICAL_STATUS[self.status]
        if self.details:
            err["details"] = self.details
        return {"error": err}


def _not_found(resource_path: str) -> GCEError:
    return GCEError(404, "notFound", f"The resource '{resource_path}' was not found")


def _invalid(field_name: str, value: Any, why: str) -> GCEError:
    return GCEError(400, "invalid", f"Invalid value for field '{field_name}': '{value}'. {why}")


def _label_fingerprint(labels: dict[str, str]) -> str:
    """GCE's label fingerprint: changes whenever the labels do (``42WmSpB8rSM=`` for none)."""
    if not labels:
        return "42WmSpB8rSM="
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


@dataclass
class _Fault:
    method: str
    path_re: re.Pattern[str]
    error: GCEError
    times: int


@dataclass
class _OpFault:
    zone_re: re.Pattern[str]
    operation_type: str
    code: str
    message: str
    http_status: int
    http_message: str
    error_details: list[dict[str, Any]] | None
    times: int


@dataclass
class _Instance:
    project: str
    zone: str
    resource: dict[str, Any]
    booting_left: int = 0
    booting_total: int = 0
    deleting: bool = False
    stopping_left: int = 0
    serial: str = ""
    pinned: bool = False  # status set by a test: no automatic transitions


@dataclass
class _Operation:
    project: str
    zone: str
    resource: dict[str, Any]
    polls_left: int = 0
    failure: dict[str, Any] | None = None
    on_done: list[Callable[[], None]] = field(default_factory=list)


# --------------------------------------------------------------------------- filters

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<lp>\()|(?P<rp>\))|
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|
        (?P<op>!=|<=|>=|=|:|<|>)|
        (?P<word>[^\s()=!<>:"']+)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(text)
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
    return tokens


Predicate = Callable[[dict[str, Any]], bool]


def _lookup(resource: dict[str, Any], path: str) -> Any:
    cur: Any = resource
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compare(actual: Any, op: str, expected: str) -> bool:
    if op == ":":
        if expected == "*":
            return actual is not None
        if actual is None:
            return False
        if isinstance(actual, str):
            return expected in actual
        return _as_text(actual) == expected
    if op in ("eq", "ne"):
        hit = actual is not None and re.fullmatch(expected, _as_text(actual)) is not None
        return hit if op == "eq" else not hit
    if op == "=":
        return actual is not None and _as_text(actual) == expected
    if op == "!=":
        return actual is None or _as_text(actual) != expected
    try:
        a, b = float(actual), float(expected)
    except (TypeError, ValueError):
        if actual is None:
            return False
        a_s, b_s = _as_text(actual), expected
        return {"<": a_s < b_s, ">": a_s > b_s, "<=": a_s <= b_s, ">=": a_s >= b_s}[op]
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


class _FilterParser:
    """GCE list filter: ``a = "b"``, ``(x = 1) AND (y != "z")``, juxtaposition = AND,
    ``OR``, ``NOT``, ``:`` (substring / ``:*`` presence), ``eq``/``ne`` (regex)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda _r: True
        pred = self._or()
        if self.i != len(self.tokens):
            raise FilterError("trailing tokens")
        return pred

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise FilterError("unexpected end")
        self.i += 1
        return tok

    def _or(self) -> Predicate:
        preds = [self._and()]
        while (tok := self._peek()) and tok == ("word", "OR"):
            self.i += 1
            preds.append(self._and())
        if len(preds) == 1:
            return preds[0]
        return lambda r: any(p(r) for p in preds)

    def _and(self) -> Predicate:
        preds = [self._unary()]
        while (tok := self._peek()) and tok[0] != "rp" and tok != ("word", "OR"):
            if tok == ("word", "AND"):
                self.i += 1
            preds.append(self._unary())
        if len(preds) == 1:
            return preds[0]
        return lambda r: all(p(r) for p in preds)

    def _unary(self) -> Predicate:
        kind, value = self._next()
        if (kind, value) == ("word", "NOT"):
            inner = self._unary()
            return lambda r: not inner(r)
        if kind == "lp":
            inner = self._or()
            if self._next()[0] != "rp":
                raise FilterError("missing )")
            return inner
        if kind != "word":
            raise FilterError(f"expected field, got {value!r}")
        negate = value.startswith("-")
        path = value.lstrip("-")
        op_kind, op = self._next()
        if op_kind == "word" and op in ("eq", "ne"):
            pass
        elif op_kind != "op":
            raise FilterError(f"expected operator, got {op!r}")
        val_kind, expected = self._next()
        if val_kind not in ("word", "str"):
            raise FilterError(f"expected value, got {expected!r}")

        def pred(r: dict[str, Any]) -> bool:
            hit = _compare(_lookup(r, path), op, expected)
            return not hit if negate else hit

        return pred


def compile_filter(text: str | None) -> Predicate:
    """Compile a GCE list filter; raises :class:`FilterError` when malformed."""
    return _FilterParser(text or "").parse()


# --------------------------------------------------------------------------- helpers


def _region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _zone_url(project: str, zone: str) -> str:
    return f"{BASE_URL}projects/{project}/zones/{zone}"


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"fake:{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, offset = text.split(":", 1)
        if prefix != "fake" or int(offset) < 0:
            raise ValueError(text)
        return int(offset)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid("pageToken", token, "Invalid page token.") from exc


_RESOURCE_PATH_RE = re.compile(
    r"^(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?"
    r"(?:projects/(?P<project>[^/]+)/)?(?P<rest>.+)$"
)


def _split_resource(value: str, default_project: str) -> tuple[str, str]:
    m = _RESOURCE_PATH_RE.match(value)
    if not m:
        return default_project, value
    return m.group("project") or default_project, m.group("rest")


# --------------------------------------------------------------------------- the fake


class FakeGCE:
    """Fake Compute Engine REST server. ``start()`` it, point clients at ``url``."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = RequestLog()
        self.reset()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeGCE:
        if self._server is not None:
            return self
        fake = self

        class Handler(_Handler):
            owner = fake

        server = ThreadingHTTPServer((self._host, self._port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gce",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGCE:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeGCE is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — use as ``client_options["api_endpoint"]``."""
        return f"http://{self._host}:{self.port}"

    @property
    def client_options(self) -> dict[str, str]:
        return {"api_endpoint": self.url}

    def reset(self) -> None:
        """Forget all state, faults, recorded requests; restore catalogue and knobs."""
        with self._lock:
            self.operation_polls = 0
            self.booting_reads = 0
            self.stopping_reads = 0
            self.strict = True
            self.aggregated_warnings = True
            self.page_size: int | None = None
            self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
            self._ids = itertools.count(4_000_000_000_000_000_001)
            self._op_seq = itertools.count(1)
            self._ip_seq = itertools.count(2)
            self._instances: dict[tuple[str, str, str], _Instance] = {}
            self._operations: dict[tuple[str, str, str], _Operation] = {}
            self._request_ids: dict[tuple[str, str], tuple[str, str, str]] = {}
            self._faults: list[_Fault] = []
            self._op_faults: list[_OpFault] = []
            self._quota: tuple[int, str, bool] | None = None
            self._zones: list[str] = []
            self._machine_types: dict[tuple[str, str], dict[str, Any]] = {}
            self._accelerator_types: dict[tuple[str, str], dict[str, Any]] = {}
            self._images: dict[tuple[str, str], dict[str, Any]] = {}
            for zone in DEFAULT_ZONES:
                self.add_zone(zone)
                for name, (cpus, mem, accs) in DEFAULT_MACHINE_TYPES.items():
                    self.add_machine_type(zone, name, guest_cpus=cpus, memory_mb=mem, accelerators=accs)
                for name, (desc, cards) in DEFAULT_ACCELERATOR_TYPES.items():
                    self.add_accelerator_type(zone, name, description=desc, max_per_instance=cards)
            for project, name, family in DEFAULT_IMAGES:
                self.add_image(project, name, family)
            self.requests.clear()

    # ---------------------------------------------------------------- catalogue

    def _now(self) -> str:
        return self.clock().isoformat(timespec="milliseconds")

    def _new_id(self) -> str:
        return str(next(self._ids))

    def add_zone(self, zone: str) -> None:
        """Known zones: checked on insert (strict) and listed by aggregatedList."""
        with self._lock:
            if zone not in self._zones:
                self._zones.append(zone)

    def add_machine_type(
        self,
        zone: str,
        name: str,
        *,
        guest_cpus: int = 4,
        memory_mb: int = 16384,
        accelerators: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self.add_zone(zone)
            res: dict[str, Any] = {
                "kind": "compute#machineType",
                "id": self._new_id(),
                "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                "name": name,
                "description": f"{guest_cpus} vCPUs, {memory_mb / 1024:g} GB RAM",
                "guestCpus": guest_cpus,
                "memoryMb": memory_mb,
                "imageSpaceGb": 0,
                "maximumPersistentDisks": 128,
                "maximumPersistentDisksSizeGb": "263168",
                "zone": zone,
                "isSharedCpu": False,
                "architecture": "X86_64",
            }
            if accelerators:
                res["accelerators"] = copy.deepcopy(accelerators)
            self._machine_types[(zone, name)] = res
            return copy.deepcopy(res)

    def add_accelerator_type(
        self,
        zone: str,
        name: str,
        *,
        description: str | None = None,
        max_per_instance: int = 8,
    ) -> dict[str, Any]:
        with self._lock:
            self.add_zone(zone)
            res = {
                "kind": "compute#acceleratorType",
                "id": self._new_id(),
                "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                "name": name,
                "description": description or name,
                "maximumCardsPerInstance": max_per_instance,
                "zone": zone,
            }
            self._accelerator_types[(zone, name)] = res
            return copy.deepcopy(res)

    def add_image(
        self,
        project: str,
        name: str,
        family: str | None = None,
        *,
        disk_size_gb: int = 10,
        deprecated: bool = False,
        architecture: str = "X86_64",
    ) -> dict[str, Any]:
        """Add a public/private image. Later images win ``getFromFamily``."""
        with self._lock:
            res: dict[str, Any] = {
                "kind": "compute#image",
                "id": self._new_id(),
                "creationTimestamp": self._now(),
                "name": name,
                "sourceType": "RAW",
                "status": "READY",
                "archiveSizeBytes": str(disk_size_gb * 200_000_000),
                "diskSizeGb": str(disk_size_gb),
                "selfLink": f"{BASE_URL}projects/{project}/global/images/{name}",
                "architecture": architecture,
                "labelFingerprint": "42WmSpB8rSM=",
                "storageLocations": ["us", "eu"],
            }
            if family:
                res["family"] = family
            if deprecated:
                res["deprecated"] = {"state": "DEPRECATED"}
            self._images[(project, name)] = res
            return copy.deepcopy(res)

    # ---------------------------------------------------------------- fault knobs

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        reason: str,
        message: str,
        times: int = 1,
        *,
        domain: str = "global",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with a GCE error body.

        ``method`` is an HTTP verb (``"*"`` for any); ``path_regex`` is searched in the
        URL path (no query). ``details`` may hold e.g. a
        ``{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": ...}`` entry.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    method.upper(),
                    re.compile(path_regex),
                    GCEError(status, reason, message, domain=domain, details=details),
                    times,
                )
            )

    def fail_operation_next(
        self,
        zone_regex: str,
        code: str,
        message: str,
        times: int = 1,
        *,
        operation_type: str = "insert",
        http_status: int | None = None,
        http_message: str | None = None,
        error_details: list[dict[str, Any]] | None = None,
    ) -> None:
        """Make the next ``times`` inserts (or deletes) in a zone matching
        ``zone_regex`` (``re.fullmatch``) end in an operation error ``code``.

        ``httpErrorStatusCode`` defaults per code (503 for ZONE_RESOURCE_POOL_*,
        403 for QUOTA_EXCEEDED, else 400). A failed insert creates no instance; a
        failed delete leaves it in place.
        """
        status = http_status or OPERATION_ERROR_HTTP_STATUS.get(code, 400)
        with self._lock:
            self._op_faults.append(
                _OpFault(
                    re.compile(zone_regex),
                    operation_type,
                    code,
                    message,
                    status,
                    http_message or HTTPStatus(status).phrase.upper(),
                    error_details,
                    times,
                )
            )

    def clear_faults(self) -> None:
        """Disarm every fault armed by :meth:`fail_next` and :meth:`fail_operation_next` (an
        outage ends; instances, operations and knobs stay as they are)."""
        with self._lock:
            self._faults.clear()
            self._op_faults.clear()

    def quota_limit(self, n: int | None, *, metric: str = "INSTANCES", in_operation: bool = True) -> None:
        """At most ``n`` live instances per project (None: unlimited).

        Beyond it an insert fails: with ``in_operation`` the operation ends in
        ``QUOTA_EXCEEDED`` (httpErrorStatusCode 403); otherwise the insert call
        itself answers 403 ``quotaExceeded`` (domain ``usageLimits``).
        """
        with self._lock:
            self._quota = None if n is None else (n, metric, in_operation)

    # ---------------------------------------------------------------- inspection

    def instances(self, project: str | None = None) -> list[dict[str, Any]]:
        """Live instances (copies; reading them does not advance status)."""
        with self._lock:
            return [
                copy.deepcopy(i.resource)
                for k, i in sorted(self._instances.items())
                if project is None or i.project == project
            ]

    def instance(self, name: str, project: str | None = None, zone: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(name, project, zone, missing_ok=True)
            return copy.deepcopy(found.resource) if found else None

    def operations(self, project: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(o.resource) for o in self._operations.values() if project is None or o.project == project
            ]

    def _find(
        self,
        name: str,
        project: str | None,
        zone: str | None,
        missing_ok: bool = False,
    ) -> _Instance | None:
        hits = [
            i for (p, z, n), i in self._instances.items() if n == name and project in (None, p) and zone in (None, z)
        ]
        if len(hits) > 1:
            raise ValueError(f"instance {name!r} is ambiguous; pass project/zone")
        if not hits:
            if missing_ok:
                return None
            raise KeyError(f"no instance {name!r}")
        return hits[0]

    # ---------------------------------------------------------------- state knobs

    def add_instance(
        self,
        project: str,
        zone: str,
        body: dict[str, Any],
        *,
        status: str = "RUNNING",
    ) -> dict[str, Any]:
        """Seed an instance as if created earlier (no operation, no validation).
        Its ``status`` is pinned (see :meth:`update_instance`)."""
        with self._lock:
            self.add_zone(zone)
            inst = self._create_instance(project, zone, body)
            inst.booting_left = inst.booting_total = 0
            inst.resource["status"] = status
            inst.pinned = True
            return copy.deepcopy(inst.resource)

    def update_instance(
        self,
        name: str,
        fields: dict[str, Any],
        project: str | None = None,
        zone: str | None = None,
    ) -> dict[str, Any]:
        """Shallow-merge ``fields`` (e.g. ``status``, ``creationTimestamp``,
        ``labels``) into a stored instance. Setting ``status`` pins it: reads no
        longer move it on (delete still works)."""
        with self._lock:
            inst = self._find(name, project, zone)
            assert inst is not None
            inst.resource.update(copy.deepcopy(fields))
            if "status" in fields:
                inst.booting_left = 0
                inst.pinned = True
            return copy.deepcopy(inst.resource)

    def set_status(self, name: str, status: str, project: str | None = None, zone: str | None = None) -> None:
        self.update_instance(name, {"status": status}, project, zone)

    def preempt(
        self,
        name: str,
        project: str | None = None,
        zone: str | None = None,
        *,
        vanish: bool | None = None,
    ) -> None:
        """Reclaim a spot VM: it disappears, or becomes ``TERMINATED`` when its
        ``scheduling.instanceTerminationAction`` is ``STOP`` (override: ``vanish``).
        Records a ``compute.instances.preempted`` zone operation like GCE."""
        with self._lock:
            inst = self._find(name, project, zone)
            assert inst is not None
            action = inst.resource.get("scheduling", {}).get("instanceTerminationAction")
            gone = vanish if vanish is not None else action != "STOP"
            op = self._new_operation(inst.project, inst.zone, "compute.instances.preempted", inst.resource)
            op.resource["user"] = "system"
            op.resource["statusMessage"] = "Instance was preempted."
            self._finish_operation(op)
            if gone:
                del self._instances[(inst.project, inst.zone, inst.resource["name"])]
            else:
                inst.resource["status"] = "TERMINATED"
                inst.booting_left = 0

    def set_serial_output(self, name: str, text: str, project: str | None = None, zone: str | None = None) -> None:
        with self._lock:
            inst = self._find(name, project, zone)
            assert inst is not None
            inst.serial = text

    def append_serial_output(self, name: str, text: str, project: str | None = None, zone: str | None = None) -> None:
        with self._lock:
            inst = self._find(name, project, zone)
            assert inst is not None
            inst.serial += text

    # ---------------------------------------------------------------- internals

    def _new_operation(self, project: str, zone: str, op_type: str, target: dict[str, Any]) -> _Operation:
        seq = next(self._op_seq)
        ms = int(self.clock().timestamp() * 1000)
        name = f"operation-{ms}-{seq:013x}-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}"
        now = self._now()
        res: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self._new_id(),
            "name": name,
            "zone": _zone_url(project, zone),
            "operationType": op_type,
            "targetLink": target.get("selfLink", ""),
            "targetId": target.get("id", ""),
            "status": "RUNNING",
            "user": "fake-scaler@example.iam.gserviceaccount.com",
            "progress": 0,
            "insertTime": now,
            "startTime": now,
            "selfLink": f"{_zone_url(project, zone)}/operations/{name}",
        }
        op = _Operation(project, zone, res)
        self._operations[(project, zone, name)] = op
        return op

    def _finish_operation(self, op: _Operation) -> None:
        if op.resource["status"] == "DONE":
            return
        op.resource.update(status="DONE", progress=100, endTime=self._now())
        if op.failure:
            op.resource.update(op.failure)
        for cb in op.on_done:
            cb()
        op.on_done.clear()

    def _read_operation(self, op: _Operation) -> dict[str, Any]:
        if op.resource["status"] != "DONE":
            op.polls_left -= 1
            if op.polls_left <= 0:
                self._finish_operation(op)
        return copy.deepcopy(op.resource)

    def _start_operation(self, op: _Operation) -> dict[str, Any]:
        op.polls_left = self.operation_polls
        if op.polls_left <= 0:
            self._finish_operation(op)
        return copy.deepcopy(op.resource)

    def _take_op_fault(self, zone: str, op_type: str) -> _OpFault | None:
        for fault in self._op_faults:
            if fault.operation_type == op_type and fault.zone_re.fullmatch(zone):
                fault.times -= 1
                if fault.times <= 0:
                    self._op_faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _failure_fields(
        code: str,
        message: str,
        http_status: int,
        http_message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        err: dict[str, Any] = {"code": code, "message": message}
        if details:
            err["errorDetails"] = copy.deepcopy(details)
        return {
            "error": {"errors": [err]},
            "httpErrorStatusCode": http_status,
            "httpErrorMessage": http_message,
        }

    def _create_instance(self, project: str, zone: str, body: dict[str, Any]) -> _Instance:
        res = copy.deepcopy(body)
        name = res["name"]
        self_link = f"{_zone_url(project, zone)}/instances/{name}"
        mt = res.get("machineType", "")
        if mt and not mt.startswith("http"):
            mt_project, mt_rest = _split_resource(mt, project)
            if not mt_rest.startswith("zones/"):
                mt_rest = f"zones/{zone}/machineTypes/{mt_rest}"
            res["machineType"] = f"{BASE_URL}projects/{mt_project}/{mt_rest}"
        for acc in res.get("guestAccelerators", []) or []:
            at = acc.get("acceleratorType", "")
            if at and not at.startswith("http"):
                at_project, at_rest = _split_resource(at, project)
                if not at_rest.startswith("zones/"):
                    at_rest = f"zones/{zone}/acceleratorTypes/{at_rest}"
                acc["acceleratorType"] = f"{BASE_URL}projects/{at_project}/{at_rest}"
        for index, disk in enumerate(res.get("disks", []) or []):
            disk.setdefault("kind", "compute#attachedDisk")
            disk.setdefault("type", "PERSISTENT")
            disk.setdefault("mode", "READ_WRITE")
            disk.setdefault("interface", "SCSI")
            disk.setdefault("index", index)
            disk.setdefault("boot", index == 0)
            disk.setdefault("autoDelete", False)
            disk_name = disk.get("deviceName") or (name if index == 0 else f"{name}-{index}")
            disk.setdefault("deviceName", disk_name)
            disk.setdefault("source", f"{_zone_url(project, zone)}/disks/{disk_name}")
        region = _region_of(zone)
        for index, nic in enumerate(res.get("networkInterfaces", []) or []):
            n = next(self._ip_seq)
            nic.setdefault("kind", "compute#networkInterface")
            nic.setdefault("name", f"nic{index}")
            nic.setdefault("network", f"{BASE_URL}projects/{project}/global/networks/default")
            nic.setdefault(
                "subnetwork",
                f"{BASE_URL}projects/{project}/regions/{region}/subnetworks/default",
            )
            nic.setdefault("networkIP", f"10.128.{n // 250}.{n % 250 + 2}")
            nic.setdefault("fingerprint", "ZB7YjaoKxZ0=")
            for ac in nic.get("accessConfigs", []) or []:
                ac.setdefault("kind", "compute#accessConfig")
                ac.setdefault("type", "ONE_TO_ONE_NAT")
                ac.setdefault("name", "External NAT")
                ac.setdefault("natIP", f"34.1.{n // 250}.{n % 250 + 2}")
                ac.setdefault("networkTier", "PREMIUM")
        sched = res.setdefault("scheduling", {})
        spot = sched.get("provisioningModel") == "SPOT" or sched.get("preemptible")
        sched.setdefault("provisioningModel", "SPOT" if spot else "STANDARD")
        sched.setdefault("preemptible", bool(sched.get("preemptible", False)))
        sched.setdefault("onHostMaintenance", "TERMINATE" if spot else "MIGRATE")
        sched.setdefault("automaticRestart", not spot)
        if "metadata" in res:
            res["metadata"].setdefault("kind", "compute#metadata")
            res["metadata"].setdefault("fingerprint", "lsR5jvkMQ4U=")
        if res.get("labels"):
            res.setdefault("labelFingerprint", "vezUS-42LLM=")
        now = self._now()
        res.update(
            kind="compute#instance",
            id=self._new_id(),
            creationTimestamp=now,
            zone=_zone_url(project, zone),
            selfLink=self_link,
            cpuPlatform="Intel Cascade Lake",
            fingerprint="3Hm7ZbXyTq0=",
            startRestricted=False,
        )
        res.setdefault("canIpForward", False)
        res.setdefault("deletionProtection", False)
        booting = max(0, self.booting_reads)
        if booting:
            res["status"] = "PROVISIONING"
        else:
            res["status"] = "RUNNING"
            res["lastStartTimestamp"] = now
        inst = _Instance(project, zone, res, booting_left=booting, booting_total=booting)
        self._instances[(project, zone, name)] = inst
        return inst

    def _read_instance(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """Serve one instance read, advancing boot/stop state; None if gone."""
        inst = self._instances.get(key)
        if inst is None:
            return None
        if inst.deleting:
            if inst.stopping_left <= 0:
                del self._instances[key]
                return None
            inst.stopping_left -= 1
            inst.resource["status"] = "STOPPING"
        elif inst.booting_left > 0:
            last = inst.booting_left == 1 and inst.booting_total >= 2
            inst.resource["status"] = "STAGING" if last else "PROVISIONING"
            inst.booting_left -= 1
        elif not inst.pinned and inst.resource.get("status") in ("PROVISIONING", "STAGING"):
            inst.resource["status"] = "RUNNING"
            inst.resource["lastStartTimestamp"] = self._now()
        return copy.deepcopy(inst.resource)

    def _validate_insert(self, project: str, zone: str, body: dict[str, Any]) -> None:
        name = body.get("name")
        if not name:
            raise GCEError(400, "required", "Required field 'resource.name' not specified")
        if not NAME_RE.fullmatch(str(name)):
            raise _invalid(
                "resource.name",
                name,
                "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
            )
        if not self.strict:
            return
        if zone not in self._zones:
            raise _not_found(f"projects/{project}/zones/{zone}")
        mt = body.get("machineType")
        if not mt:
            raise GCEError(400, "required", "Required field 'resource.machineType' not specified")
        _mt_project, mt_rest = _split_resource(mt, project)
        m = re.fullmatch(r"zones/([^/]+)/machineTypes/([^/]+)", mt_rest)
        if not m:
            raise _invalid("resource.machineType", mt, "Must be a URL to a valid Compute resource.")
        if m.group(1) != zone:
            raise _invalid(
                "resource.machineType",
                mt,
                f"Machine type zone must match instance zone '{zone}'.",
            )
        if (zone, m.group(2)) not in self._machine_types and not m.group(2).startswith("custom-"):
            raise _invalid(
                "resource.machineType",
                mt,
                f"Machine type with name '{m.group(2)}' does not exist in zone '{zone}'.",
            )
        disks = body.get("disks") or []
        if not disks:
            raise _invalid("resource.disks", "", "No disks are specified.")
        for i, disk in enumerate(disks):
            src = (disk.get("initializeParams") or {}).get("sourceImage")
            if src:
                self._resolve_image_ref(project, src, f"resource.disks[{i}]")
            elif not disk.get("source"):
                raise _invalid(
                    f"resource.disks[{i}]",
                    "",
                    "Disk must have either source or initializeParams.sourceImage.",
                )
        accs = body.get("guestAccelerators") or []
        for i, acc in enumerate(accs):
            at = acc.get("acceleratorType", "")
            _p, at_rest = _split_resource(at, project)
            m = re.fullmatch(r"zones/([^/]+)/acceleratorTypes/([^/]+)", at_rest)
            if not m or m.group(1) != zone:
                raise _invalid(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    at,
                    "Must be a URL to a valid Compute resource in the instance zone.",
                )
            if (zone, m.group(2)) not in self._accelerator_types:
                raise _invalid(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    at,
                    f"Accelerator type '{m.group(2)}' does not exist in zone '{zone}'.",
                )
        sched = body.get("scheduling") or {}
        spot = sched.get("provisioningModel") == "SPOT" or sched.get("preemptible")
        ohm = sched.get("onHostMaintenance") or ("TERMINATE" if spot else "MIGRATE")
        if accs and ohm != "TERMINATE":
            raise _invalid(
                "resource.scheduling.onHostMaintenance",
                ohm,
                "Instances with guest accelerators do not support live migration.",
            )
        for key, value in (body.get("labels") or {}).items():
            if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(str(value)):
                raise _invalid(
                    "resource.labels",
                    "",
                    f"Label '{key}: {value}' violates format constraints. Keys and "
                    "values may contain only lowercase letters, digits, '_' and '-'.",
                )

    def _resolve_image_ref(self, project: str, ref: str, field_name: str) -> dict[str, Any]:
        img_project, rest = _split_resource(ref, project)
        m = re.fullmatch(r"global/images/(family/)?([^/]+)", rest)
        if not m:
            raise _invalid(
                f"{field_name}.initializeParams.sourceImage",
                ref,
                "Must be a URL to a valid Compute resource.",
            )
        if m.group(1):
            return self._image_from_family(img_project, m.group(2))
        img = self._images.get((img_project, m.group(2)))
        if img is None:
            raise _not_found(f"projects/{img_project}/global/images/{m.group(2)}")
        return img

    def _image_from_family(self, project: str, family: str) -> dict[str, Any]:
        candidates = [
            img
            for (p, _n), img in self._images.items()
            if p == project and img.get("family") == family and "deprecated" not in img
        ]
        if not candidates:
            raise _not_found(f"projects/{project}/global/images/family/{family}")
        return candidates[-1]

    # ---------------------------------------------------------------- HTTP dispatch

    def _handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        self.requests.append(RecordedRequest(method, path, dict(query), body))
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.path_re.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault.error.status, fault.error.body()
            for route_method, pattern, handler_name in _ROUTES:
                m = pattern.fullmatch(path)
                if m and route_method == method:
                    params = {k: unquote(v) for k, v in m.groupdict().items()}
                    try:
                        result = getattr(self, handler_name)(query, body, **params)
                    except GCEError as err:
                        return err.status, err.body()
                    return 200, result
        no_route = GCEError(404, "notFound", f"FakeGCE: no route for {method} {path}")
        return 404, no_route.body()

    # instances ---------------------------------------------------------------

    def _h_insert(self, query: dict[str, str], body: Any, project: str, zone: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise GCEError(400, "parseError", "Parse Error")
        request_id = query.get("requestId")
        if request_id:
            replay = self._replay(project, request_id)
            if replay is not None:
                return replay
        self._validate_insert(project, zone, body)
        key = (project, zone, body["name"])
        if key in self._instances:
            raise GCEError(
                409,
                "alreadyExists",
                f"The resource 'projects/{project}/zones/{zone}/instances/{body['name']}' already exists",
            )
        failure: dict[str, Any] | None = None
        if self._quota is not None:
            limit, metric, in_op = self._quota
            live = sum(1 for i in self._instances.values() if i.project == project)
            if live >= limit:
                msg = f"Quota '{metric}' exceeded.  Limit: {float(limit)} in region {_region_of(zone)}."
                if not in_op:
                    raise GCEError(403, "quotaExceeded", msg, domain="usageLimits")
                failure = self._failure_fields("QUOTA_EXCEEDED", msg, 403, "FORBIDDEN")
        fault = self._take_op_fault(zone, "insert")
        if fault is not None:
            failure = self._failure_fields(
                fault.code,
                fault.message,
                fault.http_status,
                fault.http_message,
                fault.error_details,
            )
        if failure is None:
            inst = self._create_instance(project, zone, body)
            target = inst.resource
        else:
            target = {
                "selfLink": f"{_zone_url(project, zone)}/instances/{body['name']}",
                "id": self._new_id(),
            }
        op = self._new_operation(project, zone, "insert", target)
        op.failure = failure
        if request_id:
            self._request_ids[(project, request_id)] = (project, zone, op.resource["name"])
        return self._start_operation(op)

    def _replay(self, project: str, request_id: str) -> dict[str, Any] | None:
        if self.strict:
            try:
                parsed = uuid.UUID(request_id)
            except ValueError:
                parsed = None
            if parsed is None or parsed.int == 0:
                raise _invalid(
                    "requestId",
                    request_id,
                    "Must be a valid UUID other than the zero UUID.",
                )
        key = self._request_ids.get((project, request_id))
        if key is None or key not in self._operations:
            return None
        return copy.deepcopy(self._operations[key].resource)

    def _h_get(self, query: dict[str, str], body: Any, project: str, zone: str, name: str) -> dict[str, Any]:
        res = self._read_instance((project, zone, name))
        if res is None:
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return res

    def _page(self, query: dict[str, str], items: list[Any]) -> tuple[list[Any], str | None]:
        raw_max = query.get("maxResults", "")
        try:
            max_results = int(raw_max) if raw_max else MAX_PAGE
        except ValueError as exc:
            raise _invalid("maxResults", raw_max, "Must be an integer.") from exc
        if max_results < 0 or max_results > MAX_PAGE:
            raise _invalid("maxResults", raw_max, "Must be between 0 and 500.")
        max_results = max_results or MAX_PAGE
        if self.page_size is not None:
            max_results = min(max_results, self.page_size)
        offset = _decode_token(query["pageToken"]) if query.get("pageToken") else 0
        page = items[offset : offset + max_results]
        more = offset + max_results < len(items)
        return page, _encode_token(offset + max_results) if more else None

    def _matching_keys(self, query: dict[str, str], project: str, zone: str | None) -> list[tuple[str, str, str]]:
        try:
            pred = compile_filter(query.get("filter"))
        except FilterError as exc:
            raise _invalid("filter", query.get("filter"), "Invalid list filter expression.") from exc
        keys: list[tuple[str, str, str]] = []
        zone_order = {z: i for i, z in enumerate(self._zones)}
        candidates = sorted(
            (k for k in self._instances if k[0] == project and zone in (None, k[1])),
            key=lambda k: (zone_order.get(k[1], len(zone_order)), k[1], k[2]),
        )
        for key in candidates:
            inst = self._instances[key]
            if inst.deleting and inst.stopping_left <= 0:
                del self._instances[key]
                continue
            if pred(inst.resource):
                keys.append(key)
        return keys

    def _h_list(self, query: dict[str, str], body: Any, project: str, zone: str) -> dict[str, Any]:
        keys = self._matching_keys(query, project, zone)
        page, token = self._page(query, keys)
        items = [r for k in page if (r := self._read_instance(k)) is not None]
        out: dict[str, Any] = {
            "kind": "compute#instanceList",
            "id": f"projects/{project}/zones/{zone}/instances",
            "selfLink": f"{_zone_url(project, zone)}/instances",
        }
        if items:
            out["items"] = items
        if token:
            out["nextPageToken"] = token
        return out

    def _h_aggregated(self, query: dict[str, str], body: Any, project: str) -> dict[str, Any]:
        keys = self._matching_keys(query, project, None)
        page, token = self._page(query, keys)
        scoped: dict[str, list[dict[str, Any]]] = {}
        for key in page:
            res = self._read_instance(key)
            if res is not None:
                scoped.setdefault(f"zones/{key[1]}", []).append(res)
        items: dict[str, Any] = {}
        zones = list(self._zones) + sorted({k[1] for k in page} - set(self._zones))
        for z in zones:
            scope = f"zones/{z}"
            if scope in scoped:
                items[scope] = {"instances": scoped[scope]}
            elif self.aggregated_warnings:
                items[scope] = {
                    "warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": f"There are no results for scope '{scope}' on this page.",
                        "data": [{"key": "scope", "value": scope}],
                    }
                }
        out: dict[str, Any] = {
            "kind": "compute#instanceAggregatedList",
            "id": f"projects/{project}/aggregated/instances",
            "items": items,
            "selfLink": f"{BASE_URL}projects/{project}/aggregated/instances",
        }
        if token:
            out["nextPageToken"] = token
        return out

    def _h_delete(self, query: dict[str, str], body: Any, project: str, zone: str, name: str) -> dict[str, Any]:
        request_id = query.get("requestId")
        if request_id:
            replay = self._replay(project, request_id)
            if replay is not None:
                return replay
        key = (project, zone, name)
        inst = self._instances.get(key)
        if inst is None or (inst.deleting and inst.stopping_left <= 0):
            self._instances.pop(key, None)
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        op = self._new_operation(project, zone, "delete", inst.resource)
        fault = self._take_op_fault(zone, "delete")
        if fault is not None:
            op.failure = self._failure_fields(
                fault.code,
                fault.message,
                fault.http_status,
                fault.http_message,
                fault.error_details,
            )
        elif self.stopping_reads > 0:
            inst.deleting = True
            inst.stopping_left = self.stopping_reads
            inst.resource["status"] = "STOPPING"
        else:
            del self._instances[key]
        if request_id:
            self._request_ids[(project, request_id)] = (project, zone, op.resource["name"])
        return self._start_operation(op)

    def _h_serial(self, query: dict[str, str], body: Any, project: str, zone: str, name: str) -> dict[str, Any]:
        inst = self._instances.get((project, zone, name))
        if inst is None or (inst.deleting and inst.stopping_left <= 0):
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        port = query.get("port", "1")
        if port not in ("1", "2", "3", "4"):
            raise _invalid("port", port, "Must be between 1 and 4.")
        try:
            start = int(query.get("start", "0") or 0)
        except ValueError as exc:
            raise _invalid("start", query.get("start"), "Must be an integer.") from exc
        data = inst.serial if port == "1" else ""
        start = min(max(start, 0), len(data))
        self_link = inst.resource["selfLink"]
        return {
            "kind": "compute#serialPortOutput",
            "contents": data[start:],
            "start": str(start),
            "next": str(len(data)),
            "selfLink": f"{self_link}/serialPort?port={port}",
        }

    def _h_set_labels(self, query: dict[str, str], body: Any, project: str, zone: str, name: str) -> dict[str, Any]:
        inst = self._instances.get((project, zone, name))
        if inst is None or (inst.deleting and inst.stopping_left <= 0):
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        body = body if isinstance(body, dict) else {}
        labels = {str(k): str(v) for k, v in (body.get("labels") or {}).items()}
        for key, value in labels.items():
            if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
                raise _invalid(
                    "labels",
                    "",
                    f"Label '{key}: {value}' violates format constraints. Keys and "
                    "values may contain only lowercase letters, digits, '_' and '-'.",
                )
        current = inst.resource.get("labelFingerprint") or _label_fingerprint({})
        if body.get("labelFingerprint") != current:
            raise GCEError(
                412,
                "conditionNotMet",
                "Labels fingerprint either invalid or resource labels have changed",
            )
        op = self._new_operation(project, zone, "setLabels", inst.resource)
        inst.resource["labels"] = labels
        inst.resource["labelFingerprint"] = _label_fingerprint(labels)
        return self._start_operation(op)

    # operations --------------------------------------------------------------

    def _op(self, project: str, zone: str, op: str) -> _Operation:
        found = self._operations.get((project, zone, op))
        if found is None:
            raise _not_found(f"projects/{project}/zones/{zone}/operations/{op}")
        return found

    def _h_op_get(self, query: dict[str, str], body: Any, project: str, zone: str, op: str) -> dict[str, Any]:
        return self._read_operation(self._op(project, zone, op))

    def _h_op_wait(self, query: dict[str, str], body: Any, project: str, zone: str, op: str) -> dict[str, Any]:
        return self._read_operation(self._op(project, zone, op))

    def _h_op_list(self, query: dict[str, str], body: Any, project: str, zone: str) -> dict[str, Any]:
        try:
            pred = compile_filter(query.get("filter"))
        except FilterError as exc:
            raise _invalid("filter", query.get("filter"), "Invalid list filter expression.") from exc
        ops = [
            copy.deepcopy(o.resource)
            for (p, z, _n), o in self._operations.items()
            if p == project and z == zone and pred(o.resource)
        ]
        page, token = self._page(query, ops)
        out: dict[str, Any] = {
            "kind": "compute#operationList",
            "id": f"projects/{project}/zones/{zone}/operations",
            "selfLink": f"{_zone_url(project, zone)}/operations",
        }
        if page:
            out["items"] = page
        if token:
            out["nextPageToken"] = token
        return out

    # catalogue ---------------------------------------------------------------

    def _h_image(self, query: dict[str, str], body: Any, project: str, image: str) -> dict[str, Any]:
        img = self._images.get((project, image))
        if img is None:
            raise _not_found(f"projects/{project}/global/images/{image}")
        return copy.deepcopy(img)

    def _h_image_family(self, query: dict[str, str], body: Any, project: str, family: str) -> dict[str, Any]:
        return copy.deepcopy(self._image_from_family(project, family))

    def _h_machine_type(self, query: dict[str, str], body: Any, project: str, zone: str, name: str) -> dict[str, Any]:
        mt = self._machine_types.get((zone, name))
        if mt is None:
            raise _not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        res = copy.deepcopy(mt)
        res["selfLink"] = f"{_zone_url(project, zone)}/machineTypes/{name}"
        return res

    def _h_accelerator_type(
        self, query: dict[str, str], body: Any, project: str, zone: str, name: str
    ) -> dict[str, Any]:
        at = self._accelerator_types.get((zone, name))
        if at is None:
            raise _not_found(f"projects/{project}/zones/{zone}/acceleratorTypes/{name}")
        res = copy.deepcopy(at)
        res["zone"] = _zone_url(project, zone)
        res["selfLink"] = f"{_zone_url(project, zone)}/acceleratorTypes/{name}"
        return res

    def _h_zone(self, query: dict[str, str], body: Any, project: str, zone: str) -> dict[str, Any]:
        if zone not in self._zones:
            raise _not_found(f"projects/{project}/zones/{zone}")
        region = _region_of(zone)
        return {
            "kind": "compute#zone",
            "id": str(2000 + self._zones.index(zone)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": zone,
            "description": zone,
            "status": "UP",
            "region": f"{BASE_URL}projects/{project}/regions/{region}",
            "selfLink": _zone_url(project, zone),
            "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
            "supportsPzs": False,
        }


_P = r"/compute/v1/projects/(?P<project>[^/]+)"
_Z = _P + r"/zones/(?P<zone>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), h)
    for m, p, h in (
        ("POST", _Z + r"/instances", "_h_insert"),
        ("GET", _Z + r"/instances", "_h_list"),
        ("GET", _Z + r"/instances/(?P<name>[^/]+)", "_h_get"),
        ("DELETE", _Z + r"/instances/(?P<name>[^/]+)", "_h_delete"),
        ("GET", _Z + r"/instances/(?P<name>[^/]+)/serialPort", "_h_serial"),
        ("POST", _Z + r"/instances/(?P<name>[^/]+)/setLabels", "_h_set_labels"),
        ("GET", _P + r"/aggregated/instances", "_h_aggregated"),
        ("GET", _Z + r"/operations", "_h_op_list"),
        ("GET", _Z + r"/operations/(?P<op>[^/]+)", "_h_op_get"),
        ("POST", _Z + r"/operations/(?P<op>[^/]+)/wait", "_h_op_wait"),
        ("GET", _P + r"/global/images/family/(?P<family>[^/]+)", "_h_image_family"),
        ("GET", _P + r"/global/images/(?P<image>[^/]+)", "_h_image"),
        ("GET", _Z + r"/machineTypes/(?P<name>[^/]+)", "_h_machine_type"),
        ("GET", _Z + r"/acceleratorTypes/(?P<name>[^/]+)", "_h_accelerator_type"),
        ("GET", _Z, "_h_zone"),
    )
]


class _Handler(BaseHTTPRequestHandler):
    owner: FakeGCE
    protocol_version = "HTTP/1.1"
    server_version = "FakeGCE/1.0"
    disable_nagle_algorithm = True  # else headers+body writes cost ~40 ms per call

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        status, payload = self.owner._handle(self.command, split.path, query, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve


# --------------------------------------------------------------------------- pytest

try:
    import pytest
except ImportError:  # pragma: no cover - the server itself needs only the stdlib
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def fake_gce_server() -> Iterator[FakeGCE]:
        """One started FakeGCE per test session (per xdist worker)."""
        fake = FakeGCE().start()
        try:
            yield fake
        finally:
            fake.stop()

    @pytest.fixture
    def fake_gce(fake_gce_server: FakeGCE) -> Iterator[FakeGCE]:
        """The session FakeGCE, reset before each test."""
        fake_gce_server.reset()
        yield fake_gce_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Compute Engine REST server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeGCE(port=args.port).start()
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
