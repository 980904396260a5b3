"""The simulated cloud standing for each cloud of a multi-cloud configuration (``scaler simulate``).

A fleet whose resources run on several providers (``aws`` and ``gcp``, say) is simulated on a
plugin host that knows core and one *stand-in* per provider name: a small plugin registered
under that name whose provider hooks act on the one simulated cloud of the run, each seeing only
its own resources' machines (what ``Config.for_provider`` gives it). The real multi-provider
reconciler then runs unchanged: it lists each provider once per tick, spills a queue's demand
from one cloud's resource to the next in config order, and routes terminations by provider.
Each cloud's boot time and outages come from the trace (``clouds``), its prices from each
resource's ``price_per_hour`` (or the trace's ``resources``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from scaler.default_plugins import simulated
from scaler.errors import ConfigError, ProviderError
from scaler.hookspecs import hookimpl

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource
    from scaler.host import PluginHost
    from scaler.types import Instance


class StandIn:
    """Provider hooks of cloud ``name`` answered by the simulated cloud ``cloud`` (set before the
    run; none while a configuration is only loaded)."""

    def __init__(self, name: str, cloud: simulated.SimulatedCloud | None = None) -> None:
        self.name = name
        self.cloud = cloud

    def _cloud(self) -> simulated.SimulatedCloud:
        if self.cloud is None:
            raise ProviderError(f"simulated stand-in for '{self.name}' has no cloud to act on", code="NoCloud")
        return self.cloud

    @hookimpl
    def scaler_launch(
        self, config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
    ) -> list[Instance]:
        label = resource.provider.get("instance_type") or resource.provider.get("machine_type") or self.name
        return self._cloud().launch(
            config.scaler.name, resource.name, count, launch_token, spot, str(label), init_script, config.fleet_id
        )

    @hookimpl
    def scaler_list_instances(self, config: Config, include_foreign: bool) -> list[Instance]:
        # one simulated cloud holds every provider's machines: each provider lists its own resources'
        own = {r.name for r in config.resources}
        return [
            i for i in self._cloud().owned(config.scaler.name, config.fleet_id, include_foreign) if i.resource in own
        ]

    @hookimpl
    def scaler_terminate(self, config: Config, instance_ids: list[str]) -> bool:
        self._cloud().terminate(instance_ids)
        return True

    @hookimpl
    def scaler_console_output(self, config: Config, instance_id: str) -> str:
        inst = self._cloud().instances.get(instance_id)
        if inst is None:
            raise ProviderError(f"simulated instance {instance_id} does not exist", code="NotFound")
        return inst.console


def stand_in_host(names: Iterable[str], cloud: simulated.SimulatedCloud | None = None) -> PluginHost:
    """A plugin host of core and one :class:`StandIn` per provider name (no installed plugin is
    loaded, so each cloud's sections are taken as written)."""
    from scaler.host import PluginHost

    host = PluginHost(load_entry_points=False)
    for name in dict.fromkeys(names):
        if name == simulated.NAME:
            raise ConfigError(
                "a multi-cloud simulation stands the simulated cloud in for each cloud of the configuration; "
                "its resources cannot run on 'simulated' as well: give them the provider they stand for"
            )
        host.register(StandIn(name, cloud), name)
    return host
