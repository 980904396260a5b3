"""The pure parts of the AWS plugin: the RunInstances request builder, user data encoding,
client tokens and the mapping of AWS errors onto the scaler's typed errors."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.host import PluginHost
from scaler.types import TAG_LAUNCH_TOKEN, TAG_RESOURCE, TAG_SCALER
from scaler_aws.client import clean_message, map_error
from scaler_aws.launch import USER_DATA_LIMIT, build_request, client_token, encode_user_data
from scaler_aws.provider import aws_settings, decode_console, resource_settings
from tests.fakes.ec2 import DUMMY_AMI
from tests.support.aws import SCALER, make_config, raw_config, resource

# -- tests of the pure parts ----------------------------------------------------------------------------


def _build(
    raw: dict[str, Any], host: PluginHost, *, spot: bool = False, subnet: str = "", count: int = 2, token: str = "tok"
) -> dict[str, Any]:
    config = make_config(host, raw)
    return build_request(
        scaler_name=config.scaler.name,
        resource_name=config.resources[0].name,
        settings=aws_settings(config),
        resource_settings=resource_settings(config.resources[0]),
        count=count,
        user_data=b"#!/bin/bash\n",
        launch_token=token,
        token=client_token(token, 0),
        spot=spot,
        subnet=subnet,
    )


def test_request_defaults(host: PluginHost) -> None:
    request = _build(raw_config(), host)
    assert request["ImageId"] == DUMMY_AMI and request["InstanceType"] == "t3.micro"
    assert (request["MinCount"], request["MaxCount"]) == (1, 2)
    assert request["ClientToken"] == "tok"
    assert request["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert request["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 2,
    }
    assert request["BlockDeviceMappings"] == [
        {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3", "DeleteOnTermination": True}}
    ]
    assert [s["ResourceType"] for s in request["TagSpecifications"]] == ["instance", "volume"]
    for spec in request["TagSpecifications"]:
        assert {t["Key"]: t["Value"] for t in spec["Tags"]} == {
            "Name": f"{SCALER}:cpu",
            TAG_SCALER: SCALER,
            TAG_RESOURCE: "cpu",
            TAG_LAUNCH_TOKEN: "tok",
        }
    for absent in (
        "InstanceMarketOptions",
        "SubnetId",
        "SecurityGroupIds",
        "IamInstanceProfile",
        "KeyName",
        "Placement",
    ):
        assert absent not in request


def test_custom_launch_spec_is_the_base_and_explicit_settings_win(host: PluginHost) -> None:
    raw = raw_config(
        aws={
            "custom_launch_spec": {
                "Monitoring": {"Enabled": True},
                "InstanceType": "m5.24xlarge",  # explicit instance_type wins
                "MetadataOptions": {"HttpTokens": "optional", "InstanceMetadataTags": "enabled"},
                "Placement": {"Tenancy": "dedicated", "AvailabilityZone": "us-east-1c"},
                "TagSpecifications": [
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": "cost-center", "Value": "42"},
                            {"Key": "team", "Value": "from-spec"},
                            {"Key": TAG_SCALER, "Value": "impostor"},
                        ],
                    },
                    {"ResourceType": "network-interface", "Tags": [{"Key": "nic", "Value": "1"}]},
                ],
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Ebs": {"KmsKeyId": "alias/k", "VolumeSize": 8}},
                    {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 500}},
                ],
                "InstanceMarketOptions": {"MarketType": "spot"},
            }
        },
        resources=[
            resource(
                "cpu",
                aws={
                    "availability_zone": "us-east-1b",
                    "tags": "team=ml,env=prod",
                    "custom_launch_spec": {"Monitoring": {"Enabled": False}, "EbsOptimized": True},
                },
            )
        ],
    )
    request = _build(raw, host)
    assert request["InstanceType"] == "t3.micro"
    assert request["Monitoring"] == {"Enabled": False}  # resource spec deep-merged over the top-level one
    assert request["EbsOptimized"] is True
    assert request["MetadataOptions"]["HttpTokens"] == "required"  # imdsv2_required wins
    assert request["MetadataOptions"]["InstanceMetadataTags"] == "enabled"  # the rest of the base stays
    assert request["Placement"] == {"Tenancy": "dedicated", "AvailabilityZone": "us-east-1b"}
    tags = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in request["TagSpecifications"]}
    assert tags["instance"]["cost-center"] == "42"
    assert tags["instance"]["team"] == "ml"  # `tags` beats the spec's tags
    assert tags["instance"][TAG_SCALER] == SCALER  # ownership beats everything
    assert tags["volume"]["env"] == "prod" and tags["volume"][TAG_RESOURCE] == "cpu"
    assert tags["network-interface"]["nic"] == "1" and tags["network-interface"][TAG_SCALER] == SCALER
    root, extra = request["BlockDeviceMappings"]
    assert root["Ebs"] == {"KmsKeyId": "alias/k", "VolumeSize": 100, "VolumeType": "gp3", "DeleteOnTermination": True}
    assert extra == {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 500}}
    assert "InstanceMarketOptions" not in request  # the policy chose on-demand


def test_network_interfaces_in_the_spec_carry_subnet_and_groups(host: PluginHost) -> None:
    raw = raw_config(
        aws={"custom_launch_spec": {"NetworkInterfaces": [{"AssociatePublicIpAddress": True}]}},
        resources=[resource("cpu", aws={"security_group_ids": ["sg-0123456789abcdef0"]})],
    )
    request = _build(raw, host, subnet="subnet-0123456789abcdef0")
    assert request["NetworkInterfaces"] == [
        {
            "AssociatePublicIpAddress": True,
            "DeviceIndex": 0,
            "SubnetId": "subnet-0123456789abcdef0",
            "Groups": ["sg-0123456789abcdef0"],
        }
    ]
    assert "SubnetId" not in request and "SecurityGroupIds" not in request


def test_spot_options_and_subnet_beats_zone(host: PluginHost) -> None:
    raw = raw_config(
        resources=[
            resource(
                "gpu",
                spot=True,
                aws={
                    "spot_max_price": "0.75",
                    "availability_zone": "us-east-1b",
                    "subnet_ids": ["subnet-0123456789abcdef0"],
                },
            )
        ]
    )
    request = _build(raw, host, spot=True, subnet="subnet-0123456789abcdef0")
    assert request["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
            "MaxPrice": "0.75",
        },
    }
    assert request["SubnetId"] == "subnet-0123456789abcdef0"
    assert "Placement" not in request


def test_user_data_raw_gzip_and_too_big() -> None:
    small = "#!/bin/bash\necho hello\n"
    assert encode_user_data(small) == small.encode()
    big = "#!/bin/bash\n" + "echo 'a fairly repetitive line of setup'\n" * 1000
    packed = encode_user_data(big)
    assert len(big) > USER_DATA_LIMIT >= len(packed)
    assert gzip.decompress(packed).decode() == big
    assert encode_user_data(big) == packed  # deterministic: a retry sends the same parameters
    rng = random.Random(1)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40_000))
    with pytest.raises(ProviderError, match="16 KB") as exc:
        encode_user_data(noise)
    assert exc.value.code == "UserDataTooLarge"


def test_client_tokens_per_subnet_attempt() -> None:
    token = "0f6d6f0e-8a4c-5d9e-9b1f-2b8f3c4d5e6f"
    assert client_token(token, 0) == token
    assert client_token(token, 1) == f"{token}-s1" != client_token(token, 2)
    assert len(client_token("x" * 100, 0)) == 64


def _client_error(code: str, message: str = "boom", status: int = 400, op: str = "RunInstances") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InsufficientInstanceCapacity", 500, CapacityError),
        ("InsufficientCapacity", 500, CapacityError),
        ("SpotMaxPriceTooLow", 400, CapacityError),
        ("MaxSpotInstanceCountExceeded", 400, CapacityError),
        ("InsufficientFreeAddressesInSubnet", 400, CapacityError),
        ("Unsupported", 400, CapacityError),
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("VolumeLimitExceeded", 400, QuotaError),
        ("UnauthorizedOperation", 403, AuthError),
        ("AccessDeniedException", 403, AuthError),
        ("AuthFailure", 401, AuthError),
        ("InvalidClientTokenId", 403, AuthError),
        ("SignatureDoesNotMatch", 403, AuthError),
        ("ExpiredToken", 400, AuthError),
        ("RequestLimitExceeded", 503, TransientError),
        ("Throttling", 400, TransientError),
        ("InternalError", 500, TransientError),
        ("SomethingNew", 502, TransientError),
        ("InvalidParameterValue", 400, ProviderError),
    ],
)
def test_error_mapping(code: str, status: int, kind: type[ProviderError]) -> None:
    error = map_error(_client_error(code, status=status), "RunInstances")
    assert type(error) is kind
    assert error.code == code


def test_error_mapping_of_transport_errors() -> None:
    assert isinstance(map_error(ReadTimeoutError(endpoint_url="http://x"), "RunInstances"), TransientError)
    assert isinstance(map_error(EndpointConnectionError(endpoint_url="http://x"), "DescribeInstances"), TransientError)
    error = map_error(NoCredentialsError(), "DescribeInstances")
    assert isinstance(error, AuthError) and "use_iam_role" in str(error)


def test_auth_error_names_the_actions_and_drops_the_encoded_blob() -> None:
    blob = "AbCdEf0123456789" * 40
    exc = _client_error(
        "UnauthorizedOperation",
        f"You are not authorized to perform this operation. Encoded authorization failure message: {blob}",
        403,
    )
    error = map_error(exc, "RunInstances", needs=["iam:PassRole on the role of instance profile 'p'"])
    assert isinstance(error, AuthError)
    assert "ec2:RunInstances" in str(error) and "iam:PassRole" in str(error)
    assert blob not in str(error) and "decode-authorization-message" in str(error)
    assert len(clean_message("x" * 5000)) < 500


def test_console_output_decoding() -> None:
    assert decode_console(None) == "" and decode_console("") == ""
    assert decode_console("aGVsbG8gd29ybGQK") == "hello world\n"
    assert decode_console("already text\nwith lines") == "already text\nwith lines"


class _FakeIMDS(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it with HttpTokens=required: a PUT for a token, then GETs with it."""

    token = "imds-token-123"
    instance_id = "i-0abc1234def567890"
    accept_tokens = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._answer(400, "<html>bad request</html>")
        else:
            self._answer(200, self.token)

    def do_GET(self) -> None:
        ok = self.accept_tokens and self.headers.get("X-aws-ec2-metadata-token") == self.token
        if self.path != "/latest/meta-data/instance-id" or not ok:
            self._answer(401, "<html>401 - Unauthorized</html>")
        else:
            self._answer(200, self.instance_id)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs bash and curl")
@pytest.mark.parametrize("accept", [True, False])
def test_instance_identity_fragment_speaks_imdsv2(accept: bool) -> None:
    from scaler_aws.plugin import INSTANCE_ID_SCRIPT

    handler = type("IMDS", (_FakeIMDS,), {"accept_tokens": accept})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": os.environ["PATH"],
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{server.server_port}/",
        }
        script = f'set -u\n{INSTANCE_ID_SCRIPT}\nprintf "%s" "$SCALER_INSTANCE_ID"\n'
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    # a refused token must leave the id empty (the init script then shuts the machine down), never an error page
    assert done.stdout == (_FakeIMDS.instance_id if accept else "")
