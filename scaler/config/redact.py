"""Masking secrets in text shown to a person: the one redaction every output path uses.

Typed secrets are :class:`~scaler.types.Secret` and mask themselves. This module covers the
rest, text nobody declared: scripts (``init_script``, vault ``extra_vm_bash_script``),
clearml.conf snippets (``extra_clearml_conf``), validation messages, the console output of a
machine. Two things are masked there:

* **known values**: every secret of the configuration (and the ClearML keys the machines
  get), wherever it appears (:func:`known_secrets`);
* **secrets by shape**: the value of a key that looks secret (its name has a word such as
  ``secret``, ``password``, ``pass``, ``token``, ``key``, ``credential``: see
  :func:`is_secret_name`) written as ``key = value``, ``key: value``, ``"key": "value"`` or
  ``KEY=value``; the argument of ``--password`` (or any ``--…-token``, ``--…-secret``, …) and
  of ``-p`` (``docker login -p …``); the password of a ``scheme://user:password@host`` URL;
  tokens with a well-known prefix (``ghp_…``, ``glpat-…``, ``AKIA…``, ``xoxb-…``).

A value that is a reference (``$VAR``, ``${VAR}``, ``$(…)``), a boolean, a number or empty
holds no secret and is left as it is, so ``docker login -p "$REGISTRY_TOKEN"`` and
``password = ${?SCALER_GIT_TOKEN}`` read the same masked or not. :func:`find` reports what it
would mask (for ``scaler run --remote``, which refuses to upload such text), :func:`redact`
masks it. Machines get the real text: only output meant for a person goes through here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scaler.types import Secret

MASK = Secret.MASK
#: known secret values shorter than this are not searched for (they would mask ordinary words)
MIN_KNOWN = 4

#: a key name that holds a secret when nothing declares it: the strict test of structured
#: configuration (``export`` masks the value and ``import`` writes it as ``${?VAR}``)
SECRET_NAME = re.compile(r"(secret|passw|token|api_?key|private_?key|access_?key)", re.IGNORECASE)

_SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "pass",
        "pwd",
        "token",
        "key",
        "credential",
        "credentials",
    }
)
_JOINED = re.compile(
    r"^(?:access|secret|account|api|private|session|auth|client|master|sas|bearer|refresh)"
    r"(?:key|secret|token|password)$|(?:password|passwd|secret|token)$"
)
#: a last word that makes the name describe something other than the secret itself
_NOT_THE_SECRET = frozenset(
    {
        "file",
        "path",
        "json",
        "dir",
        "name",
        "chain",
        "type",
        "region",
        "url",
        "uri",
        "arn",
        "profile",
        "length",
        "size",
        "ttl",
        "seconds",
        "timeout",
        "stdin",
        "env",
        "var",
        "header",
        "rotation",
        "expiry",
        "expires",
    }
)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def is_secret_name(name: str) -> bool:
    """Whether a key or flag named ``name`` holds a secret, judged by its words:
    ``sdk.aws.s3.secret``, ``account_key``, ``AWS_SECRET_ACCESS_KEY``, ``git_pass``,
    ``--registry-token`` do; ``key_name``, ``credentials_file``, ``use_credentials_chain``,
    ``--password-stdin`` do not (their last word says they name something else)."""
    words = _words(name)
    if not words or words[-1] in _NOT_THE_SECRET:
        return False
    return any(w in _SECRET_WORDS or _JOINED.search(w) for w in words)


@dataclass(frozen=True)
class Hit:
    """One secret found in a text: what holds it (``the value of 'password'``), the line, and
    where the value is (character offsets)."""

    what: str
    line: int
    start: int
    end: int


_QUOTED = r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
_ASSIGNMENT = re.compile(
    r"""(?<![\w.$-])(?P<kq>["']?)(?P<key>[A-Za-z_][\w.-]*)(?P=kq)[ \t]*(?:=|:(?!//))[ \t]*"""
    rf"""(?P<val>{_QUOTED}|(?![\[{{(])[^\s\x00-\x1f\x7f,;}}\]#&"'<>|)]+)"""
)
#: ``?token=…&…`` inside a URL (which an assignment's value, ``host:8080/x?…``, may swallow)
_QUERY = re.compile(r"""[?&](?P<key>[A-Za-z_][\w.-]*)=(?P<val>[^&#\s\x00-\x1f\x7f"'<>]+)""")
_FLAG = re.compile(
    r"""(?<![\w-])(?P<flag>--[A-Za-z][\w-]*|-p)(?:=|[ \t]+)"""
    rf"""(?P<val>{_QUOTED}|(?!-)[^\s\x00-\x1f\x7f;|&)<>]+)"""
)
_URL_PASSWORD = re.compile(r"(?<![\w+.-])[a-zA-Z][\w+.-]*://[^/\s:@'\"]*:(?P<val>[^@\s/'\"]+)@")
_TOKEN_SHAPES = re.compile(
    r"\b(?P<val>gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,})\b"
)
#: ``-p`` is also ``mkdir -p``, ``ssh -p 22``, ``docker run -p 80:80``: its argument is a
#: password only where it is not a number, a port mapping or a path, and not on a mkdir line
_NOT_A_PASSWORD = re.compile(r"^(?:[\d:.,/-]+|[/~.$].*|.*/.*)$")
_MKDIR = re.compile(r"\bmkdir\b")


def _inner(value: str) -> tuple[str, int, int]:
    """The value without its quotes, and the offsets of that inside ``value``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1], 1, len(value) - 1
    return value, 0, len(value)


def _holds_nothing(value: str) -> bool:
    """A reference, a boolean, a number, null or empty: no secret in it."""
    text = value.strip()
    return (
        not text
        or text == MASK
        or text.startswith("$")
        or text.lower() in ("true", "false", "yes", "no", "on", "off", "null", "none")
        or re.fullmatch(r"[-+]?\d+(?:\.\d+)?", text) is not None
    )


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _line_at(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start : end if end >= 0 else len(text)]


def find(text: str, known: Iterable[str] = (), *, shapes: bool = True) -> list[Hit]:
    """Every secret :func:`redact` would mask in ``text``, in order, without overlaps; with
    ``shapes`` false only the ``known`` values."""
    hits: list[Hit] = []

    def add(what: str, start: int, end: int) -> None:
        hits.append(Hit(what, _line_of(text, start), start, end))

    for value in sorted({v for v in known if len(v) >= MIN_KNOWN}, key=len, reverse=True):
        at = text.find(value)
        while at >= 0:
            add("a secret of the configuration", at, at + len(value))
            at = text.find(value, at + len(value))
    if not shapes:
        return _merged(hits)
    for match in _ASSIGNMENT.finditer(text):
        if not is_secret_name(match.group("key")):
            continue
        inner, lo, hi = _inner(match.group("val"))
        if not _holds_nothing(inner):
            add(f"the value of '{match.group('key')}'", match.start("val") + lo, match.start("val") + hi)
    for match in _QUERY.finditer(text):
        if is_secret_name(match.group("key")) and not _holds_nothing(match.group("val")):
            add(f"the value of '{match.group('key')}'", match.start("val"), match.end("val"))
    for match in _FLAG.finditer(text):
        flag = match.group("flag")
        inner, lo, hi = _inner(match.group("val"))
        if _holds_nothing(inner):
            continue
        if flag == "-p":
            if _NOT_A_PASSWORD.match(inner) or _MKDIR.search(_line_at(text, match.start())):
                continue
        elif not is_secret_name(flag):
            continue
        add(f"the argument of {flag}", match.start("val") + lo, match.start("val") + hi)
    for match in _URL_PASSWORD.finditer(text):
        if not _holds_nothing(match.group("val")):
            add("the password in a URL", match.start("val"), match.end("val"))
    for match in _TOKEN_SHAPES.finditer(text):
        add("a token", match.start("val"), match.end("val"))
    return _merged(hits)


def _merged(hits: list[Hit]) -> list[Hit]:
    hits.sort(key=lambda h: (h.start, -h.end))
    merged: list[Hit] = []
    for hit in hits:
        if merged and hit.start < merged[-1].end:
            if hit.end > merged[-1].end:
                merged[-1] = dataclasses.replace(merged[-1], end=hit.end)
            continue
        merged.append(hit)
    return merged


def redact(text: str, known: Iterable[str] = (), *, shapes: bool = True) -> str:
    """``text`` with every secret :func:`find` finds replaced by ``********``."""
    if not text:
        return text
    out: list[str] = []
    last = 0
    for hit in find(text, known, shapes=shapes):
        out.append(text[last : hit.start])
        out.append(MASK)
        last = hit.end
    out.append(text[last:])
    return "".join(out)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_control(text: str) -> str:
    """Control characters shown, not obeyed: ``\\x1b`` (a terminal escape), ``\\r`` (which
    would let a line overwrite the one before it on a terminal), ``\\x00``. Line breaks and tabs
    stay; a Windows line end becomes a plain one."""
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: {"\r": "\\r"}.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def machine_output(text: str, known: Iterable[str] = ()) -> str:
    """A machine's console output as a person may see it: secrets masked, control characters escaped."""
    return escape_control(redact(text, known))


def shown(value: Any, known: Iterable[str] = ()) -> Any:
    """``value`` (nested mappings and lists) with every string as :func:`machine_output` shows
    it: for output made of what others wrote (task names, provider errors, recorded actions)."""
    known = list(known)
    if isinstance(value, str):
        return machine_output(value, known)
    if isinstance(value, Mapping):
        return {k: shown(v, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown(v, known) for v in value]
    return value


def _secrets_in(value: Any, found: set[str]) -> None:
    if isinstance(value, Secret):
        if value:
            found.add(value.reveal())
    elif isinstance(value, Mapping):
        for item in value.values():
            _secrets_in(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _secrets_in(item, found)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _secrets_in(getattr(value, item.name), found)


def known_secrets(*values: Any) -> list[str]:
    """Every :class:`~scaler.types.Secret` value inside ``values`` (a :class:`Config`, its
    sections, a :class:`~scaler.types.ServerInfo`, plain strings too), longest first."""
    found: set[str] = set()
    for value in values:
        if isinstance(value, str):
            if value:
                found.add(value)
        else:
            _secrets_in(value, found)
    return sorted((v for v in found if len(v) >= MIN_KNOWN), key=len, reverse=True)
