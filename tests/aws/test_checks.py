"""Validation of the aws sections: offline (``validate-config``) and against moto's EC2
(``validate-config --check-cloud``: reads and a DryRun launch, nothing created)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scaler.cli import app
from scaler.host import PluginHost, Provider
from scaler.types import TAG_SCALER, Problem
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.support.aws import (
    make_config,
    make_network,
    raw_config,
    register_ami,
    resource,
)


def problems(host: PluginHost, raw: dict[str, Any], provider: str | None = "aws") -> dict[str, Problem]:
    return {p.path: p for p in host.validate(raw, provider, host.provider_names())}


# -- offline ------------------------------------------------------------------------------------------


def test_offline_checks_of_key_combinations(host: PluginHost) -> None:
    raw = raw_config(
        aws={"use_iam_role": False},
        resources=[
            resource("a", aws={"ebs": {"type": "gp2", "iops": 3000, "throughput": 200}}),
            resource("b", aws={"ebs": {"type": "io2"}, "availability_zone": "eu-west-1a"}),
            resource("c", aws={"tags": f"team=ml,{TAG_SCALER}=mine", "spot_max_price": "0.5"}),
            resource(
                "d",
                aws={
                    "subnet_id": "subnet-0123456789abcdef0",
                    "subnet_ids": ["subnet-0fedcba987654321f"],
                    "availability_zone": "us-east-1a",
                },
            ),
        ],
    )
    found = problems(host, raw)
    assert "is false but" in found["aws.use_iam_role"].message
    assert "access_key_id" in found["aws.use_iam_role"].message
    assert "gp3, io1 and io2" in found["resources[0].aws.ebs.iops"].message
    assert "gp3 volumes only" in found["resources[0].aws.ebs.throughput"].message
    assert "required for io2" in found["resources[1].aws.ebs.iops"].message
    assert "not a zone of aws.region" in found["resources[1].aws.availability_zone"].message
    assert "written by the scaler itself" in found["resources[2].aws.tags"].message
    assert found["resources[2].aws.spot_max_price"].severity == "warning"
    assert found["resources[3].aws.subnet_id"].severity == "warning"
    assert "resources[3].aws.availability_zone" not in found  # --check-cloud knows the subnets' zones
    # with keys, the same config is fine; a key without its secret is not
    raw["aws"] = {"use_iam_role": False, "access_key_id": "AKIAEXAMPLE", "secret_access_key": "x"}
    assert "aws.use_iam_role" not in problems(host, raw)
    raw["aws"] = {"access_key_id": "AKIAEXAMPLE"}
    assert "is required" in problems(host, raw)["aws.secret_access_key"].message


def test_custom_launch_spec_is_checked_against_the_run_instances_model(host: PluginHost) -> None:
    raw = raw_config(
        aws={"custom_launch_spec": {"Monitoring": {"Enabled": True}, "EbsOptimised": True, "MinCount": 3}},
        resources=[resource("a", aws={"custom_launch_spec": {"Placement": {"Tenancy": 7}}})],
    )
    found = host.validate(raw, "aws", host.provider_names())
    text = "\n".join(p.render() for p in found)
    assert 'Unknown parameter in input: "EbsOptimised"' in text
    assert "aws.custom_launch_spec.MinCount: warning: is always set by the scaler" in text
    assert "resources[0].aws.custom_launch_spec" in text and "Placement.Tenancy" in text
    clean = raw_config(aws={"custom_launch_spec": {"Monitoring": {"Enabled": True}}})
    assert [p for p in host.validate(clean, "aws", host.provider_names()) if p.severity == "error"] == []


# -- against the cloud -------------------------------------------------------------------------------


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


def test_check_cloud_finds_every_problem(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    net = make_network(moto_ec2)
    ami = register_ami(moto_ec2)  # root device /dev/sda1
    raw = raw_config(
        resources=[
            resource("missing-ami", aws={"ami_id": "ami-0000000000000dead"}),
            resource(
                "many",
                aws={
                    "ami_id": ami,
                    "instance_type": "p9.mega",
                    "ebs": {"device": "/dev/xvda"},
                    "subnet_ids": [net.subnets[0], "subnet-0000000000000dead"],
                    "security_group_ids": [net.other_vpc_sg, "sg-0000000000000dead"],
                },
            ),
        ]
    )
    config = make_config(host, raw)
    found = {p.path: p for p in aws.check_cloud(config)}
    assert "does not exist in us-east-1" in found["resources[0].aws.ami_id"].message
    assert found["resources[1].aws.ebs.device"].severity == "warning"
    assert "root device is /dev/sda1" in found["resources[1].aws.ebs.device"].message
    assert "subnet-0000000000000dead does not exist" in found["resources[1].aws.subnet_ids[1]"].message
    assert net.vpc in found["resources[1].aws.security_group_ids[0]"].message  # another VPC than the subnets
    assert "does not exist" in found["resources[1].aws.security_group_ids[1]"].message
    assert "p9.mega is not offered in us-east-1a" in found["resources[1].aws.instance_type"].message
    assert "resources[1].aws.subnet_ids[0]" not in found
    assert ec2_proxy.count("RunInstances") == 0  # no DryRun where it could only repeat the above
    assert moto_ec2.describe_instances()["Reservations"] == []


def test_check_cloud_reports_a_launch_that_is_not_permitted(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    ami = register_ami(moto_ec2)
    arn = ec2_proxy.create_instance_profile("agents")
    config = make_config(
        host, raw_config(aws={"iam_instance_profile": arn}, resources=[resource("gpu", aws={"ami_id": ami})])
    )
    ec2_proxy.fail("RunInstances", "UnauthorizedOperation", when=lambda p: p.get("DryRun") == "true")
    ec2_proxy.fail("DescribeInstanceTypeOfferings", "UnauthorizedOperation")
    found = {p.path: p for p in aws.check_cloud(config)}
    launch = found["resources[0].aws"]
    assert launch.severity == "error"
    assert "ec2:RunInstances" in launch.message and "iam:PassRole" in launch.message
    denied = found["resources[0].aws.instance_type"]
    assert denied.severity == "warning" and "ec2:DescribeInstanceTypeOfferings" in denied.message
    assert [r.get("DryRun") for r in ec2_proxy.requests if r.get("Action") == "RunInstances"] == ["true"]


def test_check_cloud_with_bad_credentials_or_no_endpoint_stops_at_once(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config(resources=[resource("a"), resource("b")]))
    ec2_proxy.fail("*", "AuthFailure", times=None)
    [problem] = aws.check_cloud(config)
    assert problem.path == "aws" and "rejected the credentials" in problem.message

    gone = make_config(
        host, raw_config(aws={"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1, "request_timeout": "2s"})
    )
    [problem] = aws.check_cloud(gone)
    assert problem.path == "aws.endpoint_url" and "could not be reached" in problem.message


def test_validate_config_check_cloud_cli(tmp_path: Path, moto_ec2: Any, ec2_proxy: EC2Proxy) -> None:
    net = make_network(moto_ec2)
    ami = register_ami(moto_ec2)
    raw = raw_config(
        resources=[resource("cpu", aws={"ami_id": ami, "subnet_ids": net.subnets, "security_group_ids": [net.sg]})]
    )
    path = tmp_path / "aws.json"
    path.write_text(json.dumps(raw))
    result = CliRunner().invoke(
        app, ["validate-config", str(path), "--provider", "aws", "--check-cloud", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["valid"] is True
    assert {
        "DescribeImages",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeInstanceTypeOfferings",
        "RunInstances",
    } == set(ec2_proxy.actions)
    assert moto_ec2.describe_instances()["Reservations"] == []  # DryRun created nothing
