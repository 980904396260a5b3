"""The provider conformance kit (scaler.testing) against the gcp provider: the real
google-cloud-compute client talking to the fake Compute Engine server (requestId replay,
list pages, GCE's error answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from scaler.api import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from scaler.config.model import Config
from scaler.host import PluginHost
from scaler.testing import SCRIPT, FaultInjector, ProviderConformance, config_for
from scaler_gcp import clients, provider
from scaler_gcp.naming import label_value

if TYPE_CHECKING:
    from tests.fakes.gce_server import FakeGCE

PROJECT = "test-proj"
ZONE = "us-central1-a"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"
PAGE_SIZE = 3
STICKY = 1000  # a fault answers this many requests: the provider's own retries meet it too
PATHS = {
    "launch": ("POST", r"/zones/[^/]+/instances$"),
    "list": ("GET", r"/aggregated/instances$"),
    "terminate": ("DELETE", r"/zones/[^/]+/instances/[^/]+$"),
}
PERMISSION_DENIED = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "IAM_PERMISSION_DENIED",
    "domain": "compute.googleapis.com",
    "metadata": {"permission": "compute.instances.create"},
}


@pytest.fixture
def gce(fake_gce: FakeGCE, monkeypatch: pytest.MonkeyPatch) -> FakeGCE:
    """The fake, reached through SCALER_GCP_EMULATOR_HOST (a child process finds it too);
    retries are short so a sticky fault ends in a typed error quickly."""
    monkeypatch.setenv(clients.EMULATOR_ENV, f"127.0.0.1:{fake_gce.port}")
    monkeypatch.setattr(clients, "RETRY_INITIAL", 0.01)
    monkeypatch.setattr(clients, "RETRY_MAXIMUM", 0.05)
    monkeypatch.setattr(clients, "RETRY_DEADLINE", 0.5)
    fake_gce.operation_polls = 1
    provider.reset_memory()
    return fake_gce


def make_config() -> Config:
    return config_for("gcp", {"machine_type": "n1-standard-4", "zones": [ZONE], "image": IMAGE}, {"project": PROJECT})


class TestGcpConformance(ProviderConformance):
    provider_name = "gcp"

    @pytest.fixture
    def conformance_config(self, gce: FakeGCE) -> Config:
        return make_config()

    @pytest.fixture
    def list_page_size(self, gce: FakeGCE) -> int:
        gce.page_size = PAGE_SIZE
        return PAGE_SIZE

    @pytest.fixture
    def inject_fault(self, gce: FakeGCE) -> FaultInjector:
        def inject(kind: str, call: str) -> None:
            method, path = PATHS[call]
            if kind == "capacity":  # GCE reports it in the insert's operation
                gce.fail_operation_next(ZONE, "ZONE_RESOURCE_POOL_EXHAUSTED", "no resources", times=STICKY)
            elif kind == "quota":
                gce.fail_next(
                    method, path, 403, "quotaExceeded", "Quota 'CPUS' exceeded.", STICKY, domain="usageLimits"
                )
            elif kind == "auth":
                gce.fail_next(
                    method, path, 403, "forbidden", "Required permission", STICKY, details=[PERMISSION_DENIED]
                )
            else:
                gce.fail_next(method, path, 503, "backendError", "Backend Error", STICKY)

        return inject

    @pytest.fixture
    def foreign_instance(self, gce: FakeGCE) -> str:
        body = {"name": "someone-elses", "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4", "labels": {}}
        gce.add_instance(PROJECT, ZONE, body)
        return "someone-elses"

    @pytest.fixture
    def legacy_instance(self, gce: FakeGCE, conformance_config: Config) -> str:
        """Labelled (and with metadata) the way the gcp provider launched before fleet identities."""
        owner = {TAG_SCALER: conformance_config.scaler.name, TAG_RESOURCE: "res-a", TAG_LAUNCH_TOKEN: "legacy"}
        body = {
            "name": "conformance-res-a-legacy-0",
            "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4",
            "labels": {key: label_value(value) for key, value in owner.items()},
            "labelFingerprint": "vezUS-42LLM=",
            "metadata": {"items": [{"key": key, "value": value} for key, value in owner.items()]},
        }
        gce.add_instance(PROJECT, ZONE, body)
        return "conformance-res-a-legacy-0"


def test_the_kits_list_really_reads_several_pages(gce: FakeGCE) -> None:
    """What the kit's list test relies on: with the fake's page size, a fleet bigger than a
    page takes more than one aggregated list call, however many results the client asks for."""
    gce.page_size = PAGE_SIZE
    gcp = PluginHost().provider("gcp")
    config = make_config()
    gcp.launch(config, config.resources[0], PAGE_SIZE + 1, SCRIPT, "0b6d3b6e-94a3-4a4b-9b0e-000000000001", False)
    gce.requests.clear()
    assert len(gcp.list_instances(config)) == PAGE_SIZE + 1
    pages = gce.requests.matching("GET", r"/aggregated/instances$")
    assert len(pages) == 2 and pages[1].query.get("pageToken")
    assert int(pages[0].query["maxResults"]) > PAGE_SIZE  # the provider asks for more; GCE caps the page
