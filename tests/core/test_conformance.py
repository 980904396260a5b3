"""The provider conformance kit (scaler.testing) against the simulated and AWS providers;
the GCP run lives in tests/test_gcp_provider.py beside its fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scaler.config.model import Config
from scaler.default_plugins import simulated
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


class TestAwsProvider(ProviderConformance):
    """The kit against moto behind the EC2 proxy (which adds EC2's ClientToken idempotency)."""

    provider_name = "aws"

    @pytest.fixture
    def conformance_config(self, ec2_proxy: Any, aws_env: Any) -> Iterator[Config]:
        from scaler_aws.client import clear_clients
        from tests.fakes.ec2 import DUMMY_AMI

        clear_clients()  # a cached client would point at another test's endpoint
        yield config_for("aws", {"instance_type": "t3.micro", "ami_id": DUMMY_AMI}, {"region": "us-east-1"})
        clear_clients()

    @pytest.fixture
    def foreign_instance(self, ec2_proxy: Any, conformance_config: Config) -> str:
        return ec2_proxy.run_foreign_instances(1)[0]
