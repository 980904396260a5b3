"""boto3 clients for the ``aws`` provider and the mapping of AWS errors onto the scaler's
typed errors.

boto3/botocore are imported inside the functions: ``scaler providers`` and every ``--help``
import this package, and must stay fast.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from scaler.api import AuthError, CapacityError, ProviderError, QuotaError, Secret, TransientError

log = logging.getLogger("scaler.aws")

#: ``user_agent_extra`` of every request (shows up in CloudTrail as the caller's agent)
USER_AGENT = "clearml-scaler-aws"

# -- error classification -------------------------------------------------------------------

#: no capacity for this launch here and now: the policy tries elsewhere / falls back from spot
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
    }
)
#: launching in the next subnet may help (the others are about the market, not the place)
NEXT_SUBNET_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
    }
)
AUTH_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
        "UnrecognizedClientException",
        "OptInRequired",
        "Blocked",
    }
)
THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)

_ENCODED = re.compile(r"(Encoded authorization failure message:)\s*(\S+)", re.IGNORECASE)
_MAX_MESSAGE = 400


def clean_message(message: str) -> str:
    """AWS's message made fit for a log line: no encoded authorization blob, bounded length."""
    text = " ".join(str(message).split())
    match = _ENCODED.search(text)
    if match:
        blob = match.group(2)
        log.debug(
            "encoded authorization failure message (decode with `aws sts decode-authorization-message "
            "--encoded-message ...`): %s",
            blob,
        )
        text = (
            text[: match.start()]
            + (
                f"(an encoded authorization failure message of {len(blob)} characters was returned; it is logged at "
                "debug level: decode it with `aws sts decode-authorization-message` to see the denied action)"
            )
            + text[match.end() :]
        )
        return text
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return text


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Code") or "")
    return ""


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Message") or "")
    return str(exc)


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return 0


def map_error(
    exc: BaseException,
    action: str,
    *,
    context: str = "",
    needs: Sequence[str] = (),
    credentials: str = "",
) -> ProviderError:
    """The scaler's typed error for an exception raised by a boto3 call of EC2 ``action``.

    ``action`` is the EC2 API action (``RunInstances``); ``needs`` lists further IAM actions
    the call depends on (``ec2:CreateTags`` for tags at launch, ``iam:PassRole`` with an
    instance profile) so an authorization failure names every candidate; ``credentials``
    says where the credentials came from. Messages never contain credentials.
    """
    from botocore import exceptions as bex

    where = f" ({context})" if context else ""
    iam_action = f"ec2:{action}"
    if isinstance(exc, bex.ClientError):
        code = error_code(exc)
        message = clean_message(error_message(exc))
        status = _status(exc)
        summary = f"EC2 {action}{where} failed: {code}: {message}"
        if code in CAPACITY_CODES:
            return CapacityError(summary, code=code)
        if code in AUTH_CODES or code.startswith("AccessDenied"):
            if code in ("UnauthorizedOperation",) or code.startswith("AccessDenied"):
                wanted = ", ".join([iam_action, *needs])
                return AuthError(
                    f"not authorized: the scaler's AWS identity{_from(credentials)} needs {wanted}; "
                    f"EC2 {action}{where} answered {code}: {message}",
                    code=code,
                )
            return AuthError(
                f"AWS rejected the credentials{_from(credentials)} on {action}{where}: {code}: {message} "
                "(check the access key, secret, session token and the machine's clock)",
                code=code,
            )
        if code in THROTTLING_CODES or code in SERVER_CODES or status >= 500:
            return TransientError(f"{summary} (after retries; will try again next tick)", code=code)
        if code.endswith("LimitExceeded"):
            return QuotaError(f"{summary} (request a limit increase in the Service Quotas console)", code=code)
        return ProviderError(summary, code=code)
    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return AuthError(
            f"no usable AWS credentials for {action}{where}: {exc}; give the scaler an IAM role / profile "
            "(boto3's default chain, aws.use_iam_role = true) or set aws.access_key_id and aws.secret_access_key",
            code=type(exc).__name__,
        )
    if isinstance(exc, (bex.CredentialRetrievalError, bex.TokenRetrievalError)):
        return AuthError(f"could not get AWS credentials for {action}{where}: {exc}", code=type(exc).__name__)
    if isinstance(exc, bex.NoRegionError):
        return ProviderError(f"no AWS region for {action}: set aws.region", code="NoRegionError")
    if isinstance(exc, (bex.ConnectionError, bex.HTTPClientError)):
        # timeouts, refused or closed connections, DNS: botocore already retried them
        return TransientError(
            f"EC2 {action}{where} failed: {type(exc).__name__}: {exc} (after retries; will try again next tick)",
            code=type(exc).__name__,
        )
    if isinstance(exc, bex.ParamValidationError):
        return ProviderError(
            f"EC2 {action}{where}: invalid request (check aws.custom_launch_spec): {' '.join(str(exc).split())}",
            code="ParamValidationError",
        )
    if isinstance(exc, bex.BotoCoreError):
        return ProviderError(f"EC2 {action}{where} failed: {type(exc).__name__}: {exc}", code=type(exc).__name__)
    if isinstance(exc, ProviderError):
        return exc
    return ProviderError(f"EC2 {action}{where} failed: {type(exc).__name__}: {exc}", code=type(exc).__name__)


def _from(credentials: str) -> str:
    return f" ({credentials})" if credentials else ""


# -- clients ----------------------------------------------------------------------------------

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}


def _reveal(value: Any) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    return str(value or "")


def credential_source(settings: Mapping[str, Any]) -> str:
    """Where the credentials come from, for messages (never the credentials themselves)."""
    if _reveal(settings.get("access_key_id")):
        return "keys from aws.access_key_id / aws.secret_access_key"
    return "boto3's default credential chain"


def uses_explicit_keys(settings: Mapping[str, Any]) -> bool:
    return bool(_reveal(settings.get("access_key_id")))


def ec2_client(settings: Mapping[str, Any]) -> Any:
    """The (cached) EC2 client for the normalised ``aws`` section ``settings``.

    Cached per region, endpoint, access key id (plus a digest of the secret, so rotated keys
    get a new client), timeouts and attempts. Credentials: explicit keys when
    ``access_key_id`` is set, else boto3's default chain (instance role, profile, env).
    """
    region = str(settings.get("region") or "us-east-1")
    endpoint = str(settings.get("endpoint_url") or "") or None
    key_id = _reveal(settings.get("access_key_id"))
    secret = _reveal(settings.get("secret_access_key"))
    token = _reveal(settings.get("session_token"))
    if not key_id and settings.get("use_iam_role") is False:
        raise AuthError(
            "aws.use_iam_role is false but aws.access_key_id / aws.secret_access_key are not set: "
            "set both keys, or set use_iam_role = true to use the instance role / boto3's credential chain",
            code="NoCredentials",
        )
    if key_id and not secret:
        raise AuthError("aws.access_key_id is set but aws.secret_access_key is empty", code="PartialCredentials")
    timeout = float(settings.get("request_timeout") or 20.0)
    attempts = int(settings.get("max_attempts") or 3)
    digest = hashlib.sha256(f"{secret}\0{token}".encode()).hexdigest() if key_id else ""
    # boto3 resolves AWS_ENDPOINT_URL_EC2 when the client is made: a change means a new client
    env_endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2", "") or os.environ.get("AWS_ENDPOINT_URL", "")
    key = (region, endpoint, env_endpoint, key_id, digest, timeout, attempts)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _make_client(region, endpoint, key_id, secret, token, timeout, attempts)
            _clients[key] = client
        return client


def _make_client(
    region: str, endpoint: str | None, key_id: str, secret: str, token: str, timeout: float, attempts: int
) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        aws_session_token=(token or None) if key_id else None,
        region_name=region,
    )
    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        user_agent_extra=USER_AGENT,
    )
    return session.client("ec2", region_name=region, endpoint_url=endpoint, config=config)


def clear_clients() -> None:
    """Forget the cached clients (tests; credentials rotated outside the config)."""
    with _lock:
        _clients.clear()
