"""The provider conformance kit (scaler.testing) against the aws provider: real boto3, moto
behind the EC2 proxy (which adds EC2's ClientToken replay, DescribeInstances pages and
EC2's error answers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scaler.api import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from scaler.config.model import Config
from scaler.host import Provider
from scaler.testing import SCRIPT, FaultInjector, ProviderConformance, config_for
from tests.fakes.ec2 import DUMMY_AMI, EC2Proxy

PAGE_SIZE = 5
ACTIONS = {"launch": "RunInstances", "list": "DescribeInstances", "terminate": "TerminateInstances"}
#: EC2's own error code for each kind of fault the kit injects
CODES = {
    "capacity": "InsufficientInstanceCapacity",
    "quota": "VcpuLimitExceeded",
    "auth": "UnauthorizedOperation",
    "transient": "RequestLimitExceeded",
}


class TestAwsConformance(ProviderConformance):
    provider_name = "aws"

    @pytest.fixture
    def conformance_config(self, ec2_proxy: EC2Proxy, aws_env: dict[str, str]) -> Iterator[Config]:
        yield config_for("aws", {"instance_type": "t3.micro", "ami_id": DUMMY_AMI}, {"region": "us-east-1"})

    @pytest.fixture
    def list_page_size(self, ec2_proxy: EC2Proxy) -> int:
        ec2_proxy.page_size = PAGE_SIZE
        return PAGE_SIZE

    @pytest.fixture
    def inject_fault(self, ec2_proxy: EC2Proxy) -> FaultInjector:
        def inject(kind: str, call: str) -> None:
            ec2_proxy.fail(ACTIONS[call], CODES[kind], times=None)

        return inject

    @pytest.fixture
    def foreign_instance(self, ec2_proxy: EC2Proxy, conformance_config: Config) -> str:
        return ec2_proxy.run_foreign_instances(1)[0]

    @pytest.fixture
    def legacy_instance(self, ec2_proxy: EC2Proxy, conformance_config: Config) -> str:
        tags = {TAG_SCALER: conformance_config.scaler.name, TAG_RESOURCE: "res-a", TAG_LAUNCH_TOKEN: "legacy"}
        return ec2_proxy.run_foreign_instances(1, tags)[0]

    @pytest.fixture
    def unknown_instance_id(self) -> str:
        return "i-0123456789abcdef0"


def test_the_kits_list_really_reads_several_pages(ec2_proxy: EC2Proxy, aws_env: dict[str, str], aws: Provider) -> None:
    """What the kit's list test relies on: with the proxy's page size, a fleet bigger than a
    page takes more than one DescribeInstances."""
    config = config_for("aws", {"instance_type": "t3.micro", "ami_id": DUMMY_AMI}, {"region": "us-east-1"})
    ec2_proxy.page_size = PAGE_SIZE
    aws.launch(config, config.resources[0], PAGE_SIZE + 1, SCRIPT, "tok-pages", False)
    ec2_proxy.clear()
    assert len(aws.list_instances(config)) == PAGE_SIZE + 1
    pages = [r for r in ec2_proxy.requests if r.get("Action") == "DescribeInstances"]
    assert len(pages) == 2 and "NextToken" in pages[1]
