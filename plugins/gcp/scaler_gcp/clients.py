"""Credentials, cached Compute Engine clients, retries and error mapping.

Google libraries are imported inside functions only: ``scaler --help`` and
``scaler providers`` import the plugin module and must stay fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scaler.api import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler_gcp.schema import CLOUD_PLATFORM_SCOPE

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import compute_v1

    from scaler.api import Config

log = logging.getLogger("scaler.gcp")

#: ``host:port`` of a Compute Engine emulator: plain HTTP, anonymous credentials
EMULATOR_ENV = "SCALER_GCP_EMULATOR_HOST"

#: seconds one HTTP request may take
REQUEST_TIMEOUT = 30.0
#: retries of 429/5xx/connection errors: first delay, cap, and total deadline (seconds)
RETRY_INITIAL = 0.25
RETRY_MAXIMUM = 4.0
RETRY_DEADLINE = 15.0

#: operation error codes that mean "no capacity here, try the next zone"
CAPACITY_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "REGION_RESOURCE_POOL_EXHAUSTED",
        "RESOURCE_POOL_EXHAUSTED",
        "STOCKOUT",
        "ZONE_STOCKOUT",
        "INSUFFICIENT_CAPACITY",
        "RESOURCE_AVAILABILITY",
    }
)
#: operation error codes that are throttling: the same request may pass later
TRANSIENT_CODES = frozenset(
    {
        "RESOURCE_OPERATION_RATE_EXCEEDED",
        "RATE_LIMIT_EXCEEDED",
        "INTERNAL_ERROR",
        "SERVICE_UNAVAILABLE",
        "BACKEND_ERROR",
    }
)
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"})
QUOTA_REASONS = frozenset({"quotaExceeded", "limitExceeded", "QUOTA_EXCEEDED", "dailyLimitExceeded"})


def is_capacity_code(code: str) -> bool:
    upper = code.upper()
    return upper in CAPACITY_CODES or (("EXHAUSTED" in upper or "STOCKOUT" in upper) and "QUOTA" not in upper)


def is_quota_code(code: str) -> bool:
    return "QUOTA" in code.upper() or code in QUOTA_REASONS


@dataclass(frozen=True)
class Settings:
    """The normalised top-level ``gcp`` section (plus the emulator environment variable)."""

    project: str = ""
    credentials_file: str = ""
    credentials_json: str = field(default="", repr=False)  # a service account key's content (a secret)
    api_endpoint: str = ""
    operation_timeout: float = 60.0
    emulator: str = ""

    @property
    def endpoint(self) -> str:
        if self.emulator:
            host = self.emulator
            return host if host.startswith(("http://", "https://")) else f"http://{host}"
        return self.api_endpoint


def _reveal(value: Any) -> str:
    """The text of a secret setting (a :class:`~scaler.api.Secret` once normalised)."""
    if value is None:
        return ""
    return str(value.reveal() if hasattr(value, "reveal") else value)


def settings_of(config: Config) -> Settings:
    values = config.provider_settings  # normalised by core (scaler_gcp.schema.SECTION)
    return Settings(
        project=str(values.get("project") or ""),
        credentials_file=os.path.expanduser(str(values.get("credentials_file") or "")),
        credentials_json=_reveal(values.get("credentials_json")),
        api_endpoint=str(values.get("api_endpoint") or "").rstrip("/"),
        operation_timeout=float(values.get("operation_timeout") or 60.0),
        emulator=os.environ.get(EMULATOR_ENV, "").strip(),
    )


@dataclass
class Session:
    """Credentials, project and lazily built clients for one (endpoint, credentials, project)."""

    project: str
    principal: str  # who we act as, for error messages (never a secret)
    client_kwargs: dict[str, Any]
    operation_timeout: float = 60.0
    _clients: dict[str, Any] = field(default_factory=dict)

    def _client(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            from google.cloud import compute_v1

            client = getattr(compute_v1, name)(**self.client_kwargs)
            self._clients[name] = client
        return client

    @property
    def instances(self) -> compute_v1.InstancesClient:
        client = self._client("InstancesClient")
        # insert()/delete() futures poll through this; give it our endpoint too (we use the
        # *_unary methods and poll ourselves, this only guards any future use of .result())
        services = getattr(getattr(client, "_transport", None), "_extended_operations_services", None)
        if isinstance(services, dict) and "zone_operations" not in services:
            services["zone_operations"] = self.zone_operations
        return client  # type: ignore[no-any-return]

    @property
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return self._client("ZoneOperationsClient")  # type: ignore[no-any-return]

    @property
    def images(self) -> compute_v1.ImagesClient:
        return self._client("ImagesClient")  # type: ignore[no-any-return]

    @property
    def machine_types(self) -> compute_v1.MachineTypesClient:
        return self._client("MachineTypesClient")  # type: ignore[no-any-return]

    @property
    def accelerator_types(self) -> compute_v1.AcceleratorTypesClient:
        return self._client("AcceleratorTypesClient")  # type: ignore[no-any-return]

    @property
    def zones(self) -> compute_v1.ZonesClient:
        return self._client("ZonesClient")  # type: ignore[no-any-return]


_sessions: dict[tuple[str, str, str], Session] = {}
_lock = threading.Lock()


def reset_sessions() -> None:
    """Forget cached clients (tests; credentials rotated)."""
    with _lock:
        _sessions.clear()


def session_for(config: Config) -> Session:
    """The cached session for this config's endpoint, credentials file and project."""
    settings = settings_of(config)
    who = settings.credentials_file
    if settings.credentials_json:  # the key's content: cached by its digest, not kept in the key
        who = "json:" + hashlib.sha256(settings.credentials_json.encode()).hexdigest()
    key = (settings.endpoint, who if not settings.emulator else "<anonymous>", settings.project)
    with _lock:
        found = _sessions.get(key)
        if found is not None:
            found.operation_timeout = settings.operation_timeout
            return found
    made = _new_session(settings)
    with _lock:
        return _sessions.setdefault(key, made)


def _new_session(settings: Settings) -> Session:
    credentials, project, principal = _credentials(settings)
    project = settings.project or project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    if not project:
        raise AuthError(f"no GCP project: set gcp.project (the credentials, {principal}, name none)", code="NoProject")
    kwargs: dict[str, Any] = {"credentials": credentials, "transport": "rest"}
    if settings.endpoint:
        kwargs["client_options"] = {"api_endpoint": settings.endpoint}
    return Session(project, principal, kwargs, settings.operation_timeout)


def _credentials(settings: Settings) -> tuple[Any, str, str]:
    """(credentials, their project or "", a description of the principal for messages)."""
    if settings.emulator:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), "", f"anonymous credentials (emulator at {settings.endpoint})"
    from google.auth import exceptions as gauth_exc

    if settings.credentials_json:
        from google.oauth2 import service_account

        try:
            info = json.loads(settings.credentials_json)
            creds = service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
        except (ValueError, KeyError, TypeError, gauth_exc.GoogleAuthError) as exc:
            raise AuthError(
                f"gcp.credentials_json is not a usable service account JSON key ({type(exc).__name__})",
                code="CredentialsJson",
            ) from None
        email = getattr(creds, "service_account_email", "") or "?"
        return creds, str(getattr(creds, "project_id", "") or ""), f"service account {email} (gcp.credentials_json)"
    if settings.credentials_file:
        from google.oauth2 import service_account

        path = settings.credentials_file
        try:
            creds = service_account.Credentials.from_service_account_file(path, scopes=[CLOUD_PLATFORM_SCOPE])
        except FileNotFoundError:
            raise AuthError(f"gcp.credentials_file {path!r} does not exist", code="CredentialsFile") from None
        except (ValueError, KeyError, OSError, gauth_exc.GoogleAuthError) as exc:
            raise AuthError(
                f"gcp.credentials_file {path!r} is not a usable service account JSON key ({type(exc).__name__})",
                code="CredentialsFile",
            ) from None
        email = getattr(creds, "service_account_email", "") or "?"
        return creds, str(getattr(creds, "project_id", "") or ""), f"service account {email} (gcp.credentials_file)"
    import google.auth

    try:
        creds, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except gauth_exc.DefaultCredentialsError as exc:
        raise AuthError(
            "no Google credentials found: set gcp.credentials_file to a service account key, or provide "
            "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default "
            f"login`, or run on GCP with an attached service account) ({_first_line(exc)})",
            code="NoCredentials",
        ) from None
    email = getattr(creds, "service_account_email", "") or ""
    who = (
        f"service account {email}"
        if email and email != "default"
        else ("the VM's attached service account" if email == "default" else "the user account")
    )
    return creds, str(project or ""), f"{who} (Application Default Credentials)"


def retry_policy() -> Retry:
    """Retry throttling (429, 403 rateLimitExceeded), 5xx and connection errors, briefly."""
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry

    def predicate(exc: Exception) -> bool:
        if isinstance(
            exc,
            (
                gexc.TooManyRequests,
                gexc.InternalServerError,
                gexc.BadGateway,
                gexc.ServiceUnavailable,
                gexc.GatewayTimeout,
            ),
        ):
            return True
        if isinstance(exc, gexc.Forbidden):
            return bool(_reasons(exc) & {"rateLimitExceeded", "userRateLimitExceeded"})
        try:
            import requests

            return isinstance(exc, (requests.ConnectionError, requests.Timeout))
        except ImportError:  # pragma: no cover - google-auth's transport depends on requests
            return False

    return Retry(
        predicate=predicate, initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM, multiplier=2.0, timeout=RETRY_DEADLINE
    )


# --- error mapping ------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


def _reasons(exc: Any) -> set[str]:
    out: set[str] = set()
    for item in getattr(exc, "errors", None) or ():
        if isinstance(item, dict):
            out.update(str(item[k]) for k in ("reason", "code") if item.get(k))
        else:
            code = getattr(item, "code", None) or getattr(item, "reason", None)
            if code:
                out.add(str(code))
    reason = getattr(exc, "reason", None)
    if reason:
        out.add(str(reason))
    return out


_PERMISSION_RE = re.compile(r"'?((?:compute|iam)\.[A-Za-z]+\.[A-Za-z]+)'? permission")


def missing_permission(message: str, details: Any, default: str) -> str:
    """The permission GCE names in its message or ErrorInfo, else ``default``."""
    metadata = getattr(details, "get", None)
    if callable(metadata):
        found = details.get("permission")
        if found:
            return str(found)
    match = _PERMISSION_RE.search(message or "")
    return match.group(1) if match else default


def map_error(exc: BaseException, *, action: str, permission: str, session: Session | None = None) -> ProviderError:
    """A typed error for a failed API call. Never includes credentials."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as gauth_exc

    who = session.principal if session else "the configured credentials"
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        detail = f"{type(cause).__name__}: {_message(cause)}" if cause else _first_line(exc)
        return TransientError(f"{action} still failing after retries: {detail}", code=_code(cause) if cause else "")
    if isinstance(exc, gexc.GoogleAPICallError):
        message = _message(exc)
        reasons = _reasons(exc)
        status = int(exc.code or 0) if isinstance(exc.code, int) else 0
        code = next(iter(sorted(reasons)), "") or str(status)
        if any(is_capacity_code(r) for r in reasons):
            return CapacityError(f"{action}: {message}", code=next(r for r in reasons if is_capacity_code(r)))
        if any(is_quota_code(r) for r in reasons):
            return QuotaError(f"{action}: quota exceeded: {message}", code=code)
        if status in (401, 403) and not reasons & RATE_REASONS:
            needed = missing_permission(message, getattr(exc, "metadata", None), permission)
            if status == 401:
                text = f"{action}: the credentials were rejected (401) for {who}: {message}"
            else:
                text = (
                    f"{action}: permission denied: {who} needs {needed} in project "
                    f"{session.project if session else '?'}: {message}"
                )
            return AuthError(text, code=code)
        if status == 429 or status >= 500 or reasons & RATE_REASONS or isinstance(exc, gexc.ServerError):
            return TransientError(f"{action} failed ({status}): {message}", code=code)
        return ProviderError(f"{action} failed ({status} {code}): {message}", code=code)
    if isinstance(exc, gauth_exc.RefreshError):
        return AuthError(f"{action}: could not get an access token for {who}: {_first_line(exc)}", code="RefreshError")
    if isinstance(exc, (gauth_exc.TransportError, TimeoutError, ConnectionError)):
        return TransientError(f"{action}: {type(exc).__name__}: {_first_line(exc)}", code=type(exc).__name__)
    if isinstance(exc, gauth_exc.GoogleAuthError):
        return AuthError(f"{action}: could not authenticate as {who}: {_first_line(exc)}", code=type(exc).__name__)
    try:
        import requests

        if isinstance(exc, requests.RequestException):
            return TransientError(f"{action}: {type(exc).__name__}: {_first_line(exc)}", code=type(exc).__name__)
    except ImportError:  # pragma: no cover
        pass
    return ProviderError(f"{action}: {type(exc).__name__}: {_first_line(exc)}", code=type(exc).__name__)


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message).strip()[:600] if message else _first_line(exc)


def _code(exc: BaseException) -> str:
    reasons = _reasons(exc)
    return next(iter(sorted(reasons)), "") or type(exc).__name__


def operation_error(op: Any, *, action: str, permission: str, session: Session | None = None) -> ProviderError | None:
    """The typed error of a finished operation, or ``None`` when it succeeded."""
    errors = list(op.error.errors) if op.error else []
    status = int(op.http_error_status_code or 0)
    if not errors and not status:
        return None
    codes = [str(e.code) for e in errors if e.code]
    message = "; ".join(str(e.message) for e in errors if e.message) or str(op.http_error_message or "")
    code = codes[0] if codes else str(status)
    capacity = [c for c in codes if is_capacity_code(c)]
    if capacity:
        return CapacityError(f"{action}: {message}", code=capacity[0])
    if any(is_quota_code(c) for c in codes):
        return QuotaError(f"{action}: quota exceeded: {message}", code=code)
    if status in (401, 403) or any(c in ("PERMISSION_DENIED", "FORBIDDEN") for c in codes):
        who = session.principal if session else "the configured credentials"
        needed = missing_permission(message, None, permission)
        return AuthError(f"{action}: permission denied: {who} needs {needed}: {message}", code=code)
    if status == 429 or status >= 500 or any(c in TRANSIENT_CODES for c in codes):
        return TransientError(f"{action} failed ({code}): {message}", code=code)
    return ProviderError(f"{action} failed ({code}): {message}", code=code)
