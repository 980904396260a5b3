"""The loop end to end (real clearml SDK against the fake ClearML server, the simulated
provider on a controllable clock) for what keeps a fleet's hands off what is not its own and
off what it should leave alone: legacy machines (tagged before fleet identities) adopted only
on evidence, workers recognised by their instance id after a ``workers_prefix`` change, and a
task re-enqueued at most ``max_requeues`` times."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from scaler.clearml.queues import REQUEUE_TAG, requeue_count
from scaler.engine.fleet import worker_id
from scaler.types import fleet_identity
from tests.core.engine.test_loop_e2e import BOOT, IDLE, POLL, PREFIX, Loop, loop, ok, raw_config

__all__ = ["loop"]  # the fixture, imported for pytest

ME = fleet_identity("e2e-fleet", "http://clearml.e2e.invalid", "fake-company-id")


# --- workers_prefix changed -----------------------------------------------------------------------


def test_a_prefix_change_keeps_busy_machines_and_says_so_once(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    """Machines launched under the old prefix keep their worker ids; the scaler restarted with a
    new ``workers_prefix`` knows them by their instance id: the busy one is not "stuck"."""
    fake = loop.fake
    for _ in range(2):
        fake.enqueue("cpu")
    ok(loop.reconciler().tick())
    loop.clock.advance(BOOT)
    taken = loop.take_all()  # workers "e2e:cpu:<id>" (PREFIX), one busy
    (busy_worker,) = [w for w in taken][:1]
    idle_worker = next(w for w in loop.agents() if w != busy_worker)
    fake.finish_task(idle_worker)

    loop.raw = raw_config(workers_prefix="renamed")
    rec = loop.reconciler()  # the scaler restarted with the new prefix
    caplog.set_level(logging.INFO, logger="scaler")
    loop.clock.advance(21 * 60)  # past stuck_timeout
    for _ in range(3):
        report = ok(rec.tick())
        assert "stuck" not in report.terminated, report.actions
        loop.clock.advance(POLL)
    assert report.fleet["cpu"]["busy"] == 1
    said = [r.getMessage() for r in caplog.records if "workers_prefix changed" in r.getMessage()]
    assert len(said) == 1 and "from 'e2e' to 'renamed'" in said[0], said

    # the idle one goes as idle once it has been idle long enough, the busy one stays
    loop.clock.advance(IDLE)
    report = ok(rec.tick())
    assert report.terminated == {"idle": 1}
    assert [i.id for i in loop.alive("cpu")] == [busy_worker.rsplit(":", 1)[1]]


# --- legacy machines: adopted on evidence, else left alone ----------------------------------------


def test_legacy_machines_are_adopted_only_when_their_worker_is_here(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    """Machines tagged with the scaler's name but no identity (launched before identities, or by
    another deployment still on an older version): the one whose worker is on this ClearML
    server is adopted (tagged) once and managed; the other is never touched."""
    fake = loop.fake
    ours, theirs = (
        loop.cloud.launch("e2e-fleet", "cpu", 1, token, False)[0].id for token in ("legacy-ours", "legacy-theirs")
    )
    loop.clock.advance(BOOT)
    loop.cloud.step()
    fake.register_worker(worker_id(PREFIX, "cpu", ours), ["cpu"])
    config = replace(loop.config, fleet_id=ME)
    rec = loop.reconciler(config=config)
    caplog.set_level(logging.INFO, logger="scaler")
    report = ok(rec.tick())
    assert report.adopted == 1
    assert loop.cloud.instances[ours].fleet == ME and loop.cloud.instances[theirs].fleet == ""
    assert "adopt 1 legacy instance(s)" in caplog.text and ours in caplog.text
    assert sum("may belong to another deployment" in r.getMessage() for r in caplog.records) == 1

    # much later: ours idles out as usual; theirs (no worker here) is never stuck-terminated
    for _ in range(3):
        loop.clock.advance(IDLE + 21 * 60)
        report = ok(rec.tick())
        assert report.adopted == 0  # once
    assert [i.id for i in loop.alive()] == [theirs]
    assert sum("may belong to another deployment" in r.getMessage() for r in caplog.records) == 1


# --- max_requeues ---------------------------------------------------------------------------------


def run_and_lose(loop: Loop, rec: object, task: str) -> None:
    """The task gets a machine, starts on it, and the machine vanishes."""
    for _ in range(3):
        if loop.fake.task(task)["status"] != "queued":
            break
        ok(rec.tick())  # type: ignore[attr-defined]
        loop.clock.advance(BOOT)
        loop.take_all()
    assert loop.fake.task(task)["status"] == "in_progress"
    ok(rec.tick())  # type: ignore[attr-defined]
    [inst] = [i for w, i in loop.agents().items() if loop.fake.workers()[w]["task"]]
    loop.cloud.preempt(inst.id)
    loop.agents()
    loop.clock.advance(POLL)


def test_a_task_whose_machine_always_dies_is_requeued_max_requeues_times_then_left_failed(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    fake = loop.fake
    loop.raw = raw_config(max_requeues=2)
    task = fake.enqueue("cpu")
    rec = loop.reconciler()
    caplog.set_level(logging.INFO, logger="scaler")
    requeued = 0
    for attempt in range(2):
        run_and_lose(loop, rec, task)
        report = ok(rec.tick())
        requeued += report.requeued
        assert fake.task(task)["status"] == "queued", attempt
        # the count lives in the task itself
        assert requeue_count(fake.task(task)["system_tags"]) == attempt + 1
        if attempt == 0:
            rec = loop.reconciler()  # a restarted scaler goes on counting from the task
    assert requeued == 2

    run_and_lose(loop, rec, task)
    report = ok(rec.tick())
    assert report.requeued == 0 and report.failed_tasks == 1
    stored = fake.task(task)
    assert stored["status"] == "failed" and fake.pending("cpu") == 0
    assert "max_requeues = 2" in stored["status_message"] and "vanished" in stored["status_message"]
    assert "max_requeues = 2" in stored["status_reason"]
    assert any(r.levelno == logging.ERROR and f"task {task} left failed" in r.getMessage() for r in caplog.records)
    assert f"leave task {task} failed" in " ".join(report.actions)
    # and nothing more happens to it: no machine is launched for it
    for _ in range(3):
        loop.clock.advance(POLL)
        report = ok(rec.tick())
        assert not report.launched and not report.requeued
    assert f"{REQUEUE_TAG}=2" in fake.task(task)["system_tags"]
