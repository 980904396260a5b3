"""The root device name of an AMI, so that ``ebs`` sizes the root volume.

A block-device mapping for a device the AMI does not boot from adds an empty second volume
and leaves the root volume at the AMI's size: Ubuntu AMIs boot from ``/dev/sda1``, Amazon
Linux from ``/dev/xvda``. When ``ebs.device`` is not set, the launch asks DescribeImages once
per AMI per process; an explicit ``ebs.device`` is authoritative and nothing is asked.

Failures: throttling, 5xx and timeouts are a :class:`TransientError` (the launch is tried
again next tick, never with a guessed device); any other (no ``ec2:DescribeImages``
permission, an AMI that does not exist or is not shared) falls back to ``/dev/sda1`` with a
warning, retried after :data:`RETRY_FAILED` seconds: RunInstances then says what is wrong
with the AMI itself, and a missing permission does not stop launches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from scaler.api import TransientError
from scaler_aws.client import credential_source, log, map_error

#: the device sized when the AMI's root device cannot be read (the default before it was read)
FALLBACK_DEVICE = "/dev/sda1"
#: seconds before a failed lookup of one AMI is tried again
RETRY_FAILED = 600.0

_lock = threading.Lock()
#: (region, endpoint, AMI id) -> (root device name, monotonic time it may be asked again or None: never)
_found: dict[tuple[str, str, str], tuple[str, float | None]] = {}


def clear_root_devices() -> None:
    """Forget what DescribeImages answered (tests)."""
    with _lock:
        _found.clear()


def root_device(
    client: Any, settings: Mapping[str, Any], ami: str, *, clock: Callable[[], float] = time.monotonic
) -> str:
    """The root device name of ``ami`` (``/dev/xvda``, ``/dev/sda1``, ...), asked once per AMI."""
    key = (str(settings.get("region") or ""), str(settings.get("endpoint_url") or ""), ami)
    with _lock:
        known = _found.get(key)
    if known is not None and (known[1] is None or clock() < known[1]):
        return known[0]
    try:
        answer = client.describe_images(ImageIds=[ami])
    except Exception as exc:  # mapped to the typed errors below
        error = map_error(exc, "DescribeImages", context=f"AMI {ami}", credentials=credential_source(settings))
        if isinstance(error, TransientError):
            raise error from exc
        return _fall_back(key, ami, str(error), clock)
    images = [i for i in answer.get("Images") or [] if isinstance(i, Mapping)]
    device = str(images[0].get("RootDeviceName") or "") if images else ""
    if not device:
        reason = "DescribeImages found no such image" if not images else "the image has no RootDeviceName"
        return _fall_back(key, ami, reason, clock)
    with _lock:
        _found[key] = (device, None)
    log.debug("AMI %s boots from %s: ebs sizes that device", ami, device)
    return device


def _fall_back(key: tuple[str, str, str], ami: str, reason: str, clock: Callable[[], float]) -> str:
    log.warning(
        "cannot read the root device name of AMI %s (%s); sizing %s: if the AMI boots from another device "
        "(Amazon Linux: /dev/xvda), set ebs.device to it, or allow ec2:DescribeImages",
        ami,
        reason,
        FALLBACK_DEVICE,
    )
    with _lock:
        _found[key] = (FALLBACK_DEVICE, clock() + RETRY_FAILED)
    return FALLBACK_DEVICE
