"""The one typed vocabulary of a call: what happened, when, and what barge-in does to it.

Two families, as in pipecat:

* :class:`SystemEvent` — facts and control (DTMF, hangup, speech started, a prompt cut). Barge-in never drops
  them, and the worker handles them before caller audio.
* :class:`DataEvent` — content on its way out (queued prompts). Barge-in drops every queued one.

Prompts carry their interruptibility in their class, not in a flag someone might forget: a
:class:`ReadBack` of an amount or a :class:`CodeRequest` always plays to the end, and speech during it is
not an answer to it.

Every event knows how to describe itself for the call's timeline (:meth:`Event.to_dict`); times are on the
call clock, in seconds. Text and digits appear in timelines (which are for operators and the audit trail)
but never in log messages. What the caller gave while a secret was asked for (a PIN, a one-time code) appears
in neither: those events carry ``secret=True`` and no digits or words (:mod:`voiceivr.call.secrecy`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    t: float

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                value = round(value, 4)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class SystemEvent(Event):
    """Never dropped by barge-in."""


@dataclass(frozen=True)
class DataEvent(Event):
    """Dropped by barge-in while still queued."""


# ----------------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt(DataEvent):
    """Something the agent says. Interruptible unless its class says otherwise."""

    interruptible: ClassVar[bool] = True
    prompt_id: int = 0
    text: str = ""
    node: str = ""
    cacheable: bool = False  # static text: synthesise once, keep in the prompt cache


@dataclass(frozen=True)
class Reply(Prompt):
    """An ordinary prompt or answer; the caller may talk over it."""


@dataclass(frozen=True)
class ReadBack(Prompt):
    """Exactly what a safe-path action will do; plays to the end; a yes over it does not count."""

    interruptible: ClassVar[bool] = False
    request_id: str = ""


@dataclass(frozen=True)
class Disclosure(Prompt):
    """Legal or safety text that must be heard in full."""

    interruptible: ClassVar[bool] = False


@dataclass(frozen=True)
class CodeRequest(Prompt):
    """Asks for an out-of-band code; plays to the end so the caller knows where the code went."""

    interruptible: ClassVar[bool] = False
    request_id: str = ""


# ---------------------------------------------------------------------------------------- control input


@dataclass(frozen=True)
class DtmfDigit(SystemEvent):
    digit: str = ""
    method: str = "rfc4733"  # rfc4733 | info | inband | replay
    secret: bool = False  # keyed during secret input: the digit is not kept


@dataclass(frozen=True)
class Hangup(SystemEvent):
    by: str = "caller"  # caller | agent | error
    reason: str = ""


@dataclass(frozen=True)
class MediaMoved(SystemEvent):
    address: str = ""


@dataclass(frozen=True)
class DialogReplaced(SystemEvent):
    reason: str = ""


# ------------------------------------------------------------------------------------- what the call saw


@dataclass(frozen=True)
class SpeechStarted(SystemEvent):
    decided_at: float = 0.0
    during_prompt: int | None = None  # prompt id playing at onset


@dataclass(frozen=True)
class SpeechStopped(SystemEvent):
    pass


@dataclass(frozen=True)
class EchoSuppressed(SystemEvent):
    """The caller channel carried our own prompt back; it was not taken for speech."""

    prompt_id: int = 0


@dataclass(frozen=True)
class TranscriptPartial(SystemEvent):
    text: str = ""


@dataclass(frozen=True)
class TranscriptFinal(SystemEvent):
    text: str = ""
    confidence: float = 0.0
    speech_start: float = 0.0
    speech_end: float = 0.0
    ignored: str = ""  # why it was not used as an answer (e.g. "during uninterruptible prompt")
    secret: bool = False  # said during secret input: the words are not kept
    open_text: str = ""  # the open transcript of an unsure menu turn (voiceivr.speech.stt.open_transcript)


@dataclass(frozen=True)
class DigitsCollected(SystemEvent):
    digits: str = ""
    reason: str = ""  # terminator | max_length | timeout
    secret: bool = False  # keyed during secret input: the digits are not kept


@dataclass(frozen=True)
class NoInput(SystemEvent):
    count: int = 0


@dataclass(frozen=True)
class BargeIn(SystemEvent):
    prompt_id: int = 0
    onset: float = 0.0  # estimated true speech onset
    dropped_frames: int = 0


@dataclass(frozen=True)
class PromptStarted(SystemEvent):
    prompt_id: int = 0
    kind: str = ""
    text: str = ""


@dataclass(frozen=True)
class PromptPlayed(SystemEvent):
    prompt_id: int = 0
    played_ms: int = 0


@dataclass(frozen=True)
class PromptCut(SystemEvent):
    prompt_id: int = 0
    played_ms: int = 0
    total_ms: int = 0
    words_heard: int = 0
    words_total: int = 0
    heard_text: str = ""


@dataclass(frozen=True)
class Backchannel(SystemEvent):
    text: str = ""
    secret: bool = False  # during secret input: the words are not kept


@dataclass(frozen=True)
class IntentRecognized(SystemEvent):
    intent: str = ""
    tier: int | None = None
    confidence: float = 0.0
    node: str = ""


@dataclass(frozen=True)
class Note(SystemEvent):
    """A step worth keeping on the timeline that has no class of its own (rare, free-form).

    On the timeline (:meth:`to_dict`) every note, typed or not, is the row ``{"type": "Note", "t", "kind",
    "detail"}``: the call store, replays and stats read those rows, so the typed notes below keep them as they
    were, each with its own ``kind``."""

    kind: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Note", "t": round(self.t, 4), "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class TypedNote(Note):
    """A note with fields of its own: its detail on the timeline is those fields, in order."""

    detail: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOTE_FIELDS}
        object.__setattr__(self, "detail", own)


_NOTE_FIELDS = frozenset({"t", "kind", "detail"})


@dataclass(frozen=True)
class PromptHeld(TypedNote):
    """Caller speech started over an interruptible prompt: it went quiet at once, its place kept."""

    kind: str = field(default="prompt.held", init=False)
    prompt_id: int = 0
    by: str = ""  # vad | energy
    frames_taken_back: int = 0


@dataclass(frozen=True)
class PromptResumed(TypedNote):
    """The sound that held a prompt was no barge-in: the rest of it goes out from where it stopped."""

    kind: str = field(default="prompt.resumed", init=False)
    prompt_id: int = 0


@dataclass(frozen=True)
class PromptDropped(TypedNote):
    """A queued prompt that never started: a barge-in or a limit threw it away."""

    kind: str = field(default="prompt.dropped", init=False)
    prompt_id: int = 0


@dataclass(frozen=True)
class DtmfIgnored(TypedNote):
    """A key that is no input (a # after a full entry, a key over an uninterruptible prompt, a call ending)."""

    kind: str = field(default="dtmf.ignored", init=False)
    reason: str = ""


@dataclass(frozen=True)
class IdleHangup(TypedNote):
    """The caller was silent for call.idle_hangup_s: the call says goodbye and hangs up."""

    kind: str = field(default="idle.hangup", init=False)
    idle_s: float = 0.0


@dataclass(frozen=True)
class LimitReached(TypedNote):
    """A call limit ran out (voiceivr/call/limits.py); ``kind`` is ``limit.<no_progress|max_duration>``."""

    kind: str = "limit"
    after_s: float = 0.0
    since_progress_s: float = 0.0


@dataclass(frozen=True)
class SttGrammarError(TypedNote):
    """The recogniser refused the grammar the brain listens for: this turn is heard as free speech."""

    kind: str = field(default="stt.grammar_error", init=False)
    node: str = ""
    error: str = ""


# The conversation's own steps (voiceivr.call.brain.Trace): their detail is the engine's, as it gave it.


@dataclass(frozen=True)
class GateStep(Note):
    """A call into the safe-path gate (decide, confirm, verify_code, ...) and what it answered."""

    kind: str = field(default="gate", init=False)


@dataclass(frozen=True)
class ActionResult(Note):
    """An action ran (or was refused by its backend): its name, ok and result."""

    kind: str = field(default="action_result", init=False)


@dataclass(frozen=True)
class Transition(Note):
    """The dialplan moved from one node to another."""

    kind: str = field(default="transition", init=False)


_TRACED: dict[str, type[GateStep | ActionResult | Transition]] = {
    "gate": GateStep,
    "action_result": ActionResult,
    "transition": Transition,
}


def traced(t: float, kind: str, detail: dict[str, Any]) -> Note:
    """The timeline event of a step the conversation reported (typed where the kind has a class)."""
    cls = _TRACED.get(kind)
    return Note(t, kind=kind, detail=detail) if cls is None else cls(t, detail=detail)


@dataclass(frozen=True)
class BudgetBreach(SystemEvent):
    stage: str = ""
    ms: float = 0.0
    budget_ms: float = 0.0


@dataclass(frozen=True)
class Sleeping(SystemEvent):
    """Long silence: STT and intent tiers off, only the VAD listens."""


@dataclass(frozen=True)
class Transfer(SystemEvent):
    target: str = ""


@dataclass(frozen=True)
class CallEnded(SystemEvent):
    outcome: str = ""
    reason: str = ""
