"""A forged lease does not freeze the fleet: any ClearML user can register the worker entry
``scaler-lease:<name>`` (with a long timeout, and tags copied from a real holder). An entry
registered by another ClearML identity, or with a timeout longer than the scaler's lease TTL,
is not a valid lease: the scaler reports it (ERROR log, metric, ``scaler status``) and acts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from scaler.clearml.lease import Lease
from scaler.clearml.queues import ClearMLSource
from scaler.config.loading import build_config
from scaler.default_plugins import simulated
from scaler.engine.reconciler import Reconciler
from scaler.host import PluginHost
from scaler.ops.metrics import Metrics
from scaler.ops.status import collect
from tests.fakes.clearml_server import FakeClearML

NAME = "leased"
TTL = 15
RAW = {
    "scaler": {"name": NAME, "workers_prefix": "ls", "polling_interval": "5s"},
    "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 3}],
}
COPIED_TAGS = ["holder=0123456789abcdef", "where=scaler-host pid 4242", "host=scaler-host", "pid=4242", "ttl=15"]


@pytest.fixture
def cloud() -> Iterator[simulated.SimulatedCloud]:
    sim = simulated.SimulatedCloud()
    simulated.use_cloud(sim)
    yield sim
    simulated.use_cloud(None)


def client_of(fake: FakeClearML, access: str, secret: str) -> Any:
    """A ClearML SDK client with its own credentials (what a user on the same server has)."""
    from clearml.backend_api.session.client import APIClient, StrictSession

    no_retries = {"total": 0, "connect": 0, "read": 0, "redirect": 0, "status": 0}
    session = StrictSession(
        api_key=access, secret_key=secret, host=fake.url, http_retries_config=no_retries, initialize_logging=False
    )
    return APIClient(session=session)


def forge(fake: FakeClearML, timeout: int = 10**7) -> None:
    """Mallory, another user of the workspace, registers the fleet's lease entry."""
    fake.add_user("mallory-key", "mallory-secret", "mallory-id", "Mallory")
    mallory = client_of(fake, "mallory-key", "mallory-secret")
    mallory.workers.register(worker=f"scaler-lease:{NAME}", timeout=timeout, tags=COPIED_TAGS)


def scaler(clock: Any = time.time) -> Reconciler:
    config = build_config(RAW, provider="simulated")
    host = PluginHost()
    source = ClearMLSource(timeout=5)
    who = source.whoami()
    assert who is not None
    lease = Lease(source, NAME, ttl=TTL, identity=who, clock=clock)
    return Reconciler(config, host, host.provider("simulated"), source, lease=lease)


def test_a_lease_forged_by_another_clearml_user_is_reported_and_ignored(
    fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud, caplog: pytest.LogCaptureFixture
) -> None:
    forge(fake_clearml)
    fake_clearml.enqueue("cpu")
    loop = scaler()
    metrics = Metrics(loop.config)
    loop.listeners.append(metrics)
    with caplog.at_level(logging.ERROR, logger="scaler"):
        report = loop.tick()
        again = loop.tick()
    # not frozen: it holds its own (valid) lease and acts
    assert report.errors["lease"] == 0 and sum(report.launched.values()) == 1
    assert report.invalid_leases == 1 and again.invalid_leases == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "said once, not every tick"
    assert "Mallory" in errors[0] and "mallory-id" in errors[0] and "not this scaler's ClearML identity" in errors[0]
    assert "keeps acting" in errors[0] and "revoke" in errors[0]
    assert "scaler_lease_invalid_entries 1.0" in metrics.text()
    # both entries exist side by side, as on the real server (each user's worker key is its own)
    entries = [w for w in fake_clearml.workers().values() if w["id"] == f"scaler-lease:{NAME}"]
    assert sorted(w["user"]["name"] for w in entries) == ["Fake User", "Mallory"]

    # `scaler status` shows it
    source = ClearMLSource(timeout=5)
    who = source.whoami()
    snap = collect(loop.config, loop.provider, source, identity=who)
    assert len(snap["invalid_leases"]) == 1 and "Mallory" in snap["invalid_leases"][0]
    assert any("invalid lease entry" in e and "Mallory" in e for e in snap["errors"])


def test_a_lease_of_the_same_user_with_a_longer_timeout_is_not_valid(
    fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered with the scaler's own credentials but a timeout longer than its TTL (declared
    in its tags, or seen: still listed more than twice the TTL after its last renewal)."""
    me = ClearMLSource(timeout=5).client()
    me.workers.register(worker=f"scaler-lease:{NAME}", timeout=10**7, tags=[*COPIED_TAGS[:-1], "ttl=86400"])
    fake_clearml.enqueue("cpu")
    with caplog.at_level(logging.ERROR, logger="scaler"):
        report = scaler().tick()
    assert report.errors["lease"] == 0 and sum(report.launched.values()) == 1
    assert "registered with a timeout of 86400s" in caplog.text
    # same user, same worker id: the same entry on the server, now the scaler's own
    [entry] = [w for w in fake_clearml.workers().values() if w["id"] == f"scaler-lease:{NAME}"]
    assert "ttl=15" in entry["tags"] and report.invalid_leases == 0

    # no ttl tag, but its last renewal is older than twice the TTL: it outlived any valid lease
    fake_clearml.unregister_worker(f"scaler-lease:{NAME}")
    me.workers.register(worker=f"scaler-lease:{NAME}", timeout=10**7, tags=COPIED_TAGS[:-1])
    later = scaler(clock=lambda: time.time() + 2 * TTL + 5)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="scaler"):
        report = later.tick()
    assert report.errors["lease"] == 0 and sum(report.launched.values()) == 0  # the task has its machine
    assert "more than twice this scaler's lease TTL" in caplog.text


def test_a_genuine_holder_still_holds(fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud) -> None:
    """The check does not weaken the lease: a live scaler of the fleet (same identity, renewing
    within its TTL) keeps the second one on standby, with nothing reported as invalid."""
    first, second = scaler(), scaler()
    fake_clearml.enqueue("cpu")
    assert first.tick().errors["lease"] == 0
    report = second.tick()
    assert report.errors["lease"] == 1 and report.invalid_leases == 0 and not report.launched


def test_without_a_known_identity_only_the_timeout_is_checked(
    fake_clearml: FakeClearML, cloud: simulated.SimulatedCloud
) -> None:
    forge(fake_clearml, timeout=60)
    source = ClearMLSource(timeout=5)
    lease = Lease(source, NAME, ttl=TTL)  # no identity: e.g. a test, or an embedding without one
    source.read(["cpu"])
    status = lease.acquire()
    assert not status.ok and status.invalid == ()  # respected: nothing says it is not the fleet's
    config = replace(build_config(RAW, provider="simulated"))
    assert config.scaler.name == NAME
