"""``scaler init``: ask what ClearML's autoscaler wizard asks, check each answer as it is
given, and write a commented HOCON file that ``validate-config`` accepts.

Every question has a command-line flag; a flag's answer is checked the same way as a typed
one. Without a terminal (or with ``--no-interactive``) nothing is read from standard input:
questions with a default take it, and the ones without are reported all at once, by flag.
Secrets are written to the configuration as ``${?VAR}`` substitutions, never in clear; the
values typed (or passed as flags) go to a separate environment file readable by its owner.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from scaler.config.catalog import DEFAULT_ENV, field_at
from scaler.config.fields import Field, check_section, format_duration
from scaler.config.writer import EnvRef, render_config

NO_DEFAULT: Any = object()

#: per-resource keys of ``--resource key=value,...`` and what they mean
RESOURCE_KEYS = {
    "name": "resource name",
    "queue": "ClearML queue it serves",
    "instance_type": "instance / machine type",
    "spot": "spot instances (true/false)",
    "zone": "availability zone (GCP: zones, space-separated)",
    "image": "AMI id (AWS) or boot image (GCP)",
    "disk": "boot disk size in GB",
    "max_instances": "most machines at once",
    "cpu_only": "run the agent with --cpu-only (true/false)",
    "init_script": "bash run before the agent (@FILE reads a file)",
}


class WizardError(Exception):
    """Answers are missing (no terminal to ask on) or invalid (given as flags)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def resource_hint(provider: str | None) -> str:
    """The keys of ``--resource`` that have no default for ``provider``."""
    return {
        "aws": "name=…,instance_type=…,image=ami-…",
        "gcp": "name=…,instance_type=…,zone=…,image=…",
    }.get(provider or "", "name=…")


def parse_resource_spec(spec: str) -> dict[str, str]:
    """``name=gpu,queue=gpu,spot=true`` → dict; unknown keys are an error."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise WizardError(f"--resource {spec!r}: {item.strip()!r} is not key=value")
        if name not in RESOURCE_KEYS:
            raise WizardError(f"--resource {spec!r}: unknown key {name!r}; keys: {', '.join(RESOURCE_KEYS)}")
        out[name] = value.strip()
    return out


def _as_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("y", "yes", "true", "1", "on"):
        return True
    if lowered in ("n", "no", "false", "0", "off"):
        return False
    return None


def check_field(spec: Field, raw: Any, path: str) -> tuple[Any, str | None]:
    """The normalised value of one answer, or the validation message of its schema field."""
    checked = check_section({spec.name: raw}, (spec,), path.rsplit(".", 1)[0] if "." in path else "")
    if checked.problems:
        return None, checked.problems[0].message
    return checked.values.get(spec.name), None


@dataclass
class Answers:
    """What the wizard collected: the configuration tree and the secrets typed."""

    tree: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> value


class Wizard:
    def __init__(
        self,
        flags: Mapping[str, Any],
        *,
        interactive: bool,
        say: Callable[[str], None],
        resources: list[dict[str, str]] | None = None,
    ) -> None:
        self.flags = {k: v for k, v in flags.items() if v is not None}
        self.interactive = interactive
        self.say = say
        self.resource_specs = resources or []
        self.missing: list[str] = []
        self.errors: list[str] = []
        self.secrets: dict[str, str] = {}
        self._region = ""

    # -- asking ----------------------------------------------------------------------------

    def ask(
        self,
        flag: str,
        question: str,
        *,
        spec: Field | None = None,
        path: str = "",
        default: Any = NO_DEFAULT,
        given: Mapping[str, Any] | None = None,
        key: str | None = None,
        secret: bool = False,
        convert: Callable[[str], tuple[Any, str | None]] | None = None,
    ) -> Any:
        """One answer: from the flag (or ``given[key]``), else a prompt, else the default."""
        source = given if given is not None else self.flags
        name = key or flag
        check = convert or (lambda raw: check_field(spec, raw, path) if spec else (raw, None))
        if name in source and source[name] is not None:
            raw = source[name]
            if isinstance(raw, str) and not raw.strip() and default is NO_DEFAULT:
                self.errors.append(f"{flag}: an answer is required")
                return None
            value, error = check(raw)
            if error:
                self.errors.append(f"{flag}: {error}")
            return value
        if not self.interactive:
            if default is NO_DEFAULT:
                self.missing.append(flag)
                return None
            value, error = check(default)
            return default if error else value
        while True:
            shown = None if default is NO_DEFAULT else default
            raw = typer.prompt(
                question,
                default=shown,
                hide_input=secret,
                show_default=bool(shown) and not secret,
            )
            value, error = check(raw)
            if not error:
                return value
            self.say(f"  ✗ {error}")

    def confirm(
        self, flag: str, question: str, default: bool, *, given: Mapping[str, Any] | None = None, key: str | None = None
    ) -> bool:
        source = given if given is not None else self.flags
        name = key or flag
        if name in source and source[name] is not None:
            value = source[name]
            if isinstance(value, bool):
                return value
            parsed = _as_bool(str(value))
            if parsed is None:
                self.errors.append(f"{flag}: must be true or false, got {value!r}")
                return default
            return parsed
        if not self.interactive:
            return default
        return bool(typer.confirm(question, default=default))

    def text_or_file(self, raw: str) -> tuple[Any, str | None]:
        if raw.startswith("@"):
            try:
                return Path(raw[1:]).expanduser().read_text(encoding="utf-8"), None
            except OSError as exc:
                return None, f"cannot read {raw[1:]}: {exc.strerror or exc}"
        return raw, None

    def secret(self, flag: str, question: str, env: str) -> EnvRef:
        """A secret: asked masked, written as ``${?ENV}``, its value kept for the env file."""
        if env in os.environ and flag not in self.flags:
            self.say(f"  {question}: taken from ${env} when the scaler runs")
            return EnvRef(env)
        value = self.ask(flag, question, default="", secret=True)
        if value:
            self.secrets[env] = str(value)
        return EnvRef(env)

    # -- the questions ----------------------------------------------------------------------

    def run(self, provider: str, providers: list[str]) -> Answers:
        from scaler.config.sections import RESOURCE_FIELDS, SCALER_SECTION

        if provider not in providers:
            raise WizardError(f"unknown provider {provider!r}; installed providers: {', '.join(providers)}")
        scaler_fields = {f.name: f for f in SCALER_SECTION}
        self.say(f"Fleet ({provider})")
        name = self.ask(
            "--name",
            "Name of this scaler (tags every machine it launches)",
            spec=scaler_fields["name"],
            path="scaler.name",
            default=f"{provider}-autoscaler",
        )
        prefix = self.ask(
            "--workers-prefix",
            "Worker id prefix",
            spec=scaler_fields["workers_prefix"],
            path="scaler.workers_prefix",
            default=f"dynamic_{provider}",
        )
        cloud = self._cloud(provider)

        self.say("Git credentials the agents clone repositories with")
        git_user = self.ask(
            "--git-user",
            "Git user (empty: none)",
            spec=field_at(("scaler", "git", "user")),
            path="scaler.git.user",
            default="",
        )
        git_password = self.secret(
            "--git-token", "Git token or password (hidden; empty: none)", DEFAULT_ENV["scaler.git.password"]
        )
        docker = self.ask(
            "--docker-image",
            "Default docker image for tasks",
            spec=scaler_fields["default_docker_image"],
            path="scaler.default_docker_image",
            default=scaler_fields["default_docker_image"].default,
        )

        resources = self._resources(provider, {f.name: f for f in RESOURCE_FIELDS})

        self.say("Timing")
        idle = self.ask(
            "--max-idle-time",
            "Terminate a machine idle for (e.g. 15m)",
            spec=scaler_fields["max_idle_time"],
            path="scaler.max_idle_time",
            default="15m",
        )
        polling = self.ask(
            "--polling-interval",
            "Check the queues every (e.g. 30s)",
            spec=scaler_fields["polling_interval"],
            path="scaler.polling_interval",
            default="30s",
        )
        self._raise_if_incomplete()

        scaler: dict[str, Any] = {
            "name": name,
            "workers_prefix": prefix,
            "polling_interval": format_duration(polling),
            "max_idle_time": format_duration(idle),
            "default_docker_image": docker,
            "git": {"user": git_user, "password": git_password},
        }
        tree: dict[str, Any] = {"scaler": scaler}
        if cloud:
            tree[provider] = cloud
        tree["resources"] = resources
        return Answers(tree, dict(self.secrets))

    def _raise_if_incomplete(self) -> None:
        if self.errors:
            raise WizardError("invalid answers:\n  " + "\n  ".join(self.errors))
        if self.missing:
            flags = list(dict.fromkeys(self.missing))
            raise WizardError(
                "no terminal to ask on (standard input is not a TTY; use --interactive to answer from it anyway); "
                f"pass {', '.join(flags)}"
            )

    def _cloud(self, provider: str) -> dict[str, Any]:
        if provider == "aws":
            return self._aws()
        if provider == "gcp":
            return self._gcp()
        return {}

    def _aws(self) -> dict[str, Any]:
        self.say("AWS")
        out: dict[str, Any] = {}
        out["region"] = self.ask(
            "--region", "AWS region", spec=field_at(("aws", "region")), path="aws.region", default="us-east-1"
        )
        self._region = out["region"] or ""
        use_role = self.confirm(
            "--use-iam-role",
            "Use the default AWS credential chain (IAM role, profile, environment)?",
            default=True,
        )
        out["use_iam_role"] = use_role
        if not use_role:
            out["access_key_id"] = self.secret(
                "--aws-access-key-id", "AWS access key id (hidden)", DEFAULT_ENV["aws.access_key_id"]
            )
            out["secret_access_key"] = self.secret(
                "--aws-secret-access-key", "AWS secret access key (hidden)", DEFAULT_ENV["aws.secret_access_key"]
            )
        profile = self.ask(
            "--iam-instance-profile",
            "Instance profile the machines run with (name or ARN; empty: none)",
            spec=field_at(("aws", "iam_instance_profile")),
            path="aws.iam_instance_profile",
            default="",
        )
        if profile:
            out["iam_instance_profile"] = profile
        return out

    def _gcp(self) -> dict[str, Any]:
        self.say("GCP")
        out: dict[str, Any] = {}
        project = self.ask(
            "--project",
            "GCP project id (empty: the credentials' project)",
            spec=field_at(("gcp", "project")),
            path="gcp.project",
            default="",
        )
        if project:
            out["project"] = project

        def existing_file(raw: str) -> tuple[Any, str | None]:
            if raw and not Path(raw).expanduser().is_file():
                return None, f"no such file: {raw}"
            return raw, None

        credentials = self.ask(
            "--credentials-file",
            "Service account key file (empty: Application Default Credentials)",
            default="",
            convert=existing_file,
        )
        if credentials:
            out["credentials_file"] = credentials
        return out

    def _resources(self, provider: str, fields: dict[str, Field]) -> list[dict[str, Any]]:
        resources: list[dict[str, Any]] = []
        specs = list(self.resource_specs)
        if not specs and not self.interactive:
            self.missing.append("--resource " + resource_hint(provider))
            return resources
        index = 0
        while True:
            given = specs[index] if index < len(specs) else {}
            resources.append(self._resource(provider, fields, index, given, [r.get("name") for r in resources]))
            index += 1
            if index < len(specs):
                continue
            if specs or not self.interactive or not typer.confirm("Add another resource?", default=False):
                break
        return resources

    def _resource(
        self, provider: str, fields: dict[str, Field], index: int, given: dict[str, str], taken: list[Any]
    ) -> dict[str, Any]:
        where = f"resources[{index}]"
        self.say(f"Resource {index + 1}")

        def flag(key: str) -> str:
            return f"--resource {key}=… (resource {index + 1})"

        def unique_name(raw: str) -> tuple[Any, str | None]:
            value, error = check_field(fields["name"], raw, f"{where}.name")
            if not error and value in taken:
                return None, f"a resource named {value!r} already exists"
            return value, error

        name = self.ask(flag("name"), "Resource name (e.g. gpu-a10)", given=given, key="name", convert=unique_name)
        queue = self.ask(
            flag("queue"),
            "ClearML queue it serves",
            spec=fields["queue"],
            path=f"{where}.queue",
            default=name or NO_DEFAULT,
            given=given,
            key="queue",
        )
        out: dict[str, Any] = {"name": name, "queue": queue}
        section: dict[str, Any] = {}
        if provider == "aws":
            section["instance_type"] = self.ask(
                flag("instance_type"),
                "EC2 instance type (e.g. g5.xlarge)",
                spec=field_at((*_res(), "aws", "instance_type")),
                path=f"{where}.aws.instance_type",
                given=given,
                key="instance_type",
            )
        elif provider == "gcp":
            section["machine_type"] = self.ask(
                flag("instance_type"),
                "Machine type (e.g. g2-standard-8)",
                spec=field_at((*_res(), "gcp", "machine_type")),
                path=f"{where}.gcp.machine_type",
                given=given,
                key="instance_type",
            )
        elif provider == "simulated":
            section["instance_type"] = self.ask(
                flag("instance_type"), "Instance type label", default="sim.medium", given=given, key="instance_type"
            )
        out["spot"] = self.confirm(flag("spot"), "Spot instances?", default=False, given=given, key="spot")
        if provider == "aws":
            zone = self.ask(
                flag("zone"),
                "Availability zone (empty: any)",
                default="",
                given=given,
                key="zone",
                convert=self._aws_zone(f"{where}.aws.availability_zone"),
            )
            if zone:
                section["availability_zone"] = zone
            section["ami_id"] = self.ask(
                flag("image"),
                "AMI id (with docker and python3)",
                spec=field_at((*_res(), "aws", "ami_id")),
                path=f"{where}.aws.ami_id",
                given=given,
                key="image",
            )
            disk = self.ask(
                flag("disk"),
                "Root volume size (GiB)",
                spec=field_at((*_res(), "aws", "ebs", "size_gb")),
                path=f"{where}.aws.ebs.size_gb",
                default="100",
                given=given,
                key="disk",
            )
            section["ebs"] = {"size_gb": disk}
        elif provider == "gcp":
            section["zones"] = self.ask(
                flag("zone"),
                "Zones, tried in order (space-separated, e.g. us-central1-a us-central1-b)",
                given=given,
                key="zone",
                convert=self._gcp_zones(f"{where}.gcp.zones"),
            )
            section["image"] = self.ask(
                flag("image"),
                "Boot image or family (e.g. projects/debian-cloud/global/images/family/debian-12)",
                spec=field_at((*_res(), "gcp", "image")),
                path=f"{where}.gcp.image",
                given=given,
                key="image",
            )
            section["disk_size_gb"] = self.ask(
                flag("disk"),
                "Boot disk size (GB)",
                spec=field_at((*_res(), "gcp", "disk_size_gb")),
                path=f"{where}.gcp.disk_size_gb",
                default="100",
                given=given,
                key="disk",
            )
        out["max_instances"] = self.ask(
            flag("max_instances"),
            "Most machines of this resource at once",
            spec=fields["max_instances"],
            path=f"{where}.max_instances",
            default="2",
            given=given,
            key="max_instances",
        )
        if "cpu_only" in given:
            out["cpu_only"] = self.confirm(flag("cpu_only"), "CPU only?", default=False, given=given, key="cpu_only")
        script = self.ask(
            flag("init_script"),
            "Bash to run before the agent starts (one line, @FILE to read a file; empty: none)",
            default="",
            given=given,
            key="init_script",
            convert=self.text_or_file,
        )
        if script:
            out["init_script"] = script
        out[provider] = section
        return out

    def _aws_zone(self, path: str) -> Callable[[str], tuple[Any, str | None]]:
        spec = field_at((*_res(), "aws", "availability_zone"))

        def check(raw: str) -> tuple[Any, str | None]:
            if not raw:
                return "", None
            assert spec is not None
            value, error = check_field(spec, raw, path)
            region = getattr(self, "_region", "")
            if not error and region and not str(value).startswith(region):
                return None, f"zone {value} is not in region {region}"
            return value, error

        return check

    @staticmethod
    def _gcp_zones(path: str) -> Callable[[Any], tuple[Any, str | None]]:
        spec = field_at((*_res(), "gcp", "zones"))

        def check(raw: Any) -> tuple[Any, str | None]:
            items = raw if isinstance(raw, list) else str(raw).replace(",", " ").split()
            if not items:
                return None, "at least one zone is required"
            assert spec is not None
            return check_field(spec, items, path)

        return check


def _res() -> tuple[str, int]:
    return ("resources", 0)


def render(answers: Answers, provider: str, file: str = "FILE") -> str:
    header = (
        f"clearml-scaler configuration for provider '{provider}', written by `scaler init`.\n"
        f"Check it: scaler validate-config {file} --provider {provider}\n"
        f"Try it:   scaler run --provider {provider} --config {file} --once --dry-run"
    )
    env = sorted({ref.name for ref in _env_refs(answers.tree)})
    if env:
        header += "\nSecrets are read from the environment: " + ", ".join(env)
    return render_config(answers.tree, header=header)


def _env_refs(value: Any) -> list[EnvRef]:
    if isinstance(value, EnvRef):
        return [value]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in _env_refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _env_refs(item)]
    return []


def env_file_text(secrets: Mapping[str, str]) -> str:
    lines = ["# secrets for clearml-scaler (written by `scaler init`); keep this file private", ""]
    lines += [f"{name}={shlex.quote(value)}" for name, value in sorted(secrets.items())]
    return "\n".join(lines) + "\n"
