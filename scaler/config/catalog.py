"""Which schema :class:`~scaler.config.fields.Field` describes each path of a configuration.

Used by the tools that read or write whole configuration files (``scaler init``,
``scaler export``/``import``): to comment the keys they write, to spell durations, and to
know which values are secrets. Core's sections come from :mod:`scaler.config.sections`; the
provider sections of the plugins shipped with the project come from their schema modules
(imported lazily, they are light). A key nobody describes (a third-party plugin's section,
inside a free-form object) is judged by its name: anything that looks like a password, a
token or a key is treated as a secret.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence

from scaler.config.fields import Field, Schema
from scaler.config.sections import RESOURCE_FIELDS, SCALER_SECTION

Path = tuple[str | int, ...]

#: provider name -> (module, top-level section schema, per-resource section schema)
PROVIDER_SCHEMAS = {
    "aws": ("scaler_aws.schema", "AWS_SECTION", "AWS_RESOURCE_SECTION"),
    "gcp": ("scaler_gcp.schema", "GCP_SECTION", "GCP_RESOURCE_SECTION"),
    "simulated": ("scaler.default_plugins.simulated", "SECTION", "RESOURCE_SECTION"),
}

#: key names that hold secrets when no schema says otherwise
SECRET_NAME = re.compile(r"(secret|passw|token|api_?key|private_?key|access_?key)", re.IGNORECASE)

#: the environment variables the docs and examples use for core's and the shipped plugins' secrets
DEFAULT_ENV = {
    "scaler.git.password": "SCALER_GIT_TOKEN",
    "scaler.agent_credentials.access_key": "SCALER_AGENT_ACCESS_KEY",
    "scaler.agent_credentials.secret_key": "SCALER_AGENT_SECRET_KEY",
    "aws.access_key_id": "AWS_ACCESS_KEY_ID",
    "aws.secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws.session_token": "AWS_SESSION_TOKEN",
}

SECTION_DOCS = {
    "scaler": "Settings of the whole fleet.",
    "resources": "One entry per kind of machine, filled in this order for its queue.",
    "aws": "AWS settings of the fleet (credentials come from the default chain unless set here).",
    "gcp": "GCP settings of the fleet (credentials: Application Default Credentials unless set here).",
    "simulated": "The built-in simulated cloud (no account needed).",
}


@functools.cache
def provider_schema(name: str) -> tuple[Schema, Schema] | None:
    """(top-level section, per-resource section) of a provider, when known and installed."""
    spec = PROVIDER_SCHEMAS.get(name)
    if spec is None:
        return None
    module_name, top, per_resource = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return tuple(getattr(module, top)), tuple(getattr(module, per_resource))


def _walk(fields: Sequence[Field], rest: Path) -> Field | None:
    if not rest:
        return None
    found = next((f for f in fields if f.name == rest[0]), None)
    if found is None or len(rest) == 1:
        return found
    if found.kind == "section":
        return _walk(found.fields, rest[1:])
    return None  # inside a free-form object or a list


def field_at(path: Path) -> Field | None:
    """The field describing ``path`` (``("resources", 0, "aws", "ebs", "size_gb")``), if any."""
    if not path:
        return None
    head = path[0]
    if head == "scaler":
        return _walk(SCALER_SECTION, path[1:])
    if head == "resources":
        if len(path) < 3 or not isinstance(path[1], int):
            return None
        found = _walk(RESOURCE_FIELDS, path[2:])
        if found is not None:
            return found
        schema = provider_schema(str(path[2]))
        return _walk(schema[1], path[3:]) if schema else None
    schema = provider_schema(str(head))
    return _walk(schema[0], path[1:]) if schema else None


def doc_at(path: Path) -> str:
    """What the key at ``path`` means (for comments)."""
    if len(path) == 1 and isinstance(path[0], str):
        return SECTION_DOCS.get(path[0], f"Settings of the '{path[0]}' plugin.")
    if len(path) == 3 and path[0] == "resources" and isinstance(path[2], str) and provider_schema(path[2]):
        return f"This resource's {path[2]} settings."
    found = field_at(path)
    return found.doc if found is not None else ""


def is_secret(path: Path) -> bool:
    found = field_at(path)
    if found is not None:
        return found.kind == "secret"
    last = path[-1] if path else ""
    return isinstance(last, str) and bool(SECRET_NAME.search(last))


def is_duration(path: Path) -> bool:
    found = field_at(path)
    return found is not None and found.kind == "duration"


def path_str(path: Path) -> str:
    """``resources[0].aws.ebs.size_gb``: the spelling of validation messages."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def parse_path(text: str) -> Path:
    """The inverse of :func:`path_str`."""
    parts: list[str | int] = []
    for index, name in _PART.findall(text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def default_env(path: Path | str) -> str:
    """The environment variable a secret at ``path`` is read from when nobody chose one."""
    text = path if isinstance(path, str) else path_str(path)
    if text in DEFAULT_ENV:
        return DEFAULT_ENV[text]
    return "SCALER_" + re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")
