"""Helpers shared by the AWS provider tests (tests/aws/) and the fault matrix: configs, moto network,
request inspection and the fixtures every AWS test module uses."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from scaler.config.loading import build_config
from scaler.config.model import Config
from scaler.host import PluginHost, Provider
from scaler_aws.client import clear_clients
from scaler_aws.images import clear_root_devices
from tests.fakes.ec2 import ACCOUNT_ID, DUMMY_AMI, REGION

SCALER = "aws-test-fleet"


# -- helpers used by the other AWS test modules --------------------------------------------------------


def raw_config(
    resources: list[dict[str, Any]] | None = None, aws: Mapping[str, Any] | None = None, **scaler: Any
) -> dict[str, Any]:
    """A raw (as parsed from HOCON) config for provider aws with one cpu resource by default."""
    return {
        "scaler": {"name": SCALER, "workers_prefix": "dynamic_aws", **scaler},
        "aws": {"region": "us-east-1", **(aws or {})},
        "resources": resources if resources is not None else [resource("cpu", queue="cpu", max_instances=5)],
    }


def resource(
    name: str, *, queue: str = "cpu", max_instances: int = 5, aws: Mapping[str, Any] | None = None, **common: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "queue": queue,
        "max_instances": max_instances,
        **common,
        "aws": {"instance_type": "t3.micro", "ami_id": DUMMY_AMI, **(aws or {})},
    }


def make_config(host: PluginHost, raw: Mapping[str, Any]) -> Config:
    """Validate through every plugin (as ``load_config`` does), then build the typed config."""
    problems = host.validate(dict(raw), "aws", host.provider_names())
    errors = [p.render() for p in problems if p.severity == "error"]
    assert not errors, errors
    return build_config(copy.deepcopy(dict(raw)), provider="aws")


@dataclass
class Network:
    vpc: str
    subnets: list[str]  # us-east-1a, us-east-1b
    sg: str
    other_vpc_sg: str


def make_network(moto_ec2: Any) -> Network:
    """A VPC with two subnets in two zones and a security group, created in moto directly."""
    vpc = moto_ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        moto_ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    sg = moto_ec2.create_security_group(GroupName="scaler-workers", Description="workers", VpcId=vpc)["GroupId"]
    other = moto_ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    other_sg = moto_ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=other)["GroupId"]
    return Network(vpc, subnets, sg, other_sg)


def register_ami(moto_ec2: Any, root_device: str = "/dev/sda1") -> str:
    """An AMI in moto whose DescribeImages answer says it boots from ``root_device``.

    moto's RegisterImage ignores ``RootDeviceName`` (every image it registers boots from
    /dev/sda1), so another root device is set on the image in moto's backend, which the
    threaded server shares with this process (``/dev/xvda``: an Amazon Linux AMI)."""
    image: str = moto_ec2.register_image(
        Name="scaler-test-ami",
        RootDeviceName=root_device,
        BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    if root_device != "/dev/sda1":
        from moto.ec2.models import ec2_backends

        ec2_backends[ACCOUNT_ID][REGION].amis[image].root_device_name = root_device
    return image


def describe(moto_ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    pages = moto_ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def tags_of(item: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def requests_of(proxy: Any, action: str) -> list[dict[str, str]]:
    return [r for r in proxy.requests if r.get("Action") == action]


def aws_fixtures() -> tuple[Any, Any, Any]:
    """The fixtures every AWS test module installs with
    ``_fresh_clients, host, aws = aws_fixtures()``: no cached boto3 client between tests
    (autouse), a plugin host, and its ``aws`` Provider wrapper."""

    @pytest.fixture(autouse=True)
    def _fresh_clients() -> Iterator[None]:
        clear_clients()
        clear_root_devices()  # AMI ids are reused across tests (moto is reset)
        yield
        clear_clients()
        clear_root_devices()

    @pytest.fixture
    def host() -> PluginHost:
        return PluginHost()

    @pytest.fixture
    def aws(host: PluginHost) -> Provider:
        return host.provider("aws")

    return _fresh_clients, host, aws
