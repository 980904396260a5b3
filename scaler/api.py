"""Everything a plugin imports from core, in one module.

A provider plugin (or any other plugin) needs nothing else from ``scaler``::

    from scaler.api import CapacityError, Field, Instance, InstanceState, Section, hookimpl

The hook specifications themselves are documented in :mod:`scaler.hookspecs` and
docs/plugin-hooks.md; the conformance kit is :mod:`scaler.testing`.
"""

from __future__ import annotations

from scaler.config.fields import Field, Section
from scaler.config.model import Config, Resource
from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.hookspecs import hookimpl
from scaler.types import (
    TAG_LAUNCH_TOKEN,
    TAG_RESOURCE,
    TAG_SCALER,
    Instance,
    InstanceState,
    Problem,
    RenderContext,
    ScriptPart,
    Secret,
    ServerInfo,
)

__all__ = [
    "TAG_LAUNCH_TOKEN",
    "TAG_RESOURCE",
    "TAG_SCALER",
    "AuthError",
    "CapacityError",
    "Config",
    "Field",
    "Instance",
    "InstanceState",
    "Problem",
    "ProviderError",
    "QuotaError",
    "RenderContext",
    "Resource",
    "ScriptPart",
    "Secret",
    "Section",
    "ServerInfo",
    "TransientError",
    "hookimpl",
]
