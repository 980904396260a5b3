"""The toy cloud provider passes the conformance kit every provider must pass."""

import pytest
import scaler_toycloud
from scaler_toycloud.cloud import PAGE_SIZE, ToyCloud

from scaler.api import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from scaler.testing import ProviderConformance, config_for, provider_for

# the toy cloud's error code for each kind of fault the kit injects, and its name for each call
CODES = {"capacity": "NoCapacity", "quota": "Quota", "auth": "Denied", "transient": "Busy"}
CALLS = {"launch": "run", "list": "describe", "terminate": "terminate"}


class TestToyCloud(ProviderConformance):
    provider_name = "toycloud"

    @pytest.fixture
    def state_file(self, tmp_path):
        return str(tmp_path / "toycloud.json")

    @pytest.fixture
    def provider(self):
        return provider_for(scaler_toycloud, "toycloud")  # as installed: PluginHost().provider("toycloud")

    @pytest.fixture
    def conformance_config(self, provider, state_file):
        return config_for("toycloud", {}, top={"state_file": state_file}, host=provider.host)

    @pytest.fixture
    def list_page_size(self):
        return PAGE_SIZE

    @pytest.fixture
    def inject_fault(self, state_file):
        return lambda kind, call: ToyCloud(state_file).fail(CALLS[call], CODES[kind])

    @pytest.fixture
    def foreign_instance(self, state_file):
        return ToyCloud(state_file).run(1, "small", {}, "", False, "not-the-scalers")[0]["id"]

    @pytest.fixture
    def legacy_instance(self, state_file, conformance_config):  # tagged the way scalers did before fleet identities
        tags = {TAG_SCALER: conformance_config.scaler.name, TAG_RESOURCE: "res-a", TAG_LAUNCH_TOKEN: "legacy"}
        return ToyCloud(state_file).run(1, "small", tags, "", False, "legacy")[0]["id"]
