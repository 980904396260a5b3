"""Names, labels and resource URLs for Compute Engine (pure functions, no I/O)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

#: GCE resource names: ``[a-z]([-a-z0-9]{0,61}[a-z0-9])?``
NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
#: namespace of the insert requestIds (uuid5 of launch token, index and zone)
REQUEST_NS = uuid.UUID("0b6f7f0e-4f55-4b43-9a2d-6f3c1f1b8a21")
NAME_MAX = 63


def label_value(value: str) -> str:
    """``value`` made a valid GCE label value: lowercase, ``[a-z0-9_-]``, at most 63 chars."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def _name_part(value: str, limit: int) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", value.lower())
    text = re.sub(r"-{2,}", "-", text).strip("-")
    return text[:limit].strip("-")


def instance_name(scaler: str, resource: str, launch_token: str, index: int) -> str:
    """The deterministic name of the ``index``-th machine of one launch decision.

    ``<scaler>-<resource>-<8 hex of the token>-<index>``, sanitised to GCE's name rule and
    at most 63 characters. The same token and index always give the same name, so a
    retried launch meets its own machine (409 alreadyExists) instead of creating another.
    """
    digest = hashlib.sha256(f"{scaler}\0{resource}\0{launch_token}".encode()).hexdigest()[:8]
    suffix = f"-{digest}-{index}"
    base = "-".join(p for p in (_name_part(scaler, 20), _name_part(resource, 28)) if p) or "scaler"
    base = base[: NAME_MAX - len(suffix)].strip("-")
    if not base or not base[0].isalpha():
        base = ("s" + base)[: NAME_MAX - len(suffix)].strip("-")
    name = base + suffix
    assert NAME_RE.fullmatch(name), name
    return name


def request_id(launch_token: str, index: int, zone: str) -> str:
    """The insert ``requestId``: a UUID derived from the launch token, the index and the zone.

    The zone is part of it so that trying the next zone after a stockout is a new request
    (GCE would otherwise replay the failed one), while a retry in the same zone replays.
    """
    return str(uuid.uuid5(REQUEST_NS, f"{launch_token}/{index}/{zone}"))


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def last_part(url: str) -> str:
    """``…/zones/us-central1-a`` → ``us-central1-a``."""
    return url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImageRef:
    project: str
    name: str
    family: bool

    @property
    def path(self) -> str:
        kind = "family/" if self.family else ""
        return f"projects/{self.project}/global/images/{kind}{self.name}"


_IMAGE_RE = re.compile(
    r"(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?"
    r"(?:projects/(?P<project>[a-z][-a-z0-9.:]*[a-z0-9])/)?"
    r"global/images/(?P<family>family/)?(?P<name>[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"
)


def image_ref(image: str, project: str) -> ImageRef:
    """Parse a boot image setting; raises ``ValueError`` when it is none of the accepted forms.

    Accepted: a full ``https://…/compute/v1/projects/P/global/images/…`` URL,
    ``projects/P/global/images/family/F``, ``projects/P/global/images/I``,
    ``global/images/…`` (in ``project``), ``family/F`` and a bare image name (in ``project``).
    """
    text = image.strip()
    match = _IMAGE_RE.fullmatch(text)
    if match:
        return ImageRef(match.group("project") or project, match.group("name"), bool(match.group("family")))
    if text.startswith("family/") and NAME_RE.fullmatch(text[len("family/") :]):
        return ImageRef(project, text[len("family/") :], True)
    if NAME_RE.fullmatch(text):
        return ImageRef(project, text, False)
    raise ValueError(image)


def network_path(network: str) -> str:
    return network if "/" in network else f"global/networks/{network}"


def subnetwork_path(subnetwork: str, zone: str) -> str:
    return subnetwork if "/" in subnetwork else f"regions/{region_of(zone)}/subnetworks/{subnetwork}"
