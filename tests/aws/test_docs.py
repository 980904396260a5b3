"""docs/aws.md says exactly what the aws plugin does: its IAM policies list the EC2 actions the
plugin really calls (as seen at the EC2 proxy), and its tables list every config key."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from scaler.host import PluginHost, Provider
from scaler.types import TAG_FLEET
from scaler_aws.schema import EBS_SECTION, SECTION
from tests.fakes.ec2 import EC2Proxy, MotoServer
from tests.support import REPO
from tests.support.aws import (
    make_config,
    make_network,
    raw_config,
    register_ami,
    resource,
)

DOC = REPO / "docs" / "aws.md"
PLUGIN = REPO / "plugins" / "aws" / "scaler_aws"
#: actions authorised by IAM but never a request of their own (CreateTags is one too: the tags
#: of RunInstances' TagSpecifications, and a request when a legacy machine is adopted)
IMPLIED: set[str] = set()
CHECK_ONLY = {"DescribeInstanceTypeOfferings", "DescribeSubnets", "DescribeSecurityGroups"}


def policy(name: str) -> dict[str, Any]:
    text = DOC.read_text()
    match = re.search(rf"<!-- iam-policy:{name} -->\s*```json\n(.*?)```", text, re.S)
    assert match, f"no iam-policy:{name} block in {DOC}"
    parsed: dict[str, Any] = json.loads(match.group(1))
    return parsed


def actions(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        found |= {listed} if isinstance(listed, str) else set(listed)
    return found


def ec2_actions(doc: dict[str, Any]) -> set[str]:
    return {a.split(":", 1)[1] for a in actions(doc) if a.startswith("ec2:")}


def test_policies_are_valid_json_with_the_same_actions() -> None:
    full, restricted = policy("full"), policy("restricted")
    assert actions(full) == actions(restricted)
    assert {a for a in actions(full) if not a.startswith("ec2:")} == {"iam:PassRole"}
    conditions = json.dumps(restricted)
    assert "aws:ResourceTag/clearml-scaler-name" in conditions
    assert "aws:RequestTag/clearml-scaler-name" in conditions
    for statement in restricted["Statement"]:
        if set(statement["Action"]) & {"ec2:TerminateInstances", "ec2:CreateTags"}:
            assert "Condition" in statement, statement["Sid"]


def test_the_policy_covers_exactly_the_actions_seen_at_the_proxy(
    host: PluginHost,
    aws: Provider,
    moto_server: MotoServer,
    aws_env: dict[str, str],
    ec2_proxy: EC2Proxy,
) -> None:
    moto_ec2 = moto_server.client("ec2")
    net = make_network(moto_ec2)
    ami = register_ami(moto_ec2)
    arn = ec2_proxy.create_instance_profile("agents")
    raw = raw_config(
        aws={"iam_instance_profile": arn},
        resources=[
            resource("gpu", spot=True, aws={"ami_id": ami, "subnet_ids": net.subnets, "security_group_ids": [net.sg]})
        ],
    )
    config = make_config(host, raw)
    ec2_proxy.fail("RunInstances", "InsufficientInstanceCapacity", when=lambda p: p.get("SubnetId") == net.subnets[0])
    launched = aws.launch(config, config.resources[0], 2, "#!/bin/bash\n", "doc-token", True)
    launched += aws.launch(config, config.resources[0], 1, "#!/bin/bash\n", "doc-token-2", False)
    assert len(aws.list_instances(config)) == 3
    aws.console_output(config, launched[0].id)
    aws.tag_instances(config, [launched[0].id], {TAG_FLEET: "0123456789abcdef"})  # adopting a legacy machine
    aws.terminate(config, [i.id for i in launched] + ["i-0123456789abcdef0"])
    run_actions = set(ec2_proxy.actions)
    ec2_proxy.clear()
    assert aws.check_cloud(config) == []
    check_actions = set(ec2_proxy.actions)

    documented = ec2_actions(policy("full"))
    assert run_actions | IMPLIED == documented - CHECK_ONLY
    # the launch check is a DryRun RunInstances; DescribeImages is also the launch's (the AMI's root device)
    assert check_actions == CHECK_ONLY | {"RunInstances", "DescribeImages"}
    assert run_actions | check_actions | IMPLIED == documented


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def test_every_ec2_method_the_plugin_calls_is_in_the_policy() -> None:
    """Static guard: any new ``client.<method>(…)`` / paginator in the plugin needs a policy line."""
    called: set[str] = set()
    for path in PLUGIN.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.func.attr == "call" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                called.add(_camel(str(node.args[1].value)))  # checks._Cloud.call(action, "boto3_method", ...)
                continue
            if owner_name != "client":
                continue
            if node.func.attr == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                called.add(_camel(str(node.args[0].value)))
            elif not node.func.attr.startswith("get_paginator"):
                called.add(_camel(node.func.attr))
    assert called, "no EC2 calls found: has the plugin's code moved?"
    assert called | IMPLIED == ec2_actions(policy("full"))


def test_the_doc_tables_list_every_config_key_and_vault_key() -> None:
    text = DOC.read_text()
    for spec in SECTION.fields + SECTION.resource_fields:
        if spec.name != "ebs":
            assert f"| `{spec.name}` |" in text, spec.name
    for spec in EBS_SECTION:
        assert f"| `ebs.{spec.name}` |" in text, spec.name
    vault_keys = [key for spec in SECTION.fields for key in spec.vault]
    assert len(vault_keys) == 15  # every key ClearML's AWS autoscaler app and its docs' vault write
    for key in vault_keys:
        assert f"`{key}`" in text, key
