"""Single-writer safety: one running scaler per fleet name.

The lease is a ClearML worker entry ``scaler-lease:<name>`` registered with a timeout and
tagged with the holder's nonce and host/pid. Each tick the holder re-registers it (renew)
and reads it back (verify); another scaler started with the same name sees a live entry
held by someone else and refuses to act, saying who holds it. If the holder dies, the entry
expires after ``ttl`` seconds and the next scaler takes over; when the dead holder ran on
this very host (same host name and process namespace, its pid gone), a restarted scaler
(systemd ``Restart=``, a crash loop) takes over at once instead. Two scalers racing to
register both read the entry back, and only the one whose nonce is there acts.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from scaler.clearml.queues import LEASE_PREFIX, ClearMLSource, timestamp

log = logging.getLogger("scaler")


@dataclass(frozen=True)
class Holder:
    nonce: str
    where: str
    last_seen: float
    host: str = ""
    pid: int = 0
    pidns: str = ""


def _pid_namespace() -> str:
    """This process's pid namespace (Linux), so a pid is only compared within one namespace:
    two containers sharing a host name have their own pids."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


@dataclass(frozen=True)
class LeaseStatus:
    ok: bool
    message: str = ""


def _tag(tags: list[str], key: str) -> str:
    for tag in tags or []:
        if tag.startswith(key + "="):
            return tag.split("=", 1)[1]
    return ""


class Lease:
    def __init__(self, source: ClearMLSource, name: str, ttl: float, clock: Any = time.time) -> None:
        self.source = source
        self.worker_id = f"{LEASE_PREFIX}{name}"
        self.name = name
        self.ttl = max(10, round(ttl))
        self.nonce = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self.pidns = _pid_namespace()
        self.where = f"{self.host} pid {os.getpid()}"
        self.clock = clock
        self.held = False

    def holder(self, *, fresh: bool = False) -> Holder | bool | None:
        """The current holder, ``None`` when free, ``False`` when ClearML cannot be read.

        With ``fresh``, the lease entries of the source's latest workers read (this tick's
        observation) are used instead of another call."""
        entries = self.source.lease_entries if fresh else None
        if entries is None:
            entries = self.source.read_lease_entries()
            if entries is None:
                return False
        worker = entries.get(self.worker_id)
        if worker is None:
            return None
        tags = list(getattr(worker, "tags", None) or [])
        pid = _tag(tags, "pid")
        return Holder(
            _tag(tags, "holder"),
            _tag(tags, "where"),
            timestamp(getattr(worker, "last_activity_time", None)),
            host=_tag(tags, "host"),
            pid=int(pid) if pid.isdigit() else 0,
            pidns=_tag(tags, "pidns"),
        )

    def _dead_local(self, holder: Holder) -> bool:
        """The holder ran here (same host and pid namespace) and its process is gone."""
        return bool(
            self.pidns
            and holder.pidns == self.pidns
            and holder.host == self.host
            and holder.pid > 0
            and holder.pid != os.getpid()
            and _gone(holder.pid)
        )

    def acquire(self) -> LeaseStatus:
        """Take or renew the lease; ``ok`` only when this process holds it now.

        Steady state costs one write: the holder is read from this tick's observation, and
        read back after registering only when taking the lease (where two may race)."""
        current = self.holder(fresh=True)
        if current is False:
            return LeaseStatus(False, "the ClearML server could not be read to check the lease")
        if isinstance(current, Holder) and current.nonce != self.nonce:
            if not self._dead_local(current):
                return LeaseStatus(False, self._busy(current))
            log.warning(
                "the previous scaler of fleet '%s' on this host (pid %d) is gone; taking over its lease now",
                self.name,
                current.pid,
            )
        tags = [
            f"holder={self.nonce}",
            f"where={self.where}",
            f"host={self.host}",
            f"pid={os.getpid()}",
            f"pidns={self.pidns}",
        ]
        if not self.source.register_lease(self.worker_id, self.ttl, tags):
            return LeaseStatus(False, "the lease could not be registered in ClearML")
        if not self.held:
            check = self.holder()  # read back: of two scalers racing, the last registration wins
            if not isinstance(check, Holder) or check.nonce != self.nonce:
                return LeaseStatus(False, self._busy(check) if isinstance(check, Holder) else "lost the lease")
        if not self.held:
            log.info("holding the lease for fleet '%s' (%s)", self.name, self.worker_id)
        self.held = True
        return LeaseStatus(True)

    def _busy(self, holder: Holder) -> str:
        self.held = False
        return (
            f"another scaler named '{self.name}' is running ({holder.where or 'unknown host'}); this one will "
            f"not act while it holds the lease. Stop it, or give this fleet another scaler.name; a dead "
            f"holder's lease expires {self.ttl}s after its last tick"
        )

    def release(self) -> None:
        if self.held:
            self.source.release_lease(self.worker_id)
            self.held = False
