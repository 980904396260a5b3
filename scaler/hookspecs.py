"""The plugin contract of clearml-scaler.

Plugins are pluggy plugins of the project ``scaler``. A plugin module (or object) implements
some of the hooks below, each decorated with :data:`hookimpl`, and is published through the
entry-point group ``scaler``; the entry-point name of a provider is the name users pass to
``--provider``. Core implements its own contribution hooks as the built-in plugin
``scaler.default_plugins.core``, exactly as a third party would.

There are two kinds of hooks:

* **Provider hooks** (``scaler_launch``, ``scaler_list_instances``, ``scaler_terminate``,
  ``scaler_console_output``, ``scaler_check_cloud``) are called on the one provider chosen
  with ``--provider``; no other plugin ever sees those calls.
* **Contribution hooks** are called on every loaded plugin, built-in first, and their
  answers are collected in that order.

Hook implementations may accept fewer arguments than the spec names (pluggy passes only
the ones they ask for), which is how the contract grows without breaking plugins.

Provider hooks report failures with the typed errors of :mod:`scaler.errors`:
:class:`~scaler.errors.CapacityError`, :class:`~scaler.errors.QuotaError`,
:class:`~scaler.errors.AuthError`, :class:`~scaler.errors.TransientError`. Anything else
is treated as a bug in the plugin and reported with its context; the loop goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.types import Instance, InstanceState, Problem, RenderContext, ScriptPart, Secret, ServerInfo

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource

PROJECT = "scaler"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate each hook implementation of a plugin with this marker.
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "AuthError",
    "CapacityError",
    "Instance",
    "InstanceState",
    "Problem",
    "ProviderError",
    "QuotaError",
    "RenderContext",
    "ScriptPart",
    "Secret",
    "ServerInfo",
    "TransientError",
    "hookimpl",
]

PROVIDER_HOOKS = (
    "scaler_launch",
    "scaler_list_instances",
    "scaler_terminate",
    "scaler_console_output",
    "scaler_check_cloud",
)


# --- provider hooks: answered by the chosen provider only -------------------------------


@hookspec(firstresult=True)
def scaler_launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    """Start ``count`` instances of ``resource``.

    Called by the reconciler once per launch decision, batched per resource. ``init_script``
    is the rendered bash script for the machine's user data / startup script. ``spot`` says
    which market the policy chose (it already handled spot rollback and blackout).

    ``launch_token`` is stable for one launch decision: pass it to the cloud's idempotency
    key (EC2 ``ClientToken``, GCE ``requestId``) so a retried call after a crash or timeout
    does not create a second batch, and tag every instance with it. Every instance must
    also be tagged/labelled with the scaler name and the resource name
    (:data:`scaler.types.TAG_SCALER`, ``TAG_RESOURCE``, ``TAG_LAUNCH_TOKEN``) in the same
    call that creates it, so an instance is never untracked.

    Must not wait for the machine to boot or a spot request to be fulfilled.

    Returns the instances created (possibly fewer than ``count`` if the cloud gave fewer).
    Raises :class:`CapacityError` when none could be had (the policy spills over or falls
    back from spot), :class:`QuotaError`, :class:`AuthError` or :class:`TransientError`.
    """


@hookspec(firstresult=True)
def scaler_list_instances(config: Config) -> list[Instance]:
    """Every live or stopping instance this scaler owns, found by its tags/labels alone.

    Called by the reconciler once per tick (and by ``status``). Ownership is the tag
    ``TAG_SCALER == config.scaler.name``; instances of other scalers or of no scaler are
    never returned. Must paginate through the whole fleet. Terminated instances may be
    omitted. Raises :class:`TransientError`/:class:`AuthError` when the cloud cannot be
    read; the loop then launches nothing this tick.
    """


@hookspec(firstresult=True)
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    """Terminate the given instances (ids as returned by ``scaler_list_instances``).

    Called by the reconciler with all ids to terminate in one tick, per resource. Batch the
    calls. Terminating an instance that is already gone is success. Returns ``True``.
    """


@hookspec(firstresult=True)
def scaler_console_output(config: Config, instance_id: str) -> str:
    """The machine's console / serial output as text (latest available; may be empty while
    it boots). Called before a stuck instance is terminated and by ``scaler console-output``.
    """


@hookspec(firstresult=True)
def scaler_check_cloud(config: Config) -> list[Problem]:
    """Check the configuration against the cloud (``validate-config --check-cloud``):
    images exist, instance types are offered, network ids exist, a launch is permitted.
    Must not create anything. Returns the problems found (empty when all is well).
    """


# --- contribution hooks: answered by every plugin, core's built-in plugin first ----------


@hookspec
def scaler_init_script_parts(
    config: Config, resource: Resource, provider: str, context: RenderContext
) -> list[ScriptPart]:
    """Bash fragments for the init script of ``resource``'s machines.

    Called by the renderer on every plugin; all parts are sorted by ``ScriptPart.order`` and
    joined. ``context`` holds the ClearML server the agents report to and whether secrets
    may be written in clear (``context.secret(value)`` gives the value or a mask). The chosen provider must contribute, at order 200, a fragment that sets
    ``SCALER_INSTANCE_ID`` to the machine's own instance id (e.g. from the metadata server);
    other plugins check ``provider`` and usually contribute nothing for foreign providers.
    Every value embedded in a fragment must be shell-quoted (``shlex.quote``).
    """


@hookspec
def scaler_clearml_conf_parts(config: Config, resource: Resource, provider: str, context: RenderContext) -> list[str]:
    """HOCON fragments appended, in plugin order, to the agent's ``~/clearml.conf``.

    Core contributes the server, credentials and git settings first, then
    ``scaler.extra_clearml_conf`` and the vault's ``extra_clearml_conf`` texts."""


@hookspec
def scaler_validate_config(config: dict[str, Any], provider: str | None, providers: list[str]) -> list[Problem]:
    """Validate the plugin's own part of a parsed configuration (a plain nested dict).

    Called by ``validate-config`` and before ``run`` starts, on every plugin. A provider
    plugin checks its top-level section and each ``resources[i].<provider>`` section; it
    treats them as required when ``provider`` is its own name, and checks them when they are
    present otherwise. ``providers`` lists every installed provider name. Returns problems
    with dotted paths (``resources[1].aws.ebs.size_gb``).
    """


@hookspec
def scaler_config_defaults() -> dict[str, Any]:
    """Defaults of the plugin's own config sections, as ``{section: {key: value}}``.

    Used by ``scaler init``, ``export`` and the configuration reference.
    """


@hookspec
def scaler_vault_keys(provider: str) -> dict[str, str]:
    """How ClearML vault keys map onto config paths, for vault ``auto_scaler.v1.<provider>``.

    Returns ``{vault_key: dotted.config.path}``, e.g. ``{"aws_region": "aws.region"}``.
    Core contributes the provider-independent keys; a provider answers for its own name
    only. A vault key no plugin maps is reported, not silently dropped.
    """
