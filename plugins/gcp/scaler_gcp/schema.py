"""The ``gcp`` config sections (top level and per resource) and the vault key map."""

from __future__ import annotations

from scaler.schema import Field

ZONE = r"[a-z]+-[a-z]+\d+-[a-z]"
LABEL = r"[a-z][a-z0-9_-]{0,62}"


def check_labels(value: dict) -> str | None:
    import re

    for key, val in value.items():
        if not re.fullmatch(LABEL, str(key)):
            return (
                f"label key {str(key)!r} must start with a lowercase letter and hold only lowercase letters, "
                "digits, '_' or '-' (up to 63)"
            )
        if not re.fullmatch(r"[a-z0-9_-]{0,63}", str(val)):
            return f"label value {str(val)!r} of {key!r} may hold only lowercase letters, digits, '_' or '-' (up to 63)"
    return None


GCP_SECTION = (
    Field(
        "project",
        "str",
        "GCP project id (default: the credentials' project).",
        default="",
        pattern=r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
        pattern_hint="a project id like my-ml-project",
    ),
    Field(
        "credentials_file", "str", "Service account JSON key (default: Application Default Credentials).", default=""
    ),
    Field(
        "api_endpoint",
        "str",
        "Compute API endpoint override (private endpoints, emulators).",
        default="",
        pattern=r"https?://\S+",
        pattern_hint="http(s)://host[:port]",
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
    ),
    Field(
        "image",
        "str",
        "Boot image or image family URL (with docker and python3).",
        required=True,
        non_empty=True,
        example='image = "projects/debian-cloud/global/images/family/debian-12"',
    ),
    Field("disk_size_gb", "int", "Boot disk size in GB.", default=100, min=10, max=65536),
    Field(
        "disk_type",
        "choice",
        "Boot disk type.",
        default="pd-balanced",
        choices=("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"),
    ),
    Field("spot", "bool", "Spot VM (overrides the resource's `spot`).", default=None),
    Field(
        "accelerator_type",
        "str",
        "GPU type, e.g. nvidia-l4.",
        default="",
        pattern=r"[a-z0-9-]+",
        pattern_hint="an accelerator type like nvidia-l4",
    ),
    Field("accelerator_count", "int", "GPUs per machine.", default=0, min=0, max=16),
    Field("service_account", "str", "Service account e-mail the machines run as.", default=""),
    Field(
        "scopes",
        "list",
        "OAuth scopes of the service account.",
        default=["https://www.googleapis.com/auth/cloud-platform"],
    ),
    Field("network", "str", "VPC network.", default="default"),
    Field("subnetwork", "str", "Subnetwork (regional).", default=""),
    Field("external_ip", "bool", "Give machines an external IP.", default=True),
    Field("labels", "dict", "Extra labels.", default={}, check=check_labels),
    Field("network_tags", "list", "Network tags (firewall rules).", default=[]),
)

VAULT_KEYS = {
    "gcp_project": "gcp.project",
    "gcp_project_id": "gcp.project",
    "gcp_credentials_file": "gcp.credentials_file",
    "cloud_credentials_file": "gcp.credentials_file",
    "gcp_api_endpoint": "gcp.api_endpoint",
}
