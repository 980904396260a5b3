"""A ClearML task's configuration is data (issue 12, finding 3): anyone who can edit the task
can edit it, so when the scaler runs inside the task (the way clearml-agent runs it, against
the fake ClearML server) an edited configuration that includes a URL or substitutes a variable
of the agent's environment is refused before anything is launched: the URL gets no request and
the variable's value appears nowhere, not in the output, not in the task's console."""

from __future__ import annotations

import http.server
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from clearml.backend_api.session.client import APIClient
from typer.testing import CliRunner

from tests.fakes.clearml_server import FakeClearML
from tests.support.cli import run_remote

runner = CliRunner()
SECRET = "agent-host-secret-5e0a77"


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"scaler { name = fetched }")

    def log_message(self, *args: Any) -> None:
        pass


def test_an_edited_task_configuration_cannot_fetch_or_read_the_environment(
    fake_clearml: FakeClearML, tmp_path: Path
) -> None:
    fake = fake_clearml
    fake.create_queue("services")
    config = tmp_path / "scaler.conf"
    base = f"""scaler {{ name = "task-data", workers_prefix = "td", polling_interval = 1s }}
simulated {{ state_file = "{tmp_path / "cloud.json"}", boot_time = 0s }}
resources = [ {{ name = "cpu", queue = "cpu", max_instances = 2 }} ]
"""
    config.write_text(base)
    result = run_remote(config)
    assert result.exit_code == 0, result.output
    [task] = fake.tasks().values()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.requests.clear()
    url = f"http://127.0.0.1:{server.server_address[1]}/more.conf"
    # someone who can edit the task adds an include and moves an agent variable into user data
    edited = base + f'include url("{url}")\nscaler.init_script = ${{?SCALER_TEST_AGENT_SECRET}}\n'
    APIClient().tasks.edit_configuration(
        task=task["id"], configuration=[{"name": "scaler", "value": edited, "type": "HOCON"}]
    )
    fake.enqueue("cpu")
    fake.register_worker("services-agent", ["services"])
    assert fake.take_task("services-agent") == task["id"]
    env = dict(
        os.environ,
        CLEARML_TASK_ID=task["id"],
        CLEARML_SIMULATE_REMOTE_TASK="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        SCALER_TEST_AGENT_SECRET=SECRET,
    )
    entry = fake.task(task["id"])["script"]["entry_point"]
    try:
        proc = subprocess.run(
            [sys.executable, *shlex.split(entry), "--no-server-vault"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert f'include url("{url}") at the top level refused: a ClearML task\'s configuration is data' in output
    assert "(line 5): ${?SCALER_TEST_AGENT_SECRET} at 'scaler.init_script' refused" in output
    assert Recorder.requests == [], "the scaler fetched what the task's configuration named"
    assert SECRET not in output
    console = "\n".join(str(e.get("msg", "")) for e in fake.events(task["id"], type="log"))
    assert SECRET not in console
    assert not (tmp_path / "cloud.json").exists() or '"instances": {}' in (tmp_path / "cloud.json").read_text()
    assert "Traceback" not in output
