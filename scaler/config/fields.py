"""A small declarative schema for config sections, shared by core and provider plugins.

One pass over a section both validates it (every problem at once, each with its dotted
path, what was found and what would be valid, and the closest known key for a typo) and
normalises it (defaults applied, durations in seconds, secrets wrapped in :class:`Secret`).
Plugins declare their sections (:class:`Section`) with the same :class:`Field` as core's own,
so core checks them the same way and their errors read like core's. Pure: no I/O.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaler.config.redact import is_secret_name, redact
from scaler.types import Problem, Secret

_MISSING: Any = object()

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``/``15m``/``2h``/``1d``, plain numbers (minutes) or pyhocon's parsed
    duration objects. Raises ``ValueError`` with a message naming what would be valid."""
    try:
        return _parse_duration(value)
    except OverflowError:  # an integer beyond any float (10**400 minutes)
        return float("inf")


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 30s, 15m, 2h or a number of minutes, got {shown_value(value)}")
    if isinstance(value, (int, float)):
        return float(value) * 60
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    # dateutil.relativedelta, which pyhocon returns for `30s`, `15m`, `2h`, `1d` literals
    if hasattr(value, "normalized") and hasattr(value, "seconds") and hasattr(value, "days"):
        if getattr(value, "months", 0) or getattr(value, "years", 0):
            raise ValueError("months and years are not allowed in durations; use days (d) or hours (h)")
        return float(
            value.days * 86400 + value.hours * 3600 + value.minutes * 60 + value.seconds + value.microseconds / 1e6
        )
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            number, unit = float(match.group(1)), (match.group(2) or "m")
            key = "ms" if unit == "ms" else unit[0]
            return number * _UNIT_SECONDS[key]
    raise ValueError(f"must be a duration like 30s, 15m, 2h or a number of minutes, got {shown_value(value)}")


#: the longest duration any field accepts unless it declares its own ``max`` (a year)
MAX_DURATION = 365 * 86400.0
#: a number without a unit longer than this (in minutes: over a day) is warned about: it may be
#: seconds written the way other tools count them (``max_idle_time = 900`` is 15 hours)
LONG_BARE_DURATION = 86400.0
#: the phrase of the hint that goes with a number without a unit (see :func:`bare_minutes`)
BARE_MINUTES_HINT = "without a unit is"

_BARE_NUMBER_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def bare_minutes(value: Any) -> float | None:
    """The number of a duration written without a unit (``900``, ``"900"``: minutes, ClearML's
    convention), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        match = _BARE_NUMBER_RE.match(value)
        return float(match.group(1)) if match else None
    return None


def _minutes_hint(number: float, spec: Field, limit: float, spelt: str = "") -> str:
    """``1500 without a unit is 1500 minutes; did you mean 1500s?`` (the question only when that
    many seconds would be valid)."""
    hint = f"{_number(number)} {BARE_MINUTES_HINT} {_number(number)} minutes{spelt}"
    if (spec.min is None or number >= spec.min) and number <= limit:
        hint += f"; did you mean {_number(number)}s?"
    return hint


def _spelt(seconds: float) -> str:
    """``1d9h20m``: a duration in days, hours, minutes and seconds."""
    out, rest = "", round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def _number(number: float) -> str:
    """``1e+30``; an integer too large for a float (10**400) is described, not converted."""
    try:
        return f"{number:g}"
    except OverflowError:
        return "a number beyond ±1e+308"


def _long_duration(seconds: float) -> str:
    return format_duration(seconds) if seconds < 1e9 else f"{seconds:.3g}s"


def format_duration(seconds: float) -> str:
    """The shortest exact ``30s``/``15m``/``2h`` spelling of a number of seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class FieldKind(str, enum.Enum):
    """What a :class:`Field` holds. A ``str`` enum: ``Field("region", "str")`` and
    ``Field("region", FieldKind.STR)`` are the same declaration."""

    STR = "str"  #: a one-line string
    TEXT = "text"  #: a multi-line string (scripts, HOCON snippets)
    SECRET = "secret"  #: a string that is never printed; normalised to :class:`Secret`
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration"  #: ``30s``/``15m``/``2h``/``1d`` or minutes; normalised to seconds (float)
    CHOICE = "choice"  #: one of :attr:`Field.choices`
    LIST = "list"  #: a list of strings (a single ``"a,b"`` string is split on commas)
    DICT = "dict"  #: a free-form mapping (e.g. a request body merged as is)
    SECTION = "section"  #: a nested mapping described by :attr:`Field.fields`
    ANY = "any"  #: anything, unchecked

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Ask:
    """A ``scaler init`` question that needs more than its text (``Field.ask = "…"`` is enough
    for most fields).

    ``default`` is the proposed answer when it is not the field's default; ``when`` decides
    from the answers already given in the same section (normalised values by key) whether the
    question applies (e.g. ask for keys only when ``use_iam_role`` is false); ``check`` refuses
    an answer with a message (a check that only makes sense while writing a configuration, such
    as "the file exists here"); ``key`` is a short name ``scaler init --resource key=…`` accepts
    for a resource field besides its own name: providers share ``instance_type``, ``image``,
    ``zone`` and ``disk``, so one ``--resource`` spelling works on every cloud.
    """

    question: str
    default: Any = _MISSING
    when: Callable[[Mapping[str, Any]], bool] | None = None
    check: Callable[[Any], str | None] | None = None
    key: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


@dataclass(frozen=True)
class Field:
    """One key of a config section.

    ``kind`` is a :class:`FieldKind` (or its string spelling: ``str``, ``text``, ``secret``,
    ``int``, ``float``, ``bool``, ``duration``, ``choice``, ``list``, ``dict``, ``section`` with
    nested :attr:`fields`, ``any``). Core validates and normalises a value from the other
    attributes; ``env``, ``vault`` and ``ask`` say how the value reaches the configuration.
    """

    name: str
    kind: FieldKind | str
    doc: str = ""
    default: Any = _MISSING
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # full-match regex for str values / list items
    pattern_hint: str = ""  # human spelling of the pattern, e.g. "ami-<8 or 17 hex digits>"
    non_empty: bool = False
    fields: tuple[Field, ...] = ()
    check: Callable[[Any], str | None] | None = None  # extra check on the normalised value
    example: str = ""
    #: a secret's environment variable: what ``init``/``import`` write as ``${?ENV}`` (empty:
    #: ``SCALER_`` and the path in capitals, e.g. ``SCALER_MYCLOUD_API_TOKEN``)
    env: str = ""
    #: ClearML vault keys (``auto_scaler.v1.<provider> { <key> = … }``) that set this field;
    #: top-level section fields only (a vault sets fleet-wide settings, not one resource's)
    vault: tuple[str, ...] = ()
    #: keys of a resource in ClearML's own autoscaler configuration
    #: (``configurations.resource_configurations.<name> { <key> = … }``) that set this resource
    #: field, for ``scaler import``; resource fields only (top-level settings map through ``vault``)
    clearml: tuple[str, ...] = ()
    #: the ``scaler init`` question for a field worth asking (empty: not asked, default taken);
    #: an :class:`Ask` for a conditional question, a proposed answer or a ``--resource`` key
    ask: str | Ask = ""

    def __post_init__(self) -> None:
        # a misspelt kind fails where it is declared, not when a configuration is checked
        object.__setattr__(self, "kind", FieldKind(self.kind))

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    @property
    def question(self) -> Ask | None:
        """The ``scaler init`` question as an :class:`Ask` (``None``: not asked)."""
        if isinstance(self.ask, Ask):
            return self.ask
        return Ask(self.ask) if self.ask else None


@dataclass(frozen=True)
class Section:
    """A configuration section a plugin declares through ``scaler_config_sections``.

    ``fields`` describe the top-level ``<name> { ... }`` section, ``resource_fields`` each
    resource's ``resources[i].<name> { ... }``. Core validates, normalises, masks, documents,
    maps vault keys onto and asks for both from this declaration alone. A provider names its
    section after itself (the entry-point name): that section is required when the provider is
    the one chosen with ``--provider`` (its resource subsection too, when a resource field is
    required), and only checked where it is written otherwise. A section of a plugin that is
    no provider applies to every run.

    ``inline = True`` puts ``resource_fields`` on each resource itself (``resources[i].<key>``)
    instead of in a subsection: that is how core declares the keys every resource has
    (``name``, ``queue``, ``max_instances``, ...) in its section ``resources``.
    """

    name: str
    doc: str
    fields: tuple[Field, ...] = ()
    resource_fields: tuple[Field, ...] = ()
    inline: bool = False

    @property
    def resource_required(self) -> bool:
        """Whether a resource needs its ``<name> { … }`` subsection (a field of it is required)."""
        return any(f.required for f in self.resource_fields)


@dataclass(frozen=True)
class ResourceSettings:
    """One resource as ``scaler_validate_config`` sees it, for the section being checked.

    ``settings`` is the resource's normalised ``<section> { … }`` (for an inline section: the
    resource's own keys), ``common`` its normalised common keys (``name``, ``queue``, ``spot``,
    ...), ``path`` the prefix of problems about ``settings`` (``resources[1].mycloud``) and
    ``written`` the keys of ``settings`` written in the configuration (the others are defaults).
    A key whose value is invalid is absent from both mappings: its problem is already reported.
    """

    index: int
    path: str
    settings: Mapping[str, Any]
    common: Mapping[str, Any]
    written: frozenset[str] = frozenset()


Schema = Sequence[Field]


@dataclass
class Checked:
    """Result of :func:`check_section`: normalised values plus every problem found."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def suggest(key: str, known: Sequence[str], *, list_all: bool = True) -> str:
    """``; did you mean 'max_idle_time'?`` for a near miss, else the list of valid keys."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid keys: {', '.join(sorted(known))}" if known and list_all else ""


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return type(value).__name__


#: what a key or a token looks like: long, no spaces, and mixed-case letters with digits, or
#: capitals with digits (ClearML and AWS access keys), or long hexadecimal
_KEY_LIKE = re.compile(
    r"(?=\S*[a-z])(?=\S*[A-Z])(?=\S*\d)\S{20,}|(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{16,}|[0-9a-fA-F]{32,}"
)
_SHOWN_LENGTH = 60


def shown_value(value: Any, *, secret: bool = False) -> str:
    """A wrong value as a message quotes it: ``'terminat'``. Never a secret: for a secret field
    (``secret``) or a string that looks like a key or a token, only what it is (``a string of 40
    characters``); otherwise at most 60 characters, with what looks like a secret inside masked
    (:func:`scaler.config.redact.redact`)."""
    if isinstance(value, str):
        if secret or _KEY_LIKE.fullmatch(value):
            return f"a string of {len(value)} characters"
        text = redact(value)
        return repr(text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "...")
    if secret or not isinstance(value, (bool, int, float)) or value is None:
        return type_name(value)
    return repr(value)


def _normalise(spec: Field, value: Any, path: str, problems: list[Problem]) -> Any:
    """Normalise one present value; append problems and return _MISSING when invalid."""

    def bad(message: str) -> Any:
        problems.append(Problem(path, message))
        return _MISSING

    kind = spec.kind
    secret = kind == FieldKind.SECRET or is_secret_name(spec.name)

    def got(wrong: Any) -> str:
        return shown_value(wrong, secret=secret)

    if kind == FieldKind.ANY:
        return value
    if kind == FieldKind.SECRET and isinstance(value, Secret):
        value = value.reveal()
    if kind in (FieldKind.STR, FieldKind.TEXT, FieldKind.SECRET, FieldKind.CHOICE):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return bad(f"must be a string, got {type_name(value)}")
        text = str(value)
        if kind == FieldKind.CHOICE and text not in spec.choices:
            return bad(
                f"must be one of {', '.join(spec.choices)}, got {got(text)}{suggest(text, spec.choices, list_all=False)}"
            )
        if spec.non_empty and not text.strip():
            return bad("must not be empty")
        if spec.pattern and text and not re.fullmatch(spec.pattern, text):
            return bad(f"must look like {spec.pattern_hint or spec.pattern}, got {got(text)}")
        return Secret(text) if kind == FieldKind.SECRET else text
    if kind == FieldKind.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        return bad(f"must be true or false, got {got(value)}")
    if kind in (FieldKind.INT, FieldKind.FLOAT):
        number: float
        if isinstance(value, bool):
            return bad(f"must be a number, got {got(value)}")
        if isinstance(value, (int, float)):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value) if kind == FieldKind.INT else float(value)
            except ValueError:
                return bad(f"must be {'an integer' if kind == FieldKind.INT else 'a number'}, got {got(value)}")
        else:
            return bad(f"must be a number, got {type_name(value)}")
        if kind == FieldKind.INT:
            if isinstance(number, float) and not number.is_integer():
                return bad(f"must be a whole number, got {got(value)}")
            number = int(number)
        if number != number or number in (float("inf"), float("-inf")):
            return bad(f"must be a finite number, got {got(value)}")
        if spec.min is not None and number < spec.min:
            return bad(f"must be ≥ {spec.min:g}, got {_number(number)}")
        if spec.max is not None and number > spec.max:
            return bad(f"must be ≤ {spec.max:g}, got {_number(number)}")
        return number
    if kind == FieldKind.DURATION:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            return bad(str(exc))
        limit = spec.max if spec.max is not None else MAX_DURATION
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            # the value itself is not echoed: a huge one does not even print
            return bad(f"must be a finite duration (at most {format_duration(limit)})")
        bare = bare_minutes(value)
        if spec.min is not None and seconds < spec.min:
            return bad(f"must be at least {format_duration(spec.min)}, got {format_duration(seconds)}")
        if seconds > limit:
            hint = f" ({_minutes_hint(bare, spec, limit)})" if bare is not None else ""
            return bad(f"must be at most {format_duration(limit)}, got {_long_duration(seconds)}{hint}")
        if bare is not None and seconds > LONG_BARE_DURATION:
            spelt = f" ({_spelt(seconds)}, more than a day)"
            problems.append(
                Problem(
                    path,
                    _minutes_hint(bare, spec, limit, spelt) + " Write the unit to say which.",
                    severity="warning",
                )
            )
        return seconds
    if kind == FieldKind.LIST:
        if isinstance(value, str):
            # a single string where a list is expected: accept "a,b" the way ClearML's app does
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            return bad(f"must be a list of strings, got {type_name(value)}")
        items: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                problems.append(Problem(join(path, index), f"must be a string, got {type_name(item)}"))
                continue
            text = str(item)
            if spec.pattern and not re.fullmatch(spec.pattern, text):
                problems.append(
                    Problem(join(path, index), f"must look like {spec.pattern_hint or spec.pattern}, got {got(text)}")
                )
                continue
            items.append(text)
        if spec.non_empty and not items:
            return bad("must not be empty")
        return items
    if kind == FieldKind.DICT:
        if not isinstance(value, Mapping):
            return bad(f"must be an object ({{ key = value }}), got {type_name(value)}")
        return dict(value)
    if kind == FieldKind.SECTION:
        if not isinstance(value, Mapping):
            return bad(f"must be an object ({{ key = value }}), got {type_name(value)}")
        sub = check_section(value, spec.fields, path)
        problems.extend(sub.problems)
        return sub.values
    raise AssertionError(f"unknown field kind {kind!r}")


def check_section(
    data: Mapping[str, Any] | None, schema: Schema, path: str, *, allow_unknown: Sequence[str] = ()
) -> Checked:
    """Validate and normalise one mapping against ``schema``.

    Unknown keys are errors with the closest known key suggested, except names listed in
    ``allow_unknown`` (sections that another plugin validates).
    """
    result = Checked()
    data = data or {}
    known = {spec.name: spec for spec in schema}
    for key in data:
        if key not in known and key not in allow_unknown:
            result.problems.append(
                Problem(join(path, key), f"unknown key '{key}'{suggest(key, [*known, *allow_unknown])}")
            )
    for spec in schema:
        where = join(path, spec.name)
        if spec.name not in data or data[spec.name] is None:
            if spec.required:
                hint = f" (e.g. {spec.example})" if spec.example else ""
                result.problems.append(Problem(where, f"is required{hint}"))
            elif spec.kind == FieldKind.SECTION:
                result.values[spec.name] = check_section({}, spec.fields, where).values
            elif spec.has_default:
                default = spec.default
                if spec.kind == FieldKind.SECRET and isinstance(default, str):
                    default = Secret(default)
                elif isinstance(default, (list, dict)):
                    default = copy.deepcopy(default)  # each configuration gets its own
                result.values[spec.name] = default
            continue
        before = len(result.problems)
        value = _normalise(spec, data[spec.name], where, result.problems)
        if value is _MISSING:
            continue
        if spec.check is not None and len(result.problems) == before:
            message = spec.check(value)
            if message:
                result.problems.append(Problem(where, message))
                continue
        result.values[spec.name] = value
    return result


def defaults(schema: Schema) -> dict[str, Any]:
    """The defaults of a schema as a plain nested mapping (for docs, export and the wizard)."""
    out: dict[str, Any] = {}
    for spec in schema:
        if spec.kind == FieldKind.SECTION:
            out[spec.name] = defaults(spec.fields)
        elif spec.has_default:
            out[spec.name] = spec.default
    return out
