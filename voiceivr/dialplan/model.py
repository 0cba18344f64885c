"""A dialplan as typed, immutable objects: what the loader produces and the engine walks.

Nothing here parses YAML or checks anything; :mod:`voiceivr.dialplan.loader` builds these only from a
dialplan that passed every check, so the engine can trust them mid-call.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from voiceivr.dialplan.io import TurnSpec
from voiceivr.dialplan.slots import Money, Option, SlotType

PromptKind = Literal["prompt", "reprompt", "menu", "readback", "disclosure", "code_request", "info", "goodbye"]
# A read-back, a disclosure and a code request play to the end whatever the flag says.
UNINTERRUPTIBLE_KINDS: frozenset[str] = frozenset({"readback", "disclosure", "code_request"})

GlobalName = Literal["repeat", "main_menu", "agent", "goodbye", "back"]
GLOBAL_NAMES: tuple[str, ...] = ("repeat", "main_menu", "agent", "goodbye", "back")

# Targets that are not nodes.
AGENT = "$agent"
GOODBYE = "$goodbye"
RETURN = "$return"  # back to the node that sent the caller to log in
SPECIAL_TARGETS: tuple[str, ...] = (AGENT, GOODBYE, RETURN)

VAR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")


@dataclass(frozen=True)
class PromptSpec:
    """Text with ``{variables}`` (``{slot}``, ``{var}``, ``{saved.field}``); ``{{`` is a literal brace."""

    text: str
    kind: PromptKind = "prompt"
    interruptible: bool = True

    def variables(self) -> list[tuple[str, str | None]]:
        return [(m.group(1), m.group(2)) for m in VAR_RE.finditer(self.text.replace("{{", "").replace("}}", ""))]


@dataclass(frozen=True)
class IntentSpec:
    name: str
    label: str  # how a DTMF menu names it: "For {label}, press 1"
    examples: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    description: str = ""  # for the tier-3 LLM


@dataclass(frozen=True)
class GlobalIntent:
    name: str  # one of GLOBAL_NAMES
    examples: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    dtmf: str | None = None


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: SlotType
    ask: PromptSpec
    keyed: PromptSpec | None = None  # asked when speech failed: "please key it in, then press pound"
    min_length: int = 1  # digits
    max_length: int = 32
    min_amount: Money | None = None
    max_amount: Money | None = None
    options: tuple[Option, ...] = ()  # choice
    cues: tuple[str, ...] = ()  # words that introduce this slot in a sentence ("from", "to")
    default: str | None = None  # a choice key used when the caller does not name one
    secret: bool = False  # never spoken, never logged (a PIN)
    prefer: Literal["future", "past"] = "future"  # dates said without a year
    max_chars: int = 200  # text and address: the longest answer taken (longer is refused and asked again)


@dataclass(frozen=True)
class Confirm:
    readback: PromptSpec  # always kind "readback": uninterruptible
    ask: PromptSpec


@dataclass(frozen=True)
class ParamValue:
    """A literal, or a reference to a slot/variable (``"{amount}"``) resolved when the action is requested."""

    literal: str | None = None
    ref: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class ActionCall:
    name: str
    risk: Literal["low", "high"]  # effective: the registry's level, or higher if the dialplan says so
    params: Mapping[str, ParamValue]
    confirm: Confirm | None
    save_as: str | None
    success: PromptSpec | None
    failure: PromptSpec | None
    on_success: str | None  # None: carry on with the node (routes, goto or end)
    on_failure: str | None
    authenticates: bool = False  # the registry says a success logs the caller in


@dataclass(frozen=True)
class Route:
    intent: str
    goto: str
    dtmf: str | None = None


@dataclass(frozen=True)
class Fallback:
    no_input: int = 2  # reprompts before escalating
    no_match: int = 2
    dtmf_menu: bool = True  # offer the keypad menu before the agent
    then: Literal["agent", "goodbye"] = "agent"
    timeout_s: float = 6.0  # no-input timeout
    inter_digit_timeout_s: float = 3.0


@dataclass(frozen=True)
class ScheduleBranch:
    """A node's ``schedule:``: where to go for each state of a named schedule (emergency first, then
    holiday, closed, open), read at the call's start."""

    schedule: str
    open: str
    closed: str
    holiday: str  # default: the closed target
    emergency: str  # default: the schedule's emergency goto, else the closed target

    def target(self, state: str) -> str:
        return {"emergency": self.emergency, "holiday": self.holiday, "closed": self.closed}.get(state, self.open)


# --- schedules (business hours; read by voiceivr.dialplan.hours) ----------------------------------------

ScheduleState = Literal["emergency", "holiday", "closed", "open"]
STATES: tuple[ScheduleState, ...] = ("emergency", "holiday", "closed", "open")  # evaluated in this order
DAY = 24 * 60


@dataclass(frozen=True, order=True)
class TimeRange:
    start: int  # minutes after local midnight of the day it opens on
    end: int  # after start; past DAY for an overnight range

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end % DAY if self.end > DAY else self.end)}"


@dataclass(frozen=True)
class Holiday:
    date: dt.date  # a yearly holiday: its month and day, in the leap year 2000 (so 02-29 can be written)
    name: str
    hours: tuple[TimeRange, ...] = ()  # reduced hours on the day; none: closed all day
    say: PromptSpec | None = None  # said when a node branches on it ("We're closed today for ...")
    yearly: bool = False  # on date's month and day every year (``date: 12-25`` in the YAML)


@dataclass(frozen=True)
class Emergency:
    active: bool = False  # the admin's switch: publish a version with true to close everything at once
    say: PromptSpec | None = None
    goto: str | None = None  # where every node using the schedule goes (unless the node names its own)


@dataclass(frozen=True)
class Schedule:
    name: str
    timezone: str  # IANA, e.g. America/New_York
    week: tuple[tuple[TimeRange, ...], ...]  # Monday first, 7 entries
    holidays: Mapping[dt.date, Holiday] = field(default_factory=dict)
    emergency: Emergency = Emergency()
    yearly: Mapping[tuple[int, int], Holiday] = field(default_factory=dict)  # (month, day): every year

    def holiday_on(self, day: dt.date) -> Holiday | None:
        """The holiday on a local date: one dated that day, else a yearly one on its month and day (a yearly
        02-29 falls in leap years only)."""
        dated = self.holidays.get(day)
        return dated if dated is not None else self.yearly.get((day.month, day.day))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Node:
    id: str
    say: tuple[PromptSpec, ...] = ()
    requires_login: bool = False
    collect: tuple[str, ...] = ()
    action: ActionCall | None = None
    routes: tuple[Route, ...] = ()
    goto: str | None = None
    end: Literal["hangup", "agent"] | None = None
    fallback: Fallback = field(default_factory=Fallback)
    menu: PromptSpec | None = None  # the DTMF menu; generated from routes when absent
    schedule: ScheduleBranch | None = None  # branch on business hours instead of routes/goto/end
    turn: TurnSpec | None = None  # end-of-turn rules at this node (None: the call settings')


@dataclass(frozen=True)
class Routing:
    fuzzy_accept: float = 0.86  # tier 1: rapidfuzz score / 100
    embedding_accept: float = 0.60  # tier 2: cosine similarity to the nearest example
    margin: float = 0.04  # tiers 1-2: the best intent must beat the runner-up by this much
    llm_accept: float = 0.70  # tier 3: the model's own confidence
    # a slot value recognised below this is not taken: asking again beats reading back a wrong amount
    slot_min_confidence: float = 0.2
    # tier 0 on speech: a grammar result recognised below this calibrated confidence (the probability that it
    # is right, docs/speech.md) is not taken: the grammar forces every utterance onto some phrase, and a
    # reprompt is better than a wrong task. Typed text and keys are not affected.
    speech_accept: float = 0.6


@dataclass(frozen=True)
class Messages:
    """What the engine says on its own; every one can be reworded in the dialplan's ``messages:``."""

    reprompt: str = "Sorry, I didn't catch that."
    # A turn not understood at a menu names what the node can do ({options}: its intents' labels), so a caller
    # who asked for something else, or in words nobody wrote down, knows what to say; a second miss offers the
    # keypad and an agent.
    clarify: str = "Sorry, I didn't get that. I can help with {options}. Which would you like?"
    # The same for a choice slot ({options}: what each option is called).
    clarify_choice: str = "Sorry, I didn't get that. You can say {options}."
    no_input: str = "Are you still there?"
    menu_intro: str = "You can also use your keypad."
    confirm_ask: str = "Is that right? Please say yes or no."
    confirm_retry: str = "Please say yes, or no to change it."
    keyed_digits: str = "Please enter it on your keypad, then press the pound key."
    choose_channel: str = (
        "I need to confirm it's you. Should I text a code to your phone, or will you use your authenticator app? "
        "Say text or app, or press 1 for text and 2 for app."
    )
    code_sms: str = (
        "I've sent a code by text message to the phone number ending in {destination}. Please say or key it."
    )
    code_totp: str = "Please say or key the code from your authenticator app."
    code_wrong: str = "That code didn't match. Please try again."
    # The identity provider (e.g. an HTTP backend checking TOTP codes) could not answer: nothing was counted.
    code_unavailable: str = "I can't check that code with the account system right now. Please try it again."
    code_locked: str = "For your security I can't complete this request on this call."
    refused: str = "I'm sorry, I can't do that on this call."
    invalid_address: str = (
        "Sorry, that doesn't sound like a postal address. Please say the house number, the street and the town."
    )
    invalid_text: str = "Sorry, I can't take that. Please say it again, in a few words."
    cancelled: str = "Okay, I've cancelled that."
    failed: str = "Sorry, that didn't work."
    login_first: str = "First, I need to identify you."
    reidentify: str = "For your security, I need to check who you are again."
    agent: str = "Please hold while I connect you to an agent."
    goodbye: str = "Thank you for calling. Goodbye."


@dataclass(frozen=True)
class Dialplan:
    name: str
    description: str
    start: str
    main_menu: str
    login: str | None
    vars: Mapping[str, str]
    agent_target: str
    intents: Mapping[str, IntentSpec]
    globals: Mapping[str, GlobalIntent]
    slots: Mapping[str, SlotSpec]
    nodes: Mapping[str, Node]
    routing: Routing
    messages: Messages
    fallback: Fallback
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    source_path: str = ""
    sha256: str = ""

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]
