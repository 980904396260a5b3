"""A fake AWS EC2 for tests: moto's server plus a loopback proxy that behaves more like EC2.

Everything runs in this process and listens on 127.0.0.1 only; nothing here contacts the
internet.  The product's real boto3 talks to the proxy (``AWS_ENDPOINT_URL_EC2`` or
``endpoint_url``), the proxy forwards every request to moto and adds what real EC2 does and
moto 5.2.5 does not:

* ``ClientToken`` idempotency: the first successful answer for a (action, token) pair is
  remembered and replayed for a repeated token; different parameters with a used token get
  ``IdempotentParameterMismatch``.  (moto ignores the token and makes a second batch.)
* ``RunInstances`` launches ``MaxCount`` instances (moto launches only ``MinCount``);
  ``launch_limit`` simulates partial capacity.
* ``DescribeInstances`` pagination the way EC2 does it: without ``MaxResults`` everything comes
  back in one page (moto silently cuts at 100 *reservations* and returns a ``NextToken``);
  with ``MaxResults`` (5..1000, larger values are capped at 1000) pages hold that many
  *instances* and carry ``nextToken``.  ``page_size`` forces a page size for every
  ``DescribeInstances`` request (even one without ``MaxResults``).
* Fault injection with EC2's error XML (``fail``) and "accepted, then the answer never came"
  (``timeout_after_accept``).
* Recording of every request (``actions`` and ``requests``).

Use the fixtures ``moto_server`` (session), ``ec2_proxy`` and ``aws_env`` (function) by
listing ``"tests.fakes.ec2"`` in ``pytest_plugins`` (``tests/conftest.py`` does).

PYTEST_DONT_REWRITE (no user-facing asserts here; avoids the "already imported" warning)
"""

from __future__ import annotations

import functools
import http.client
import logging
import os
import secrets
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account for any unknown access key
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
DUMMY_AMI = "ami-0123456789abcdef0"  # moto accepts unknown AMIs (no AMI validation)
FOREIGN_TAGS = {"Name": "not-ours", "Owner": "someone-else"}

Params = dict[str, str]
Predicate = Callable[[Params], bool]
_Headers = list[tuple[str, str]]
_Answer = tuple[int, _Headers, bytes]

# Usual HTTP status of EC2 error codes.  EC2's "server errors" (capacity, internal) are 5xx,
# so botocore retries them; everything not listed here is a 400 client error.
DEFAULT_STATUS: dict[str, int] = {
    "AuthFailure": 401,
    "UnauthorizedOperation": 403,
    "DryRunOperation": 412,
    "InsufficientAddressCapacity": 500,
    "InsufficientCapacity": 500,
    "InsufficientHostCapacity": 500,
    "InsufficientInstanceCapacity": 500,
    "InsufficientReservedInstanceCapacity": 500,
    "InsufficientVolumeCapacity": 500,
    "InternalError": 500,
    "InternalFailure": 500,
    "RequestLimitExceeded": 503,
    "ServiceUnavailable": 503,
    "Unavailable": 503,
}

_MAX_PAGE = 1000  # EC2's largest DescribeInstances page
_MIN_MAX_RESULTS = 5
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "server",
    "date",
}
_AMI_ENV = "MOTO_EC2_LOAD_DEFAULT_AMIS"


def default_message(code: str, params: Params) -> str:
    """A realistic EC2 message for ``code`` (used when ``fail`` gets no message)."""
    itype = params.get("InstanceType", "m5.large")
    messages = {
        "InsufficientInstanceCapacity": (
            f"We currently do not have sufficient {itype} capacity in the Availability Zone "
            "you requested (us-east-1a). Our system will be working on provisioning "
            f"additional capacity. You can currently get {itype} capacity by not specifying "
            "an Availability Zone in your request or choosing us-east-1b, us-east-1c."
        ),
        "InsufficientFreeAddressesInSubnet": (
            "There are not enough free addresses in subnet "
            f"'{params.get('SubnetId', 'subnet-0123456789abcdef0')}' to satisfy the "
            "requested number of instances."
        ),
        "SpotMaxPriceTooLow": (
            "Your Spot request price of 0.001 is lower than the minimum required Spot "
            "request fulfillment price of 0.0035."
        ),
        "MaxSpotInstanceCountExceeded": "Max spot instance count exceeded",
        "InstanceLimitExceeded": (
            f"You have requested more instances than your current instance limit of 20 "
            f"allows for the specified instance type ({itype})."
        ),
        "VcpuLimitExceeded": (
            "You have requested more vCPU capacity than your current vCPU limit of 32 "
            "allows for the instance bucket that the specified instance type belongs to. "
            "Please visit http://aws.amazon.com/contact-us/ec2-request to request an "
            "adjustment to this limit."
        ),
        "RequestLimitExceeded": "Request limit exceeded.",
        "UnauthorizedOperation": (
            "You are not authorized to perform this operation. Encoded authorization "
            "failure message: " + secrets.token_urlsafe(96)
        ),
        "AuthFailure": "AWS was not able to validate the provided access credentials",
        "InternalError": "An internal error has occurred",
        "Unavailable": "The server is overloaded and can't handle the request.",
        "InvalidInstanceID.NotFound": (
            f"The instance ID '{params.get('InstanceId.1', 'i-0123456789abcdef0')}' does not exist"
        ),
        "DryRunOperation": "Request would have succeeded, but DryRun flag is set.",
    }
    return messages.get(code, f"{code} (injected by the test proxy)")


def error_xml(code: str, message: str, request_id: str | None = None) -> bytes:
    """EC2's error document (the Query-protocol ``<Response><Errors>`` shape)."""
    rid = request_id or str(uuid.uuid4())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{rid}</RequestID></Response>"
    ).encode()


def _error(status: int, code: str, message: str) -> _Answer:
    rid = str(uuid.uuid4())
    headers = [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", rid)]
    return status, headers, error_xml(code, message, rid)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for c in elem:
        if _local(c.tag) == name:
            return c
    return None


@dataclass
class Fault:
    """An armed fault; ``hits`` counts the requests it answered."""

    kind: str  # "error" or "accept_timeout"
    action: str  # EC2 action name, or "*" for any action
    code: str = ""
    message: str | None = None
    status: int = 400
    remaining: int | None = 1  # None: every matching request
    when: Predicate | None = None
    delay: float = 0.0
    drop: bool = False
    hits: int = 0

    def _matches(self, action: str, params: Params) -> bool:
        if self.remaining == 0 or self.action not in ("*", action):
            return False
        return self.when is None or bool(self.when(params))


@dataclass
class _Snapshot:
    root: ET.Element
    items: list[tuple[ET.Element, ET.Element]]  # (reservation, instance) in order


@dataclass
class _Stored:
    fingerprint: tuple[tuple[str, str], ...]
    answer: _Answer
    lock: threading.Lock = field(default_factory=threading.Lock)


class MotoServer:
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 (in this process), access log silenced."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""
        self.startup_seconds = 0.0

    def start(self) -> None:
        t0 = time.monotonic()
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # The first EC2 call imports moto's EC2 backend (~2 s); pay it once here.
        self.client("ec2").describe_instances()
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource in every service (``POST /moto-api/reset``)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def client(self, service: str, region: str = REGION) -> Any:
        """A (cached) boto3 client talking to moto directly, bypassing the proxy; no retries."""
        return _cached_client(service, self.url, region)


_SESSION_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _client(service: str, endpoint_url: str, region: str = REGION, **config: Any) -> Any:
    """A client from one shared session (a fresh session reloads the model: ~0.3 s)."""
    global _SESSION
    with _SESSION_LOCK:  # boto3 sessions are not thread-safe; clients are
        if _SESSION is None:
            _SESSION = boto3.session.Session(
                aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY,
                region_name=REGION,
            )
        return _SESSION.client(service, region_name=region, endpoint_url=endpoint_url, config=Config(**config))


@functools.lru_cache(maxsize=64)
def _cached_client(service: str, endpoint_url: str, region: str = REGION) -> Any:
    return _client(service, endpoint_url, region, retries={"mode": "standard", "total_max_attempts": 1})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_DELETE = do_POST

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            answer = proxy._handle(self, body)
        except Exception as exc:  # a bug in the proxy or in a ``when`` predicate
            proxy._note_error(f"{type(exc).__name__}: {exc}")
            answer = _error(500, "ProxyError", f"test proxy failed: {exc!r}")
        if answer is not None:
            self._send(answer)

    def _send(self, answer: _Answer) -> None:
        status, headers, payload = answer
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client gave up (read timeout) or dropped the connection
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _ProxyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: EC2Proxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # disconnects by clients that timed out are expected


class EC2Proxy:
    """Loopback HTTP proxy in front of moto that adds real-EC2 behaviour (see module doc)."""

    def __init__(self, moto: MotoServer | str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.moto = moto if isinstance(moto, MotoServer) else None
        upstream = moto.url if isinstance(moto, MotoServer) else moto
        self.upstream = upstream.rstrip("/")
        parsed = urllib.parse.urlsplit(self.upstream)
        self._up_host = parsed.hostname or "127.0.0.1"
        self._up_port = parsed.port or 80
        self._lock = threading.Lock()
        self._actions: list[str] = []
        self._requests: list[Params] = []
        self._faults: list[Fault] = []
        self._tokens: dict[tuple[str, str], _Stored] = {}
        self._pages: dict[str, tuple[_Snapshot, int]] = {}
        self._release = threading.Event()
        self.errors: list[str] = []
        #: Forced DescribeInstances page size (applies to every request, MaxResults or not).
        self.page_size: int | None = None
        #: At most this many instances per RunInstances (None: MaxCount, as if capacity were
        #: plentiful).  Fewer than MinCount possible -> InsufficientInstanceCapacity (500).
        self.launch_limit: int | None = None
        #: Replay answers for repeated ClientTokens (switch off to show moto's behaviour).
        self.idempotency = True
        self._httpd = _ProxyHTTPServer((host, port), _Handler)
        self._httpd.proxy = self
        h, p = self._httpd.server_address[:2]
        self.url = f"http://{h.decode() if isinstance(h, bytes) else h}:{p}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ec2-proxy", daemon=True)

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> EC2Proxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def clear(self) -> None:
        """Forget the recorded requests (faults, tokens and settings stay)."""
        with self._lock:
            self._actions.clear()
            self._requests.clear()

    def reset(self) -> None:
        """Back to a fresh proxy: recordings, faults, tokens, pages, settings; wake hangs."""
        with self._lock:
            self._actions.clear()
            self._requests.clear()
            self._faults.clear()
            self._tokens.clear()
            self._pages.clear()
            self.errors.clear()
            self._release.set()
            self._release = threading.Event()
        self.page_size = None
        self.launch_limit = None
        self.idempotency = True

    # -- recordings ---------------------------------------------------------------------
    @property
    def actions(self) -> list[str]:
        """EC2 ``Action`` names of every request received (retries included), in order."""
        with self._lock:
            return list(self._actions)

    @property
    def requests(self) -> list[Params]:
        """Parsed form parameters of every request received, in order."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def count(self, action: str) -> int:
        with self._lock:
            return self._actions.count(action)

    # -- faults -------------------------------------------------------------------------
    def fail(
        self,
        action: str,
        code: str,
        message: str | None = None,
        status: int | None = None,
        times: int | None = 1,
        when: Predicate | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: all) with an EC2 error.

        ``action`` is an EC2 action name or ``"*"``; ``when`` gets the flat form params
        (``{"InstanceMarketOptions.MarketType": "spot", "SubnetId": ..., ...}``).
        ``status`` defaults to the code's usual status (``DEFAULT_STATUS``, else 400) and
        ``message`` to a realistic one.  Retried (5xx/throttling) requests consume ``times``.
        """
        fault = Fault(
            kind="error",
            action=action,
            code=code,
            message=message,
            status=status if status is not None else DEFAULT_STATUS.get(code, 400),
            remaining=times,
            when=when,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def timeout_after_accept(
        self,
        action: str,
        times: int | None = 1,
        delay: float = 30.0,
        drop: bool = False,
        when: Predicate | None = None,
    ) -> Fault:
        """Forward the request to moto (so it takes effect), then never answer in time.

        The handler waits ``delay`` seconds (or until ``reset``) before sending the real
        answer, which a client with a shorter read timeout has given up on; with
        ``drop=True`` it closes the connection at once instead (botocore then sees
        ``ConnectionClosedError`` and retries without waiting for its read timeout).
        """
        fault = Fault(
            kind="accept_timeout",
            action=action,
            remaining=times,
            when=when,
            delay=delay,
            drop=drop,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take(self, kind: str, action: str, params: Params) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault._matches(action, params):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _note_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    # -- helpers bound to this proxy's moto ----------------------------------------------
    def create_instance_profile(self, name: str, role_name: str | None = None) -> str:
        return create_instance_profile(self, name, role_name=role_name)

    def run_foreign_instances(self, n: int = 1, tags: dict[str, str] | None = None, **kwargs: Any) -> list[str]:
        return run_foreign_instances(self, n, tags, **kwargs)

    # -- request handling -----------------------------------------------------------------
    def _handle(self, handler: _Handler, body: bytes) -> _Answer | None:
        query = urllib.parse.urlsplit(handler.path).query
        form: list[tuple[str, str]] = []
        if handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True) + form)
        action = params.get("Action", "")
        with self._lock:
            if action:
                self._actions.append(action)
            self._requests.append(dict(params))
            release = self._release

        fault = self._take("error", action, params)
        if fault is not None:
            return _error(fault.status, fault.code, fault.message or default_message(fault.code, params))

        if action == "DescribeInstances" and form:
            answer = self._describe_instances(handler, form, params)
        elif "ClientToken" in params and self.idempotency:
            answer = self._idempotent(handler, body, form, params, action)
        else:
            answer = self._forward_action(handler, body, form, params, action)

        hang = self._take("accept_timeout", action, params)
        if hang is not None:
            if hang.drop:
                handler._drop()
                return None
            release.wait(hang.delay)
        return answer

    def _forward_action(
        self, handler: _Handler, body: bytes, form: list[tuple[str, str]], params: Params, action: str
    ) -> _Answer:
        if action == "RunInstances" and form:
            rewritten, err = self._launch_counts(form, params)
            if err is not None:
                return err
            body = urllib.parse.urlencode(rewritten).encode()
        return self._forward(handler, body)

    def _launch_counts(
        self, pairs: list[tuple[str, str]], params: Params
    ) -> tuple[list[tuple[str, str]], _Answer | None]:
        try:
            lo = int(params.get("MinCount", "1"))
            hi = int(params.get("MaxCount", str(lo)))
        except ValueError:
            return pairs, None  # let moto complain
        n = hi if self.launch_limit is None else min(hi, self.launch_limit)
        if n < lo:
            code = "InsufficientInstanceCapacity"
            return pairs, _error(500, code, default_message(code, params))
        rest = [(k, v) for k, v in pairs if k not in ("MinCount", "MaxCount")]
        return [*rest, ("MinCount", str(n)), ("MaxCount", str(n))], None

    def _idempotent(
        self, handler: _Handler, body: bytes, form: list[tuple[str, str]], params: Params, action: str
    ) -> _Answer:
        key = (action, params["ClientToken"])
        fingerprint = tuple(sorted((k, v) for k, v in params.items() if k != "ClientToken"))
        with self._lock:
            stored = self._tokens.get(key)
            if stored is None:
                stored = self._tokens[key] = _Stored(fingerprint, (0, [], b""))
        with stored.lock:  # a concurrent retry with the same token waits for the first
            if stored.answer[0]:
                if stored.fingerprint != fingerprint:
                    return _error(
                        400,
                        "IdempotentParameterMismatch",
                        "Arguments on this idempotent request are inconsistent with "
                        "arguments used in previous request(s).",
                    )
                return stored.answer
            answer = self._forward_action(handler, body, form, params, action)
            if 200 <= answer[0] < 300:  # failed requests may be retried with the token
                stored.fingerprint = fingerprint
                stored.answer = answer
            return answer

    def _forward(self, handler: _Handler, body: bytes) -> _Answer:
        conn = http.client.HTTPConnection(self._up_host, self._up_port, timeout=120)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            headers["Host"] = f"{self._up_host}:{self._up_port}"
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            # werkzeug repeats a few headers; keep the first of each name
            seen: set[str] = set()
            unique = []
            for k, v in out:
                if k.lower() not in seen and k.lower() != "status":
                    seen.add(k.lower())
                    unique.append((k, v))
            return resp.status, unique, payload
        finally:
            conn.close()

    # -- DescribeInstances ------------------------------------------------------------------
    def _describe_instances(self, handler: _Handler, form: list[tuple[str, str]], params: Params) -> _Answer:
        has_ids = any(k.startswith("InstanceId.") for k in params)
        size: int | None = None
        if "MaxResults" in params:
            if has_ids:
                return _error(
                    400,
                    "InvalidParameterCombination",
                    "The parameter instancesSet cannot be used with the parameter maxResults",
                )
            try:
                requested = int(params["MaxResults"])
            except ValueError:
                requested = -1
            if requested < _MIN_MAX_RESULTS:
                return _error(
                    400,
                    "InvalidParameterValue",
                    f"Value ( {params['MaxResults']} ) for parameter maxResults is invalid. "
                    f"Expecting a value greater than {_MIN_MAX_RESULTS}.",
                )
            size = min(requested, _MAX_PAGE)
        if self.page_size is not None:
            size = min(size or self.page_size, self.page_size)

        token = params.get("NextToken")
        if token:
            with self._lock:
                entry = self._pages.get(token)
            if entry is None:
                return _error(400, "InvalidParameterValue", "The token is invalid or expired.")
            return self._page(*entry, size)

        answer, root = self._describe_all(handler, form, has_ids)
        if answer[0] != 200 or size is None:
            return answer
        if root is None:
            root = ET.fromstring(answer[2])
        rset = _child(root, "reservationSet")
        items: list[tuple[ET.Element, ET.Element]] = []
        for res in rset if rset is not None else []:
            iset = _child(res, "instancesSet")
            items.extend((res, inst) for inst in (iset if iset is not None else []))
        if len(items) <= size:
            return answer
        return self._page(_Snapshot(root, items), 0, size)

    def _describe_all(
        self, handler: _Handler, form: list[tuple[str, str]], has_ids: bool
    ) -> tuple[_Answer, ET.Element | None]:
        """Everything moto has for this query, following moto's own 100-reservation pages."""
        base = [(k, v) for k, v in form if k not in ("MaxResults", "NextToken")]
        first = base if has_ids else [*base, ("MaxResults", "1000000000")]
        answer = self._forward(handler, urllib.parse.urlencode(first).encode())
        if answer[0] != 200 or b"<nextToken>" not in answer[2]:
            return answer, None
        root = ET.fromstring(answer[2])
        rset = _child(root, "reservationSet")
        assert rset is not None
        while (nt := _child(root, "nextToken")) is not None and nt.text:
            root.remove(nt)
            more = self._forward(handler, urllib.parse.urlencode([*base, ("NextToken", nt.text)]).encode())
            if more[0] != 200:
                return more, None
            more_root = ET.fromstring(more[2])
            more_set = _child(more_root, "reservationSet")
            rset.extend(list(more_set) if more_set is not None else [])
            nxt = _child(more_root, "nextToken")
            if nxt is not None:
                root.append(nxt)
        return (answer[0], answer[1], self._serialize(root)), root

    def _page(self, snap: _Snapshot, offset: int, size: int | None) -> _Answer:
        end = len(snap.items) if size is None else offset + size
        chunk = snap.items[offset:end]
        ns = snap.root.tag[: -len(_local(snap.root.tag))]
        root = ET.Element(snap.root.tag, snap.root.attrib)
        rid = str(uuid.uuid4())
        ET.SubElement(root, ns + "requestId").text = rid
        rset = ET.SubElement(root, ns + "reservationSet")
        current: ET.Element | None = None
        target: ET.Element | None = None
        for res, inst in chunk:
            if res is not current:
                current = res
                item = ET.SubElement(rset, res.tag, res.attrib)
                for c in res:
                    if _local(c.tag) == "instancesSet":
                        target = ET.SubElement(item, c.tag, c.attrib)
                    else:
                        item.append(c)
            assert target is not None
            target.append(inst)
        if end < len(snap.items):
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._pages[token] = (snap, end)
            ET.SubElement(root, ns + "nextToken").text = token
        headers = [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", rid)]
        return 200, headers, self._serialize(root)

    @staticmethod
    def _serialize(root: ET.Element) -> bytes:
        ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else None
        return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=ns)


# -- helpers --------------------------------------------------------------------------------
def _moto_url(target: EC2Proxy | MotoServer | str) -> str:
    if isinstance(target, MotoServer):
        return target.url
    if isinstance(target, EC2Proxy):
        return target.upstream
    return target


def ec2_client(
    target: EC2Proxy | str,
    *,
    region: str = REGION,
    retry_mode: str = "standard",
    max_attempts: int = 3,
    read_timeout: float = 10.0,
    connect_timeout: float = 5.0,
) -> Any:
    """A boto3 EC2 client talking to the proxy (or any URL), with explicit dummy credentials.

    ``max_attempts`` counts all attempts (botocore's ``total_max_attempts``): 1 = no retry.
    """
    url = target.url if isinstance(target, EC2Proxy) else target
    return _client(
        "ec2",
        url,
        region,
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
    )


def create_instance_profile(target: EC2Proxy | MotoServer | str, name: str, *, role_name: str | None = None) -> str:
    """Create a role and an instance profile holding it in moto's IAM; return the ARN."""
    iam = _cached_client("iam", _moto_url(target))
    role = role_name or f"{name}-role"
    trust = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    )
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    arn: str = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    return arn


def create_instances_direct(
    target: EC2Proxy | MotoServer | str,
    n: int,
    tags: dict[str, str] | None = None,
    *,
    per_reservation: int | None = None,
    instance_type: str = "t3.micro",
    image_id: str = DUMMY_AMI,
) -> list[str]:
    """Create ``n`` running instances in moto without going through the proxy (unrecorded).

    ``per_reservation`` splits them into several reservations (default: one).  More than 20
    instances go straight into moto's in-process backend (1100 instances: ~0.4 s; through
    the API ~5 s, nearly all of it moto rendering its XML answer).
    """
    size = per_reservation or n
    batches = [min(size, n - done) for done in range(0, n, size)]
    ids: list[str] = []
    if n > 20:
        try:
            for count in batches:
                ids += _backend_run(count, tags or {}, instance_type, image_id)
            return ids
        except Exception:  # moto internals changed: fall back to the API
            pass
    ec2 = _cached_client("ec2", _moto_url(target))
    kwargs: dict[str, Any] = {}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    for count in batches[len(ids) // size :]:
        resp = ec2.run_instances(ImageId=image_id, InstanceType=instance_type, MinCount=count, MaxCount=count, **kwargs)
        ids += [i["InstanceId"] for i in resp["Instances"]]
    return ids


def _backend_run(n: int, tags: dict[str, str], instance_type: str, image_id: str) -> list[str]:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT_ID][REGION]
    reservation = backend.run_instances(
        image_id,
        n,
        None,
        [],
        instance_type=instance_type,
        is_instance_type_default=False,
        region_name=REGION,
        tags={"instance": dict(tags)} if tags else {},
    )
    return [i.id for i in reservation.instances]


def run_foreign_instances(
    target: EC2Proxy | MotoServer | str,
    n: int = 1,
    tags: dict[str, str] | None = None,
    **kwargs: Any,
) -> list[str]:
    """Instances that belong to someone else (default tags ``FOREIGN_TAGS``), unrecorded."""
    return create_instances_direct(target, n, FOREIGN_TAGS if tags is None else tags, **kwargs)


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto on 127.0.0.1, once per session.  Default AMIs are not loaded (fast resets)."""
    previous = os.environ.get(_AMI_ENV)
    os.environ.setdefault(_AMI_ENV, "false")
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop(_AMI_ENV, None)
        else:
            os.environ[_AMI_ENV] = previous


@pytest.fixture(scope="session")
def _ec2_proxy_session(moto_server: MotoServer) -> Iterator[EC2Proxy]:
    proxy = EC2Proxy(moto_server).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def ec2_proxy(moto_server: MotoServer, _ec2_proxy_session: EC2Proxy) -> Iterator[EC2Proxy]:
    """The EC2 proxy (same URL all session) with moto and the proxy reset for this test."""
    proxy = _ec2_proxy_session
    moto_server.reset()
    proxy.reset()
    yield proxy
    errors = list(proxy.errors)
    proxy.reset()  # also wakes handlers still hanging in timeout_after_accept
    if errors:
        pytest.fail(f"EC2 test proxy errors: {errors}")


_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def aws_environment(proxy: EC2Proxy, home: Path, access_key: str = ACCESS_KEY_ID) -> dict[str, str]:
    """Variables so that plain ``boto3.client("ec2")`` reaches ``proxy`` and every other AWS
    service reaches moto behind it, never AWS; no config or credential file under ``home`` is
    read. A fleet with its own ``access_key`` is its own moto account."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_EC2": proxy.url,
        "AWS_ENDPOINT_URL_IAM": proxy.upstream,
        "AWS_ENDPOINT_URL_STS": proxy.upstream,
        "AWS_ENDPOINT_URL": proxy.upstream,  # every other service: moto, never AWS
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@pytest.fixture
def aws_env(
    ec2_proxy: EC2Proxy,
    moto_server: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> dict[str, str]:
    """Environment so that plain ``boto3.client("ec2")`` reaches the proxy and nothing else
    leaves the machine; returns the variables set (handy for subprocesses)."""
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    env = aws_environment(ec2_proxy, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
