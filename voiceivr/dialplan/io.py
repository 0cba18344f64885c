"""What goes into a :class:`~voiceivr.dialplan.engine.Conversation` and what comes out of it.

Defined here, apart from the engine, so that the engine's parts and the call side that drives it name the
same types: the call session hands the brain (:mod:`voiceivr.call.brain`) this :class:`Utterance` and takes
this :class:`Listen` from it as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voiceivr.policy.gate import InputKind


@dataclass(frozen=True)
class Utterance:
    text: str
    confidence: float = 1.0
    started_at: float = 0.0  # call clock, seconds
    ended_at: float = 0.0
    kind: InputKind = "speech"
    id: str = ""  # a repeated id is a duplicate delivery and is ignored
    audio_sha256: str | None = None
    flagged: tuple[str, ...] = ()  # the injection filter's findings
    # speech only: an open-vocabulary transcript of the same audio when the grammar's words were unsure
    # (voiceivr.speech.stt.open_transcript); the menu's router routes it instead of ``text``
    open_text: str = ""


@dataclass(frozen=True)
class Say:
    id: str
    text: str
    kind: str  # prompt | reprompt | menu | readback | disclosure | code_request | info | goodbye
    interruptible: bool


@dataclass(frozen=True)
class DtmfSpec:
    max_digits: int = 1
    terminator: str | None = None  # "#" ends collection early (not part of the digits)
    inter_digit_timeout_s: float = 3.0

    @property
    def single_key(self) -> bool:
        """One key is the whole answer (a menu choice), not the first of an entry."""
        return self.max_digits <= 0 or (self.max_digits <= 1 and not self.terminator)


@dataclass(frozen=True)
class TurnSpec:
    """A node's ``turn:``: how the end of a caller's turn is decided there, over the call settings (None: as they
    say). A PIN entry may wait longer than a yes/no (voiceivr/call/turnend.py)."""

    detector: str | None = None  # rules | smart_turn
    threshold: float | None = None  # smart_turn: probability of a complete turn that ends it
    max_silence_ms: int | None = None  # quiet that ends a turn whatever the model says
    entry_wait_ms: int | None = None  # quiet that ends a digit entry with fewer digits than it needs


@dataclass(frozen=True)
class Listen:
    """What to listen for once the prompts said so far have played. The engine's answer and the call session's
    instruction: a caller who barges in answers this question."""

    expect: str = ""  # "intent", "slot:<name>", "confirm", "channel", "code" (the node's input, for the record)
    grammar: tuple[str, ...] = ()  # phrases for a grammar-based STT, one of which is said (empty: free speech)
    dtmf: DtmfSpec = DtmfSpec()
    no_input_timeout_s: float = 6.0
    # Or a run of these words (digits read one by one, an amount in words), repeat=(fewest, most) of them.
    sequence: tuple[str, ...] = ()
    repeat: tuple[int, int] | None = None
    builtin: str | None = None  # or an utterance of a built-in grammar: "money", "digits:8", "digits:4-6"
    secret: bool = False  # a PIN or a one-time code: nothing may keep what the caller gives (call/secrecy.py)
    turn: TurnSpec | None = None  # the node's own end-of-turn rules (None: the call settings')


@dataclass(frozen=True)
class Transfer:
    target: str
    reason: str


@dataclass(frozen=True)
class TraceEvent:
    kind: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    say: tuple[Say, ...] = ()
    listen: Listen | None = None
    transfer: Transfer | None = None
    hangup: bool = False  # hang up once the prompts in ``say`` have played
    events: tuple[TraceEvent, ...] = ()

    @property
    def ended(self) -> bool:
        return self.transfer is not None or self.hangup
