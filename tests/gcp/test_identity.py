"""The GCP plugin's instance-identity fragment, run by bash with the real curl against a fake
GCE metadata server: the machine's name becomes its instance id; an error answer (404, 500),
an HTML page or an unreachable server leaves the id empty with the reason on stderr (never an
error page as the id), which makes the init script shut the machine down
(tests/core/engine/test_render.py runs the whole script)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from scaler_gcp.plugin import INSTANCE_ID_SCRIPT
from tests.fakes.gce_metadata import NAME_PATH, FakeGCEMetadata

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl")


def identify(host: str) -> subprocess.CompletedProcess[str]:
    script = f'set -u\n{INSTANCE_ID_SCRIPT}\nprintf "%s" "$SCALER_INSTANCE_ID"\n'
    env = {"PATH": os.environ["PATH"], "GCE_METADATA_HOST": host}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_instance_name_is_the_id() -> None:
    with FakeGCEMetadata(name="gpu-a10-7f3c") as fake:
        done = identify(fake.host)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "gpu-a10-7f3c"
    assert fake.requests == [NAME_PATH]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, None, "cannot read this machine's name"),
        (500, None, "cannot read this machine's name"),
        (200, "<html><body>Welcome to the proxy</body></html>", "answered something that is not an instance name"),
        (200, "", "answered something that is not an instance name"),
        (200, "x" * 64, "answered something that is not an instance name"),
    ],
    ids=["404", "500", "an HTML page with 200", "empty", "too long for a name"],
)
def test_an_unusable_answer_leaves_no_id_and_says_why(status: int, body: str | None, reason: str) -> None:
    with FakeGCEMetadata(status=status, body=body) as fake:
        done = identify(fake.host)
    assert done.stdout == "", "an error answer became the instance id"
    assert "clearml-scaler: " in done.stderr and reason in done.stderr and fake.host in done.stderr
    if status != 200:  # curl says what the server answered
        assert f"returned error: {status}" in done.stderr
    if status == 500:  # a server error is retried before giving up; a 404 is not
        assert len(fake.requests) > 1
    else:
        assert len(fake.requests) == 1


def test_an_unreachable_metadata_server_leaves_no_id() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = identify(f"127.0.0.1:{port}")
    assert done.stdout == ""
    assert "cannot read this machine's name from the GCE metadata server" in done.stderr
