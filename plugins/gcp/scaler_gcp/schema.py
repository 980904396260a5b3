"""The ``gcp`` configuration section (top level and per resource), declared to core through
``scaler_config_sections``: types, defaults, docs, the ClearML vault keys and the
``scaler init`` questions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from scaler.api import Ask, Field, Section

ZONE = r"[a-z]+-[a-z]+\d+-[a-z]"
LABEL = r"[a-z][a-z0-9_-]{0,62}"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

#: what `image` may look like (see :func:`scaler_gcp.naming.image_ref`)
IMAGE_HINT = (
    "an image or image family: projects/<project>/global/images/family/<family>, "
    "projects/<project>/global/images/<image>, a full https://…/compute/v1/projects/… URL, "
    "global/images/…, family/<family> or <image> (in gcp.project)"
)


def check_labels(value: dict[str, Any]) -> str | None:
    for key, val in value.items():
        if not re.fullmatch(LABEL, str(key)):
            return (
                f"label key {str(key)!r} must start with a lowercase letter and hold only lowercase letters, "
                "digits, '_' or '-' (up to 63)"
            )
        if not re.fullmatch(r"[a-z0-9_-]{0,63}", str(val)):
            return f"label value {str(val)!r} of {key!r} may hold only lowercase letters, digits, '_' or '-' (up to 63)"
    return None


def check_image(value: str) -> str | None:
    from scaler_gcp.naming import image_ref

    try:
        image_ref(value, "my-project")
    except ValueError:
        return f"must be {IMAGE_HINT}; got {value!r}"
    return None


def check_metadata(value: dict[str, Any]) -> str | None:
    for key, val in value.items():
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", str(key)):
            return f"metadata key {str(key)!r} may hold only letters, digits, '_' or '-' (up to 128)"
        if isinstance(val, (dict, list)):
            return f"metadata value of {key!r} must be a string"
    return None


def check_network_tags(value: list[str]) -> str | None:
    for tag in value:
        if not re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", tag):
            return f"network tag {tag!r} must be lowercase letters, digits or '-' (up to 63, starting with a letter)"
    return None


def check_key_json(value: Any) -> str | None:
    """A service account key's content: a JSON object naming its type (never echoes the value)."""
    text = value.reveal() if hasattr(value, "reveal") else str(value)
    if not text:
        return None
    try:
        key = json.loads(text)
    except ValueError:
        return "must be the content of a service account JSON key (it is not JSON)"
    if not isinstance(key, dict) or "type" not in key:
        return "must be the content of a service account JSON key (a JSON object with 'type', 'private_key', ...)"
    return None


def existing_file(value: Any) -> str | None:
    """``scaler init`` only: the key file must exist where the configuration is written."""
    if value and not Path(str(value)).expanduser().is_file():
        return f"no such file: {value}"
    return None


GCP_SECTION = (
    Field(
        "project",
        "str",
        "GCP project id (default: the credentials' project).",
        default="",
        pattern=r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
        pattern_hint="a project id like my-ml-project",
        vault=("gcp_project", "gcp_project_id"),
        ask="GCP project id (empty: the credentials' project)",
    ),
    Field(
        "credentials_file",
        "str",
        "Service account JSON key (default: Application Default Credentials).",
        default="",
        vault=("gcp_credentials_file", "cloud_credentials_file"),
        ask=Ask("Service account key file (empty: Application Default Credentials)", check=existing_file),
    ),
    Field(
        "credentials_json",
        "secret",
        "Service account JSON key given as its content instead of a file (as ClearML's GCP autoscaler takes it).",
        default="",
        env="SCALER_GCP_CREDENTIALS_JSON",
        check=check_key_json,
        vault=("gcp_credentials", "gcp_credentials_json", "cloud_credentials_json"),
    ),
    Field(
        "api_endpoint",
        "str",
        "Compute API endpoint override (private endpoints, emulators).",
        default="",
        pattern=r"https?://\S+",
        pattern_hint="http(s)://host[:port]",
        vault=("gcp_api_endpoint",),
    ),
    Field(
        "operation_timeout",
        "duration",
        "How long a launch waits for GCE to accept or refuse the new machines (not for them to boot); "
        "machines still being created after it are reported as booting.",
        default=60.0,
        min=1,
    ),
)

GCP_RESOURCE_SECTION = (
    Field(
        "machine_type",
        "str",
        "Machine type.",
        required=True,
        pattern=r"[a-z][a-z0-9]*-[a-z0-9-]+",
        pattern_hint="a machine type like n1-standard-4 or g2-standard-8",
        example='machine_type = "n1-standard-4"',
        ask=Ask("Machine type (e.g. g2-standard-8)", key="instance_type"),
    ),
    Field(
        "zones",
        "list",
        "Zones tried in order on capacity errors.",
        required=True,
        non_empty=True,
        pattern=ZONE,
        pattern_hint="a zone like us-central1-a",
        example='zones = ["us-central1-a"]',
        ask=Ask("Zones, tried in order (space-separated, e.g. us-central1-a us-central1-b)", key="zone"),
    ),
    Field(
        "image",
        "str",
        "Boot image or image family (with docker and python3).",
        required=True,
        non_empty=True,
        check=check_image,
        example='image = "projects/debian-cloud/global/images/family/debian-12"',
        ask=Ask("Boot image or family (e.g. projects/debian-cloud/global/images/family/debian-12)", key="image"),
    ),
    Field(
        "disk_size_gb",
        "int",
        "Boot disk size in GB.",
        default=100,
        min=10,
        max=65536,
        ask=Ask("Boot disk size (GB)", key="disk"),
    ),
    Field(
        "disk_type",
        "choice",
        "Boot disk type.",
        default="pd-balanced",
        choices=("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"),
    ),
    Field(
        "spot",
        "bool",
        "Set false to never launch Spot VMs for this resource; whether to try spot is the resource's `spot`.",
        default=None,
    ),
    Field(
        "accelerator_type",
        "str",
        "GPU type, e.g. nvidia-l4 (leave empty for a2/a3/g2 machine types).",
        default="",
        pattern=r"[a-z0-9-]+",
        pattern_hint="an accelerator type like nvidia-l4",
    ),
    Field("accelerator_count", "int", "GPUs per machine.", default=0, min=0, max=16),
    Field(
        "service_account",
        "str",
        "Service account e-mail the machines run as (`default`: the project's Compute Engine default "
        "service account; empty: none).",
        default="",
    ),
    Field("scopes", "list", "OAuth scopes of the service account.", default=[CLOUD_PLATFORM_SCOPE]),
    Field("network", "str", "VPC network (name or projects/<p>/global/networks/<name>).", default="default"),
    Field(
        "subnetwork",
        "str",
        "Subnetwork (name in the zone's region, or projects/<p>/regions/<r>/subnetworks/<name>).",
        default="",
    ),
    Field(
        "external_ip", "bool", "Give machines an external IP (else they need Cloud NAT to reach ClearML).", default=True
    ),
    Field("labels", "dict", "Extra labels.", default={}, check=check_labels),
    Field(
        "metadata",
        "dict",
        "Extra instance metadata items (e.g. enable-oslogin); startup-script and the scaler's own keys win.",
        default={},
        check=check_metadata,
    ),
    Field("network_tags", "list", "Network tags (firewall rules).", default=[], check=check_network_tags),
)

SECTION = Section(
    "gcp",
    "GCP settings of the fleet (credentials: Application Default Credentials unless set here).",
    fields=GCP_SECTION,
    resource_fields=GCP_RESOURCE_SECTION,
)
