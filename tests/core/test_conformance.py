"""The provider conformance kit (scaler.testing) against the built-in simulated provider.

The AWS and GCP runs live beside their fixtures (tests/aws/test_conformance.py,
tests/gcp/test_conformance.py); the kit's own tests (it fails broken providers) are in
tests/core/test_testing.py.

The simulated cloud runs with ``simulated.state_file``: that is how it outlives a scaler
process, so the kit's launch retried from a fresh process meets the same cloud.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scaler.config.model import Config
from scaler.default_plugins import simulated
from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.testing import FaultInjector, ProviderConformance, config_for

ERRORS: dict[str, type[ProviderError]] = {
    "capacity": CapacityError,
    "quota": QuotaError,
    "auth": AuthError,
    "transient": TransientError,
}


class TestSimulatedConformance(ProviderConformance):
    provider_name = "simulated"

    @pytest.fixture
    def state_file(self, tmp_path: Path) -> Path:
        return tmp_path / "cloud.json"

    @pytest.fixture
    def conformance_config(self, state_file: Path) -> Config:
        return config_for("simulated", {"instance_type": "sim.small"}, {"state_file": str(state_file)})

    @pytest.fixture
    def list_page_size(self) -> None:
        return None  # the simulated cloud answers every list in one page

    @pytest.fixture
    def inject_fault(self, monkeypatch: pytest.MonkeyPatch) -> FaultInjector:
        """Every simulated cloud built from now on (one per hook call with a state file)
        fails the armed calls, the way SimulatedCloud.fail_next does."""
        armed: dict[str, list[Exception]] = {}

        class FaultyCloud(simulated.SimulatedCloud):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.faults = armed

        monkeypatch.setattr(simulated, "SimulatedCloud", FaultyCloud)

        def inject(kind: str, call: str) -> None:
            error = ERRORS[kind](f"simulated {kind} fault", code=f"Simulated{kind.title()}")
            armed.setdefault(call, []).extend([error] * 1000)

        return inject

    @pytest.fixture
    def foreign_instance(self, state_file: Path) -> str:
        cloud = simulated.SimulatedCloud()
        [foreign] = cloud.launch("", "res-a", 1, "foreign-token", False)  # owned by no scaler
        state_file.write_text(json.dumps(cloud.dump()))
        return foreign.id

    @pytest.fixture
    def legacy_instance(self, state_file: Path, conformance_config: Config) -> str:
        cloud = simulated.SimulatedCloud()
        [legacy] = cloud.launch(conformance_config.scaler.name, "res-a", 1, "legacy-token", False)  # no identity
        state_file.write_text(json.dumps(cloud.dump()))
        return legacy.id
