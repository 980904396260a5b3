"""A conformance kit for provider plugins: pytest tests any provider runs against its backend.

Subclass :class:`ProviderConformance` in a test module of your plugin and provide two
fixtures (see docs/writing-a-provider.md)::

    from scaler.testing import ProviderConformance

    class TestMyCloud(ProviderConformance):
        provider_name = "mycloud"

        @pytest.fixture
        def conformance_config(self, my_fake_backend):
            return build_config({...}, provider="mycloud")   # one resource, spot = false

        @pytest.fixture
        def foreign_instance(self, my_fake_backend):
            return my_fake_backend.create_untagged_instance()  # id of a machine this scaler does not own

The tests call the plugin only through the host, exactly as the loop does.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from scaler.host import PluginHost, Provider
from scaler.types import InstanceState

if TYPE_CHECKING:
    from scaler.config.model import Config

SCRIPT = "#!/bin/bash\necho conformance\n"


def _token() -> str:
    return str(uuid.uuid4())


class ProviderConformance:
    """The behaviour every provider owes the loop. Override ``provider_name``."""

    provider_name: ClassVar[str] = ""

    @pytest.fixture
    def provider(self) -> Provider:
        return PluginHost().provider(self.provider_name)

    @pytest.fixture
    def foreign_instance(self) -> str | None:
        """Id of an instance that exists in the backend but belongs to no/another scaler."""
        return None

    def _alive_ids(self, provider: Provider, config: Config) -> set[str]:
        return {i.id for i in provider.list_instances(config) if i.state.alive}

    def test_launch_list_console_terminate(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        resource = config.resources[0]
        token = _token()
        created = provider.launch(config, resource, 2, SCRIPT, token, False)
        assert len(created) == 2, "launch returns the instances it created"
        listed = {i.id: i for i in provider.list_instances(config)}
        for inst in created:
            assert inst.id in listed, "a launched instance is listed at once (tags set in the launch call)"
            assert listed[inst.id].resource == resource.name
            assert listed[inst.id].launch_token == token
            assert listed[inst.id].state in (InstanceState.PENDING, InstanceState.RUNNING)
            assert listed[inst.id].launched_at > 0
        assert isinstance(provider.console_output(config, created[0].id), str)
        provider.terminate(config, [i.id for i in created])
        assert not ({i.id for i in created} & self._alive_ids(provider, config)), "terminated instances are not alive"

    def test_launch_token_is_idempotent(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        resource = config.resources[0]
        token = _token()
        first = provider.launch(config, resource, 1, SCRIPT, token, False)
        again = provider.launch(config, resource, 1, SCRIPT, token, False)
        assert {i.id for i in again} <= {i.id for i in first}, "a retried launch returns the first call's instances"
        same_token = [i for i in provider.list_instances(config) if i.launch_token == token and i.state.alive]
        assert len(same_token) == 1, "a retried launch with the same token creates nothing new"

    def test_terminate_twice_and_unknown_is_success(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        created = provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)
        ids = [i.id for i in created]
        provider.terminate(config, ids)
        provider.terminate(config, ids)  # already terminating/gone: success
        assert not (set(ids) & self._alive_ids(provider, config))

    def test_list_ignores_foreign_instances(
        self, provider: Provider, conformance_config: Config, foreign_instance: str | None
    ) -> None:
        if foreign_instance is None:
            pytest.skip("the backend fixture gives no foreign instance")
        listed = {i.id for i in provider.list_instances(conformance_config)}
        assert foreign_instance not in listed

    def test_list_is_per_scaler_name(self, provider: Provider, conformance_config: Config) -> None:
        from dataclasses import replace

        config = conformance_config
        created = provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)
        other = replace(config, scaler=replace(config.scaler, name=f"{config.scaler.name}-other"))
        assert not ({i.id for i in created} & {i.id for i in provider.list_instances(other)})
        provider.terminate(config, [i.id for i in created])


def config_for(
    provider: str, resource: dict[str, Any], top: dict[str, Any] | None = None, name: str = "conformance"
) -> Config:
    """A one-resource config for a conformance run."""
    from scaler.config.loading import build_config

    raw: dict[str, Any] = {
        "scaler": {"name": name, "workers_prefix": "conf"},
        "resources": [{"name": "res-a", "queue": "q", "max_instances": 5, provider: resource}],
    }
    if top is not None:
        raw[provider] = top
    return build_config(raw, provider=provider)
