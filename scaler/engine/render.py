"""The init script and clearml.conf that launched machines boot with.

Core renders its own parts through the same hooks it offers to plugins (see
:mod:`scaler.default_plugins.core`); this module holds core's fragments and the joining. Every value
that reaches the script is quoted with :func:`shlex.quote`; every value that reaches
clearml.conf is a quoted HOCON string (:func:`hocon_string`), and the conf is written with
``printf '%s'`` of one quoted word, so no value is ever interpreted by the shell or HOCON.
User scripts (config, vault, ~/.bashrc) each run in a bash of their own (:func:`user_script`):
whatever they do (``exit``, ``set -e``, ``set -u``), the agent starts and the machine shuts down
after it; what they export reaches the agent.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from scaler.config import redact
from scaler.config.model import is_no_docker
from scaler.errors import ConfigError
from scaler.types import RenderContext, ScriptPart, Secret, ServerInfo

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource, ScalerSettings
    from scaler.host import PluginHost

#: where the boot script installs clearml-agent; ``SCALER_AGENT_VENV`` on the machine overrides it
#: (an image that keeps its own virtual environment elsewhere)
AGENT_VENV = "/opt/clearml-agent-venv"
q = shlex.quote


def comment(text: str) -> str:
    """Text safe on a ``#`` comment line: a line break would end the comment and run the rest."""
    return " ".join(text.split())


# pyhocon (and the copies clearml vendors) decodes only these escapes; \b, \f and \uXXXX stay
# literal text, so other control characters are written raw, which it reads back as they are
_HOCON_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hocon_string(value: str) -> str:
    """A quoted HOCON string that pyhocon reads back as exactly ``value``."""
    return '"' + "".join(_HOCON_ESCAPES.get(ch, ch) for ch in value) + '"'


# Each user script (~/.bashrc, init_script, vault extra_vm_bash_script) runs in a bash of its own,
# so nothing it does ends this script before the agent starts and the machine shuts down: an
# `exit`, a `set -e` that trips, `set -u`, a trap or a `return` end that bash only. Its exit status is
# logged; the variables it exports (even when it exits early) are read back and reach the agent.
# The script arrives on standard input (a quoted here-document: the text as written, nothing expanded)
# and is sourced whole before it runs, so a `return` ends it and a `read` of its own reads nothing.
# The exports are written when it ends: an `exit` (also under a trap of its own), the end of the text
# or, through the EXIT trap, a failure under `set -e`/`set -u`.
_USER_SCRIPT_CHILD = "\n".join(
    [
        'scaler_exports_file="$SCALER_EXPORTS_FILE"; unset SCALER_EXPORTS_FILE',
        'scaler_hand_back() { unset -v PWD OLDPWD SHLVL; export -p > "$scaler_exports_file"; }',
        'exit() { local rc=$?; scaler_hand_back; builtin exit "${1:-$rc}"; }',
        "trap scaler_hand_back EXIT",
        ". /dev/stdin",
        "exit $?",
    ]
)
USER_SCRIPT_RUNNER = "\n".join(
    [
        'scaler_exports="$(mktemp 2>/dev/null || echo "$HOME/.clearml-scaler-exports")"',
        "scaler_user_script() {",
        '  : > "$scaler_exports"',
        f'  SCALER_EXPORTS_FILE="$scaler_exports" bash -c {q(_USER_SCRIPT_CHILD)} "$1"',
        '  echo "clearml-scaler: $1 exited with status $?"',
        "}",
    ]
)


def user_script(label: str, text: str) -> str:
    """Run ``text`` with :data:`USER_SCRIPT_RUNNER`, then take what it exported."""
    lines = set(text.splitlines())
    n = 0
    while f"SCALER_USER_SCRIPT_{n}" in lines:
        n += 1
    end = f"SCALER_USER_SCRIPT_{n}"
    return f"scaler_user_script {q(label)} <<'{end}'\n{text.rstrip()}\n{end}\n" + '. "$scaler_exports"'


@dataclass(frozen=True)
class AgentAuth:
    """The ClearML credentials the agents get: a key pair (written to their clearml.conf) and/or
    a token (``CLEARML_AUTH_TOKEN`` in the agent's environment, as ClearML's own autoscaler
    passes it); ``source`` says where they were read."""

    access_key: Secret
    secret_key: Secret
    token: Secret
    source: str

    @property
    def usable(self) -> bool:
        return bool(self.access_key and self.secret_key) or bool(self.token)


def agent_auth(config: Config, server: ServerInfo) -> AgentAuth:
    """The agents' credentials: ``scaler.agent_credentials`` when set (both keys), else the
    scaler's own: its key pair (``CLEARML_API_ACCESS_KEY``/``CLEARML_API_SECRET_KEY`` or
    clearml.conf) and ``CLEARML_AUTH_TOKEN``. Not checked: see :func:`check_agent_auth`."""
    creds = config.scaler.agent_credentials
    if creds.access_key or creds.secret_key:
        return AgentAuth(creds.access_key, creds.secret_key, Secret(""), "scaler.agent_credentials")
    return AgentAuth(server.access_key, server.secret_key, server.auth_token, "the scaler's own credentials")


def check_agent_auth(config: Config, server: ServerInfo) -> AgentAuth:
    """:func:`agent_auth`, or a :class:`ConfigError` that says where credentials are read from
    when the agents would get none they can log in with (a machine that boots without them
    never registers: it is only ever terminated as stuck)."""
    found = agent_auth(config, server)
    creds = config.scaler.agent_credentials
    if found.source == "scaler.agent_credentials" and not found.usable:
        given, missing = ("access_key", "secret_key") if creds.access_key else ("secret_key", "access_key")
        raise ConfigError(
            f"scaler.agent_credentials.{given} is set but {missing} is empty: give both (e.g. "
            f"{missing} = ${{?SCALER_AGENT_{missing.upper()}}}), or neither to let the agents use the scaler's own"
        )
    if not found.usable:
        conf = f"clearml.conf ({server.config_file})" if server.config_file else "clearml.conf (none found)"
        raise ConfigError(
            "no ClearML credentials for the agents: a machine would boot with none and never register. "
            "The agents use scaler.agent_credentials (access_key and secret_key, e.g. from "
            "SCALER_AGENT_ACCESS_KEY / SCALER_AGENT_SECRET_KEY), else the scaler's own: "
            f"CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY, api.credentials in {conf} "
            "(CLEARML_CONFIG_FILE, else ~/clearml.conf), or CLEARML_AUTH_TOKEN"
        )
    return found


def core_clearml_conf(config: Config, context: RenderContext) -> list[str]:
    server = context.server
    auth = agent_auth(config, server)
    lines = [
        "api {",
        f"  api_server: {hocon_string(server.api_host)}",
        f"  web_server: {hocon_string(server.web_host)}",
        f"  files_server: {hocon_string(server.files_host)}",
    ]
    if auth.access_key or auth.secret_key or not auth.token:
        lines += [
            "  credentials {",
            f"    access_key: {hocon_string(context.secret(auth.access_key))}",
            f"    secret_key: {hocon_string(context.secret(auth.secret_key))}",
            "  }",
        ]
    lines.append("}")
    git = config.scaler.git
    if git.user:
        lines.append(f"agent.git_user: {hocon_string(git.user)}")
    if git.password:
        lines.append(f"agent.git_pass: {hocon_string(context.secret(git.password))}")
    parts = ["\n".join(lines)]
    parts += [text for text in (config.scaler.extra_clearml_conf, *config.vault_clearml_conf) if text.strip()]
    return parts


def docker_image(settings: ScalerSettings, resource: Resource) -> str:
    """The image the agent of ``resource`` runs tasks in; empty: no docker. A resource's own
    ``docker_image`` wins (``none`` there: no docker whatever the default), an empty one takes
    ``default_docker_image``; ``null``, ``""`` and ``none`` (any case) mean no docker."""
    image = resource.docker_image or settings.default_docker_image
    return "" if is_no_docker(image) else image


# Each install step's output is kept aside and shown (its last lines, each with the prefix, on the
# console the cloud keeps: EC2's console output, GCE's serial port) only when the step fails.
STEP_RUNNER = "\n".join(
    [
        "scaler_step() {",
        '  local what="$1" log rc',
        "  shift",
        '  log="$(mktemp 2>/dev/null || echo "$HOME/.clearml-scaler-step.log")"',
        '  "$@" > "$log" 2>&1',
        "  rc=$?",
        '  if [ "$rc" -ne 0 ]; then',
        '    echo "clearml-scaler: ${what} failed with status ${rc}; its last lines:" >&2',
        '    tail -n 40 "$log" | while IFS= read -r line; do',
        '      printf \'clearml-scaler: %s failed: %s\\n\' "$what" "$line" >&2',
        "    done",
        "  fi",
        '  rm -f "$log"',
        '  return "$rc"',
        "}",
    ]
)


def core_script_parts(config: Config, resource: Resource, context: RenderContext) -> list[ScriptPart]:
    settings = config.scaler
    image = docker_image(settings, resource)
    prologue = "\n".join(
        [
            "#!/bin/bash",
            comment(f"# clearml-scaler init script: fleet {q(settings.name)}, resource {q(resource.name)}"),
            "# Values below are shell-quoted; do not run with `set -x` (it would print credentials).",
            "set -u",
            f"export SCALER_NAME={q(settings.name)}",
            f"export SCALER_RESOURCE={q(resource.name)}",
            f"export SCALER_QUEUE={q(resource.queue)}",
            f"export SCALER_WORKERS_PREFIX={q(settings.workers_prefix)}",
            'export HOME="${HOME:-/root}"',
            "scaler_fail() {",
            '  echo "clearml-scaler: $1; shutting down" >&2',
            "  shutdown -h now || poweroff",
            "  exit 1",
            "}",
        ]
    )
    identity = "\n".join(
        [
            'if [ -z "${SCALER_INSTANCE_ID:-}" ]; then scaler_fail "could not determine this machine\'s instance id"; fi',
            'export CLEARML_WORKER_ID="${SCALER_WORKERS_PREFIX}:${SCALER_RESOURCE}:${SCALER_INSTANCE_ID}"',
            'echo "clearml-scaler: worker id ${CLEARML_WORKER_ID}"',
        ]
    )
    user = []
    if not settings.exclude_bashrc:
        bashrc = user_script("~/.bashrc", '. "$HOME/.bashrc"')
        user.append(f'if [ -f "$HOME/.bashrc" ]; then\n{bashrc}\nfi')
    if resource.cpu_only:
        user.append("export NVIDIA_VISIBLE_DEVICES=none")
    for label, text in (
        ("scaler.init_script", settings.init_script),
        (f"resources.{resource.name}.init_script", resource.init_script),
        *((f"vault extra_vm_bash_script #{i + 1}", text) for i, text in enumerate(config.vault_scripts)),
    ):
        if text.strip():
            user.append(f"{comment(f'# --- {label} ---')}\n{user_script(label, text)}")
    if user:
        user.insert(0, USER_SCRIPT_RUNNER)
        user.append('rm -f "$scaler_exports"')
    requirement = "clearml-agent" + (settings.agent_version or "")
    apt_packages = "python3-venv python3-pip git"
    install = "\n".join(
        [
            STEP_RUNNER,
            f'scaler_venv="${{SCALER_AGENT_VENV:-{AGENT_VENV}}}"',
            "if ! command -v clearml-agent >/dev/null 2>&1 || [ -n " + q(settings.agent_version) + " ]; then",
            '  if ! python3 -m venv "$scaler_venv" >/dev/null 2>&1; then',
            f'    echo "clearml-scaler: python3 -m venv failed; installing {apt_packages} with apt-get"',
            "    export DEBIAN_FRONTEND=noninteractive",
            '    scaler_step "apt-get update" apt-get update -y',
            f'    scaler_step "apt-get install {apt_packages}" apt-get install -y {apt_packages}',
            '    scaler_step "python3 -m venv $scaler_venv" python3 -m venv "$scaler_venv"',
            "  fi",
            '  export PATH="$scaler_venv/bin:$PATH"',
            f"  if scaler_step {q('pip install ' + requirement)} pip install --upgrade {q(requirement)}; then",
            f"    echo {q('clearml-scaler: installed ' + requirement)}",
            "  else",
            f"    scaler_fail {q('installing clearml-agent failed (pip install ' + requirement + ', see above)')}",
            "  fi",
            "fi",
        ]
    )
    conf_text = context.clearml_conf or "\n".join(core_clearml_conf(config, context)) + "\n"
    conf_lines = [
        "umask 077",
        f"printf '%s' {q(conf_text)} > \"$HOME/clearml.conf\"",
        "umask 022",
        'export CLEARML_CONFIG_FILE="$HOME/clearml.conf"',
    ]
    token = agent_auth(config, context.server).token
    if token:  # as ClearML's autoscaler passes it (token-only setups, a scaler run by an agent)
        conf_lines.append(f"export CLEARML_AUTH_TOKEN={q(context.secret(token))}")
    conf = "\n".join(conf_lines)
    args = ["clearml-agent", "--config-file", '"$HOME/clearml.conf"', "daemon", "--queue", q(resource.queue)]
    if image:
        args += ["--docker", q(image)]
    if resource.cpu_only:
        args.append("--cpu-only")
    args += [q(arg) for arg in resource.extra_agent_args]
    start = "\n".join(
        [
            " ".join(args),
            "agent_rc=$?",
            'echo "clearml-scaler: clearml-agent exited with status ${agent_rc}"',
        ]
    )
    epilogue = "\n".join(
        [
            "# the agent is gone: stop billing (instances launch with shutdown behaviour 'terminate')",
            "shutdown -h now || poweroff",
        ]
    )
    parts = [ScriptPart(100, "prologue", prologue), ScriptPart(250, "worker identity", identity)]
    if user:
        parts.append(ScriptPart(300, "user scripts", "\n".join(user)))
    parts.append(ScriptPart(400, "install clearml-agent", install))
    if image:
        parts.append(ScriptPart(450, "docker check", docker_check(image)))
    parts += [
        ScriptPart(500, "clearml.conf", conf),
        ScriptPart(600, "start clearml-agent", start),
        ScriptPart(900, "shutdown", epilogue),
    ]
    return parts


def docker_check(image: str) -> str:
    """Says on the console when docker mode cannot work on this machine (the agent would take
    tasks and fail each one): docker missing, or its daemon not answering."""
    mode = f"docker mode (image {comment(image)})"
    hint = "tasks will fail; use a machine image with docker, install it in init_script, or set docker_image = none"
    missing = f"clearml-scaler: WARNING: {mode} but docker is not installed on this machine: {hint}"
    down = f"clearml-scaler: WARNING: {mode} but the docker daemon does not answer (docker info failed): {hint}"
    return "\n".join(
        [
            "if ! command -v docker >/dev/null 2>&1; then",
            f"  echo {q(missing)} >&2",
            "elif ! timeout 60 docker info >/dev/null 2>&1; then",
            f"  echo {q(down)} >&2",
            "else",
            f"  echo {q(f'clearml-scaler: {mode}: docker is ready')}",
            "fi",
        ]
    )


def _for_a_person(config: Config, context: RenderContext) -> Callable[[str], str]:
    """What a text goes through before it is shown: nothing for a machine; for a person
    (``reveal_secrets`` false) the masking of free text, which typed secrets alone do not cover
    (a password inside ``init_script``, a key inside ``extra_clearml_conf``, any plugin's part)."""
    if context.reveal_secrets:
        return lambda text: text
    known = redact.known_secrets(config, context.server)
    return lambda text: redact.redact(text, known)


def render_clearml_conf(host: PluginHost, config: Config, resource: Resource, context: RenderContext) -> str:
    """The agents' clearml.conf; a :class:`ConfigError` when they would have no credentials."""
    config = config.for_provider(resource.provider_name or config.provider_name)
    check_agent_auth(config, context.server)
    shown = _for_a_person(config, context)
    return "\n".join(shown(p) for p in host.clearml_conf_parts(config, resource, config.provider_name, context)) + "\n"


def render_init_script(host: PluginHost, config: Config, resource: Resource, context: RenderContext) -> str:
    """The whole init script for ``resource``: every plugin's parts, sorted by order; a
    :class:`ConfigError` when the agents would have no credentials (:func:`check_agent_auth`).
    Rendered for the resource's provider: its parts, its vault texts."""
    config = config.for_provider(resource.provider_name or config.provider_name)
    context = replace(context, clearml_conf=render_clearml_conf(host, config, resource, context))
    parts = host.init_script_parts(config, resource, config.provider_name, context)
    shown = _for_a_person(config, context)
    body = []
    for part in parts:
        text = shown(part.text)
        body.append(text if part.order == 100 else f"{comment(f'# --- {part.name} ---')}\n{text}")
    return "\n\n".join(body).rstrip() + "\n"
