"""The aws provider against moto's EC2 behind the EC2 proxy, with real boto3 over HTTP,
called through the plugin host's Provider wrapper exactly as the loop calls it."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest

from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.host import PluginHost, Provider
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER, InstanceState
from scaler_aws.client import ec2_client
from scaler_aws.provider import aws_settings
from tests.fakes.ec2 import EC2Proxy, MotoServer, create_instances_direct
from tests.support.aws import (
    SCALER,
    describe,
    make_config,
    make_network,
    raw_config,
    requests_of,
    resource,
    tags_of,
)

SCRIPT = "#!/bin/bash\necho 'hello from the init script'\n"
TOKEN = "3b0f1a9e-7c55-5d2e-8f4a-0d9c2b1e6a77"


@pytest.fixture
def moto_ec2(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    return moto_server.client("ec2")


def _user_data(moto_ec2: Any, instance_id: str) -> bytes:
    value = moto_ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(value)


def _volume(moto_ec2: Any, instance_id: str) -> dict[str, Any]:
    vols = moto_ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    assert len(vols) == 1
    volume: dict[str, Any] = vols[0]
    return volume


# -- launch: every setting reaches RunInstances --------------------------------------------------------


def test_launch_settings_reach_ec2(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    net = make_network(moto_ec2)
    arn = ec2_proxy.create_instance_profile("scaler-workers")
    moto_ec2.create_key_pair(KeyName="ml-keypair")
    raw = raw_config(
        aws={"iam_instance_profile": arn},
        resources=[
            resource(
                "gpu",
                queue="gpu",
                aws={
                    "instance_type": "g5.xlarge",
                    "tags": "team=ml,env=prod",
                    "key_name": "ml-keypair",
                    "security_group_ids": [net.sg],
                    "subnet_ids": [net.subnets[1]],
                    "ebs": {
                        "device": "/dev/sda1",
                        "size_gb": 50,
                        "type": "gp3",
                        "iops": 4000,
                        "throughput": 250,
                        "encrypted": True,
                    },
                },
            )
        ],
    )
    config = make_config(host, raw)
    launched = aws.launch(config, config.resources[0], 2, SCRIPT, TOKEN, False)

    assert len(launched) == 2
    assert {i.resource for i in launched} == {"gpu"} and {i.launch_token for i in launched} == {TOKEN}
    assert all(i.state is InstanceState.PENDING and not i.spot for i in launched)
    assert ec2_proxy.count("RunInstances") == 1  # one call for the batch, nothing waits for boot
    for item in describe(moto_ec2, [i.id for i in launched]):
        assert tags_of(item) == {
            TAG_SCALER: SCALER,
            TAG_RESOURCE: "gpu",
            TAG_LAUNCH_TOKEN: TOKEN,
            "Name": f"{SCALER}:gpu",
            "team": "ml",
            "env": "prod",
        }
        assert item["InstanceType"] == "g5.xlarge"
        assert item["SubnetId"] == net.subnets[1]
        assert item["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert [g["GroupId"] for g in item["SecurityGroups"]] == [net.sg]
        assert item["KeyName"] == "ml-keypair"
        assert item["MetadataOptions"]["HttpTokens"] == "required"
        assert item["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert item["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
        assert "InstanceLifecycle" not in item
        [mapping] = item["BlockDeviceMappings"]
        assert mapping["DeviceName"] == "/dev/sda1" and mapping["Ebs"]["DeleteOnTermination"] is True
        volume = _volume(moto_ec2, item["InstanceId"])
        assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (50, "gp3", True)
        assert tags_of(volume)[TAG_SCALER] == SCALER and tags_of(volume)[TAG_LAUNCH_TOKEN] == TOKEN
        assert _user_data(moto_ec2, item["InstanceId"]).decode() == SCRIPT
        shutdown = moto_ec2.describe_instance_attribute(
            InstanceId=item["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
        )
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    # moto associates the profile with the first instance of a batch only
    assert describe(moto_ec2, [launched[0].id])[0]["IamInstanceProfile"]["Arn"] == arn
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["IamInstanceProfile.Arn"] == arn
    assert request["ClientToken"] == TOKEN
    assert (request["MinCount"], request["MaxCount"]) == ("1", "2")
    assert request["BlockDeviceMapping.1.Ebs.Iops"] == "4000"  # moto does not store these two
    assert request["BlockDeviceMapping.1.Ebs.Throughput"] == "250"


def test_spot_launch_with_profile_name_zone_and_max_price(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    arn = ec2_proxy.create_instance_profile("by-name")
    raw = raw_config(
        resources=[
            resource(
                "gpu",
                spot=True,
                aws={"iam_instance_profile": "by-name", "availability_zone": "us-east-1c", "spot_max_price": "0.42"},
            )
        ],
        aws={"imdsv2_required": False, "iam_instance_profile": "ignored-for-this-resource"},
    )
    config = make_config(host, raw)
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, True)
    assert inst.spot and inst.zone == "us-east-1c"
    [item] = describe(moto_ec2, [inst.id])
    assert item["InstanceLifecycle"] == "spot"
    assert item["IamInstanceProfile"]["Arn"] == arn
    assert item["Placement"]["AvailabilityZone"] == "us-east-1c"
    assert item["MetadataOptions"]["HttpTokens"] == "optional"
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["InstanceMarketOptions.MarketType"] == "spot"
    assert request["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert request["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    assert request["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.42"
    assert request["IamInstanceProfile.Name"] == "by-name"


def test_large_init_script_is_sent_gzipped(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    script = "#!/bin/bash\n" + "".join(f"echo 'step {n}: configure the machine'\n" for n in range(800))
    assert len(script.encode()) > 16 * 1024
    [inst] = aws.launch(config, config.resources[0], 1, script, TOKEN, False)
    data = _user_data(moto_ec2, inst.id)
    assert data[:2] == b"\x1f\x8b"  # gzip magic: cloud-init unpacks it
    assert gzip.decompress(data).decode() == script


def test_custom_launch_spec_reaches_ec2(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    raw = raw_config(
        aws={
            "custom_launch_spec": {
                "Monitoring": {"Enabled": True},
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "cost-center", "Value": "42"}]}],
            }
        },
        resources=[resource("cpu", aws={"custom_launch_spec": {"EbsOptimized": True}, "tags": "team=ml"})],
    )
    config = make_config(host, raw)
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    [item] = describe(moto_ec2, [inst.id])
    assert tags_of(item)["cost-center"] == "42" and tags_of(item)["team"] == "ml"
    assert tags_of(item)[TAG_SCALER] == SCALER
    assert item["Monitoring"]["State"] in ("enabled", "pending")
    [request] = requests_of(ec2_proxy, "RunInstances")
    assert request["EbsOptimized"] == "true"


# -- list ------------------------------------------------------------------------------------------------


def test_list_ignores_other_fleets_and_paginates_past_1000(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    # moto needs ~5 s to render 1000 instances: a generous timeout keeps a loaded machine from retrying
    config = make_config(host, raw_config(aws={"request_timeout": "90s"}))
    ours = create_instances_direct(ec2_proxy, 1001, {TAG_SCALER: SCALER, TAG_RESOURCE: "cpu", TAG_LAUNCH_TOKEN: "t-1"})
    create_instances_direct(ec2_proxy, 2, {TAG_SCALER: "another-fleet", TAG_RESOURCE: "cpu"})
    ec2_proxy.run_foreign_instances(1)
    create_instances_direct(ec2_proxy, 1)  # no tags at all
    listed = aws.list_instances(config)
    assert sorted(i.id for i in listed) == sorted(ours)
    assert {(i.resource, i.launch_token) for i in listed} == {("cpu", "t-1")}
    describes = requests_of(ec2_proxy, "DescribeInstances")
    assert len(describes) == 2 and "NextToken" in describes[1]  # EC2 pages hold at most 1000
    assert describes[0]["Filter.1.Name"] == f"tag:{TAG_SCALER}" and describes[0]["Filter.1.Value.1"] == SCALER


def test_list_maps_states_and_spot(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    ec2_proxy.page_size = 2  # a small page size proves every page is read
    running = aws.launch(config, config.resources[0], 3, SCRIPT, TOKEN, False)
    [spot] = aws.launch(config, config.resources[0], 1, SCRIPT, "spot-token", True)
    [gone] = aws.launch(config, config.resources[0], 1, SCRIPT, "gone-token", False)
    moto_ec2.stop_instances(InstanceIds=[running[0].id])
    moto_ec2.terminate_instances(InstanceIds=[gone.id])
    listed = {i.id: i for i in aws.list_instances(config)}
    assert gone.id not in listed
    assert listed[running[0].id].state is InstanceState.STOPPED
    assert listed[running[1].id].state is InstanceState.RUNNING  # moto runs instances at once
    assert listed[spot.id].spot and not listed[running[1].id].spot
    assert listed[spot.id].launch_token == "spot-token"
    assert listed[spot.id].instance_type == "t3.micro" and listed[spot.id].zone.startswith("us-east-1")
    assert listed[spot.id].launched_at > 0
    describes = requests_of(ec2_proxy, "DescribeInstances")
    assert len(describes) == 2 and "NextToken" in describes[1]  # 4 listed, 2 per page


def test_list_errors_are_typed(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    ec2_proxy.fail("DescribeInstances", "UnauthorizedOperation")
    with pytest.raises(AuthError, match="ec2:DescribeInstances"):
        aws.list_instances(config)
    ec2_proxy.fail("DescribeInstances", "AuthFailure")
    with pytest.raises(AuthError, match="rejected the credentials"):
        aws.list_instances(config)
    ec2_proxy.fail("DescribeInstances", "Unavailable", times=None)
    with pytest.raises(TransientError):
        aws.list_instances(config)
    assert ec2_proxy.count("DescribeInstances") == 2 + 3  # botocore's standard retries: 3 attempts


# -- faults at the wire ----------------------------------------------------------------------------------


def _is_spot(params: dict[str, str]) -> bool:
    return params.get("InstanceMarketOptions.MarketType") == "spot"


def test_spot_capacity_error_is_a_capacity_error(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config(resources=[resource("gpu", spot=True)]))
    ec2_proxy.fail("RunInstances", "InsufficientInstanceCapacity", when=_is_spot, times=None)
    with pytest.raises(CapacityError) as exc:
        aws.launch(config, config.resources[0], 2, SCRIPT, TOKEN, True)
    assert exc.value.code == "InsufficientInstanceCapacity"
    assert aws.list_instances(config) == []
    # on-demand still works (the policy falls back with spot=False)
    assert len(aws.launch(config, config.resources[0], 2, SCRIPT, "fallback-token", False)) == 2


def test_capacity_error_in_one_subnet_tries_the_next(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    net = make_network(moto_ec2)
    config = make_config(host, raw_config(resources=[resource("cpu", aws={"subnet_ids": net.subnets})]))
    first = net.subnets[0]
    ec2_proxy.fail(
        "RunInstances", "InsufficientInstanceCapacity", times=None, when=lambda p: p.get("SubnetId") == first
    )
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    [item] = describe(moto_ec2, [inst.id])
    assert item["SubnetId"] == net.subnets[1]
    assert tags_of(item)[TAG_LAUNCH_TOKEN] == TOKEN  # the tag keeps the launch token
    tokens = [r["ClientToken"] for r in requests_of(ec2_proxy, "RunInstances")]
    assert tokens[0] == TOKEN and tokens[-1] == f"{TOKEN}-s1"  # another subnet, another idempotency token

    ec2_proxy.fail(
        "RunInstances",
        "InsufficientFreeAddressesInSubnet",
        times=None,
        when=lambda p: p.get("SubnetId") == net.subnets[1],
    )
    with pytest.raises(CapacityError, match="2 subnets") as exc:
        aws.launch(config, config.resources[0], 1, SCRIPT, "another-token", False)
    assert first in str(exc.value) and net.subnets[1] in str(exc.value)


def test_throttling_is_retried_by_botocore(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    ec2_proxy.fail("RunInstances", "RequestLimitExceeded", times=1)
    assert len(aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)) == 1
    assert ec2_proxy.count("RunInstances") == 2

    quick = make_config(host, raw_config(aws={"max_attempts": 2}))
    ec2_proxy.fail("RunInstances", "RequestLimitExceeded", times=None)
    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        aws.launch(quick, quick.resources[0], 1, SCRIPT, "other-token", False)
    assert ec2_proxy.count("RunInstances") == 2 + 2


def test_unauthorized_names_the_missing_permissions(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    arn = ec2_proxy.create_instance_profile("workers")
    config = make_config(host, raw_config(aws={"iam_instance_profile": arn}))
    fault = ec2_proxy.fail("RunInstances", "UnauthorizedOperation")
    with pytest.raises(AuthError) as exc:
        aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    text = str(exc.value)
    assert "ec2:RunInstances" in text and "iam:PassRole" in text and "ec2:CreateTags" in text
    assert "Encoded authorization failure message" not in text and len(text) < 1000
    assert "testing" not in text  # never a credential
    assert fault.hits == 1  # not retried


def test_quota_error(host: PluginHost, aws: Provider, moto_ec2: Any, ec2_proxy: EC2Proxy) -> None:
    config = make_config(host, raw_config())
    ec2_proxy.fail("RunInstances", "VcpuLimitExceeded")
    with pytest.raises(QuotaError, match="VcpuLimitExceeded"):
        aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)


def test_timeout_after_accept_is_retried_with_the_same_client_token(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config(aws={"request_timeout": "1s"}))
    ec2_proxy.timeout_after_accept("RunInstances", delay=10)
    launched = aws.launch(config, config.resources[0], 2, SCRIPT, TOKEN, False)
    assert len(launched) == 2
    calls = requests_of(ec2_proxy, "RunInstances")
    assert len(calls) == 2 and calls[0]["ClientToken"] == calls[1]["ClientToken"] == TOKEN
    assert len(create_count(moto_ec2)) == 2  # the retry created nothing new


def test_launch_whose_answers_never_came_is_transient_and_the_retry_creates_nothing_new(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config(aws={"max_attempts": 2}))
    fault = ec2_proxy.timeout_after_accept("RunInstances", times=None, drop=True)
    with pytest.raises(TransientError):
        aws.launch(config, config.resources[0], 3, SCRIPT, TOKEN, False)
    assert len(create_count(moto_ec2)) == 3  # EC2 did launch them; the scaler could not know
    fault.remaining = 0  # the network heals
    # the reconciler retries an unconfirmed launch next tick with the same token
    again = aws.launch(config, config.resources[0], 3, SCRIPT, TOKEN, False)
    assert sorted(i.id for i in again) == sorted(create_count(moto_ec2))
    assert len(create_count(moto_ec2)) == 3


def create_count(moto_ec2: Any) -> list[str]:
    pages = moto_ec2.get_paginator("describe_instances").paginate()
    return [
        i["InstanceId"]
        for p in pages
        for r in p["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]


# -- terminate ---------------------------------------------------------------------------------------


def test_terminate_is_idempotent_and_skips_unknown_ids(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    a, b, c = (i.id for i in aws.launch(config, config.resources[0], 3, SCRIPT, TOKEN, False))
    aws.terminate(config, [a, b, "i-0123456789abcdef0", "not-an-instance"])
    states = {i["InstanceId"]: i["State"]["Name"] for i in describe(moto_ec2, [a, b, c])}
    assert states[a] in ("shutting-down", "terminated") and states[b] in ("shutting-down", "terminated")
    assert states[c] == "running"
    assert ec2_proxy.count("TerminateInstances") == 2  # EC2 names the unknown ids; the rest is retried
    last = requests_of(ec2_proxy, "TerminateInstances")[-1]
    assert sorted(v for k, v in last.items() if k.startswith("InstanceId.")) == sorted([a, b])
    aws.terminate(config, [a, b])  # twice: still success
    assert [i.id for i in aws.list_instances(config)] == [c]


def test_terminate_when_ec2_does_not_say_which_id_is_missing(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    ids = [i.id for i in aws.launch(config, config.resources[0], 2, SCRIPT, TOKEN, False)]
    ec2_proxy.fail("TerminateInstances", "InvalidInstanceID.NotFound", message="Some instances do not exist")
    aws.terminate(config, ids)
    assert aws.list_instances(config) == []
    assert ec2_proxy.count("TerminateInstances") == 3  # the batch, then one by one


def test_terminate_batches_of_1000(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    ids = create_instances_direct(ec2_proxy, 1001, {TAG_SCALER: SCALER, TAG_RESOURCE: "cpu"})
    aws.terminate(config, ids)
    sizes = [sum(k.startswith("InstanceId.") for k in r) for r in requests_of(ec2_proxy, "TerminateInstances")]
    assert sizes == [1000, 1]
    assert aws.list_instances(config) == []


def test_terminate_errors_are_typed(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    ec2_proxy.fail("TerminateInstances", "UnauthorizedOperation")
    with pytest.raises(AuthError, match="ec2:TerminateInstances"):
        aws.terminate(config, [inst.id])
    assert [i.id for i in aws.list_instances(config)] == [inst.id]


# -- console output ----------------------------------------------------------------------------------


def test_console_output(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
) -> None:
    config = make_config(host, raw_config())
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    text = aws.console_output(config, inst.id)
    assert text.startswith("Linux version")  # moto's canned boot log, decoded
    assert requests_of(ec2_proxy, "GetConsoleOutput")[0]["Latest"] == "true"

    ec2_proxy.fail("GetConsoleOutput", "UnsupportedOperation", when=lambda p: "Latest" in p)
    assert aws.console_output(config, inst.id) == text  # falls back without Latest
    assert "Latest" not in requests_of(ec2_proxy, "GetConsoleOutput")[-1]

    with pytest.raises(ProviderError, match="does not exist"):
        aws.console_output(config, "i-0123456789abcdef0")


# -- credentials, endpoint, clients ----------------------------------------------------------------------


def test_keys_and_endpoint_from_the_config(
    host: PluginHost,
    aws: Provider,
    moto_ec2: Any,
    ec2_proxy: EC2Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    raw = raw_config(
        aws={
            "endpoint_url": ec2_proxy.url,
            "use_iam_role": False,
            "access_key_id": "AKIAEXAMPLEKEY",
            "secret_access_key": "not-a-real-secret",
        }
    )
    config = make_config(host, raw)
    [inst] = aws.launch(config, config.resources[0], 1, SCRIPT, TOKEN, False)
    assert [i.id for i in aws.list_instances(config)] == [inst.id]
    settings = aws_settings(config)
    assert ec2_client(settings) is ec2_client(aws_settings(config))  # cached
    assert ec2_client({**settings, "region": "eu-west-1"}) is not ec2_client(settings)

    no_keys = make_config(host, raw_config(aws={"endpoint_url": ec2_proxy.url}))
    no_keys.provider_settings["use_iam_role"] = False  # as if a ${?VAR} had been left unset at run time
    with pytest.raises(AuthError, match="use_iam_role is false"):
        aws.list_instances(no_keys)
