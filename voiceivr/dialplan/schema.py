"""The dialplan format, declared once: every section's keys, their types, ranges and choices, what is required
and that nothing else is allowed.

Two things are produced from this one declaration:

- the loader's field checks (:mod:`voiceivr.dialplan.typed` and the builders) take from it the keys a mapping
  may have (an unknown key is a typo, reported at its ``file:line:col`` with the keys expected, in the order
  declared here), the range of every number and the choices of every enumerated value;
- the JSON Schema of a dialplan file (``voiceivr dialplan schema``, :func:`dialplan_schema`), for editors and
  other tools.

The loader checks more than a schema can (references, reachability, read-backs, variables); a test keeps
the two in step by validating the shipped dialplans against the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from voiceivr.actions.address import MAX_ADDRESS_CHARS
from voiceivr.dialplan.freetext import DEFAULT_ADDRESS_CHARS, DEFAULT_TEXT_CHARS, MAX_TEXT_CHARS
from voiceivr.dialplan.model import GLOBAL_NAMES, Fallback, Messages, Routing
from voiceivr.dialplan.slots import SLOT_TYPES

Json = dict[str, Any]

# --- the vocabulary of the declaration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What one value may be; :meth:`schema` is its JSON Schema."""

    description: str = field(default="", kw_only=True)

    def schema(self) -> Json:
        out = self._schema()
        if self.description:
            out["description"] = self.description
        return out

    def _schema(self) -> Json:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    pattern: str | None = None
    min_length: int | None = None
    format: str | None = None

    def _schema(self) -> Json:
        out: Json = {"type": "string"}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.format is not None:
            out["format"] = self.format
        return out


@dataclass(frozen=True)
class Number(Kind):
    """A number from ``lo`` to ``hi``; ``whole``: a whole number."""

    lo: float
    hi: float
    whole: bool = False

    def _schema(self) -> Json:
        return {"type": "integer" if self.whole else "number", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True)
class Boolean(Kind):
    def _schema(self) -> Json:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Scalar(Kind):
    """Text or a number (written as either, read as text)."""

    def _schema(self) -> Json:
        return {"type": ["string", "number"]}


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]

    def _schema(self) -> Json:
        return {"enum": list(self.values)}


@dataclass(frozen=True)
class Const(Kind):
    value: str

    def _schema(self) -> Json:
        return {"const": self.value}


@dataclass(frozen=True)
class Null(Kind):
    def _schema(self) -> Json:
        return {"type": "null"}


@dataclass(frozen=True)
class ListOf(Kind):
    item: Kind

    def _schema(self) -> Json:
        return {"type": "array", "items": self.item.schema()}


@dataclass(frozen=True)
class OneOf(Kind):
    options: tuple[Kind, ...]

    def _schema(self) -> Json:
        return {"oneOf": [o.schema() for o in self.options]}


@dataclass(frozen=True)
class MapOf(Kind):
    """A mapping of names an admin chooses (nodes, slots, ...) to values of one kind."""

    values: Kind
    min_items: int | None = None
    name_pattern: str | None = None

    def _schema(self) -> Json:
        out: Json = {"type": "object"}
        if self.name_pattern is not None:
            out["propertyNames"] = {"pattern": self.name_pattern}
        if self.min_items is not None:
            out["minProperties"] = self.min_items
        out["additionalProperties"] = self.values.schema()
        return out


@dataclass(frozen=True)
class Mapping(Kind):
    """A mapping with fixed keys: any other key is refused (a typo)."""

    fields: tuple[tuple[str, Kind], ...]
    required: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The keys allowed, in the order the loader lists them when it finds another."""
        return tuple(name for name, _ in self.fields)

    def __getitem__(self, name: str) -> Kind:
        return dict(self.fields)[name]

    def choices(self, name: str) -> tuple[str, ...]:
        kind = self[name]
        assert isinstance(kind, Choice), name
        return kind.values

    def range(self, name: str) -> tuple[Any, Any]:
        """``(lo, hi)`` of a number field, as declared."""
        kind = self[name]
        assert isinstance(kind, Number), name
        return kind.lo, kind.hi

    def _schema(self) -> Json:
        out: Json = {"type": "object", "additionalProperties": False}
        if self.required:
            out["required"] = list(self.required)
        out["properties"] = {name: kind.schema() for name, kind in self.fields}
        return out


def mapping(*fields_: tuple[str, Kind], required: Sequence[str] = (), description: str = "") -> Mapping:
    return Mapping(tuple(fields_), tuple(required), description=description)


# --- the format ---------------------------------------------------------------------------------------------

PROMPT_KINDS = ("prompt", "reprompt", "menu", "readback", "disclosure", "code_request", "info", "goodbye")
TARGET_HELP = "a node name, or $agent, $goodbye, $return (back after login)"
NAME = Text(pattern="^[A-Za-z_][A-Za-z0-9_]*$")
DTMF = Text(pattern="^[0-9*#]$", description="one keypad key (quote * and #)")
PHRASES = OneOf((Text(), ListOf(Text(min_length=1))))


def target(description: str = TARGET_HELP) -> Text:
    return Text(description=description)


PROMPT_MAPPING = mapping(
    ("text", Text(min_length=1)),
    ("interruptible", Boolean()),
    ("kind", Choice(PROMPT_KINDS)),
    required=("text",),
)
PROMPT_ONE = OneOf((Text(min_length=1), PROMPT_MAPPING),
                   description="text with {variables}; readback, disclosure and code_request are never interruptible")
PROMPT = OneOf((PROMPT_ONE, ListOf(PROMPT_ONE)))

_REPROMPTS = "reprompts before escalating"
FALLBACK = mapping(
    ("no_input", Number(0, 10, whole=True, description=_REPROMPTS)),
    ("no_match", Number(0, 10, whole=True, description=_REPROMPTS)),
    ("dtmf_menu", Boolean(description="offer the keypad menu before the agent")),
    ("then", Choice(("agent", "goodbye"))),
    ("timeout_s", Number(1, 60)),
    ("inter_digit_timeout_s", Number(0.5, 30)),
)
assert FALLBACK.names == tuple(f.name for f in fields(Fallback))
ROUTING = mapping(*((f.name, Number(0, 1)) for f in fields(Routing)))
MESSAGES = mapping(*((f.name, Text()) for f in fields(Messages)))

_RANGE = Text(pattern=r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$",
              description="\"09:00-17:00\" (24-hour clock); \"22:00-02:00\" runs overnight")
_HOURS_OPTIONS = (Const("closed"), Null(), _RANGE, ListOf(_RANGE))
_DAYS = "mon|tue|wed|thu|fri|sat|sun"
HOLIDAY = mapping(
    ("date", OneOf((Text(pattern=r"^\d{4}-\d{2}-\d{2}$", format="date", description="one date: 2026-12-24"),
                    Text(pattern=r"^\d{1,2}-\d{1,2}$", description="every year: 12-25 (MM-DD; 02-29 in leap years "
                                                                 "only)")),
                   description="YYYY-MM-DD for one date, MM-DD for every year; a dated holiday on the same day "
                               "comes before the yearly one")),
    ("name", Text()),
    ("open", OneOf(_HOURS_OPTIONS, description="reduced hours on the day; left out: closed all day")),
    ("say", PROMPT),
    required=("date", "name"),
)
EMERGENCY = mapping(("active", Boolean()), ("say", PROMPT), ("goto", target()), required=("active",))
SCHEDULE = mapping(
    ("timezone", Text(description="an IANA time zone, e.g. America/New_York")),
    ("open", MapOf(OneOf(_HOURS_OPTIONS), name_pattern=f"^({_DAYS})(-({_DAYS}))?$",
                   description="hours per day (mon, or a span such as mon-fri); a day left out is closed")),
    ("holidays", ListOf(HOLIDAY)),
    ("emergency", OneOf((Boolean(), EMERGENCY),
                        description="the override switch: publish a version with true to take every emergency "
                                    "branch")),
    required=("timezone",),
)
# A node's schedule: one target per schedule state, in the order states are read (hours.STATES).
BRANCH = mapping(
    ("name", Text(description="a schedule under schedules:")),
    ("emergency", target("default: the schedule's emergency goto, else the closed target")),
    ("holiday", target("default: the closed target")),
    ("closed", target()),
    ("open", target()),
    required=("name", "open", "closed"),
    description="go by the schedule's state at the call's start: emergency, then holiday, closed, open",
)

INTENT = mapping(
    ("label", Text(description="for the keypad menu: 'For <label>, press 1'")),
    ("examples", PHRASES),
    ("keywords", PHRASES),
    ("description", Text(description="for the tier-3 LLM")),
)
GLOBAL_INTENT = mapping(("examples", PHRASES), ("keywords", PHRASES), ("dtmf", DTMF))
OPTION = mapping(("synonyms", PHRASES), ("say", Text()), ("dtmf", DTMF))
_LENGTH = Number(1, 64, whole=True)
SLOT = mapping(
    ("type", Choice(tuple(SLOT_TYPES))),
    ("ask", PROMPT),
    ("keyed", PROMPT),
    ("length", _LENGTH),
    ("min_length", _LENGTH),
    ("max_length", _LENGTH),
    ("min", Scalar(description="money: e.g. \"$0.01\"")),
    ("max", Scalar(description="money: e.g. \"$10,000\"")),
    ("options", MapOf(OneOf((Null(), PHRASES, OPTION)))),
    ("cues", PHRASES),
    ("default", Text()),
    ("secret", Boolean(description="a PIN: never spoken, and what the caller gives for it is kept nowhere (turns, "
                                   "timeline, logs, recordings); required on every slot that fills a secret action "
                                   "parameter")),
    ("prefer", Choice(("future", "past"))),
    # The loader takes up to MAX_ADDRESS_CHARS for an address slot, up to MAX_TEXT_CHARS for a text one.
    ("max_chars", Number(1, MAX_TEXT_CHARS, whole=True,
                         description=f"text and address: the longest answer taken (text {DEFAULT_TEXT_CHARS}, "
                                     f"address {DEFAULT_ADDRESS_CHARS} by default; an address at most "
                                     f"{MAX_ADDRESS_CHARS})")),
    required=("type", "ask"),
)
CONFIRM = mapping(("readback", PROMPT), ("ask", PROMPT), required=("readback",))
ACTION = mapping(
    ("name", Text(description="an action from the registry")),
    ("risk", Choice(("low", "high"), description="may raise the registry's risk, never lower it")),
    ("params", MapOf(Scalar())),
    ("confirm", CONFIRM),
    ("save_as", NAME),
    ("success", PROMPT),
    ("failure", PROMPT),
    ("on_success", target()),
    ("on_failure", target()),
    required=("name",),
)
ROUTE = mapping(("goto", target()), ("dtmf", DTMF), required=("goto",))
TURN = mapping(
    ("detector", Choice(("rules", "smart_turn"), description="rules: the VAD's end of speech and "
                                                             "call.end_of_turn_ms; smart_turn: the end-of-turn model")),
    ("threshold", Number(0, 1, description="smart_turn: probability of a complete turn that ends it")),
    ("max_silence_ms", Number(200, 10000, whole=True,
                              description="smart_turn: quiet that ends a turn whatever the model says")),
    ("entry_wait_ms", Number(200, 10000, whole=True,
                             description="smart_turn: quiet that ends a digit entry with fewer digits than needed")),
    description="how the end of a caller's turn is decided at this node, over call.turn_detector and "
                "call.smart_turn_* (a PIN entry may wait longer than a yes/no)",
)
NODE = mapping(
    ("say", PROMPT),
    ("requires", Choice(("login",))),
    ("collect", OneOf((Text(), ListOf(Text())))),
    ("action", ACTION),
    ("routes", MapOf(OneOf((target(), ROUTE)))),
    ("goto", target()),
    ("end", Choice(("hangup", "agent"))),
    ("fallback", FALLBACK),
    ("menu", PROMPT),
    ("schedule", BRANCH),
    ("turn", TURN),
)
AGENT_SECTION = mapping(("target", Text()))
DIALPLAN = mapping(
    ("name", Text(pattern="^[A-Za-z0-9_-]+$")),
    ("description", Text()),
    ("start", Text()),
    ("main_menu", Text()),
    ("login", Text()),
    ("vars", MapOf(Scalar())),
    ("agent", AGENT_SECTION),
    ("routing", ROUTING),
    ("fallback", FALLBACK),
    ("messages", MESSAGES),
    ("intents", MapOf(INTENT)),
    ("global_intents", mapping(*((g, GLOBAL_INTENT) for g in GLOBAL_NAMES))),
    ("slots", MapOf(SLOT)),
    ("schedules", MapOf(SCHEDULE)),
    ("nodes", MapOf(NODE, min_items=1)),
    required=("name", "start", "nodes"),
)


def dialplan_schema() -> dict[str, Any]:
    """The JSON Schema of a dialplan file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voiceivr dialplan",
        **DIALPLAN.schema(),
    }
