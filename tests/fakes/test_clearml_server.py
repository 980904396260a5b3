"""The real clearml SDK (``APIClient``) against tests/fakes/clearml_server.py over loopback HTTP."""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from clearml.backend_api.session.client import APIClient, APIError, StrictSession
from clearml.backend_api.session.session import LoginError

from tests.fakes.clearml_server import FakeClearML

if TYPE_CHECKING:
    from collections.abc import Iterator

# Fixtures from tests/conftest.py: fake_clearml (fresh server per test), fake_clearml_server
# (session) and fake_clearml_shared (session server, reset per test).
# clearml's bundled pyhocon calls deprecated pyparsing APIs while loading its configuration.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")

NO_RETRIES = {"total": 0, "connect": 0, "read": 0, "redirect": 0, "status": 0}


class FastSession(StrictSession):
    """What a fail-fast product session looks like: no urllib3 retries, short timeouts."""

    _session_initial_timeout = (1.0, 2.0)  # (connect, read) of a session's first request (login)
    _session_timeout = (1.0, 0.5)  # (connect, read) of every later request


def fast_client() -> APIClient:
    return APIClient(session=FastSession(http_retries_config=dict(NO_RETRIES)))


def endpoints(fake: FakeClearML) -> list[str]:
    return [name for name, _ in fake.calls]


def jwt_payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


# ------------------------------------------------------------------------------- login / setup


def test_login_then_versioned_calls(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    assert client.session.host == fake_clearml.url
    payload = jwt_payload(client.session.token)
    assert payload["api_version"] == "2.31"
    assert payload["feature_set"] == "basic"
    client.queues.get_all()
    assert endpoints(fake_clearml) == ["auth.login", "queues.get_all"]


def test_wrong_secret_is_a_login_error(fake_clearml: FakeClearML, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "wrong")
    with pytest.raises(LoginError, match="invalid credentials"):
        APIClient()


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_its_own_server(fake_clearml: FakeClearML, round_: int) -> None:
    """Two tests in a row (new port, empty state) both work with a fresh APIClient."""
    client = APIClient()
    assert client.session.host == fake_clearml.url
    assert list(client.queues.get_all()) == []
    fake_clearml.create_queue(f"round-{round_}")
    assert [q.name for q in client.queues.get_all()] == [f"round-{round_}"]


def test_shared_fixture_is_reset(fake_clearml_shared: FakeClearML) -> None:
    assert fake_clearml_shared.calls == []
    assert fake_clearml_shared.queues() == {}
    fake_clearml_shared.enqueue("left-over")
    client = APIClient()
    assert client.session.host == fake_clearml_shared.url
    assert len(client.queues.get_all(name="^left-over$")[0].entries) == 1


def test_misc_endpoints(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    ping = client.session.send_request("debug", "ping").json()
    assert ping["meta"]["result_code"] == 200
    assert ping["data"]["msg"]
    info = client.session.send_request("server", "info").json()["data"]
    assert info["api_version"] == "2.31"
    user = client.session.send_request("users", "get_current_user", json={}).json()["data"]["user"]
    assert user["id"] == fake_clearml.user["id"]
    # unknown endpoints are recorded and answered with an empty-ish 200
    answer = client.session.send_request("models", "get_all", json={"name": "x"}).json()
    assert answer["data"] == {"models": []}
    assert ("models.get_all", {"name": "x"}) in fake_clearml.calls


# ------------------------------------------------------------------------------------- queues


def test_queues_with_pending_counts(fake_clearml: FakeClearML) -> None:
    fake_clearml.create_queue("idle")
    first = fake_clearml.enqueue("gpu", name="a")
    fake_clearml.enqueue("gpu", name="b")
    fake_clearml.enqueue("gpu-large")
    assert fake_clearml.pending("gpu") == 2
    assert fake_clearml.create_queue("gpu") == fake_clearml.queues()["gpu"]["id"]  # idempotent

    client = APIClient()
    counts = {q.name: len(q.entries) for q in client.queues.get_all()}
    assert counts == {"idle": 0, "gpu": 2, "gpu-large": 1}

    (gpu,) = client.queues.get_all(name="^gpu$")
    assert gpu.entries[0].task == first
    assert gpu.entries[0].added is not None
    # name is a regex search, like the server's: unanchored "gpu" matches both
    assert sorted(q.name for q in client.queues.get_all(name="gpu")) == ["gpu", "gpu-large"]
    assert list(client.queues.get_all(name="^nope$")) == []
    # only_fields projects like the server: no entries unless asked for
    (projected,) = client.queues.get_all(name="^gpu$", only_fields=["id", "name"])
    assert projected.entries is None
    assert client.queues.get_by_id(gpu.id).entries[1].task != first


def test_queue_create_via_sdk(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    created = client.queues.create(name="cpu")
    assert fake_clearml.queues()["cpu"]["id"] == created.id
    with pytest.raises(APIError) as err:
        client.queues.create(name="cpu")
    assert err.value.code == 400


# ------------------------------------------------------------------------------------ workers


def test_workers_register_take_and_finish(fake_clearml: FakeClearML) -> None:
    task_a = fake_clearml.enqueue("gpu", name="a")
    task_b = fake_clearml.enqueue("cpu", name="b")
    fake_clearml.register_worker("w1", ["cpu", "gpu"])
    fake_clearml.register_worker("w2", ["gpu"])
    client = APIClient()

    idle = {w.id: w for w in client.workers.get_all()}
    assert set(idle) == {"w1", "w2"}
    assert idle["w1"].task is None
    assert [q.name for q in idle["w1"].queues] == ["cpu", "gpu"]
    assert idle["w1"].last_activity_time is not None
    assert idle["w1"].register_time is not None
    assert idle["w1"].user.id == fake_clearml.user["id"]

    assert fake_clearml.take_task("w1") == task_b  # first queue of w1 first
    assert fake_clearml.take_task("w2") == task_a
    assert fake_clearml.take_task("w2") is None
    busy = {w.id: w for w in client.workers.get_all()}
    assert (busy["w1"].task.id, busy["w1"].task.name) == (task_b, "b")
    statuses = {t.id: str(t.status) for t in client.tasks.get_all(id=[task_a, task_b])}
    assert statuses == {task_a: "in_progress", task_b: "in_progress"}
    assert fake_clearml.pending("gpu") == fake_clearml.pending("cpu") == 0

    assert fake_clearml.finish_task("w1") == task_b
    assert fake_clearml.finish_task("w2", status="failed") == task_a
    assert fake_clearml.finish_task("w2") is None
    assert all(w.task is None for w in client.workers.get_all())
    assert str(client.tasks.get_by_id(task_b).status) == "completed"
    assert fake_clearml.task(task_a)["status"] == "failed"

    fake_clearml.unregister_worker("w2")
    assert [w.id for w in client.workers.get_all()] == ["w1"]


def test_workers_through_the_sdk(fake_clearml: FakeClearML) -> None:
    queue_id = fake_clearml.create_queue("gpu")
    task_id = fake_clearml.enqueue("gpu")
    client = APIClient()
    client.workers.register(worker="agent:1", queues=[queue_id], timeout=60)
    assert fake_clearml.workers()["agent:1"]["queues"][0]["name"] == "gpu"
    client.workers.status_report(worker="agent:1", timestamp=int(time.time() * 1000), task=task_id)
    assert fake_clearml.workers()["agent:1"]["task"]["id"] == task_id
    client.workers.status_report(worker="agent:2", timestamp=int(time.time() * 1000))  # auto-registers
    assert set(fake_clearml.workers()) == {"agent:1", "agent:2"}
    client.workers.unregister(worker="agent:1")
    assert set(fake_clearml.workers()) == {"agent:2"}

    with pytest.raises(APIError) as err:
        client.workers.unregister(worker="agent:1")
    assert err.value.codes == (400, 1004)
    with pytest.raises(APIError) as err:
        client.workers.register(worker="agent:3", queues=["gpu"])  # names are not ids
    assert err.value.codes == (400, 701)


def test_workers_expire_and_last_seen(fake_clearml: FakeClearML) -> None:
    fake_clearml.register_worker("short", ["q"], timeout=60)
    fake_clearml.register_worker("long", ["q"])
    client = APIClient()
    fake_clearml.advance_clock(120)
    assert [w.id for w in client.workers.get_all()] == ["long"]
    assert [w.id for w in client.workers.get_all(last_seen=60)] == []
    fake_clearml.ping_worker("long")
    assert [w.id for w in client.workers.get_all(last_seen=60)] == ["long"]


# -------------------------------------------------------------------------------------- tasks


def test_reenqueue_an_interrupted_task(fake_clearml: FakeClearML) -> None:
    queue_id = fake_clearml.create_queue("gpu")
    task_id = fake_clearml.enqueue("gpu")
    fake_clearml.register_worker("w1", ["gpu"])
    assert fake_clearml.take_task("w1") == task_id
    client = APIClient()

    # like the real server: in_progress -> queued is not a legal transition without force
    with pytest.raises(APIError) as err:
        client.tasks.enqueue(task=task_id, queue=queue_id)
    assert err.value.codes == (400, 110)
    assert fake_clearml.task(task_id)["status"] == "in_progress"

    client.tasks.stopped(task=task_id, status_reason="instance preempted")
    assert fake_clearml.task(task_id)["status"] == "stopped"
    answer = client.tasks.enqueue(task=task_id, queue=queue_id)
    assert answer.queued == 1
    assert fake_clearml.pending("gpu") == 1
    task = fake_clearml.task(task_id)
    assert (task["status"], task["queue"], task["execution"]["queue"]) == ("queued", "gpu", queue_id)

    # queued -> queued is rejected too
    with pytest.raises(APIError):
        client.tasks.enqueue(task=task_id, queue=queue_id)

    # force (not a parameter of the SDK's v2.23 EnqueueRequest) skips the state machine
    assert fake_clearml.take_task("w1") == task_id
    client.tasks.enqueue(task=task_id, queue=queue_id, _allow_extra_fields_=True, force=True)
    assert fake_clearml.task(task_id)["status"] == "queued"


def test_enqueue_by_queue_name_and_dequeue(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    task_id = client.tasks.create(name="t", type="training").id
    client.tasks.enqueue(task=task_id, queue_name="new-queue")  # the server creates the queue
    assert fake_clearml.pending("new-queue") == 1
    client.tasks.dequeue(task=task_id)
    assert fake_clearml.pending("new-queue") == 0
    assert fake_clearml.task(task_id)["status"] == "created"
    with pytest.raises(APIError) as err:
        client.tasks.enqueue(task="no-such-task", queue_name="new-queue")
    assert err.value.codes == (400, 101)


def test_task_status_calls(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    queued = fake_clearml.enqueue("gpu")
    client.tasks.reset(task=queued)
    assert fake_clearml.task(queued)["status"] == "created"
    assert fake_clearml.pending("gpu") == 0

    running = fake_clearml.create_task("run", status="in_progress")
    client.tasks.failed(task=running, status_reason="boom")
    assert fake_clearml.task(running)["status"] == "failed"
    assert fake_clearml.task(running)["status_reason"] == "boom"
    client.tasks.reset(task=running)
    client.tasks.started(task=running)
    client.tasks.completed(task=running)
    assert str(client.tasks.get_by_id(running).status) == "completed"
    with pytest.raises(APIError) as err:
        client.tasks.failed(task=running)  # completed -> failed is not allowed
    assert err.value.codes == (400, 110)
    client.tasks.failed(task=running, force=True)
    assert fake_clearml.task(running)["status"] == "failed"


def test_create_edit_and_find_tasks(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    project_id = client.projects.create(name="scaler", description="d").id
    assert [p.name for p in client.projects.get_all(name="^scaler$")] == ["scaler"]
    task_id = client.tasks.create(name="train-1", type="training", project=project_id).id
    client.tasks.create(name="other", type="testing")
    client.tasks.edit(task=task_id, comment="edited")
    assert fake_clearml.task(task_id)["comment"] == "edited"
    found = client.tasks.get_all(name="^train", project=[project_id])
    assert [t.id for t in found] == [task_id]
    assert [t.name for t in client.tasks.get_all(type=["testing"])] == ["other"]
    assert client.tasks.get_all(id=[task_id], only_fields=["status"])[0].name is None


def test_events_add_batch(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    task_id = client.tasks.create(name="t", type="training").id
    scalars = [
        {"task": task_id, "type": "training_stats_scalar", "metric": "m", "variant": "v", "value": i, "iter": i}
        for i in range(3)
    ]
    answer = client.events.add_batch(requests=scalars)
    assert answer.added == 3
    assert [e["value"] for e in fake_clearml.events(task_id, type="training_stats_scalar")] == [0, 1, 2]
    assert fake_clearml.task(task_id)["last_iteration"] == 2
    assert fake_clearml.calls_to("events.add_batch")[0]["batch"][0]["metric"] == "m"


# ---------------------------------------------------------------------------- fault injection


def test_fail_next_raises_api_error_without_retry(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    fake_clearml.clear_calls()
    fake_clearml.fail_next("workers.get_all", msg="injected boom")
    client.queues.get_all()  # other endpoints are not affected
    started = time.monotonic()
    with pytest.raises(APIError) as err:
        client.workers.get_all()
    assert time.monotonic() - started < 1.0  # 500 is not retried by the SDK
    assert err.value.code == 500
    assert "injected boom" in str(err.value)
    client.workers.get_all()  # times=1: next call is fine
    assert endpoints(fake_clearml) == ["queues.get_all", "workers.get_all", "workers.get_all"]

    fake_clearml.fail_next(times=2, status=400)  # any endpoint
    for call in (client.queues.get_all, client.workers.get_all):
        with pytest.raises(APIError):
            call()
    client.queues.get_all()

    fake_clearml.fail_next(times=100)
    fake_clearml.set_garbage(True)
    fake_clearml.clear_faults()
    client.queues.get_all()


def test_fail_next_503_is_retried_by_the_sdk(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    fake_clearml.clear_calls()
    fake_clearml.fail_next("queues.get_all", status=503)
    assert list(client.queues.get_all()) == []  # urllib3 retried at once (first backoff is 0 s)
    assert endpoints(fake_clearml) == ["queues.get_all", "queues.get_all"]


def test_fail_next_on_login(fake_clearml: FakeClearML) -> None:
    fake_clearml.fail_next("auth.login", status=500)
    with pytest.raises(LoginError):
        APIClient()
    APIClient()


def test_garbage_answers(fake_clearml: FakeClearML) -> None:
    client = APIClient()
    fake_clearml.set_garbage(True)
    with pytest.raises(APIError, match="Invalid response"):
        client.queues.get_all()
    fake_clearml.set_garbage(False)
    client.queues.get_all()


def test_stop_start_keeps_state_and_port(fake_clearml: FakeClearML) -> None:
    fake_clearml.enqueue("gpu")
    fake_clearml.register_worker("w1", ["gpu"])
    client = fast_client()
    url = fake_clearml.url
    fake_clearml.stop()
    assert not fake_clearml.running
    with pytest.raises(requests.ConnectionError):
        client.queues.get_all()
    fake_clearml.start()
    assert fake_clearml.url == url
    (queue,) = client.queues.get_all()  # same client, token still valid
    assert (queue.name, len(queue.entries)) == ("gpu", 1)
    assert [w.id for w in client.workers.get_all()] == ["w1"]


@pytest.mark.parametrize("mode", ["refuse", "reset", "503"])
def test_set_down_fails_fast_with_a_fast_session(fake_clearml: FakeClearML, mode: str) -> None:
    client = fast_client()
    fake_clearml.set_down(True, mode=mode)
    started = time.monotonic()
    with pytest.raises(requests.RequestException):
        client.queues.get_all()
    assert time.monotonic() - started < 1.0
    fake_clearml.set_down(False)
    client.queues.get_all()


def test_set_down_blocks_a_default_client(fake_clearml: FakeClearML) -> None:
    """Default SDK settings retry a refused connection for hours: still blocked after 2 s."""
    import threading

    client = APIClient()
    fake_clearml.set_down(True)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(client.queues.get_all()), daemon=True)
    thread.start()
    thread.join(2.0)
    assert thread.is_alive() and not outcome
    fake_clearml.set_down(False)  # the pending retry (backoff 2 s, then 4 s) now succeeds
    thread.join(10.0)
    assert not thread.is_alive() and len(outcome) == 1


def test_set_slow(fake_clearml: FakeClearML) -> None:
    client = fast_client()  # read timeout 0.5 s
    fake_clearml.set_slow(0.2)
    started = time.monotonic()
    client.queues.get_all()
    assert time.monotonic() - started >= 0.2
    fake_clearml.set_slow(2.0)
    with pytest.raises(requests.ConnectionError, match="Read timed out"):
        client.queues.get_all()
    fake_clearml.set_slow(0)
    client.queues.get_all()


def test_revoked_token_costs_exactly_one_failed_call(fake_clearml: FakeClearML) -> None:
    """On 401 the SDK logs in again but retries with the *old* header: that call still fails."""
    client = APIClient()
    fake_clearml.revoke_tokens()
    fake_clearml.clear_calls()
    with pytest.raises(APIError) as err:
        client.queues.get_all()
    assert err.value.codes == (401, 30)
    assert endpoints(fake_clearml) == ["queues.get_all", "auth.login", "queues.get_all"]
    client.queues.get_all()


def test_short_lived_tokens_are_refreshed_before_calls(fake_clearml: FakeClearML) -> None:
    # the SDK refreshes when less than api.auth.token_expiration_threshold_sec (360 s) remain
    fake_clearml.token_ttl = 300
    client = APIClient()
    assert endpoints(fake_clearml) == ["auth.login", "auth.login"]  # login, then decoding the token re-logs in
    fake_clearml.clear_calls()
    client.queues.get_all()
    client.queues.get_all()
    assert endpoints(fake_clearml) == ["auth.login", "queues.get_all", "auth.login", "queues.get_all"]


# ------------------------------------------------------------------------------ standalone use


@pytest.fixture
def standalone() -> Iterator[FakeClearML]:
    with FakeClearML(access_key="k", secret_key="s") as fake:
        yield fake


def test_standalone_server_and_raw_protocol(standalone: FakeClearML) -> None:
    login = requests.get(f"{standalone.url}/auth.login", auth=("k", "s"), timeout=5).json()
    assert login["meta"]["result_code"] == 200
    token = login["data"]["token"]
    answer = requests.get(
        f"{standalone.url}/v2.23/queues.get_all",
        json={"name": "^x$"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json()["data"] == {"queues": []}
    denied = requests.get(f"{standalone.url}/v2.23/queues.get_all", json={}, timeout=5)
    assert denied.status_code == 401
    assert denied.json()["meta"]["result_code"] == 401
    assert standalone.env()["CLEARML_API_ACCESS_KEY"] == "k"


def test_worker_runtime_properties_as_the_real_agent_asks_them(standalone: FakeClearML) -> None:
    """``clearml-agent daemon`` reads ``runtime_properties`` before each poll of its queues (a KeyError
    on an empty answer kept the real agent from ever pulling a task)."""

    def call(action: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = requests.post(f"{standalone.url}/v2.23/workers.{action}", json=body, auth=("k", "s"), timeout=5)
        return dict(answer.json())

    assert call("get_runtime_properties", {"worker": "dyn:cpu:i-1"})["data"] == {"runtime_properties": []}
    props = [{"key": "max_num_instances", "value": 2, "expiry": None}]
    done = call("set_runtime_properties", {"worker": "dyn:cpu:i-1", "runtime_properties": props})
    assert done["meta"]["result_code"] == 200
    found = call("get_runtime_properties", {"worker": "dyn:cpu:i-1"})["data"]["runtime_properties"]
    assert found == [{"key": "max_num_instances", "value": "2", "expiry": None}]
    assert call("get_runtime_properties", {})["meta"]["result_code"] == 400
