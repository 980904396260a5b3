"""The plugin host: loads entry points of group ``scaler``, registers core's built-in
plugins, and dispatches provider hooks to exactly the chosen provider.

Loading is strict, because pluggy on its own is silent about the mistakes a plugin author
makes most: a plugin is rejected at load (shown as failed by ``scaler providers``, never
called) when

* a hook implementation matches no hook specification (a typo such as ``scaler_lauch``):
  the error names the plugin, the function and the closest hook name;
* a function named ``scaler_*`` lacks ``@hookimpl`` (pluggy would ignore it);
* it implements some provider hooks but not all of the required ones
  (:data:`REQUIRED_PROVIDER_HOOKS`).

After loading, pluggy's ``check_pending()`` confirms that every registered implementation
has a specification. Core's built-in plugins go through the same checks; a mistake there is
a bug and raises.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from scaler import hookspecs
from scaler.config.catalog import Catalog, use_installed
from scaler.config.fields import Section
from scaler.config.validation import check_config
from scaler.errors import NotImplementedByProvider, PluginError, ProviderError
from scaler.types import Instance, Problem, RenderContext, ScriptPart

if TYPE_CHECKING:
    from scaler.config.fields import ResourceSettings
    from scaler.config.model import Config, Resource

ENTRY_POINT_GROUP = "scaler"
LOAD_ENV = "SCALER_LOAD_PLUGINS"
#: the provider hooks every provider must implement (``scaler_check_cloud``,
#: ``scaler_tag_instances`` and ``scaler_describe_instances`` are optional)
REQUIRED_PROVIDER_HOOKS = ("scaler_launch", "scaler_list_instances", "scaler_terminate", "scaler_console_output")
#: the prefix of every hook name; a plugin function with this prefix is taken for a hook
HOOK_PREFIX = "scaler_"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its entry-point name, distribution and version."""

    name: str
    distribution: str
    version: str
    is_provider: bool
    builtin: bool = False


class PluginRejected(PluginError):
    """A plugin failed the load-time checks; ``problems`` says what is wrong with it."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"plugin '{name}': " + "; ".join(problems))
        self.name = name
        self.problems = problems


class PluginBugError(ProviderError):
    """A provider hook raised something other than a typed error (:mod:`scaler.errors`): a bug
    in the plugin. The loop reports it with its context and goes on; ``code`` is the name of
    the exception the plugin raised."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, with the reason shown to the user."""

    name: str
    distribution: str
    error: str


@functools.cache
def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    # scanning every installed distribution costs ~25 ms; what is installed does not change in a process
    return tuple(sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name))


@functools.cache
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _allowed_from_env() -> set[str] | None:
    value = os.environ.get(LOAD_ENV)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class PluginHost:
    """Owns the pluggy ``PluginManager``; one per process."""

    def __init__(self, *, load_entry_points: bool = True, allowed: Iterable[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        allow = set(allowed) if allowed is not None else _allowed_from_env()
        if load_entry_points:
            self._load_entry_points(allow)
        # core's own plugins are registered last so pluggy calls them first
        from scaler.default_plugins import core as builtin
        from scaler.default_plugins import simulated

        self._register(simulated, "simulated", "clearml-scaler", builtin=True)
        self._register(builtin, "scaler.default_plugins.core", "clearml-scaler", builtin=True)
        # every plugin left registered passed the checks above; this is pluggy's own word on it
        self.pm.check_pending()

    # -- loading -----------------------------------------------------------------------

    def _load_entry_points(self, allow: set[str] | None) -> None:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else ""
            if allow is not None and not ({ep.name, dist, ep.module.split(".")[0]} & allow):
                continue
            if ep.name in self.plugins:
                self.failures.append(
                    PluginFailure(
                        ep.name, dist, f"duplicate plugin name (already from {self.plugins[ep.name].distribution})"
                    )
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            try:
                self._register(plugin, ep.name, dist)
            except PluginRejected as exc:
                self.failures.append(PluginFailure(ep.name, dist, "; ".join(exc.problems)))
            except Exception as exc:
                self.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))

    def register(self, plugin: Any, name: str, distribution: str = "") -> None:
        """Register a plugin object by hand (tests, embedding); raises :class:`PluginError`
        when it fails the load-time checks (see the module docstring)."""
        self._register(plugin, name, distribution)

    def _register(self, plugin: Any, name: str, distribution: str, *, builtin: bool = False) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            # pluggy stops at the first bad hook and leaves the ones before it registered
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginRejected(name, [" ".join(str(exc).split())]) from exc
        problems = load_problems(self.pm, plugin)
        if problems:
            self.pm.unregister(plugin)
            raise PluginRejected(name, problems)
        version = _version(distribution) if distribution else ""
        is_provider = bool(implemented_hooks(self.pm, plugin) & set(hookspecs.PROVIDER_HOOKS))
        self.plugins[name] = PluginInfo(name, distribution, version, is_provider, builtin)

    # -- providers ---------------------------------------------------------------------

    def provider_names(self) -> list[str]:
        return sorted(name for name, info in self.plugins.items() if info.is_provider)

    def provider(self, name: str) -> Provider:
        info = self.plugins.get(name)
        if info is None or not info.is_provider:
            failed = [f for f in self.failures if f.name == name]
            if failed:
                raise PluginError(f"provider '{name}' is installed but failed to load: {failed[0].error}")
            installed = ", ".join(self.provider_names()) or "none"
            raise PluginError(f"unknown provider '{name}'; installed providers: {installed}")
        return Provider(self, name)

    # -- contribution hooks ------------------------------------------------------------

    def config_sections(self) -> list[tuple[str, Section]]:
        """``(plugin name, section)`` for every section declared through ``scaler_config_sections``,
        core's first, then in pluggy's call order."""
        declared: list[tuple[str, Section]] = []
        for impl in reversed(self.pm.hook.scaler_config_sections.get_hookimpls()):
            found: Any = impl.function()
            for section in found or []:
                if not isinstance(section, Section):
                    raise PluginError(
                        f"plugin '{impl.plugin_name}': scaler_config_sections returned {section!r}, not a Section"
                    )
                declared.append((impl.plugin_name, section))
        return declared

    def catalog(self, providers: Iterable[str] | None = None) -> Catalog:
        """The declared sections of the loaded plugins (:class:`~scaler.config.catalog.Catalog`)."""
        names = self.provider_names() if providers is None else providers
        return Catalog((section for _, section in self.config_sections()), names)

    def validate(self, raw: dict[str, Any], provider: str | None, providers: list[str]) -> list[Problem]:
        """Every problem of a parsed configuration for ``provider``: core checks each key against
        the declared sections, then each declaring plugin's ``scaler_validate_config`` checks
        its own normalised sections."""
        owners: dict[str, str] = {}
        for plugin_name, section in self.config_sections():
            owners.setdefault(section.name, plugin_name)

        def cross_check(
            section: str, settings: Mapping[str, Any], resources: list[ResourceSettings], applies: bool
        ) -> list[Problem]:
            plugin = self.pm.get_plugin(owners[section])
            others = [p for _, p in self.pm.list_name_plugin() if p is not plugin]
            hook = self.pm.subset_hook_caller("scaler_validate_config", remove_plugins=others)
            found: list[Problem] = []
            for problems in hook(section=section, settings=dict(settings), resources=resources, applies=applies):
                found.extend(problems or [])
            return found

        return check_config(raw, self.catalog(providers), provider, cross_check=cross_check).problems

    def _for_provider(self, hook: str, provider: str) -> Any:
        """``hook`` on every plugin except the providers not chosen: a provider contributes to its
        own machines only, so it never needs to check which provider a call is for."""
        others = [
            plugin
            for name, plugin in self.pm.list_name_plugin()
            if name != provider and name in self.plugins and self.plugins[name].is_provider
        ]
        return self.pm.subset_hook_caller(hook, remove_plugins=others) if others else getattr(self.pm.hook, hook)

    def init_script_parts(
        self, config: Config, resource: Resource, provider: str, context: RenderContext
    ) -> list[ScriptPart]:
        parts: list[ScriptPart] = []
        hook = self._for_provider("scaler_init_script_parts", provider)
        for found in hook(config=config, resource=resource, provider=provider, context=context):
            parts.extend(found or [])
        return sorted(parts, key=lambda part: part.order)  # stable: plugin order within one order

    def clearml_conf_parts(
        self, config: Config, resource: Resource, provider: str, context: RenderContext
    ) -> list[str]:
        parts: list[str] = []
        hook = self._for_provider("scaler_clearml_conf_parts", provider)
        for found in hook(config=config, resource=resource, provider=provider, context=context):
            parts.extend(found or [])
        return parts


class Provider:
    """One provider's hooks, callable on that one plugin only. Each hook is given the
    configuration as that provider's own (:meth:`Config.for_provider
    <scaler.config.model.Config.for_provider>`): its settings and its resources only, whatever
    other clouds the fleet spans."""

    def __init__(self, host: PluginHost, name: str) -> None:
        self.name = name
        self.host = host
        self.info = host.plugins[name]
        #: the plugin object (module or instance) that answers this provider's hooks
        self.plugin = host.pm.get_plugin(name)
        others = [plugin for plugin_name, plugin in host.pm.list_name_plugin() if plugin_name != name]
        self._callers = {
            hook: host.pm.subset_hook_caller(hook, remove_plugins=others) for hook in hookspecs.PROVIDER_HOOKS
        }
        self._implemented = implemented_hooks(host.pm, self.plugin)

    def _call(self, hook: str, **kwargs: Any) -> Any:
        if hook not in self._implemented:
            raise NotImplementedByProvider(f"provider '{self.name}' does not implement {hook}")
        if "config" in kwargs:
            # one fleet may span several clouds: a provider sees only its own settings and resources
            kwargs["config"] = kwargs["config"].for_provider(self.name)
        try:
            return self._callers[hook](**kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            # a plugin bug: keep the loop alive, report with context; the traceback is for
            # whoever debugs the plugin (--log-level DEBUG)
            logging.getLogger("scaler").debug("provider '%s' raised in %s", self.name, hook, exc_info=True)
            raise PluginBugError(
                f"provider '{self.name}' failed in {hook}: {type(exc).__name__}: {exc}", code=type(exc).__name__
            ) from exc

    def launch(
        self, config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
    ) -> list[Instance]:
        return list(
            self._call(
                "scaler_launch",
                config=config,
                resource=resource,
                count=count,
                init_script=init_script,
                launch_token=launch_token,
                spot=spot,
            )
            or []
        )

    def implements(self, hook: str) -> bool:
        """Whether the provider implements ``hook`` (for the optional ones)."""
        return hook in self._implemented

    def list_instances(self, config: Config, *, include_foreign: bool = False) -> list[Instance]:
        """The fleet's instances (its identity, or legacy: no identity). With ``include_foreign``
        (``scaler status``), also the instances of the same scaler name that another deployment
        owns, where the provider can say so (their ``fleet`` is another identity)."""
        found = self.list_answer(config, include_foreign=include_foreign)
        if include_foreign:
            return found
        # belt and braces: whatever a provider answers, another deployment's machine never reaches the loop
        kept = [inst for inst in found if inst.fleet in ("", config.fleet_id)]
        if len(kept) < len(found):
            logging.getLogger("scaler").error(
                "provider '%s' listed %d instance(s) of another deployment (another fleet identity) as this "
                "fleet's: ignored; a bug in the provider (scaler_list_instances must keep config.listed(tags))",
                self.name,
                len(found) - len(kept),
            )
        return kept

    def list_answer(self, config: Config, *, include_foreign: bool = False) -> list[Instance]:
        """The provider's own answer to ``scaler_list_instances``, unfiltered (the conformance
        kit checks it; the loop uses :meth:`list_instances`)."""
        return list(self._call("scaler_list_instances", config=config, include_foreign=include_foreign) or [])

    def tag_instances(self, config: Config, instance_ids: list[str], tags: dict[str, str]) -> None:
        """Add ``tags`` to instances (optional hook: :class:`NotImplementedByProvider` without it)."""
        if instance_ids:
            self._call("scaler_tag_instances", config=config, instance_ids=list(instance_ids), tags=dict(tags))

    def describe_instances(self, config: Config, instance_ids: list[str]) -> list[Instance]:
        """The machines with these ids, whatever their tags (optional hook, for ``scaler adopt``:
        :class:`NotImplementedByProvider` without it); ids not found are left out."""
        if not instance_ids:
            return []
        wanted = set(instance_ids)
        found = self._call("scaler_describe_instances", config=config, instance_ids=list(instance_ids)) or []
        return [inst for inst in found if inst.id in wanted]

    def terminate(self, config: Config, instance_ids: list[str]) -> None:
        if instance_ids:
            self._call("scaler_terminate", config=config, instance_ids=list(instance_ids))

    def console_output(self, config: Config, instance_id: str) -> str:
        return str(self._call("scaler_console_output", config=config, instance_id=instance_id) or "")

    def check_cloud(self, config: Config) -> list[Problem]:
        return list(self._call("scaler_check_cloud", config=config) or [])


# -- load-time checks ----------------------------------------------------------------------


def implemented_hooks(pm: pluggy.PluginManager, plugin: Any) -> set[str]:
    """Names of the hooks ``plugin`` has registered implementations for."""
    return {caller.name for caller in pm.get_hookcallers(plugin) or []}


def hook_names(pm: pluggy.PluginManager) -> list[str]:
    """Every hook with a specification."""
    return sorted(name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None) is not None)


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return "the hooks are listed in docs/plugin-hooks.md"


def load_problems(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """What is wrong with a registered plugin that pluggy lets pass silently."""
    known = hook_names(pm)
    problems: list[str] = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                function = getattr(impl.function, "__name__", caller.name)
                problems.append(f"function {function} matches no hook ({_closest(caller.name, known)})")
    for attr in sorted(dir(plugin)):
        if not attr.startswith(HOOK_PREFIX):
            continue
        value = inspect.getattr_static(plugin, attr, None)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isroutine(value) and pm.parse_hookimpl_opts(plugin, attr) is None:
            hint = f"decorate it with @hookimpl (from scaler.api) or rename it: {HOOK_PREFIX}* names are for hooks"
            if attr not in known:
                hint += f"; and it matches no hook ({_closest(attr, known)})"
            problems.append(f"function {attr} is not marked @hookimpl, so it would never be called ({hint})")
    implemented = implemented_hooks(pm, plugin)
    if implemented & set(hookspecs.PROVIDER_HOOKS):
        missing = [hook for hook in REQUIRED_PROVIDER_HOOKS if hook not in implemented]
        if missing:
            problems.append(
                f"it implements provider hooks but not {', '.join(missing)} "
                f"(a provider needs all of {', '.join(REQUIRED_PROVIDER_HOOKS)})"
            )
    return problems


# -- the installed plugins' configuration sections, for code without a host ------------------


@functools.cache
def _installed_catalog(allowed: str | None) -> Catalog:
    return PluginHost().catalog()


use_installed(lambda: _installed_catalog(os.environ.get(LOAD_ENV)))
