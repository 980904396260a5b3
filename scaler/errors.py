"""Typed errors shared by core and provider plugins.

Providers raise these from their hooks so the loop can react without knowing the cloud:
a :class:`CapacityError` makes the policy spill to the next resource (or fall back from
spot to on-demand), a :class:`TransientError` is retried next tick, an :class:`AuthError`
stops launching and tells the operator which permission is missing.
"""

from __future__ import annotations


class ScalerError(Exception):
    """Base of every error the scaler reports to a user (never shown as a traceback)."""


class ConfigError(ScalerError):
    """The configuration (or vault) cannot be used; the message says where and why."""


class PluginError(ScalerError):
    """A plugin could not be loaded, or the chosen provider is not installed."""


class ProviderError(ScalerError):
    """Base class of errors raised by provider hooks.

    ``code`` is the cloud's own error code (``InsufficientInstanceCapacity``,
    ``ZONE_RESOURCE_POOL_EXHAUSTED``, ...) so logs and metrics can group by it.
    """

    kind = "provider"

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class CapacityError(ProviderError):
    """No capacity for this launch (spot unavailable, zone exhausted): try elsewhere."""

    kind = "capacity"


class QuotaError(ProviderError):
    """An account quota or limit prevents the launch; retrying will not help soon."""

    kind = "quota"


class AuthError(ProviderError):
    """Credentials are missing or lack a permission; the message names the permission."""

    kind = "auth"


class TransientError(ProviderError):
    """Throttling, 5xx, timeouts: the same call may succeed on a later tick."""

    kind = "transient"


class NotImplementedByProvider(ProviderError):
    """The chosen provider does not implement a hook the loop needs."""

    kind = "not_implemented"
