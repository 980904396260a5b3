"""The fake EC2 (moto's server + the EC2 proxy) behaves like EC2 where the product relies on it."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fakes.ec2 import (
    DUMMY_AMI,
    EC2Proxy,
    MotoServer,
    create_instance_profile,
    create_instances_direct,
    ec2_client,
    run_foreign_instances,
)

OURS = {"clearml-scaler": "test"}


def _tag_spec(tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _run(ec2: Any, n: int = 1, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("InstanceType", "t3.micro")
    return ec2.run_instances(ImageId=DUMMY_AMI, MinCount=n, MaxCount=n, **kwargs)


def _ids(resp: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for i in resp["Instances"]]


def _all_ids(ec2: Any) -> list[str]:
    pages = ec2.get_paginator("describe_instances").paginate()
    return [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# -- basics ----------------------------------------------------------------------------------
def test_each_test_starts_clean_and_requests_are_recorded(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    assert ec2.describe_instances()["Reservations"] == []
    _run(ec2, 2, TagSpecifications=_tag_spec(OURS))
    assert ec2_proxy.actions == ["DescribeInstances", "RunInstances"]
    assert ec2_proxy.requests[1]["TagSpecification.1.Tag.1.Key"] == "clearml-scaler"
    ec2_proxy.clear()
    assert ec2_proxy.actions == [] and ec2_proxy.requests == []


def test_recording_is_thread_safe(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)

    def worker() -> None:
        for _ in range(5):
            ec2.describe_instances()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ec2_proxy.actions == ["DescribeInstances"] * 40
    assert len(ec2_proxy.requests) == 40


def test_aws_env_routes_plain_boto3_to_proxy_and_iam_to_moto(aws_env: dict[str, str], ec2_proxy: EC2Proxy) -> None:
    arn = create_instance_profile(ec2_proxy, "scaler-workers")
    ec2 = boto3.client("ec2")  # nothing but the environment
    assert ec2.meta.endpoint_url == ec2_proxy.url
    assert boto3.client("iam").meta.endpoint_url == aws_env["AWS_ENDPOINT_URL_IAM"]
    resp = _run(ec2, IamInstanceProfile={"Arn": arn})
    assert resp["Instances"][0]["IamInstanceProfile"]["Arn"] == arn
    assert ec2_proxy.actions == ["RunInstances"]


# -- ClientToken idempotency -----------------------------------------------------------------
def test_moto_alone_ignores_client_token(moto_server: MotoServer, ec2_proxy: EC2Proxy) -> None:
    direct = moto_server.client("ec2")
    a = _run(direct, ClientToken="tok-1")
    b = _run(direct, ClientToken="tok-1")
    assert _ids(a) != _ids(b)
    assert len(direct.describe_instances()["Reservations"]) == 2


def test_proxy_replays_first_answer_for_repeated_client_token(moto_server: MotoServer, ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    first = _run(ec2, 3, ClientToken="tok-1")
    again = _run(ec2, 3, ClientToken="tok-1")
    assert _ids(again) == _ids(first)
    assert again["ReservationId"] == first["ReservationId"]
    assert len(moto_server.client("ec2").describe_instances()["Reservations"]) == 1
    assert ec2_proxy.actions == ["RunInstances", "RunInstances"]
    # another token is another launch; the same token with other arguments is refused
    assert _ids(_run(ec2, 3, ClientToken="tok-2")) != _ids(first)
    with pytest.raises(ClientError) as exc:
        _run(ec2, 1, ClientToken="tok-1")
    assert _code(exc) == "IdempotentParameterMismatch"


def test_failed_launch_does_not_burn_the_token(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, max_attempts=1)
    ec2_proxy.fail("RunInstances", "InstanceLimitExceeded")
    with pytest.raises(ClientError):
        _run(ec2, ClientToken="tok-1")
    assert len(_ids(_run(ec2, ClientToken="tok-1"))) == 1


# -- RunInstances counts ---------------------------------------------------------------------
def test_run_instances_launches_max_count_or_launch_limit(moto_server: MotoServer, ec2_proxy: EC2Proxy) -> None:
    direct = moto_server.client("ec2")
    assert len(_ids(direct.run_instances(ImageId=DUMMY_AMI, MinCount=1, MaxCount=4))) == 1
    ec2 = ec2_client(ec2_proxy, max_attempts=1)
    assert len(_ids(ec2.run_instances(ImageId=DUMMY_AMI, MinCount=1, MaxCount=4))) == 4
    ec2_proxy.launch_limit = 2
    assert len(_ids(ec2.run_instances(ImageId=DUMMY_AMI, MinCount=1, MaxCount=4))) == 2
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(ImageId=DUMMY_AMI, MinCount=3, MaxCount=4)
    assert _code(exc) == "InsufficientInstanceCapacity"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


# -- DescribeInstances pagination ------------------------------------------------------------
def test_describe_without_max_results_returns_everything(moto_server: MotoServer, ec2_proxy: EC2Proxy) -> None:
    # 101 reservations of one instance each, as a scaler launches them
    create_instances_direct(ec2_proxy, 101, OURS, per_reservation=1)
    moto_page = moto_server.client("ec2").describe_instances()
    assert len(moto_page["Reservations"]) == 100 and "NextToken" in moto_page  # moto's quirk
    page = ec2_client(ec2_proxy).describe_instances()
    assert len(page["Reservations"]) == 101 and "NextToken" not in page


def test_small_pages_keep_reservations_and_filters(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    mine = _ids(_run(ec2, 3, TagSpecifications=_tag_spec(OURS)))
    mine += _ids(_run(ec2, 4, TagSpecifications=_tag_spec(OURS)))
    run_foreign_instances(ec2_proxy, 2)
    ec2_proxy.clear()
    filters = [{"Name": "tag:clearml-scaler", "Values": ["test"]}]
    pages = list(ec2.get_paginator("describe_instances").paginate(Filters=filters, PaginationConfig={"PageSize": 5}))
    assert [sum(len(r["Instances"]) for r in p["Reservations"]) for p in pages] == [5, 2]
    # the second reservation is split: 2 of its instances on page 1, 2 on page 2
    assert [len(r["Instances"]) for r in pages[0]["Reservations"]] == [3, 2]
    assert pages[0]["Reservations"][1]["ReservationId"] == pages[1]["Reservations"][0]["ReservationId"]
    got = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
    assert sorted(got) == sorted(mine)
    assert ec2_proxy.actions == ["DescribeInstances", "DescribeInstances"]
    assert ec2_proxy.requests[1]["NextToken"] and ec2_proxy.requests[1]["MaxResults"] == "5"
    # forced page size applies without MaxResults too
    ec2_proxy.page_size = 2
    assert len(ec2.describe_instances(Filters=filters)["Reservations"][0]["Instances"]) == 2
    assert len(ec2.describe_instances(MaxResults=1000)["Reservations"][0]["Instances"]) == 2
    assert len(_all_ids(ec2)) == 9


def test_max_results_validation(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, max_attempts=1)
    ids = _ids(_run(ec2))
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances(InstanceIds=ids, MaxResults=5)
    assert _code(exc) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances(MaxResults=4)
    assert _code(exc) == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances(NextToken="bogus")
    assert _code(exc) == "InvalidParameterValue"


def test_paginator_past_1000_instances(ec2_proxy: EC2Proxy) -> None:
    t0 = time.monotonic()
    mine = create_instances_direct(ec2_proxy, 1001, OURS)
    created = time.monotonic() - t0
    ec2 = ec2_client(ec2_proxy, read_timeout=60)
    t1 = time.monotonic()
    # the client asks for 5000 per page; EC2 never gives more than 1000
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5000}))
    listed = time.monotonic() - t1
    sizes = [sum(len(r["Instances"]) for r in p["Reservations"]) for p in pages]
    assert sizes == [1000, 1]
    got = {i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]}
    assert got == set(mine)
    assert ec2_proxy.count("DescribeInstances") == 2
    print(f"\n1001 instances: create {created:.2f}s, paginate {listed:.2f}s")


# -- fault injection -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InsufficientFreeAddressesInSubnet", 400),
        ("SpotMaxPriceTooLow", 400),
        ("MaxSpotInstanceCountExceeded", 400),
        ("InstanceLimitExceeded", 400),
        ("VcpuLimitExceeded", 400),
        ("UnauthorizedOperation", 403),
        ("AuthFailure", 401),
        ("InsufficientInstanceCapacity", 500),
        ("InternalError", 500),
        ("RequestLimitExceeded", 503),
    ],
)
def test_fail_answers_with_ec2_error(ec2_proxy: EC2Proxy, code: str, status: int) -> None:
    ec2 = ec2_client(ec2_proxy, max_attempts=1)
    fault = ec2_proxy.fail("RunInstances", code)
    with pytest.raises(ClientError) as exc:
        _run(ec2)
    assert _code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert exc.value.response["Error"]["Message"]
    assert fault.hits == 1 and fault.remaining == 0
    assert len(_ids(_run(ec2))) == 1  # consumed: the next call goes through


def test_unauthorized_carries_encoded_message(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    ec2_proxy.fail("TerminateInstances", "UnauthorizedOperation")
    with pytest.raises(ClientError) as exc:
        ec2.terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    assert "Encoded authorization failure message: " in exc.value.response["Error"]["Message"]
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0  # 403: not retried
    ec2_proxy.fail("*", "AuthFailure")  # any action
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances()
    assert _code(exc) == "AuthFailure"


def test_fail_only_when_predicate_matches(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, max_attempts=1)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    full = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    free = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    spot = {"MarketType": "spot"}
    ec2_proxy.fail(
        "RunInstances",
        "InsufficientInstanceCapacity",
        times=None,
        when=lambda p: p.get("InstanceMarketOptions.MarketType") == "spot",
    )
    ec2_proxy.fail(
        "RunInstances",
        "InsufficientFreeAddressesInSubnet",
        times=None,
        when=lambda p: p.get("SubnetId") == full,
    )
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            _run(ec2, InstanceMarketOptions=spot)
        assert _code(exc) == "InsufficientInstanceCapacity"
    with pytest.raises(ClientError) as exc:
        _run(ec2, SubnetId=full)
    assert full in exc.value.response["Error"]["Message"]
    assert len(_ids(_run(ec2, SubnetId=free))) == 1


def test_dry_run(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    with pytest.raises(ClientError) as exc:  # moto answers DryRun itself
        _run(ec2, DryRun=True)
    assert _code(exc) == "DryRunOperation"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    ec2_proxy.fail("RunInstances", "UnauthorizedOperation", when=lambda p: p.get("DryRun") == "true")
    with pytest.raises(ClientError) as exc:
        _run(ec2, DryRun=True)
    assert _code(exc) == "UnauthorizedOperation"


def test_partial_terminate(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    ids = _ids(_run(ec2, 2))
    # moto, like EC2, refuses the whole call when one id is unknown and terminates nothing
    with pytest.raises(ClientError) as exc:
        ec2.terminate_instances(InstanceIds=[ids[0], "i-0123456789abcdef0"])
    assert _code(exc) == "InvalidInstanceID.NotFound"
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
        for i in r["Instances"]
    }
    assert set(states.values()) == {"running"}
    ec2_proxy.fail("TerminateInstances", "InvalidInstanceID.NotFound")
    with pytest.raises(ClientError) as exc:
        ec2.terminate_instances(InstanceIds=ids)
    assert ids[0] in exc.value.response["Error"]["Message"]
    assert len(ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]) == 2


# -- retries ---------------------------------------------------------------------------------
def test_throttling_is_retried_by_standard_mode(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, retry_mode="standard", max_attempts=3)
    ec2_proxy.fail("DescribeInstances", "RequestLimitExceeded", times=1)
    resp = ec2.describe_instances()
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert ec2_proxy.actions == ["DescribeInstances", "DescribeInstances"]


def test_throttling_gives_up_after_max_attempts(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, retry_mode="standard", max_attempts=2)
    ec2_proxy.fail("RunInstances", "RequestLimitExceeded", times=None)
    with pytest.raises(ClientError) as exc:
        _run(ec2)
    assert _code(exc) == "RequestLimitExceeded"
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert ec2_proxy.count("RunInstances") == 2


def test_server_error_is_retried_and_consumes_the_fault(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    ec2_proxy.fail("RunInstances", "InsufficientInstanceCapacity", times=1)
    resp = _run(ec2)  # 500 -> botocore retries; the retry launches
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    # both attempts carried the same auto-generated ClientToken
    tokens = {r["ClientToken"] for r in ec2_proxy.requests}
    assert len(tokens) == 1


def test_timeout_after_accept_retry_returns_first_batch(moto_server: MotoServer, ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy, read_timeout=1, max_attempts=3)
    ec2_proxy.timeout_after_accept("RunInstances")
    t0 = time.monotonic()
    resp = _run(ec2, 2, TagSpecifications=_tag_spec(OURS))  # no ClientToken: botocore adds one
    elapsed = time.monotonic() - t0
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert ec2_proxy.actions == ["RunInstances", "RunInstances"]
    assert len({r["ClientToken"] for r in ec2_proxy.requests}) == 1
    in_moto = moto_server.client("ec2").describe_instances()["Reservations"]
    assert len(in_moto) == 1
    assert sorted(_ids(resp)) == sorted(i["InstanceId"] for i in in_moto[0]["Instances"])
    assert 1.0 <= elapsed < 5.0
    print(f"\nread timeout 1s + retry: {elapsed:.2f}s")


def test_dropped_connection_after_accept_without_idempotency_makes_two_batches(
    moto_server: MotoServer, ec2_proxy: EC2Proxy
) -> None:
    ec2 = ec2_client(ec2_proxy, max_attempts=3)
    ec2_proxy.timeout_after_accept("RunInstances", drop=True)
    resp = _run(ec2)
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(moto_server.client("ec2").describe_instances()["Reservations"]) == 1
    # what moto alone would do: the retry launches a second batch
    ec2_proxy.idempotency = False
    ec2_proxy.timeout_after_accept("RunInstances", drop=True)
    _run(ec2)
    assert len(moto_server.client("ec2").describe_instances()["Reservations"]) == 3


# -- what moto stores ------------------------------------------------------------------------
def test_moto_keeps_launch_settings(ec2_proxy: EC2Proxy) -> None:
    ec2 = ec2_client(ec2_proxy)
    resp = _run(
        ec2,
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        InstanceInitiatedShutdownBehavior="terminate",
        UserData="#!/bin/bash\necho hi\n",
        InstanceMarketOptions={"MarketType": "spot"},
    )
    iid = _ids(resp)[0]
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["InstanceLifecycle"] == "spot"
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    # boto3 base64-encodes UserData for RunInstances; DescribeInstanceAttribute returns base64
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == b"#!/bin/bash\necho hi\n"
    console = ec2.get_console_output(InstanceId=iid)
    assert console["Output"].startswith("Linux version")  # moto: fixed text, not user data


def test_moto_gives_instance_profile_to_first_instance_only(ec2_proxy: EC2Proxy) -> None:
    arn = ec2_proxy.create_instance_profile("workers")
    ec2 = ec2_client(ec2_proxy)
    resp = _run(ec2, 3, IamInstanceProfile={"Arn": arn})
    profiles = [i.get("IamInstanceProfile", {}).get("Arn") for i in resp["Instances"]]
    assert profiles == [arn, None, None]  # real EC2 gives it to all three
    with pytest.raises(ClientError) as exc:
        _run(ec2, IamInstanceProfile={"Name": "missing"})
    assert _code(exc) == "NoSuchEntity"  # real EC2: InvalidParameterValue
