"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (kubernetes-validate,
offline, strict: an unknown field fails), and the pieces fit: the Deployment runs the image of
this version as the Dockerfile's user with `scaler run` arguments it accepts, reads its config
from the ConfigMap (itself a valid configuration), its credentials from the Secret (variables
something reads), and serves /metrics where the Service points."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler import __version__
from tests.release.support import DEPLOY, check_run_arguments, check_variable_names
from tests.support.cli import run_cli

K8S = DEPLOY / "kubernetes"
#: the newest schemas kubernetes-validate ships, and an older release still in common use
VERSIONS = ("latest", "1.29.0")


def manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
            assert len(documents) == 1, f"{path.name}: one resource per file"
            found[path.name] = documents[0]
    return found


def of_kind(kind: str) -> dict[str, Any]:
    found = [m for m in manifests().values() if m["kind"] == kind]
    assert len(found) == 1, f"one {kind}"
    return found[0]


def container() -> dict[str, Any]:
    containers = of_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def option(args: list[str], name: str) -> str:
    assert name in args, f"the Deployment's args lack {name}"
    return args[args.index(name) + 1]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(manifests()))
def test_valid_against_the_kubernetes_schemas(name: str, version: str) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import all_versions, latest_version

    wanted = latest_version() if version == "latest" else version
    if wanted not in all_versions():
        pytest.skip(f"kubernetes-validate has no schemas for {wanted}")
    kubernetes_validate.validate(manifests()[name], wanted, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    broken = manifests()["deployment.yaml"]
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_kustomization_lists_every_manifest_and_this_version() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(manifests())
    namespace = kustomization["namespace"]
    for name, manifest in manifests().items():
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace, name
    assert of_kind("Namespace")["metadata"]["name"] == namespace
    [image] = kustomization["images"]
    assert image["newTag"] == __version__
    assert container()["image"] == f"{image['name']}:{__version__}"


def test_one_replica_recreated_as_a_restricted_pod() -> None:
    deployment = of_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert "lease" in (K8S / "deployment.yaml").read_text(), "the manifest says why a second replica is safe"
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == of_kind("ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to finish a tick on SIGTERM"
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["seccompProfile"]["type"] == "RuntimeDefault"
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)", dockerfile, re.M)
    assert user and (security["runAsUser"], security["runAsGroup"]) == (int(user.group(1)), int(user.group(2)))
    box = container()["securityContext"]
    assert box["allowPrivilegeEscalation"] is False and box["readOnlyRootFilesystem"] is True
    assert box["capabilities"]["drop"] == ["ALL"]


def test_arguments_config_state_and_home_are_where_the_volumes_are() -> None:
    box = container()
    args = box["args"]
    check_run_arguments(args, "deployment.yaml args")
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in of_kind("Deployment")["spec"]["template"]["spec"]["volumes"]}
    config = Path(option(args, "--config"))
    mount = mounts[str(config.parent)]
    assert mount.get("readOnly") is True
    configmap = of_kind("ConfigMap")
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert config.name in configmap["data"]
    writable = [path for path, m in mounts.items() if not m.get("readOnly")]
    state = option(args, "--state-file")
    assert any(state.startswith(path + "/") for path in writable), "the state file is on a writable volume"
    home = re.search(r"^\s*HOME=(\S+)", (Path(__file__).parents[2] / "Dockerfile").read_text(), re.M)
    assert home and home.group(1) in writable, "HOME (the ClearML SDK's cache) is writable"
    assert "/tmp" in writable


def test_metrics_port_probe_and_service_agree() -> None:
    box = container()
    port = int(option(box["args"], "--metrics-port"))
    [declared] = box["ports"]
    assert declared == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    assert box["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    service = of_kind("Service")
    [exposed] = service["spec"]["ports"]
    assert exposed["targetPort"] == "metrics" and exposed["port"] == port
    assert (
        service["spec"]["selector"].items() <= of_kind("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_credentials_come_from_the_secret_and_the_config_holds_none() -> None:
    secret = of_kind("Secret")
    assert container()["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    names = set(secret["stringData"])
    assert {"CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"} <= names
    check_variable_names(names, "secret.yaml")
    assert not [k for k, v in secret["stringData"].items() if re.search(r"KEY|SECRET|TOKEN", k) and v], (
        "no secret value in git"
    )
    config = next(iter(of_kind("ConfigMap")["data"].values()))
    for line in config.splitlines():
        if re.search(r"(password|secret|access_key|token)\w*\s*=", line):
            assert "${?" in line, f"a secret in the ConfigMap: {line.strip()}"


def test_the_configmap_is_a_valid_configuration(tmp_path: Path) -> None:
    box = container()
    provider = option(box["args"], "--provider")
    config = tmp_path / "scaler.conf"
    config.write_text(next(iter(of_kind("ConfigMap")["data"].values())))
    result = run_cli("validate-config", str(config), "--provider", provider)
    assert result.returncode == 0, result.stdout + result.stderr
