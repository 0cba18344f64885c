"""What the call session asks of the conversation logic, and what it gets back.

The session owns time, audio and turn taking; the brain (the dialplan engine behind an adapter) owns what
to say and what an answer means. They speak in these small typed messages, so the session can be tested
with a scripted brain and the dialplan engine with text alone. What an answer is (:class:`Utterance`) and
what to listen for (:class:`Listen`) are the dialplan's own types (:mod:`voiceivr.dialplan.io`), not copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from voiceivr.call.events import Prompt
from voiceivr.dialplan.io import Listen, Utterance

# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Digits:
    digits: str
    reason: str  # terminator | max_length | timeout
    started_at: float = 0.0
    ended_at: float = 0.0


@dataclass(frozen=True)
class NoInputTimeout:
    count: int
    at: float = 0.0


@dataclass(frozen=True)
class HungUp:
    """The caller hung up (or the call was lost): pending requests are void."""

    at: float


@dataclass(frozen=True)
class PromptFinished:
    prompt_id: int
    at: float
    cut: bool = False
    words_heard: int = 0
    heard_text: str = ""


@dataclass(frozen=True)
class SessionChanged:
    """The SIP dialog or media moved (re-INVITE, transfer, Replaces): privileges must drop."""

    reason: str
    media_address: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class Overheard:
    """The caller spoke or keyed over an uninterruptible prompt (a read-back, a disclosure, a code request). It is
    no answer to anything -- the session did not recognise it -- but it is on the record: a "yes" over a
    read-back is how someone who never heard the amount would try to confirm it."""

    prompt_id: int
    kind: str  # speech | dtmf
    started_at: float
    ended_at: float


BrainInput = Utterance | Digits | NoInputTimeout | PromptFinished | SessionChanged | HungUp | Overheard


# --------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class TransferCall:
    target: str


@dataclass(frozen=True)
class EndCall:
    reason: str
    outcome: str = "completed"


@dataclass(frozen=True)
class Trace:
    """Something worth putting on the timeline: an intent, a transition, a slot, a policy decision."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    # wall-clock seconds the brain spent, by stage (intent, policy, tool) and by engine/tier (costs)
    stage_seconds: dict[str, float] = field(default_factory=dict)


# A prompt to say is the prompt itself (voiceivr.call.events): its class says whether barge-in may cut it.
BrainOutput = Prompt | Listen | TransferCall | EndCall | Trace


class Brain(Protocol):
    def start(self) -> list[BrainOutput]:
        """The call was answered: the greeting and what to listen for."""
        ...

    def handle(self, event: BrainInput) -> list[BrainOutput]: ...

    def resolved_tasks(self) -> int:
        """How many caller tasks this call completed (for cost per resolved task)."""
        ...

    def outcome(self) -> str: ...
