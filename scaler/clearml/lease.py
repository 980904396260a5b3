"""Single-writer safety: one running scaler per fleet name.

The lease is a ClearML worker entry ``scaler-lease:<name>`` registered with a timeout and
tagged with the holder's nonce and host/pid. Each tick the holder re-registers it (renew)
and reads it back (verify); another scaler started with the same name sees a live entry
held by someone else and refuses to act, saying who holds it. If the holder dies, the entry
expires after ``ttl`` seconds and the next scaler takes over; when the dead holder ran on
this very host (same host name and process namespace, its pid gone), a restarted scaler
(systemd ``Restart=``, a crash loop) takes over at once instead. Two scalers racing to
register both read the entry back, and only the one whose nonce is there acts.

A lease entry is worker data any ClearML user can write. An entry is **valid** only when it
was registered with the scaler's own ClearML identity (the ``user`` and ``company``
``workers.get_all`` reports for it) and not with a timeout longer than the scaler's TTL
(declared in its ``ttl=`` tag, or seen: still listed more than twice the TTL after its last
renewal). Any other entry is reported as **invalid** (an ERROR naming who registered it, the
``scaler_lease_invalid_entries`` metric, ``scaler status``) and ignored: the scaler acts as if
it were not there. That is safe because no scaler of this fleet can have written it: every
scaler of a fleet runs with the fleet's ClearML credentials and renews within its TTL, so an
entry failing either test is no running scaler this lease must wait for — honouring it would
let any ClearML user stop the fleet from scaling down while its machines bill.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from scaler.clearml.queues import LEASE_PREFIX, ClearMLIdentity, ClearMLSource, timestamp

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
class InvalidLease:
    """A lease entry that no scaler of this fleet wrote: ignored, and reported."""

    entry: str  # its worker id, scaler-lease:<name>
    registered_by: str  # the ClearML user and workspace that registered it
    where: str  # the host it claims (its where= tag; anyone can write it)
    why: str

    def describe(self) -> str:
        where = f", claiming to run on {self.where}" if self.where else ""
        return f"lease entry '{self.entry}' registered by {self.registered_by}{where}: {self.why}"


@dataclass(frozen=True)
class LeaseStatus:
    ok: bool
    message: str = ""
    invalid: tuple[InvalidLease, ...] = ()


def _tag(tags: list[str], key: str) -> str:
    for tag in tags or []:
        if tag.startswith(key + "="):
            return tag.split("=", 1)[1]
    return ""


def _id_name(value: Any) -> tuple[str, str]:
    """``(id, name)`` of an IdNameEntry the SDK returns (an object, a dict, or a bare id)."""
    if value is None:
        return "", ""
    if isinstance(value, dict):
        return str(value.get("id") or ""), str(value.get("name") or "")
    if isinstance(value, str):
        return value, ""
    return str(getattr(value, "id", "") or ""), str(getattr(value, "name", "") or "")


def _who(user: tuple[str, str], company: tuple[str, str]) -> str:
    name = f"'{user[1]}' ({user[0]})" if user[1] else (user[0] or "an unknown user")
    workspace = f"'{company[1]}' ({company[0]})" if company[1] else (company[0] or "an unknown workspace")
    return f"ClearML user {name} of workspace {workspace}"


def check_entries(
    entries: list[Any], me: ClearMLIdentity | None, ttl: float, now: float, nonce: str = ""
) -> tuple[list[Any], list[InvalidLease]]:
    """Split the entries registered under one lease id into valid ones and invalid ones (see
    the module docstring). ``me`` is the scaler's own identity (``None``: unknown, not checked),
    ``now`` unix seconds; the entry tagged with ``nonce`` is the caller's own, valid."""
    valid: list[Any] = []
    invalid: list[InvalidLease] = []
    for worker in entries:
        tags = list(getattr(worker, "tags", None) or [])
        user, company = _id_name(getattr(worker, "user", None)), _id_name(getattr(worker, "company", None))
        declared = _tag(tags, "ttl")
        age = now - timestamp(getattr(worker, "last_activity_time", None))
        why = ""
        if nonce and _tag(tags, "holder") == nonce and (me is None or user[0] == me.user):
            pass  # this process's own registration
        elif me is not None and (user[0] != me.user or company[0] != me.company):
            why = (
                f"not this scaler's ClearML identity ({me.describe()}); every scaler of a fleet registers its "
                "lease with the fleet's own credentials"
            )
        elif declared.isdigit() and int(declared) > ttl:
            why = f"registered with a timeout of {declared}s, longer than this scaler's lease TTL of {ttl:g}s"
        elif timestamp(getattr(worker, "last_activity_time", None)) > 0 and age > 2 * ttl:
            why = (
                f"still listed {age:.0f}s after its last renewal, more than twice this scaler's lease TTL of "
                f"{ttl:g}s: it was registered with a longer timeout"
            )
        if why:
            invalid.append(InvalidLease(str(getattr(worker, "id", "")), _who(user, company), _tag(tags, "where"), why))
        else:
            valid.append(worker)
    return valid, invalid


class Lease:
    def __init__(
        self,
        source: ClearMLSource,
        name: str,
        ttl: float,
        clock: Any = time.time,
        identity: ClearMLIdentity | None = None,
    ) -> None:
        self.source = source
        # the scaler's own ClearML identity: a lease entry registered by another is not valid
        self.identity = identity
        self.worker_id = f"{LEASE_PREFIX}{name}"
        self.name = name
        self.ttl = max(10, round(ttl))
        self.nonce = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self.pidns = _pid_namespace()
        self.where = f"{self.host} pid {os.getpid()}"
        self.clock = clock
        self.held = False
        #: the invalid entries of the latest check (forged, or registered with a longer timeout)
        self.invalid: tuple[InvalidLease, ...] = ()
        self._reported: set[tuple[str, str]] = set()

    def holder(self, *, fresh: bool = False) -> Holder | bool | None:
        """The current holder, ``None`` when free, ``False`` when ClearML cannot be read.

        With ``fresh``, the lease entries of the source's latest workers read (this tick's
        observation) are used instead of another call. Invalid entries are left out (and kept
        in :attr:`invalid`)."""
        entries = self.source.lease_entries if fresh else None
        if entries is None:
            entries = self.source.read_lease_entries()
            if entries is None:
                return False
        valid, invalid = check_entries(
            entries.get(self.worker_id, []), self.identity, self.ttl, self.clock(), self.nonce
        )
        self._report(invalid)
        mine = [w for w in valid if _tag(list(getattr(w, "tags", None) or []), "holder") == self.nonce]
        others = [w for w in valid if all(w is not m for m in mine)]
        if not valid:
            return None
        worker = others[0] if others else mine[0]
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

    def _report(self, invalid: list[InvalidLease]) -> None:
        """An ERROR for each invalid entry when first seen (again if it goes and comes back)."""
        self.invalid = tuple(invalid)
        seen = {(item.registered_by, item.why.split(":")[0]) for item in invalid}
        for item in invalid:
            if (item.registered_by, item.why.split(":")[0]) in self._reported:
                continue
            log.error(
                "invalid %s. This scaler ignores it and keeps acting (no scaler of fleet '%s' wrote it). "
                "If it is a second scaler of this fleet, run it with this fleet's ClearML credentials and "
                "polling_interval; otherwise whoever registered it is impersonating the fleet's lease: revoke "
                "that user's credentials or ask them to unregister the worker (see docs/operating.md, "
                "'A forged lease')",
                item.describe(),
                self.name,
            )
        self._reported = seen

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
        """Take or renew the lease; ``ok`` only when this process holds it now. ``invalid``
        lists the lease entries ignored as invalid (forged, or with an over-long timeout).

        Steady state costs one write: the holder is read from this tick's observation, and
        read back after registering only when taking the lease (where two may race)."""
        self.invalid = ()
        return replace(self._acquire(), invalid=self.invalid)

    def _acquire(self) -> LeaseStatus:
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
            f"ttl={self.ttl}",
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
