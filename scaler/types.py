"""Typed values exchanged between core and plugins (no I/O here)."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Tag/label keys every provider writes on the instances it launches.
TAG_SCALER = "clearml-scaler-name"
TAG_RESOURCE = "clearml-scaler-resource"
TAG_LAUNCH_TOKEN = "clearml-scaler-launch-token"
#: the fleet identity (:func:`fleet_identity`): which deployment owns the machine
TAG_FLEET = "clearml-scaler-fleet"


def _server_key(api_server: str) -> str:
    """The ClearML API server address written one way: scheme and host lower-case, no default
    port, no trailing slash (``https://API.example.com:443/`` is ``https://api.example.com``)."""
    text = api_server.strip()
    try:
        parts = urlsplit(text if "://" in text else f"https://{text}")
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return text.rstrip("/").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def fleet_identity(name: str, api_server: str, workspace: str) -> str:
    """The identity of one deployment: 16 hex digits of a hash of the scaler's name, the ClearML
    API server it serves and the workspace (company id) of its credentials there.

    Two scalers with the same ``scaler.name`` serving different ClearML servers, or different
    workspaces of one server, get different identities; the same deployment restarted (or run
    as a standby) gets the same one. Lower-case hex, so it is a valid tag and label value on
    every cloud."""
    text = "\0".join(("clearml-scaler-fleet/1", name, _server_key(api_server), workspace))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class InstanceState(str, enum.Enum):
    """Provider-neutral lifecycle of an instance."""

    PENDING = "pending"  # requested, booting, spot request open
    RUNNING = "running"
    STOPPING = "stopping"  # shutting down / being deleted
    STOPPED = "stopped"  # exists but does not run (e.g. a GCE VM after `shutdown`): its disk still bills
    TERMINATED = "terminated"

    @property
    def alive(self) -> bool:
        """Counts against ``max_instances`` and can host a worker."""
        return self in (InstanceState.PENDING, InstanceState.RUNNING)


@dataclass(frozen=True)
class Instance:
    """One cloud machine of this scaler, as the provider's ``list`` reports it.

    ``id`` is the provider's own handle (e.g. a cloud's instance id or instance name); it is also the
    last part of the worker id ``<workers_prefix>:<resource>:<id>``. ``fleet`` is the machine's
    :data:`TAG_FLEET` tag as listed: the run's ``config.fleet_id`` for the fleet's own machines,
    empty for a machine tagged with this scaler's name only (launched before fleet identities:
    *legacy*, see docs/how-it-works.md), another identity for a foreign machine (listed only when
    asked for with ``include_foreign``).
    """

    id: str
    resource: str
    state: InstanceState
    launched_at: float  # unix seconds
    launch_token: str = ""
    spot: bool = False
    zone: str = ""
    instance_type: str = ""
    fleet: str = ""

    @classmethod
    def from_tags(
        cls, id: str, tags: Mapping[str, str], state: InstanceState, launched_at: float, **more: object
    ) -> Instance:
        """An instance whose ``resource``, ``launch_token`` and ``fleet`` are read from its ownership
        tags (:data:`TAG_RESOURCE`, :data:`TAG_LAUNCH_TOKEN`, :data:`TAG_FLEET`); ``more`` sets the
        other fields (``spot``, ``zone``, ``instance_type``)."""
        found = {
            "resource": str(tags.get(TAG_RESOURCE, "")),
            "launch_token": str(tags.get(TAG_LAUNCH_TOKEN, "")),
            "fleet": str(tags.get(TAG_FLEET, "")),
        }
        return cls(id, state=state, launched_at=launched_at, **{**found, **more})  # type: ignore[arg-type]


class Secret:
    """A secret string that never prints itself.

    ``str()``, ``repr()`` and f-strings give ``********``; :meth:`reveal` is the one way to the
    value, so a secret reaches only the places that call it on purpose (the init script).
    """

    __slots__ = ("_value",)
    MASK = "********"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return self.MASK if self._value else ""

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Severity(str, enum.Enum):
    """How bad a :class:`Problem` is. A ``str`` enum: ``severity == "warning"`` keeps working."""

    ERROR = "error"  # the configuration cannot be used
    WARNING = "warning"  # it can, but probably not as meant

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Problem:
    """One finding of config validation: where, what, and how bad.

    ``severity`` may be given as a :class:`Severity` or its text (``severity="warning"``); it is
    always a :class:`Severity` afterwards, and any other text is an error."""

    path: str
    message: str
    severity: Severity | str = Severity.ERROR
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))

    def render(self) -> str:
        where = f"{self.path}" if self.path else "(top level)"
        line = f" (line {self.line})" if self.line else ""
        prefix = "warning: " if self.severity == Severity.WARNING else ""
        return f"{where}{line}: {prefix}{self.message}"


@dataclass(frozen=True)
class ScriptPart:
    """A bash fragment of the init script; parts from all plugins are sorted by ``order``.

    Core uses: 100 prologue, 200 instance identity (the provider's part), 250 worker id, 300 user
    scripts (config + vault),
    400 agent install, 500 clearml.conf, 600 agent start, 900 shutdown epilogue.
    """

    order: int
    name: str
    text: str


@dataclass(frozen=True)
class ServerInfo:
    """The ClearML server the agents report to, and the credentials they use.

    ``auth_token`` is ``CLEARML_AUTH_TOKEN`` (token-only setups, or a scaler run by an agent);
    ``config_file`` the clearml.conf the credentials were read from (empty: none found), for
    messages that say where credentials come from."""

    api_host: str
    web_host: str = ""
    files_host: str = ""
    access_key: Secret = field(default_factory=lambda: Secret(""))
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    auth_token: Secret = field(default_factory=lambda: Secret(""))
    config_file: str = ""


@dataclass(frozen=True)
class RenderContext:
    """What the init-script and clearml.conf hooks render for."""

    server: ServerInfo
    reveal_secrets: bool = True
    clearml_conf: str = ""  # the joined clearml.conf parts, filled in by the renderer

    def secret(self, value: Secret | str) -> str:
        """The secret's value when rendering for a machine, a mask when printing for a human."""
        if isinstance(value, Secret):
            return value.reveal() if self.reveal_secrets else str(value)
        return value
