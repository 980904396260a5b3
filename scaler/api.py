"""Everything a plugin imports from core, in one module.

A provider plugin (or any other plugin) needs nothing else from ``scaler``::

    from scaler.api import CapacityError, Field, Instance, InstanceState, Section, hookimpl

A plugin declares its configuration with :class:`Section` and :class:`Field` (hook
``scaler_config_sections``; :class:`Ask` for a conditional ``scaler init`` question,
:class:`FieldKind` for the kinds of values); its provider hooks then read the normalised
values from ``config.provider_settings`` and ``resource.provider``, and its
``scaler_validate_config`` receives :class:`ResourceSettings`.

Ownership: a provider tags each machine it launches with ``config.tags_for(resource.name,
launch_token)`` (the tag names are :data:`TAG_SCALER`, :data:`TAG_FLEET`, :data:`TAG_RESOURCE`,
:data:`TAG_LAUNCH_TOKEN`), lists the machines for which ``config.listed(tags)`` holds and reads
each back with :meth:`Instance.from_tags`.

The hook specifications themselves are documented in :mod:`scaler.hookspecs` and
docs/plugin-hooks.md; the conformance kit is :mod:`scaler.testing`.
"""

from __future__ import annotations

from scaler.config.fields import Ask, Field, FieldKind, ResourceSettings, Section
from scaler.config.model import Config, Resource
from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.hookspecs import hookimpl
from scaler.types import (
    TAG_FLEET,
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
    Severity,
    fleet_identity,
)

__all__ = [
    "TAG_FLEET",
    "TAG_LAUNCH_TOKEN",
    "TAG_RESOURCE",
    "TAG_SCALER",
    "Ask",
    "AuthError",
    "CapacityError",
    "Config",
    "Field",
    "FieldKind",
    "Instance",
    "InstanceState",
    "Problem",
    "ProviderError",
    "QuotaError",
    "RenderContext",
    "Resource",
    "ResourceSettings",
    "ScriptPart",
    "Secret",
    "Section",
    "ServerInfo",
    "Severity",
    "TransientError",
    "fleet_identity",
    "hookimpl",
]
