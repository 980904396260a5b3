"""Typed configuration handed to the loop and to plugins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scaler.types import TAG_FLEET, TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, Secret

#: ``scaler.name`` when none is given; a deployment should choose its own (``scaler run`` warns)
DEFAULT_NAME = "clearml-scaler"
#: ``scaler.agent_version`` by default: the clearml-agent releases the boot script is tested with
#: (tests/aws/test_real_agent.py installs the newest of them and runs it)
DEFAULT_AGENT_VERSION = ">=2.0,<4"
#: a resource's ``docker_image`` when the configuration says "no docker" for it (``null``, ``""``
#: or ``none``); an empty ``docker_image`` means "the default image"
NO_DOCKER = "none"


def is_no_docker(value: object) -> bool:
    """``null``, ``""`` or ``none`` (any case, as ClearML's UI and SDK write it) in
    ``default_docker_image`` or a resource's ``docker_image``: run the agent without docker."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", NO_DOCKER))


@dataclass(frozen=True)
class GitSettings:
    user: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class AgentCredentials:
    access_key: Secret = field(default_factory=lambda: Secret(""))
    secret_key: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class ScalerSettings:
    """The ``scaler`` section. Durations are in seconds."""

    name: str = DEFAULT_NAME
    workers_prefix: str = "dynamic_worker"
    polling_interval: float = 30.0
    max_idle_time: float = 900.0
    stuck_timeout: float = 1200.0
    create_queues: bool = True
    default_docker_image: str = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    git: GitSettings = field(default_factory=GitSettings)
    init_script: str = ""
    extra_clearml_conf: str = ""
    exclude_bashrc: bool = False
    apply_vault: bool = True
    ignore_vault_parsing_errors: bool = False
    warn_duplicate_task_runs: bool = True
    orphans: str = "terminate"
    orphan_grace: float = 600.0
    requeue_interrupted_tasks: bool = True
    max_requeues: int = 3
    agent_credentials: AgentCredentials = field(default_factory=AgentCredentials)
    agent_version: str = DEFAULT_AGENT_VERSION
    max_instances_total: int = 0
    max_hourly_cost: float = 0.0
    max_launch_per_tick: int = 0
    idle_policy: str = "adaptive"
    min_idle_time: float = 0.0
    max_spill_wait: float = 1800.0
    spill_delay: float = 0.0


@dataclass(frozen=True)
class Resource:
    """One entry of ``resources``. ``provider_name`` is the provider its machines run on (its
    ``provider`` key, or inferred: see docs/multi-cloud.md); ``provider`` is this resource's
    ``<provider> { … }`` subsection, normalised by core from the provider's declaration
    (defaults applied, durations in seconds, secrets as :class:`~scaler.types.Secret`)."""

    name: str
    queue: str
    max_instances: int
    cpu_only: bool = False
    spot: bool = False
    regular_instance_rollback_timeout: float = 600.0
    spot_blackout_period: float = 1800.0
    price_per_hour: float = 0.0
    docker_image: str = ""  # "": scaler.default_docker_image; NO_DOCKER: no docker for this resource
    init_script: str = ""
    extra_agent_args: tuple[str, ...] = ()
    provider: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    provider_name: str = ""


@dataclass(frozen=True)
class Config:
    """A validated configuration with the vault merged in.

    ``provider_settings`` is the chosen provider's top-level section, normalised by core from
    the provider's declaration (defaults applied, durations in seconds, secrets as
    :class:`~scaler.types.Secret`);
    ``vault_scripts`` / ``vault_clearml_conf`` are the vault's accumulated
    ``extra_vm_bash_script`` / ``extra_clearml_conf`` texts, in merge order.

    A configuration may hold resources of several providers (one fleet across clouds):
    ``providers`` maps each provider the run serves, in the order its first resource comes, to
    its normalised top-level section, and ``provider_vaults`` to the vault texts of its own
    ``auto_scaler.v1.<provider>``. A provider hook never sees that whole: the host calls it
    with :meth:`for_provider`, the view of one provider (``provider_name``,
    ``provider_settings``, only its resources, only its vault texts). With one provider the
    configuration is its own view.

    ``fleet_id`` is the fleet identity (:func:`scaler.types.fleet_identity` of ``scaler.name``,
    the ClearML server and its workspace), set by core before any provider hook is called by
    ``scaler run`` and ``scaler status``; empty where no ClearML server is known (the simulator,
    ``console-output``), which makes the scaler's name alone the owner, as before identities.
    """

    scaler: ScalerSettings
    resources: tuple[Resource, ...]
    provider_name: str = ""
    provider_settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    vault_scripts: tuple[str, ...] = ()
    vault_clearml_conf: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    fleet_id: str = ""
    providers: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    provider_vaults: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @property
    def provider_names(self) -> tuple[str, ...]:
        """The providers this configuration's resources run on, in config order."""
        if self.providers:
            return tuple(self.providers)
        return (self.provider_name,) if self.provider_name else ()

    @property
    def multi_cloud(self) -> bool:
        return len(self.provider_names) > 1

    def provider_of(self, resource: str) -> str:
        """The provider of resource ``resource`` ("" when it is not configured)."""
        found = self.resource(resource)
        return (found.provider_name or self.provider_name) if found is not None else ""

    def for_provider(self, name: str) -> Config:
        """What a hook of provider ``name`` is given: this configuration as if ``name`` were its
        only provider (its settings, its resources, its vault texts). The same object when the
        configuration has one provider (or none)."""
        if not self.multi_cloud:
            return self
        views = self.__dict__.setdefault("_views", {})
        view = views.get(name)
        if view is None:
            scripts, conf = self.provider_vaults.get(name, ((), ()))
            view = replace(
                self,
                provider_name=name,
                provider_settings=dict(self.providers.get(name, {})),
                resources=tuple(r for r in self.resources if r.provider_name == name),
                vault_scripts=scripts,
                vault_clearml_conf=conf,
                providers={name: dict(self.providers.get(name, {}))},
                provider_vaults={name: (scripts, conf)} if name in self.provider_vaults else {},
            )
            views[name] = view
        return view

    def tags_for(self, resource: str, launch_token: str) -> dict[str, str]:
        """The ownership tags a provider writes on every machine it launches for ``resource``:
        :data:`~scaler.types.TAG_SCALER` (``scaler.name``), :data:`~scaler.types.TAG_FLEET`
        (``fleet_id``, when known), :data:`~scaler.types.TAG_RESOURCE` and
        :data:`~scaler.types.TAG_LAUNCH_TOKEN`."""
        tags = {TAG_SCALER: self.scaler.name, TAG_RESOURCE: resource, TAG_LAUNCH_TOKEN: launch_token}
        if self.fleet_id:
            tags[TAG_FLEET] = self.fleet_id
        return tags

    def listed(self, tags: Mapping[str, str], include_foreign: bool = False) -> bool:
        """Whether ``scaler_list_instances`` returns a machine with these tags: it carries this
        scaler's name and either this fleet's identity or none (legacy: tagged before identities;
        core adopts it when its worker shows it is this fleet's). A machine with another identity
        is foreign: listed only when ``include_foreign`` (for ``scaler status``)."""
        if tags.get(TAG_SCALER) != self.scaler.name:
            return False
        return include_foreign or tags.get(TAG_FLEET, "") in ("", self.fleet_id)

    def resource(self, name: str) -> Resource | None:
        by_name = self.__dict__.get("_by_name")
        if by_name is None:  # the policy asks per instance: index once (a frozen config never changes)
            by_name = self.__dict__["_by_name"] = {}
            for item in self.resources:
                by_name.setdefault(item.name, item)
        return by_name.get(name)

    def resources_for_queue(self, queue: str) -> list[Resource]:
        by_queue = self.__dict__.get("_by_queue")
        if by_queue is None:
            by_queue = self.__dict__["_by_queue"] = {}
            for item in self.resources:
                by_queue.setdefault(item.queue, []).append(item)
        return list(by_queue.get(queue, ()))

    @property
    def queues(self) -> list[str]:
        """Queues served, in config order, each once."""
        return list(dict.fromkeys(item.queue for item in self.resources))
