"""The init script, rendered through the plugin host and *executed* under bash.

Every command the script would run on a machine (python3, pip, clearml-agent, curl,
apt-get, shutdown, poweroff, hostname) is a stub on PATH that records its argv (NUL
separated) and the order of calls; ``clearml-agent`` also dumps its environment. HOME is a
temporary directory. Hostile values (quotes, ``$(...)``, backticks, newlines, ``${HOME}``,
semicolons) in every data field must come out byte for byte where they belong — agent argv,
clearml.conf, worker id — and never run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pyhocon import ConfigFactory

from scaler.config.loading import build_config
from scaler.config.model import Config, Resource
from scaler.config.vault import VaultMerge
from scaler.engine.render import render_clearml_conf, render_init_script
from scaler.host import PluginHost
from scaler.types import RenderContext, Secret, ServerInfo
from tests.fakes.gce_metadata import FakeGCEMetadata
from tests.support.cli import run_cli

INSTANCE_ID = "sim-0001"
STUBS = ("python3", "pip", "clearml-agent", "curl", "apt-get", "shutdown", "poweroff", "hostname")

STUB = """#!/bin/bash
log={log}
name={name}
printf '%s\\n' "$name" >> "$log/events"
n=$(wc -l < "$log/events")
printf '%s\\0' "$@" > "$log/calls/$(printf '%04d' "$n")-$name"
rc=0
if [ -f "$log/fail-$name" ]; then rc=$(cat "$log/fail-$name"); rm -f "$log/fail-$name"; fi
if [ -f "$log/say-$name" ]; then cat "$log/say-$name"; rm -f "$log/say-$name"; fi
{extra}
exit "$rc"
"""
EXTRA = {
    "hostname": f"echo {INSTANCE_ID}",
    # metadata servers: EC2 IMDSv2 (token, then instance id) and GCE (instance name)
    "curl": """case "$*" in
  *latest/api/token*) printf 'IMDS-TOKEN' ;;
  *meta-data/instance-id*) printf 'i-0123456789abcdef0' ;;
  *instance/name*) printf 'gce-vm-7' ;;
esac""",
    # installing clearml-agent puts it on PATH, like pip into the venv would
    "pip": 'if [ "$rc" = 0 ]; then cp "$log/clearml-agent.stub" "$(dirname "$0")/clearml-agent"; fi',
    "clearml-agent": 'env -0 > "$log/agent.env"',
}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@dataclass
class Machine:
    """A fake machine: stub commands, a HOME, and what ran."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def marker(self) -> Path:
        return self.root / "pwned"

    def fail_next(self, command: str, rc: int = 1, output: str = "") -> None:
        """The next call of ``command`` prints ``output`` (its stdout) and exits with ``rc``."""
        (self.log / f"fail-{command}").write_text(str(rc))
        if output:
            (self.log / f"say-{command}").write_text(output)

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        path = self.root / "init.sh"
        path.write_text(script)
        return subprocess.run(
            ["bash", str(path)],
            env={"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home), "LC_ALL": "C.UTF-8", **env},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def events(self) -> list[str]:
        path = self.log / "events"
        return path.read_text().splitlines() if path.exists() else []

    def calls(self, command: str) -> list[list[str]]:
        found = []
        for path in sorted((self.log / "calls").iterdir()):
            if path.name.split("-", 1)[1] == command:
                raw = path.read_bytes().decode()
                found.append(raw.split("\0")[:-1] if raw else [])
        return found

    def agent_env(self) -> dict[str, str]:
        raw = (self.log / "agent.env").read_bytes().decode()
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    def conf(self) -> Any:
        return ConfigFactory.parse_file(str(self.home / "clearml.conf"))


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    m = Machine(tmp_path)
    for folder in (m.home, m.log / "calls", m.bin):
        folder.mkdir(parents=True)
    for name in STUBS:
        text = STUB.format(log=shlex.quote(str(m.log)), name=name, extra=EXTRA.get(name, ""))
        target = m.log / "clearml-agent.stub" if name == "clearml-agent" else m.bin / name
        target.write_text(text)
        target.chmod(0o755)
    return m


def make_config(
    *,
    provider: str = "simulated",
    scaler: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    vault_scripts: tuple[str, ...] = (),
    vault_conf: tuple[str, ...] = (),
) -> tuple[Config, Resource]:
    raw = {
        "scaler": {"name": "fleet", "workers_prefix": "dyn", **(scaler or {})},
        "resources": [{"name": "gpu", "queue": "gpu-queue", "max_instances": 2, **(resource or {})}],
    }
    vault = VaultMerge(raw, list(vault_scripts), list(vault_conf)) if vault_scripts or vault_conf else None
    config = build_config(raw, provider=provider, vault=vault)
    return config, config.resources[0]


SERVER = ServerInfo(
    "https://api.example.com",
    "https://app.example.com",
    "https://files.example.com",
    Secret("SRVKEY"),
    Secret("SRVSECRET"),
)


def render(
    host: PluginHost, config: Config, resource: Resource, *, reveal: bool = True, server: ServerInfo = SERVER
) -> str:
    return render_init_script(host, config, resource, RenderContext(server, reveal_secrets=reveal))


def bash_n(script: str, tmp_path: Path) -> None:
    path = tmp_path / "check.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- a plain run -------------------------------------------------------------------------


def test_plain_script_installs_configures_runs_the_agent_then_shuts_down(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(
        scaler={"git": {"user": "bot", "password": "ghp_token"}, "default_docker_image": "python:3.11"}
    )
    script = render(host, config, resource)
    bash_n(script, machine.root)
    result = machine.run(script)
    assert result.returncode == 0, result.stderr
    assert machine.events() == ["hostname", "python3", "pip", "clearml-agent", "shutdown"]
    assert machine.calls("python3") == [["-m", "venv", "/opt/clearml-agent-venv"]]
    # the default agent_version: the range the boot script is tested with (test_real_agent.py)
    assert machine.calls("pip") == [["install", "--upgrade", "clearml-agent>=2.0,<4"]]
    assert machine.calls("clearml-agent") == [
        ["--config-file", f"{machine.home}/clearml.conf", "daemon", "--queue", "gpu-queue", "--docker", "python:3.11"]
    ]
    assert machine.calls("shutdown") == [["-h", "now"]]
    env = machine.agent_env()
    assert env["CLEARML_WORKER_ID"] == f"dyn:gpu:{INSTANCE_ID}"
    assert env["CLEARML_CONFIG_FILE"] == f"{machine.home}/clearml.conf"
    conf = machine.conf()
    assert conf["api.api_server"] == "https://api.example.com"
    assert conf["api.web_server"] == "https://app.example.com"
    assert conf["api.files_server"] == "https://files.example.com"
    # no agent_credentials configured: the agents use the scaler's own
    assert conf["api.credentials.access_key"] == "SRVKEY"
    assert conf["api.credentials.secret_key"] == "SRVSECRET"
    assert conf["agent.git_user"] == "bot"
    assert conf["agent.git_pass"] == "ghp_token"
    assert (machine.home / "clearml.conf").stat().st_mode & 0o077 == 0  # credentials: owner only
    # nothing secret reaches the console (no `set -x`, no echo of the conf)
    for secret in ("ghp_token", "SRVKEY", "SRVSECRET"):
        assert secret not in result.stdout + result.stderr


def test_cpu_only_extra_args_agent_version_and_instance_id_from_the_environment(
    host: PluginHost, machine: Machine
) -> None:
    config, resource = make_config(
        scaler={"agent_version": "==1.9.3"},
        resource={
            "cpu_only": True,
            "docker_image": "ubuntu:22.04",
            "extra_agent_args": ["--services-mode", "--order-fairness"],
        },
    )
    # clearml-agent is already installed, but agent_version pins a version: install anyway
    (machine.bin / "clearml-agent").write_text((machine.log / "clearml-agent.stub").read_text())
    (machine.bin / "clearml-agent").chmod(0o755)
    result = machine.run(render(host, config, resource), SCALER_INSTANCE_ID="i-0abc")
    assert result.returncode == 0, result.stderr
    assert machine.events() == ["python3", "pip", "clearml-agent", "shutdown"]  # no hostname: id given
    assert machine.calls("pip") == [["install", "--upgrade", "clearml-agent==1.9.3"]]
    assert machine.calls("clearml-agent") == [
        [
            "--config-file",
            f"{machine.home}/clearml.conf",
            "daemon",
            "--queue",
            "gpu-queue",
            "--docker",
            "ubuntu:22.04",
            "--cpu-only",
            "--services-mode",
            "--order-fairness",
        ]
    ]
    env = machine.agent_env()
    assert env["CLEARML_WORKER_ID"] == "dyn:gpu:i-0abc"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none"


def test_agent_already_installed_is_not_reinstalled(host: PluginHost, machine: Machine) -> None:
    """With agent_version empty, an agent the machine image has is used as it is."""
    config, resource = make_config(scaler={"agent_version": ""})
    (machine.bin / "clearml-agent").write_text((machine.log / "clearml-agent.stub").read_text())
    (machine.bin / "clearml-agent").chmod(0o755)
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert machine.events() == ["hostname", "clearml-agent", "shutdown"]


def test_missing_venv_support_is_installed_with_apt_then_retried(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    machine.fail_next("python3")
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert machine.events() == [
        "hostname",
        "python3",
        "apt-get",
        "apt-get",
        "python3",
        "pip",
        "clearml-agent",
        "shutdown",
    ]
    assert machine.calls("apt-get")[1] == ["install", "-y", "python3-venv", "python3-pip", "git"]


def test_failed_agent_install_shuts_the_machine_down(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    machine.fail_next("pip")
    result = machine.run(render(host, config, resource))
    assert result.returncode != 0
    assert machine.events() == ["hostname", "python3", "pip", "shutdown"]
    assert "installing clearml-agent failed" in result.stderr


def test_agent_exit_status_does_not_prevent_shutdown(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    machine.fail_next("clearml-agent", 3)
    result = machine.run(render(host, config, resource))
    assert machine.events()[-2:] == ["clearml-agent", "shutdown"]
    assert "clearml-agent exited with status 3" in result.stdout


@pytest.mark.parametrize(
    ("provider", "instance_id"), [("aws", "i-0123456789abcdef0"), ("gcp", "gce-vm-7"), ("simulated", INSTANCE_ID)]
)
def test_each_providers_identity_part_names_the_worker(
    host: PluginHost, machine: Machine, provider: str, instance_id: str
) -> None:
    config, resource = make_config(provider=provider)
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert machine.agent_env()["CLEARML_WORKER_ID"] == f"dyn:gpu:{instance_id}"
    assert machine.events()[-2:] == ["clearml-agent", "shutdown"]
    if provider == "aws":  # IMDSv2: the token is sent with the instance-id request
        token_call, id_call = machine.calls("curl")
        assert "-X" in token_call and "PUT" in token_call
        assert "X-aws-ec2-metadata-token: IMDS-TOKEN" in id_call


def test_no_instance_id_shuts_down_before_starting_anything(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    (machine.bin / "hostname").write_text("#!/bin/bash\nexit 0\n")  # prints nothing
    result = machine.run(render(host, config, resource))
    assert result.returncode != 0
    assert machine.events() == ["shutdown"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("status", [404, 500])
def test_gcp_metadata_server_error_shuts_down_before_starting_anything(
    host: PluginHost, machine: Machine, status: int
) -> None:
    """The real curl against a metadata server that answers an error: no instance id (never the
    error page), the reason on stderr, and the machine shuts itself down without an agent."""
    (machine.bin / "curl").unlink()  # the real one
    config, resource = make_config(provider="gcp")
    with FakeGCEMetadata(status=status) as metadata:
        result = machine.run(render(host, config, resource), GCE_METADATA_HOST=metadata.host)
    assert machine.events() == ["shutdown"]
    assert result.returncode != 0
    assert "cannot read this machine's name from the GCE metadata server" in result.stderr
    assert "could not determine this machine's instance id; shutting down" in result.stderr


# --- user scripts, vault scripts, bashrc ---------------------------------------------------


def note(machine: Machine, label: str) -> str:
    """A user script line that records ``label`` in the event log."""
    return f"printf '%s\\n' {shlex.quote(label)} >> {shlex.quote(str(machine.log / 'events'))}"


BASHRC = 'export FROM_BASHRC=1\n[ -z "$PS1" ] && return\necho not-interactive-only\n'  # like Ubuntu's


@pytest.mark.parametrize("exclude_bashrc", [False, True])
def test_user_and_vault_scripts_run_in_order_before_the_agent_install(
    host: PluginHost, machine: Machine, exclude_bashrc: bool
) -> None:
    config, resource = make_config(
        scaler={
            "init_script": note(machine, "scaler-init") + "\nexport FROM_INIT=yes",
            "exclude_bashrc": exclude_bashrc,
        },
        resource={"init_script": note(machine, "resource-init")},
        vault_scripts=(note(machine, "vault-1"), note(machine, "vault-2") + "\nexport FROM_VAULT=2"),
    )
    (machine.home / ".bashrc").write_text(note(machine, "bashrc") + "\n" + BASHRC)
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    user = ["scaler-init", "resource-init", "vault-1", "vault-2"]
    bashrc = [] if exclude_bashrc else ["bashrc"]
    assert machine.events() == ["hostname", *bashrc, *user, "python3", "pip", "clearml-agent", "shutdown"]
    env = machine.agent_env()  # what the scripts export reaches the agent
    assert env["FROM_INIT"] == "yes" and env["FROM_VAULT"] == "2"
    assert ("FROM_BASHRC" in env) == (not exclude_bashrc)


@pytest.mark.parametrize(
    "user_script",
    [
        pytest.param("set -euo pipefail", id="set -e in a user script"),
        pytest.param('echo "proxy: $some_unset_variable"', id="unset variable in a user script"),
        pytest.param("set -o errexit; false || true", id="errexit"),
    ],
)
def test_user_script_shell_options_do_not_break_the_agent_or_the_shutdown(
    host: PluginHost, machine: Machine, user_script: str
) -> None:
    config, resource = make_config(scaler={"init_script": user_script})
    machine.fail_next("clearml-agent", 2)  # the agent exits non-zero
    machine.run(render(host, config, resource))
    assert machine.events()[-2:] == ["clearml-agent", "shutdown"]


ENDINGS = {
    "exit 0": "exit 0",
    "exit 7": "exit 7",
    "set -e; false": "set -e\nfalse\necho never",
    "set -u; unset variable": 'set -u\necho "$no_such_variable"',
    "return": "return 3",
    "exec into nothing": "exec true",
    "kill itself": "kill -9 $$",
    "a trap of its own, then exit": "trap 'echo cleaning up' EXIT\nexit 0",
    "a trap of its own, then set -e": "trap 'echo cleaning up' EXIT\nset -e\nfalse",
}
#: endings that leave the script no chance to hand its exports back
NO_HAND_BACK = ("exec into nothing", "kill itself", "a trap of its own, then set -e")


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("where", ["scaler.init_script", "resource init_script", "vault script", "~/.bashrc"])
def test_a_user_script_that_ends_early_cannot_skip_the_agent_or_the_shutdown(
    host: PluginHost, machine: Machine, where: str, ending: str
) -> None:
    """Each user script runs in a bash of its own: its `exit`, a `set -e` that trips, a `return`,
    an `exec` end only that script; the agent still starts, the machine still shuts down, the
    script's exit status is logged, and what it exported before ending reaches the agent."""
    text = f"{note(machine, 'user')}\nexport EXPORTED_BEFORE=yes\n{ENDINGS[ending]}\n{note(machine, 'not reached')}"
    scaler: dict[str, Any] = {"init_script": note(machine, "init") + "\nexport FROM_INIT=1"}
    resource: dict[str, Any] = {}
    vault: tuple[str, ...] = ()
    if where == "scaler.init_script":
        scaler = {"init_script": text}
    elif where == "resource init_script":
        resource = {"init_script": text}
    elif where == "vault script":
        vault = (text, note(machine, "vault-2"))
    else:
        (machine.home / ".bashrc").write_text(text)
    config, resource_ = make_config(scaler=scaler, resource=resource, vault_scripts=vault)
    result = machine.run(render(host, config, resource_))
    events = machine.events()
    assert "user" in events and "not reached" not in events
    assert events[-3:] == ["pip", "clearml-agent", "shutdown"], result.stderr
    env = machine.agent_env()
    assert env["CLEARML_WORKER_ID"] == f"dyn:gpu:{INSTANCE_ID}"
    if ending not in NO_HAND_BACK:
        assert env["EXPORTED_BEFORE"] == "yes"
    if where == "~/.bashrc":  # the scripts after it still run
        assert env["FROM_INIT"] == "1" and "init" in events
    if where == "vault script":
        assert "vault-2" in events
    assert re.search(r"clearml-scaler: \S.* exited with status \d+", result.stdout)
    assert "clearml-agent exited with status 0" in result.stdout


def test_each_user_scripts_exit_status_is_logged(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(scaler={"init_script": "exit 0"}, resource={"init_script": "exit 4"})
    result = machine.run(
        render(host, config, resource),
    )
    assert "clearml-scaler: scaler.init_script exited with status 0" in result.stdout
    assert "clearml-scaler: resources.gpu.init_script exited with status 4" in result.stdout
    assert machine.events()[-2:] == ["clearml-agent", "shutdown"]


def test_a_script_that_holds_the_here_document_delimiter_still_runs_whole(host: PluginHost, machine: Machine) -> None:
    """The script is passed as a quoted here-document whose end marker is not a line of the script."""
    text = "\n".join(["cat <<'SCALER_USER_SCRIPT_0'", "SCALER_USER_SCRIPT_0", note(machine, "after the marker")])
    config, resource = make_config(scaler={"init_script": text})
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert "after the marker" in machine.events()


def test_extra_clearml_conf_and_vault_conf_are_appended(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(
        scaler={"extra_clearml_conf": "agent.docker_force_pull: true\nsdk.x: 1"},
        vault_conf=("sdk.x: 2", 'agent.extra_docker_arguments: ["--ipc=host"]'),
    )
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    conf = machine.conf()
    assert conf["agent.docker_force_pull"] is True
    assert conf["sdk.x"] == 2  # the vault comes after the config: it wins
    assert conf["agent.extra_docker_arguments"] == ["--ipc=host"]
    assert conf["api.api_server"] == "https://api.example.com"


# --- hostile values ------------------------------------------------------------------------

Hostile = Callable[[Path], str]
HOSTILE: dict[str, Hostile] = {
    "single quotes": lambda m: "it's 'quoted'",
    "double quotes": lambda m: 'say "hi" \\" \\\\',
    "command substitution": lambda m: f"$(touch {m})",
    "backticks": lambda m: f"`touch {m}`",
    "newlines": lambda m: f"one\ntouch {m}\n\n'\ntouch {m}",
    "spaces": lambda m: "  with   spaces  ",
    "parameter expansion": lambda m: "${HOME} $HOME ${PATH:+x} $0 $1 $@",
    "semicolons": lambda m: f"x; touch {m}; y && touch {m} | cat",
    "control characters": lambda m: "bell\a back\b form\f esc\x1b[31m soh\x01 cr\r tab\t del\x7f",
    "everything": lambda m: f"a'b\"c $(touch {m}) `touch {m}` ${{HOME}};touch {m}\n touch {m} \\ %s %% end",
}


def no_space_or_colon(value: str) -> str:
    """workers_prefix may not hold ':' or whitespace (validated); keep the rest of the attack."""
    return re.sub(r"[\s:]", "", value) or "p"


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_values_are_data_never_code(host: PluginHost, machine: Machine, kind: str) -> None:
    value = HOSTILE[kind](machine.marker)
    prefix = no_space_or_colon("dyn" + value)
    config, resource = make_config(
        scaler={
            "workers_prefix": prefix,
            "git": {"user": "u" + value, "password": "tok" + value},
            "agent_credentials": {"access_key": "ak" + value, "secret_key": "sk" + value},
            "default_docker_image": "img" + value,
            "agent_version": "",
        },
        resource={
            "queue": "queue" + value,
            "extra_agent_args": ["--arg=" + value],
            "init_script": "export FROM_RESOURCE_SCRIPT=1",
        },
    )
    server = ServerInfo("https://api" + value, "https://web" + value, "https://files" + value)
    script = render(host, config, resource, server=server)
    bash_n(script, machine.root)
    result = machine.run(script)
    assert result.returncode == 0, result.stderr
    assert not machine.marker.exists(), "a value was executed"
    assert machine.events() == ["hostname", "python3", "pip", "clearml-agent", "shutdown"]
    assert machine.calls("clearml-agent") == [
        [
            "--config-file",
            f"{machine.home}/clearml.conf",
            "daemon",
            "--queue",
            "queue" + value,
            "--docker",
            "img" + value,
            "--arg=" + value,
        ]
    ]
    env = machine.agent_env()
    assert env["CLEARML_WORKER_ID"] == f"{prefix}:gpu:{INSTANCE_ID}"
    assert env["FROM_RESOURCE_SCRIPT"] == "1"
    conf = machine.conf()
    assert conf["agent.git_user"] == "u" + value
    assert conf["agent.git_pass"] == "tok" + value
    assert conf["api.credentials.access_key"] == "ak" + value
    assert conf["api.credentials.secret_key"] == "sk" + value
    assert conf["api.api_server"] == "https://api" + value
    assert conf["api.web_server"] == "https://web" + value
    assert conf["api.files_server"] == "https://files" + value
    for secret in ("tok" + value, "ak" + value, "sk" + value):
        assert secret not in result.stdout + result.stderr


def test_names_on_comment_lines_cannot_break_out(host: PluginHost, machine: Machine) -> None:
    """Names are validated on load, but a config built another way must still be safe."""
    config, resource = make_config()
    evil = f"x\ntouch {machine.marker}\r\ntouch {machine.marker}"
    config = replace(config, scaler=replace(config.scaler, name="fleet" + evil))
    resource = replace(resource, name="gpu" + evil, init_script="true")
    script = render(host, config, resource)
    bash_n(script, machine.root)
    result = machine.run(script)
    assert result.returncode == 0, result.stderr
    assert not machine.marker.exists()
    assert machine.agent_env()["CLEARML_WORKER_ID"] == f"dyn:gpu{evil}:{INSTANCE_ID}"


def test_hostile_resource_init_script_does_run(host: PluginHost, machine: Machine) -> None:
    """Scripts are code on purpose: the same text that must not run as data runs here."""
    config, resource = make_config(resource={"init_script": f"touch {shlex.quote(str(machine.marker))}"})
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert machine.marker.exists()


# --- what a human sees: render-init-script ---------------------------------------------------

SECRETS = {"git": "ghp_SuperSecretGitToken", "access": "AGENTACCESSKEY123", "secret": "agent/secret+key=="}


def secret_config() -> tuple[Config, Resource]:
    return make_config(
        scaler={
            "git": {"user": "bot", "password": SECRETS["git"]},
            "agent_credentials": {"access_key": SECRETS["access"], "secret_key": SECRETS["secret"]},
        }
    )


def test_masked_rendering_shows_no_secret(host: PluginHost, tmp_path: Path) -> None:
    config, resource = secret_config()
    server = ServerInfo("https://api.example.com", access_key=Secret("SCALERKEY"), secret_key=Secret("SCALERSECRET"))
    masked = render(host, config, resource, reveal=False, server=server)
    for value in [*SECRETS.values(), "SCALERKEY", "SCALERSECRET"]:
        assert value not in masked
    assert Secret.MASK in masked
    bash_n(masked, tmp_path)
    masked_conf = render_clearml_conf(host, config, resource, RenderContext(server, reveal_secrets=False))
    assert not any(value in masked_conf for value in SECRETS.values())
    # the machine's copy does carry them (agent credentials override the scaler's own)
    revealed = render(host, config, resource, reveal=True, server=server)
    assert all(value in revealed for value in SECRETS.values())
    assert "SCALERKEY" not in revealed


FREE_TEXT_SECRETS = ("registry-pw-77", "s3-secret-88", "azure-key-99", "vault-token-66", "conf-key-55")


def test_masked_rendering_masks_secrets_inside_free_text(host: PluginHost, tmp_path: Path) -> None:
    """Typed secrets mask themselves; scripts and clearml.conf snippets are free text, masked by
    shape (and by the configuration's own secret values) when a person reads the script."""
    config, resource = make_config(
        scaler={
            "git": {"user": "bot", "password": SECRETS["git"]},
            "init_script": f"docker login -u bot -p registry-pw-77 reg.example.com\ngit clone {SECRETS['git']}@x",
            "extra_clearml_conf": "sdk.aws.s3.secret: s3-secret-88\n"
            'azure.storage.containers: [{account_name: "acct", account_key: "azure-key-99"}]',
        },
        vault_scripts=("export HF_TOKEN=vault-token-66",),
        vault_conf=('sdk.aws.s3.key = "conf-key-55"',),
    )
    masked = render(host, config, resource, reveal=False)
    for value in (*FREE_TEXT_SECRETS, SECRETS["git"]):
        assert value not in masked
    assert "docker login -u bot -p ******** reg.example.com" in masked  # the rest stays readable
    assert "sdk.aws.s3.secret: ********" in masked and 'account_name: "acct"' in masked
    bash_n(masked, tmp_path)
    conf = render_clearml_conf(host, config, resource, RenderContext(SERVER, reveal_secrets=False))
    assert not any(value in conf for value in FREE_TEXT_SECRETS)
    # the machine gets every one of them
    revealed = render(host, config, resource, reveal=True)
    assert all(value in revealed for value in (*FREE_TEXT_SECRETS, SECRETS["git"]))


def test_masked_rendering_of_the_scalers_own_keys(host: PluginHost) -> None:
    config, resource = make_config()
    masked = render(host, config, resource, reveal=False)
    assert "SRVKEY" not in masked and "SRVSECRET" not in masked


def test_core_never_traces_the_script(host: PluginHost) -> None:
    config, resource = secret_config()
    script = render(host, config, resource)
    assert not re.search(r"^\s*set\s+(-\w*x|-o\s+xtrace)", script, re.M)
    assert not re.search(r"^\s*(bash|sh)\s+-\w*x", script, re.M)
    assert script.startswith("#!/bin/bash\n")


STABLE_CONFIG = """
scaler {
  name = "stable", workers_prefix = "st"
  git { user = "bot", password = ${?STABLE_GIT_TOKEN} }
  init_script = "echo one"
  extra_clearml_conf = "sdk.development.worker.log_stdout: true"
}
aws { region = "eu-west-1" }
resources = [
  { name = "gpu", queue = "gpu", max_instances = 2, extra_agent_args = ["--gpus", "0,1", "--cpu-only"],
    aws { instance_type = "g5.xlarge", ami_id = "ami-0123456789abcdef0", tags = "team=ml,env=prod,b=2,a=1" } }
]
"""
STABLE_VAULT = """
auto_scaler.v1.aws {
  extra_vm_bash_script = "echo top"
  match { "^st$" { extra_vm_bash_script = "echo exact", extra_clearml_conf = "a: 1" },
          "^s.*$" { extra_vm_bash_script = "echo loose", extra_clearml_conf = "b: 2" } }
}
"""


def test_rendering_is_stable_across_processes(tmp_path: Path) -> None:
    """The same configuration renders byte for byte the same script in separate processes with
    different hash seeds: launches are retried with the same idempotency token, so nothing in the
    script may depend on set or dict order of one process."""
    config, vault = tmp_path / "stable.conf", tmp_path / "vault.conf"
    config.write_text(STABLE_CONFIG)
    vault.write_text(STABLE_VAULT)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_")}
    env = {
        **base,
        "STABLE_GIT_TOKEN": "tok-3f9a",
        "CLEARML_API_HOST": "https://api.example.com",
        "CLEARML_API_ACCESS_KEY": "STABLEKEY",
        "CLEARML_API_SECRET_KEY": "stable-secret",
        "HOME": str(tmp_path),
        "CLEARML_CONFIG_FILE": str(tmp_path / "none.conf"),
    }
    args = ["render-init-script", "--config", str(config), "--vault", str(vault), "--provider", "aws"]
    outputs = set()
    for seed in ("0", "1", "12345"):
        result = run_cli(*args, "--resource", "gpu", "--show-secrets", env={**env, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        assert "clearml-agent" in result.stdout and "echo exact" in result.stdout and "tok-3f9a" in result.stdout
        outputs.add(result.stdout)
    assert len(outputs) == 1


# --- credentials for the agents (issue 14, item 3) -------------------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.token-only-setup.c2lnbmF0dXJl"


def test_a_token_only_setup_gives_the_agent_the_token(host: PluginHost, machine: Machine) -> None:
    """CLEARML_AUTH_TOKEN without keys (as ClearML's autoscaler passes it): the agent gets the token
    in its environment and a clearml.conf without an empty credentials block."""
    config, resource = make_config()
    server = ServerInfo("https://api.example.com", auth_token=Secret(TOKEN))
    result = machine.run(render(host, config, resource, server=server))
    assert result.returncode == 0, result.stderr
    assert machine.agent_env()["CLEARML_AUTH_TOKEN"] == TOKEN
    assert "credentials" not in machine.conf()["api"]
    assert TOKEN not in result.stdout + result.stderr
    masked = render(host, config, resource, server=server, reveal=False)
    assert TOKEN not in masked and "export CLEARML_AUTH_TOKEN='********'" in masked


def test_keys_and_a_token_both_reach_the_agent(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    server = replace(SERVER, auth_token=Secret(TOKEN))
    result = machine.run(render(host, config, resource, server=server))
    assert result.returncode == 0, result.stderr
    assert machine.agent_env()["CLEARML_AUTH_TOKEN"] == TOKEN
    assert machine.conf()["api.credentials.access_key"] == "SRVKEY"


def test_dedicated_agent_credentials_are_not_mixed_with_the_scalers_token(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(scaler={"agent_credentials": {"access_key": "AGENTKEY", "secret_key": "AGENTSEC"}})
    server = replace(SERVER, auth_token=Secret(TOKEN))
    result = machine.run(render(host, config, resource, server=server))
    assert result.returncode == 0, result.stderr
    assert "CLEARML_AUTH_TOKEN" not in machine.agent_env()
    assert machine.conf()["api.credentials.access_key"] == "AGENTKEY"
    assert machine.conf()["api.credentials.secret_key"] == "AGENTSEC"


@pytest.mark.parametrize("reveal", [True, False])
def test_no_credentials_at_all_is_an_error_that_says_where_they_come_from(host: PluginHost, reveal: bool) -> None:
    from scaler.errors import ConfigError

    config, resource = make_config()
    server = ServerInfo("https://api.example.com", config_file="/home/ops/clearml.conf")
    with pytest.raises(ConfigError) as caught:
        render(host, config, resource, server=server, reveal=reveal)
    message = str(caught.value)
    for where in (
        "scaler.agent_credentials",
        "SCALER_AGENT_ACCESS_KEY",
        "CLEARML_API_ACCESS_KEY",
        "CLEARML_API_SECRET_KEY",
        "api.credentials in clearml.conf (/home/ops/clearml.conf)",
        "CLEARML_AUTH_TOKEN",
    ):
        assert where in message, where
    with pytest.raises(ConfigError):
        render_clearml_conf(host, config, resource, RenderContext(server))


@pytest.mark.parametrize("given", ["access_key", "secret_key"])
def test_half_of_the_agent_credentials_is_an_error(host: PluginHost, given: str) -> None:
    from scaler.errors import ConfigError

    config, resource = make_config(scaler={"agent_credentials": {given: "only-this-one"}})
    with pytest.raises(ConfigError, match=f"agent_credentials.{given} is set but"):
        render(host, config, resource)


CREDENTIAL_VARIABLES = ("CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "CLEARML_AUTH_TOKEN", "CLEARML_API_HOST")


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a scaler run on a machine with no ClearML credentials unless given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    (tmp_path / "empty.conf").write_text("# no credentials\n")
    return {
        **base,
        "HOME": str(tmp_path),
        "CLEARML_CONFIG_FILE": str(tmp_path / "empty.conf"),
        "CLEARML_API_HOST": "https://api.example.com",
        **extra,
    }


def test_render_init_script_without_credentials_fails_and_says_where_they_come_from(tmp_path: Path) -> None:
    config = tmp_path / "fleet.conf"
    config.write_text('resources = [ { name = "cpu", queue = "cpu", max_instances = 1 } ]\n')
    args = ("render-init-script", "--config", str(config), "--resource", "cpu", "--provider", "simulated")
    result = run_cli(*args, env=cli_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no ClearML credentials for the agents" in result.stderr
    assert f"api.credentials in clearml.conf ({tmp_path / 'empty.conf'})" in result.stderr
    assert result.stdout == ""
    # a token alone is enough: it is passed on, masked here
    result = run_cli(*args, env=cli_env(tmp_path, CLEARML_AUTH_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    assert "export CLEARML_AUTH_TOKEN='********'" in result.stdout and TOKEN not in result.stdout


def test_server_info_reads_the_auth_token_and_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scaler.clearml.queues import server_info

    conf = tmp_path / "clearml.conf"
    conf.write_text("# empty\n")
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(conf))
    monkeypatch.setenv("CLEARML_AUTH_TOKEN", TOKEN)
    info = server_info()
    assert info.auth_token == Secret(TOKEN)
    assert info.config_file == str(conf)


# --- no-docker mode and the docker check (item 4) -----------------------------------------------


def agent_argv(machine: Machine) -> list[str]:
    [argv] = machine.calls("clearml-agent")
    return argv


@pytest.mark.parametrize("value", [None, "", "none", "None", "NONE", " none "])
def test_no_docker_globally(host: PluginHost, machine: Machine, value: str | None) -> None:
    config, resource = make_config(scaler={"default_docker_image": value})
    script = render(host, config, resource)
    result = machine.run(script)
    assert result.returncode == 0, result.stderr
    assert "--docker" not in agent_argv(machine)
    assert "docker" not in machine.events() and "docker mode" not in result.stdout + result.stderr


@pytest.mark.parametrize("value", [None, "", "none", "None"])
def test_no_docker_for_one_resource_whatever_the_default(host: PluginHost, machine: Machine, value: str | None) -> None:
    config, resource = make_config(scaler={"default_docker_image": "python:3.11"}, resource={"docker_image": value})
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert "--docker" not in agent_argv(machine)


def test_a_resource_without_docker_image_takes_the_default(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(scaler={"default_docker_image": "python:3.11"})
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert agent_argv(machine)[-2:] == ["--docker", "python:3.11"]


NO_DOCKER_HOCON = """
scaler { name = "fleet", workers_prefix = "dyn", default_docker_image = %s }
resources = [
  { name = "plain", queue = "q", max_instances = 1 },
  { name = "own", queue = "q", max_instances = 1, docker_image = "ubuntu:22.04" },
  { name = "none", queue = "q", max_instances = 1, docker_image = %s },
]
"""


@pytest.mark.parametrize(
    ("default", "resource", "expected"),
    [
        ("null", "null", [None, "ubuntu:22.04", None]),
        ('"None"', '"NONE"', [None, "ubuntu:22.04", None]),
        ('""', '""', [None, "ubuntu:22.04", None]),
        ('"python:3.11"', "null", ["python:3.11", "ubuntu:22.04", None]),
        ('"python:3.11"', "none", ["python:3.11", "ubuntu:22.04", None]),
    ],
)
def test_no_docker_as_written_in_a_configuration_file(
    host: PluginHost, tmp_path: Path, default: str, resource: str, expected: list[str | None]
) -> None:
    """HOCON's null (and ClearML's None) read from a file, globally and per resource: before, `null`
    rendered the nvidia image and `None` rendered `--docker None`."""
    from scaler.config.loading import load_config

    path = tmp_path / "fleet.conf"
    path.write_text(NO_DOCKER_HOCON % (default, resource))
    loaded = load_config(path, host, provider="simulated")
    assert loaded.ok and loaded.config is not None, [p.render() for p in loaded.errors]
    found = []
    for item in loaded.config.resources:
        script = render(host, loaded.config, item)
        match = re.search(r"^clearml-agent .* --docker (\S+)", script, re.M)
        found.append(match.group(1) if match else None)
    assert found == expected


def path_without(tmp_path: Path, *commands: str) -> str:
    """A directory with every command of /usr/bin and /bin except ``commands`` (so a docker on this
    machine does not hide the one under test)."""
    folder = tmp_path / "system-bin"
    folder.mkdir()
    for directory in ("/usr/bin", "/bin"):
        for entry in Path(directory).iterdir():
            target = folder / entry.name
            if entry.name not in commands and not target.exists():
                target.symlink_to(entry)
    return str(folder)


def test_docker_mode_says_on_the_console_when_docker_is_missing(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config(scaler={"default_docker_image": "python:3.11"})
    result = machine.run(render(host, config, resource), PATH=f"{machine.bin}:{path_without(machine.root, 'docker')}")
    assert result.returncode == 0, result.stderr
    assert (
        "clearml-scaler: WARNING: docker mode (image python:3.11) but docker is not installed on this machine"
        in result.stderr
    )
    assert machine.events()[-2:] == ["clearml-agent", "shutdown"]  # the agent still starts


@pytest.mark.parametrize(("answers", "said"), [(True, "docker is ready"), (False, "the docker daemon does not answer")])
def test_docker_mode_checks_that_the_daemon_answers(
    host: PluginHost, machine: Machine, answers: bool, said: str
) -> None:
    docker = machine.bin / "docker"
    docker.write_text(STUB.format(log=shlex.quote(str(machine.log)), name="docker", extra=""))
    docker.chmod(0o755)
    if not answers:
        machine.fail_next("docker", 1, "Cannot connect to the Docker daemon")
    config, resource = make_config(scaler={"default_docker_image": "python:3.11"})
    result = machine.run(render(host, config, resource))
    assert result.returncode == 0, result.stderr
    assert said in result.stdout + result.stderr
    assert machine.calls("docker") == [["info"]]
    assert machine.events()[-3:] == ["docker", "clearml-agent", "shutdown"]


# --- what failed while installing the agent reaches the console (item 7) --------------------------


def test_a_failed_pip_install_is_shown_with_a_prefix_then_the_machine_shuts_down(
    host: PluginHost, machine: Machine
) -> None:
    config, resource = make_config()
    machine.fail_next("pip", 1, "Looking in indexes: https://pypi.org/simple\nERROR: No matching distribution found\n")
    result = machine.run(render(host, config, resource))
    assert result.returncode != 0
    assert "clearml-scaler: pip install clearml-agent>=2.0,<4 failed with status 1" in result.stderr
    assert "clearml-scaler: pip install clearml-agent>=2.0,<4 failed: ERROR: No matching distribution found" in (
        result.stderr
    )
    assert "installing clearml-agent failed" in result.stderr
    assert machine.events() == ["hostname", "python3", "pip", "shutdown"]


def test_apt_failures_are_shown_with_a_prefix(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    machine.fail_next("python3")  # no venv module: apt-get installs it
    machine.fail_next("apt-get", 100, "E: Could not get lock /var/lib/dpkg/lock-frontend\n")
    result = machine.run(render(host, config, resource))
    assert "clearml-scaler: python3 -m venv failed; installing python3-venv python3-pip git with apt-get" in (
        result.stdout
    )
    assert "clearml-scaler: apt-get update failed: E: Could not get lock /var/lib/dpkg/lock-frontend" in result.stderr
    # the install goes on (the second apt-get, the venv, pip) and says nothing more where it works
    assert machine.events() == [
        "hostname",
        "python3",
        "apt-get",
        "apt-get",
        "python3",
        "pip",
        "clearml-agent",
        "shutdown",
    ]
    assert "apt-get install python3-venv python3-pip git failed" not in result.stderr
    assert "clearml-scaler: installed clearml-agent>=2.0,<4" in result.stdout


def test_the_agent_venv_path_can_be_set_on_the_machine(host: PluginHost, machine: Machine) -> None:
    config, resource = make_config()
    result = machine.run(render(host, config, resource), SCALER_AGENT_VENV=str(machine.root / "venv"))
    assert result.returncode == 0, result.stderr
    assert machine.calls("python3") == [["-m", "venv", str(machine.root / "venv")]]
