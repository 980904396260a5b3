"""``ebs`` sizes the AMI's root volume (issue 14, item 5): with ``ebs.device`` not set, the launch
reads the AMI's root device name (DescribeImages, once per AMI per process) and maps that device,
so an Amazon Linux AMI (``/dev/xvda``) gets its root volume resized instead of an empty second
volume on ``/dev/sda1``; an explicit ``ebs.device`` is used as written. Real boto3 against moto
behind the EC2 proxy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from scaler.errors import TransientError
from scaler.host import PluginHost, Provider
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.support.aws import describe, make_config, raw_config, register_ami, requests_of, resource

SCRIPT = "#!/bin/bash\necho hi\n"


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


def config_for(host: PluginHost, ami: str, **ebs: Any) -> Any:
    return make_config(host, raw_config([resource("gpu", aws={"ami_id": ami, "ebs": {"size_gb": 200, **ebs}})]))


def root_volume_of(moto_ec2: Any, instance_id: str) -> tuple[str, list[str], int]:
    """The instance's root device name, the devices mapped, and the size of the root device's volume."""
    [item] = describe(moto_ec2, [instance_id])
    devices = [m["DeviceName"] for m in item["BlockDeviceMappings"]]
    volumes = moto_ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
    size = next(
        v["Size"]
        for v in volumes["Volumes"]
        if any(a["Device"] == item["RootDeviceName"] for a in v.get("Attachments") or [])
    )
    return item["RootDeviceName"], devices, size


@pytest.mark.parametrize("root", ["/dev/xvda", "/dev/sda1"])
def test_the_amis_root_device_is_the_one_sized(
    host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy, root: str
) -> None:
    ami = register_ami(moto_ec2, root_device=root)
    assert moto_ec2.describe_images(ImageIds=[ami])["Images"][0]["RootDeviceName"] == root
    config = config_for(host, ami)
    [instance] = aws.launch(config, config.resources[0], 1, SCRIPT, "tok-root", False)
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["BlockDeviceMapping.1.DeviceName"] == root
    assert "BlockDeviceMapping.2.DeviceName" not in request  # no second, empty volume
    assert root_volume_of(moto_ec2, instance.id) == (root, [root], 200)


def test_the_root_device_is_asked_once_per_ami(
    host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy
) -> None:
    xvda, sda1 = register_ami(moto_ec2, root_device="/dev/xvda"), register_ami(moto_ec2)
    first, second = config_for(host, xvda), config_for(host, sda1)
    for token in ("a", "b", "c"):
        aws.launch(first, first.resources[0], 1, SCRIPT, f"tok-{token}", False)
    aws.launch(second, second.resources[0], 1, SCRIPT, "tok-d", False)
    asked = [r["ImageId.1"] for r in requests_of(ec2_proxy, "DescribeImages")]
    assert asked == [xvda, sda1]
    devices = [r["BlockDeviceMapping.1.DeviceName"] for r in requests_of(ec2_proxy, "RunInstances")]
    assert devices == ["/dev/xvda", "/dev/xvda", "/dev/xvda", "/dev/sda1"]


def test_an_explicit_device_is_authoritative(
    host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy
) -> None:
    ami = register_ami(moto_ec2, root_device="/dev/xvda")
    config = config_for(host, ami, device="/dev/sdf")
    aws.launch(config, config.resources[0], 1, SCRIPT, "tok-explicit", False)
    assert ec2_proxy.count("DescribeImages") == 0
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["BlockDeviceMapping.1.DeviceName"] == "/dev/sdf"


def test_without_describe_images_permission_the_launch_goes_on_with_sda1_and_a_warning(
    host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    ami = register_ami(moto_ec2, root_device="/dev/xvda")
    config = config_for(host, ami)
    ec2_proxy.fail("DescribeImages", "UnauthorizedOperation", times=None)
    with caplog.at_level(logging.WARNING):
        launched = aws.launch(config, config.resources[0], 1, SCRIPT, "tok-denied", False)
        aws.launch(config, config.resources[0], 1, SCRIPT, "tok-denied-2", False)
    assert len(launched) == 1
    assert [r["BlockDeviceMapping.1.DeviceName"] for r in requests_of(ec2_proxy, "RunInstances")] == ["/dev/sda1"] * 2
    assert ec2_proxy.count("DescribeImages") == 1  # the failure is remembered too, for a while
    assert f"cannot read the root device name of AMI {ami}" in caplog.text
    assert "set ebs.device" in caplog.text and "ec2:DescribeImages" in caplog.text


def test_a_throttled_lookup_launches_nothing_this_tick(
    host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy
) -> None:
    """Never a guessed device for a passing hiccup: the launch is tried again next tick."""
    ami = register_ami(moto_ec2, root_device="/dev/xvda")
    config = config_for(host, ami)
    fault = ec2_proxy.fail("DescribeImages", "RequestLimitExceeded", times=None)
    with pytest.raises(TransientError):
        aws.launch(config, config.resources[0], 1, SCRIPT, "tok-throttled", False)
    assert ec2_proxy.count("RunInstances") == 0 and fault.hits >= 1
    fault.remaining = 0  # the throttling is over
    aws.launch(config, config.resources[0], 1, SCRIPT, "tok-throttled", False)
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda"
