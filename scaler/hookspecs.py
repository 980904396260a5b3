"""The plugin contract of clearml-scaler.

Plugins are pluggy plugins of the project ``scaler``. A plugin module (or object) implements
some of the hooks below, each decorated with :data:`hookimpl`, and is published through the
entry-point group ``scaler``; the entry-point name of a provider is the name users pass to
``--provider``. Core implements its own contribution hooks as the built-in plugin
``scaler.default_plugins.core``, exactly as a third party would.

There are two kinds of hooks:

* **Provider hooks** (``scaler_launch``, ``scaler_list_instances``, ``scaler_terminate``,
  ``scaler_console_output``, ``scaler_check_cloud``, ``scaler_tag_instances``,
  ``scaler_describe_instances``) are called on the one provider chosen with ``--provider``; no
  other plugin ever sees those calls. One fleet may span several clouds (each resource names
  its provider): each provider's hooks then get ``config.for_provider(<its name>)``, the
  configuration as if it were the only provider (its settings, only its resources, its vault
  texts), so a provider is written for one cloud whatever the fleet spans.
* **Contribution hooks** are called on every loaded plugin, built-in first, and their
  answers are collected in that order (``scaler_validate_config`` only on the plugin that
  declared the section being checked, through ``scaler_config_sections``).

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
    from scaler.config.fields import ResourceSettings, Section
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
    "scaler_tag_instances",
    "scaler_describe_instances",
)


# --- provider hooks: answered by the chosen provider only -------------------------------


@hookspec(firstresult=True)
def scaler_launch(
    config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
) -> list[Instance]:
    """Start ``count`` machines of ``resource``; return at once, without waiting for them to boot.

    Called by the reconciler (``scaler run``) once per launch decision, batched per resource,
    on the chosen provider only. A call that failed with :class:`TransientError` is repeated
    on a later tick with the same ``launch_token`` (possibly from a restarted scaler process).

    :param config: the run's configuration; ``config.scaler.name`` is the fleet's name and
        ``config.provider_settings`` the provider's own top-level section, validated and
        normalised from its declaration (defaults applied, secrets as :class:`Secret`).
    :param resource: the resource to launch; ``resource.provider`` is its normalised
        ``<provider> { … }`` section.
    :param count: how many machines (at least 1).
    :param init_script: the rendered bash script; pass it as user data / startup script.
    :param launch_token: stable for one launch decision. Pass it to the cloud's idempotency
        key (e.g. ``ClientToken`` or ``requestId``) so that a retried call, even from a fresh
        process, returns the first call's machines instead of creating a second batch.
    :param spot: the market the policy chose (it already handled spot rollback and blackout);
        launch spot machines when true, and report them with ``Instance.spot``.

    Tag/label every machine, in the same call that creates it, with
    ``config.tags_for(resource.name, launch_token)``: ``TAG_SCALER = config.scaler.name``,
    ``TAG_FLEET = config.fleet_id`` (the fleet identity, when known), ``TAG_RESOURCE =
    resource.name`` and ``TAG_LAUNCH_TOKEN = launch_token``, so that no machine is ever
    untracked and no other deployment takes it for its own.

    Returns the :class:`Instance` objects created (fewer than ``count`` if the cloud gave
    fewer), ``launched_at`` in unix seconds. Raises :class:`CapacityError` when no machine
    could be had (the policy spills over, or falls back from spot to on-demand),
    :class:`QuotaError`, :class:`AuthError` (naming the missing permission) or
    :class:`TransientError` (retried next tick with the same token).
    """


@hookspec(firstresult=True)
def scaler_list_instances(config: Config, include_foreign: bool) -> list[Instance]:
    """Every live or stopping machine of this fleet, found by its tags/labels alone.

    Called by the reconciler once per tick, before it decides anything, and by
    ``scaler status``, on the chosen provider only. The cloud is the source of truth: a
    restarted scaler rebuilds its fleet from this answer.

    :param config: the run's configuration. The fleet's machines carry
        ``TAG_SCALER == config.scaler.name`` and ``TAG_FLEET == config.fleet_id`` (the fleet
        identity: the scaler's name with the ClearML server and workspace it serves).
    :param include_foreign: false for the loop. True only for ``scaler status``, which shows
        the machines that carry this scaler's name but another deployment's identity as
        *foreign*; a provider may ignore it (accept only ``config``).

    List the machines tagged with the scaler's name and keep those for which
    ``config.listed(tags, include_foreign)`` holds: this fleet's identity, or no identity at all
    (*legacy*: launched before identities existed; core adopts one once its worker shows it is
    this fleet's, and never touches it otherwise). A machine with another identity is never
    returned to the loop. Returns an :class:`Instance` per machine, read from its tags
    (:meth:`Instance.from_tags`): ``resource`` from ``TAG_RESOURCE``, ``launch_token`` from
    ``TAG_LAUNCH_TOKEN``, ``fleet`` from ``TAG_FLEET`` (empty when absent), ``launched_at`` in
    unix seconds, ``spot``. Terminated machines may be left out. Follow every page of the
    cloud's list: a fleet bigger than a page must come back whole. Raises
    :class:`TransientError` or :class:`AuthError` when the cloud cannot be read; the loop then
    launches nothing this tick.
    """


@hookspec(firstresult=True)
def scaler_terminate(config: Config, instance_ids: list[str]) -> bool:
    """Terminate machines.

    Called by the reconciler with every machine to terminate in one tick, per resource (idle,
    stuck, orphaned), on the chosen provider only; a failed call is repeated on a later tick.

    :param config: the run's configuration.
    :param instance_ids: ids as ``scaler_list_instances`` returned them.

    Batch the cloud calls. An id the cloud does not know, or a machine already terminating
    or gone, is success: terminate the others and return. Returns ``True``. Raises
    :class:`TransientError` or :class:`AuthError` when the cloud refused.
    """


@hookspec(firstresult=True)
def scaler_console_output(config: Config, instance_id: str) -> str:
    """The machine's console (serial) output.

    Called by the reconciler before it terminates a stuck machine (the output goes to the
    log) and by ``scaler console-output``, on the chosen provider only.

    :param config: the run's configuration.
    :param instance_id: an id as ``scaler_list_instances`` returned it, or one a user typed.

    Returns the latest output as text, empty while the machine boots. Raises
    :class:`ProviderError` (code: the cloud's not-found code) for an id the cloud does not
    know, so that ``scaler console-output`` can say so; never an empty string for it.
    """


@hookspec(firstresult=True)
def scaler_check_cloud(config: Config) -> list[Problem]:
    """Check the configuration against the cloud; optional (the only provider hook that is).

    Called by ``scaler validate-config --check-cloud``, on the chosen provider only.

    :param config: the validated configuration.

    Look up what the configuration names (images, instance types, networks) and whether a
    launch would be permitted; create nothing. Returns the :class:`Problem` list found,
    empty when all is well.
    """


@hookspec(firstresult=True)
def scaler_tag_instances(config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
    """Add tags/labels to machines of this fleet, keeping the ones they have; optional.

    Called by the reconciler, on the chosen provider only, to adopt *legacy* machines (listed
    with the scaler's name but no ``TAG_FLEET``, launched before fleet identities) once their
    worker shows they are this fleet's: ``tags`` is ``{TAG_FLEET: config.fleet_id}``. A provider
    without it keeps working; its legacy machines are then never tagged, and an orphaned one is
    never terminated (the log says so once).

    Also called by ``scaler adopt`` to take over machines of ClearML's own autoscaler: ids as
    ``scaler_describe_instances`` returned them, ``tags`` the ownership tags a launch writes
    (``config.tags_for(resource, launch_token)``).

    :param config: the run's configuration.
    :param instance_ids: ids as ``scaler_list_instances`` returned them.
    :param tags: the tags to add or overwrite.

    Batch the cloud calls. An id the cloud does not know (the machine is gone) is skipped.
    Returns ``True``. Raises :class:`TransientError` or :class:`AuthError` when the cloud
    refused; the reconciler tries again next tick.
    """


@hookspec(firstresult=True)
def scaler_describe_instances(config: Config, instance_ids: list[str]) -> list[Instance]:
    """The machines with these ids, whatever their tags/labels; optional.

    Called by ``scaler adopt`` (on the chosen provider only) to find machines that are not this
    fleet's yet: ClearML's own autoscaler tags nothing the scaler recognises, but its agents'
    worker ids name their machines (``<prefix>:<resource>:<instance type>:<instance id>``), so
    ``adopt`` reads the ids from ClearML's workers and asks the provider about each. Without this
    hook a provider cannot adopt; ``scaler adopt`` says so and changes nothing.

    :param config: the run's configuration (its region, project, zones: where to look).
    :param instance_ids: ids as the workers name them (the provider's own handle, as
        ``scaler_list_instances`` returns it).

    Returns an :class:`Instance` per machine found where the configuration looks (its region,
    project or zones), in any state, read with :meth:`Instance.from_tags` from whatever tags it
    has (an untagged machine has an empty ``resource``), with ``instance_type``, ``zone``,
    ``spot`` and ``launched_at``. An id not found there (another region, a machine long gone, an
    id that is no id of this cloud) is left out, never an error. Raises :class:`TransientError`
    or :class:`AuthError` when the cloud cannot be read.
    """


# --- contribution hooks: answered by every plugin, core's built-in plugin first ----------


@hookspec
def scaler_init_script_parts(
    config: Config, resource: Resource, provider: str, context: RenderContext
) -> list[ScriptPart]:
    """Bash fragments for the init script of ``resource``'s machines.

    Called by the renderer on every plugin that is not a provider and on the provider of the
    resource (other providers never see the call); all parts are sorted by
    ``ScriptPart.order`` and joined. ``context`` holds the ClearML server the agents report to
    and whether secrets may be written in clear (``context.secret(value)`` gives the value or
    a mask). The provider must contribute, at order 200, a fragment that sets
    ``SCALER_INSTANCE_ID`` to the machine's own instance id (e.g. from the metadata server).
    ``provider`` names the resource's provider, for plugins that are not providers and
    contribute per cloud. Every value embedded in a fragment must be shell-quoted
    (``shlex.quote``).
    """


@hookspec
def scaler_clearml_conf_parts(config: Config, resource: Resource, provider: str, context: RenderContext) -> list[str]:
    """HOCON fragments appended, in plugin order, to the agent's ``~/clearml.conf``.

    Called like ``scaler_init_script_parts`` (never on a provider other than the resource's).
    Core contributes the server, credentials and git settings first, then
    ``scaler.extra_clearml_conf`` and the vault's ``extra_clearml_conf`` texts."""


@hookspec
def scaler_config_sections() -> list[Section]:
    """The configuration sections this plugin declares.

    Called by core on every plugin (core's built-in plugin first: it declares ``scaler`` and
    ``resources``) whenever it needs the declarations: to check and load a configuration, for
    ``scaler init``, ``export``/``import`` and the configuration reference; never per tick.
    Takes no argument; must answer the same every time, without I/O. Returns
    :class:`~scaler.api.Section` objects (an empty list or ``None``: no section)::

        @hookimpl
        def scaler_config_sections():
            return [
                Section(
                    "mycloud",
                    "Settings of the mycloud fleet.",
                    fields=(
                        Field("region", "str", "Region of the fleet.", default="eu-1", ask="Region"),
                        Field("api_token", "secret", "API token.", default="", env="MYCLOUD_TOKEN",
                              vault=("mycloud_token",)),
                    ),
                    resource_fields=(Field("size", "choice", "Machine size.", default="small",
                                           choices=("small", "large"), ask=Ask("Machine size", key="instance_type")),),
                )
            ]

    A provider names its section after itself (its entry-point name): ``fields`` describe the
    top-level ``mycloud { … }``, ``resource_fields`` each ``resources[i].mycloud { … }``. From
    this declaration alone core validates and normalises both (required when the provider is
    the one chosen with ``--provider``, checked where written otherwise), hands them to the
    provider hooks as ``config.provider_settings`` and ``resource.provider`` (defaults applied,
    durations in seconds, secrets as :class:`~scaler.api.Secret`), masks secrets in exports,
    comments ``scaler export``/``import`` output, writes the configuration reference, maps
    ClearML vault keys (``Field.vault``), names the environment variable of each secret
    (``Field.env``) and asks ``scaler init``'s questions (``Field.ask``; ``scaler init --set
    mycloud.region=eu-2`` answers one from the command line). A plugin that is no provider may
    declare sections too; they apply to every run. A section name declared twice keeps its
    first declaration.
    """


@hookspec
def scaler_validate_config(
    section: str, settings: dict[str, Any], resources: list[ResourceSettings], applies: bool
) -> list[Problem]:
    """Checks between keys of a section the plugin declared, which a per-key schema cannot
    express (``access_key_id`` needs ``secret_access_key``; a zone must be in the region).

    Called by ``validate-config``, ``scaler init`` and before ``run`` starts, after core checked
    every key against the declaration, on the declaring plugin only, once per section it
    declared that is written in the configuration or applies to the run. ``section`` is the
    section's name; ``settings`` its normalised top-level values (defaults applied; a key whose
    value is invalid is left out, its problem is already reported); ``resources`` the resources
    that hold a ``<section> { … }`` (:class:`~scaler.api.ResourceSettings`: normalised
    ``settings``, the resource's normalised ``common`` keys, its ``path`` and the keys
    ``written``); ``applies`` is true when the section belongs to this run (its provider is the
    chosen one, or it is no provider's), false when it is only checked because it is written.

    Returns problems with dotted paths (``resources[1].mycloud.disk_gb``), warnings with
    ``severity="warning"``. Per-key rules (types, ranges, patterns, required keys, unknown keys)
    belong in the declaration, not here.
    """
