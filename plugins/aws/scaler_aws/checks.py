"""Checks of the ``aws`` sections: offline (``validate-config``) and against EC2
(``validate-config --check-cloud``, which creates nothing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scaler.api import AuthError, Problem, ProviderError, ResourceSettings, Secret
from scaler_aws.client import credential_source, ec2_client, error_code, map_error
from scaler_aws.launch import MANAGED_KEYS, build_request, instance_profile, subnets_of

if TYPE_CHECKING:
    from scaler.api import Config

IOPS_TYPES = ("gp3", "io1", "io2")


def _text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value or "")


# -- offline ---------------------------------------------------------------------------------------


def validate(settings: Mapping[str, Any], resources: Sequence[ResourceSettings], applies: bool) -> list[Problem]:
    """What the declaration alone cannot say: combinations of keys, custom_launch_spec's shape.

    ``settings`` and each resource's settings are the normalised ``aws`` sections
    (``scaler_validate_config``); ``applies`` is true when aws is the chosen provider.
    """
    problems: list[Problem] = []
    key_id, secret = _text(settings.get("access_key_id")), _text(settings.get("secret_access_key"))
    if key_id and not secret:
        problems.append(Problem("aws.secret_access_key", "is required when aws.access_key_id is set"))
    elif secret and not key_id:
        problems.append(Problem("aws.access_key_id", "is required when aws.secret_access_key is set"))
    elif applies and settings.get("use_iam_role") is False and not key_id:
        problems.append(
            Problem(
                "aws.use_iam_role",
                "is false but aws.access_key_id / aws.secret_access_key are not set (an unset ${?VAR} leaves a key "
                "out): set both keys, or use_iam_role = true for the instance role / boto3's credential chain",
            )
        )
    if settings.get("custom_launch_spec"):
        problems += _check_launch_spec(settings["custom_launch_spec"], "aws.custom_launch_spec")
    region = str(settings.get("region") or "us-east-1")
    for resource in resources:
        path, r = resource.path, resource.settings
        ebs = r.get("ebs") or {}
        kind = ebs.get("type", "gp3")
        if ebs.get("iops") and kind not in IOPS_TYPES:
            problems.append(Problem(f"{path}.ebs.iops", f"applies to gp3, io1 and io2 volumes only, not {kind}"))
        if kind in ("io1", "io2") and not ebs.get("iops"):
            problems.append(Problem(f"{path}.ebs.iops", f"is required for {kind} volumes (provisioned IOPS)"))
        if ebs.get("throughput") and kind != "gp3":
            problems.append(Problem(f"{path}.ebs.throughput", f"applies to gp3 volumes only, not {kind}"))
        zone = r.get("availability_zone") or ""
        if zone and not zone.startswith(region):
            problems.append(Problem(f"{path}.availability_zone", f"{zone!r} is not a zone of aws.region {region!r}"))
        if r.get("subnet_id") and r.get("subnet_ids"):
            problems.append(
                Problem(
                    f"{path}.subnet_id",
                    "both subnet_id and subnet_ids are set: subnet_id is tried after subnet_ids",
                    severity="warning",
                )
            )
        if r.get("spot_max_price") and resource.common.get("spot") is not True:
            problems.append(
                Problem(f"{path}.spot_max_price", "is ignored: the resource is not spot", severity="warning")
            )
        if r.get("custom_launch_spec"):
            problems += _check_launch_spec(r["custom_launch_spec"], f"{path}.custom_launch_spec")
    return problems


def _check_launch_spec(spec: Mapping[str, Any], path: str) -> list[Problem]:
    """Check a custom_launch_spec against botocore's RunInstances model (loaded only if one is set)."""
    problems = []
    for key in MANAGED_KEYS:
        if key in spec:
            problems.append(
                Problem(f"{path}.{key}", "is always set by the scaler; this value is ignored", severity="warning")
            )
    try:
        import botocore.session
        from botocore.validate import ParamValidator

        shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    except Exception:  # botocore missing or its model changed: skip this check
        return problems
    params = {k: v for k, v in spec.items() if k not in MANAGED_KEYS}
    params.update({"ImageId": "ami-00000000", "MinCount": 1, "MaxCount": 1})
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        text = report.generate_report()
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("Parameter validation failed"):
                problems.append(Problem(path, f"not a valid RunInstances request: {line}"))
    return problems


# -- against the cloud -------------------------------------------------------------------------


class _Stop(Exception):
    """The cloud cannot be asked at all (credentials, endpoint): one problem, no more checks."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Cloud:
    """Memoised read-only EC2 calls; a call that fails for lack of permission is reported once."""

    def __init__(self, client: Any, settings: Mapping[str, Any]) -> None:
        self.client = client
        self.settings = settings
        self.memo: dict[tuple[Any, ...], Any] = {}
        self.denied: set[str] = set()
        self.problems: list[Problem] = []

    def call(self, action: str, method: str, path: str, **kwargs: Any) -> tuple[dict[str, Any] | None, str]:
        """The response, or ``None`` and the error code (``""`` when denied and reported)."""
        key = (method, repr(sorted(kwargs.items())))
        if key in self.memo:
            return self.memo[key]
        try:
            result: tuple[dict[str, Any] | None, str] = (getattr(self.client, method)(**kwargs), "")
        except Exception as exc:  # sorted below
            code = error_code(exc)
            error = map_error(exc, action, credentials=credential_source(self.settings))
            if code == "UnauthorizedOperation" or code.startswith("AccessDenied"):
                if action not in self.denied:
                    self.denied.add(action)
                    self.problems.append(
                        Problem(
                            path,
                            f"could not check: ec2:{action} is not permitted to the "
                            "scaler's AWS identity (needed only by --check-cloud)",
                            severity="warning",
                        )
                    )
                result = (None, "")
            elif isinstance(error, AuthError):
                raise _Stop(Problem("aws", str(error))) from exc
            elif not code:  # no answer at all: endpoint, network, timeouts
                where = "aws.endpoint_url" if self.settings.get("endpoint_url") else "aws.region"
                raise _Stop(Problem(where, f"EC2 could not be reached: {error}")) from exc
            else:
                result = (None, code)
        self.memo[key] = result
        return result


def check_cloud(config: Config) -> list[Problem]:
    """Images exist, types are offered where they will launch, network ids exist, a launch is
    permitted (RunInstances with DryRun). Creates nothing."""
    settings = config.provider_settings
    try:
        client = ec2_client(settings)
    except ProviderError as exc:
        return [Problem("aws", str(exc))]
    cloud = _Cloud(client, settings)
    problems: list[Problem] = []
    try:
        for index, resource in enumerate(config.resources):
            problems += _check_resource(cloud, config, index, resource.name, resource.spot, resource.provider)
    except _Stop as stop:
        problems.append(stop.problem)
    return cloud.problems + problems


def _check_resource(
    cloud: _Cloud, config: Config, index: int, name: str, spot: bool, r: Mapping[str, Any]
) -> list[Problem]:
    path = f"resources[{index}].aws"
    region = cloud.settings["region"]
    problems: list[Problem] = []

    def add(where: str, text: str, severity: str = "error") -> None:
        problems.append(Problem(f"{path}{where}", text, severity))

    # image
    ami = r["ami_id"]
    found, code = cloud.call("DescribeImages", "describe_images", f"{path}.ami_id", ImageIds=[ami])
    images = (found or {}).get("Images") or []
    if code or (found is not None and not images):
        add(
            ".ami_id",
            f"AMI {ami} does not exist in {region} or is not shared with this account "
            "(AMI ids are regional: copy the image or use this region's id)",
        )
    elif images:
        image = images[0]
        if image.get("State") not in (None, "available"):
            add(".ami_id", f"AMI {ami} is {image.get('State')}, not available", "warning")
        root = image.get("RootDeviceName")
        if root and r["ebs"]["device"] and root != r["ebs"]["device"]:  # empty: the launch reads the AMI's
            add(
                ".ebs.device",
                f"the AMI's root device is {root}, not {r['ebs']['device']}: the ebs section would "
                "add a second volume instead of sizing the root volume",
                "warning",
            )

    # network
    subnets = [s for s in subnets_of(r) if s]
    zones: list[str] = []
    vpcs: set[str] = set()
    for j, subnet in enumerate(r.get("subnet_ids") or []):
        zone, vpc = _subnet(cloud, subnet, f"{path}.subnet_ids[{j}]", add, f".subnet_ids[{j}]", region)
        zones += [zone] if zone else []
        vpcs |= {vpc} if vpc else set()
    if r.get("subnet_id") and r["subnet_id"] not in (r.get("subnet_ids") or []):
        zone, vpc = _subnet(cloud, r["subnet_id"], f"{path}.subnet_id", add, ".subnet_id", region)
        zones += [zone] if zone else []
        vpcs |= {vpc} if vpc else set()
    if r["availability_zone"] and zones and any(z != r["availability_zone"] for z in zones):
        add(
            ".availability_zone",
            f"is {r['availability_zone']} but the subnets are in {', '.join(sorted(set(zones)))}"
            "; the subnets decide the zone",
            "warning",
        )
    for j, group in enumerate(r.get("security_group_ids") or []):
        found, code = cloud.call(
            "DescribeSecurityGroups", "describe_security_groups", f"{path}.security_group_ids[{j}]", GroupIds=[group]
        )
        groups = (found or {}).get("SecurityGroups") or []
        if code or (found is not None and not groups):
            add(f".security_group_ids[{j}]", f"security group {group} does not exist in {region}")
        elif groups and vpcs and groups[0].get("VpcId") and groups[0]["VpcId"] not in vpcs:
            add(
                f".security_group_ids[{j}]",
                f"security group {group} is in {groups[0]['VpcId']} but the subnets are in {', '.join(sorted(vpcs))}",
            )

    # instance type offered where it will launch
    itype = r["instance_type"]
    places = sorted(set(zones)) or ([r["availability_zone"]] if r["availability_zone"] else [])
    for zone in places or [region]:
        kind = "availability-zone" if places else "region"
        found, code = cloud.call(
            "DescribeInstanceTypeOfferings",
            "describe_instance_type_offerings",
            f"{path}.instance_type",
            LocationType=kind,
            Filters=[{"Name": "location", "Values": [zone]}, {"Name": "instance-type", "Values": [itype]}],
        )
        if found is not None and not (found.get("InstanceTypeOfferings") or []):
            add(".instance_type", f"{itype} is not offered in {zone}")
        elif code:
            add(".instance_type", f"could not check whether {itype} is offered in {zone}: {code}", "warning")

    # a launch is permitted (DryRun: nothing is created); skipped when it could only repeat the above
    if any(p.severity == "error" for p in problems):
        return problems
    request = build_request(
        scaler_name=config.scaler.name,
        resource_name=name,
        settings=cloud.settings,
        resource_settings=r,
        count=1,
        user_data=None,
        launch_token="check-cloud",
        token=None,
        spot=spot,
        subnet=subnets[0] if subnets else "",
    )
    try:
        cloud.client.run_instances(DryRun=True, **request)
        add("", "RunInstances with DryRun unexpectedly succeeded", "warning")
    except Exception as exc:  # DryRunOperation is the success answer
        code = error_code(exc)
        if code == "DryRunOperation":
            pass
        elif code == "UnauthorizedOperation" or code.startswith("AccessDenied"):
            needs = ["ec2:RunInstances", "ec2:CreateTags"]
            profile = instance_profile(cloud.settings, r)
            if profile:
                needs.append(f"iam:PassRole (role of instance profile '{profile}')")
            add(
                "",
                f"launching '{name}' is not permitted: the scaler's AWS identity needs {', '.join(needs)} "
                f"({map_error(exc, 'RunInstances')})",
            )
        else:
            error = map_error(exc, "RunInstances", context=f"DryRun for resource '{name}'")
            if isinstance(error, AuthError):
                raise _Stop(Problem("aws", str(error))) from exc
            add("", f"a launch of '{name}' would fail: {error}")
    return problems


def _subnet(
    cloud: _Cloud, subnet: str, call_path: str, add: Callable[..., None], where: str, region: str
) -> tuple[str, str]:
    found, code = cloud.call("DescribeSubnets", "describe_subnets", call_path, SubnetIds=[subnet])
    items = (found or {}).get("Subnets") or []
    if code or (found is not None and not items):
        add(where, f"subnet {subnet} does not exist in {region}")
        return "", ""
    if not items:
        return "", ""
    return str(items[0].get("AvailabilityZone") or ""), str(items[0].get("VpcId") or "")
