"""The provider conformance kit (scaler.testing) run against every provider in this repo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scaler import simulated
from scaler.config.model import Config
from scaler.testing import ProviderConformance, config_for


class TestSimulatedProvider(ProviderConformance):
    provider_name = "simulated"

    @pytest.fixture
    def cloud(self) -> Iterator[simulated.SimulatedCloud]:
        cloud = simulated.SimulatedCloud(clock=lambda: 1000.0)
        simulated.use_cloud(cloud)
        yield cloud
        simulated.use_cloud(None)

    @pytest.fixture
    def conformance_config(self, cloud: simulated.SimulatedCloud) -> Config:
        return config_for("simulated", {"instance_type": "sim.small"})

    @pytest.fixture
    def foreign_instance(self, cloud: simulated.SimulatedCloud) -> str:
        return cloud.launch("someone-else", "res-a", 1, "foreign-token", False)[0].id
