"""The resource settings that ClearML's autoscaler has and ``scaler import`` maps onto: a root
volume made from a snapshot (``ebs_snapshot_id``) and detailed monitoring (``enable_monitoring``)."""

from __future__ import annotations

from scaler.host import PluginHost
from scaler_aws.launch import build_request, client_token
from scaler_aws.provider import aws_settings, resource_settings
from tests.support.aws import make_config, raw_config, resource


def request_for(host: PluginHost, **aws: object) -> dict[str, object]:
    config = make_config(host, raw_config([resource("gpu", aws=aws)]))
    return build_request(
        scaler_name=config.scaler.name,
        resource_name="gpu",
        settings=aws_settings(config),
        resource_settings=resource_settings(config.resources[0]),
        count=1,
        user_data=b"#!/bin/bash\n",
        launch_token="tok",
        token=client_token("tok", 0),
        spot=False,
        subnet="",
    )


def test_snapshot_and_monitoring(host: PluginHost) -> None:
    request = request_for(
        host, ebs={"device": "/dev/xvda", "size_gb": 200, "snapshot_id": "snap-0123456789abcdef0"}, monitoring=True
    )
    assert request["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "VolumeSize": 200,
                "VolumeType": "gp3",
                "DeleteOnTermination": True,
                "SnapshotId": "snap-0123456789abcdef0",
            },
        }
    ]
    assert request["Monitoring"] == {"Enabled": True}
    plain = request_for(host)
    assert "Monitoring" not in plain
    assert "SnapshotId" not in plain["BlockDeviceMappings"][0]["Ebs"]  # type: ignore[index]


def test_a_snapshot_id_is_checked(host: PluginHost) -> None:
    raw = raw_config([resource("gpu", aws={"ebs": {"snapshot_id": "snapshot-1"}})])
    problems = host.validate(raw, "aws", host.provider_names())
    assert [p.path for p in problems if p.severity == "error"] == ["resources[0].aws.ebs.snapshot_id"]
