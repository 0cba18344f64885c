"""The safe-path interface: what the dialplan engine asks before any action runs.

The dialplan engine never runs an action by itself. It builds an :class:`ActionRequest` from typed slot values
and hands it to the call's :class:`CallGate`, which decides the path and, for the safe path, walks the request
through its states. Authorization lives here, in code: transcripts are :class:`Evidence`, never a grant.

Safe path, in order (each step refuses unless the one before it happened, in this call, for this exact
request):

    decide -> read-back played in full -> explicit confirmation -> out-of-band code sent -> code verified
           -> execute (audit row committed, then the action, at most once per idempotency key)

The engine drives the conversation (what to say, what to listen for); the gate keeps the state and says
yes or no. One gate per call, bound to the call's :class:`SessionBinding`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from voiceivr.errors import VoiceivrError
from voiceivr.policy.confirm import ConfirmRules

Risk = Literal["low", "high"]
Path = Literal["fast", "safe"]
InputKind = Literal["speech", "dtmf", "text"]
Channel = Literal["sms", "totp"]


class GateRefused(VoiceivrError):
    """A step was asked for out of order or for a request this call cannot act on (``send_challenge`` raises
    it). ``reason`` is a short word (also in the audit trail) the engine can map to a prompt."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or f"refused: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SessionBinding:
    """What privileges are bound to: the SIP dialog, where the media comes from. Empty strings for replays
    and text simulations (then the binding is the call id alone)."""

    call_id: str
    sip_call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    media_address: str = ""  # "host:port" of the caller's RTP


@dataclass(frozen=True)
class Evidence:
    """What the caller said or keyed that led here. Untrusted input, kept for the audit trail."""

    kind: InputKind
    text: str  # transcript or digits (audit only; never logged)
    confidence: float = 1.0
    intent: str | None = None
    tier: int | None = None
    started_at: float | None = None  # call clock, seconds: when the caller began this input
    ended_at: float | None = None
    audio_sha256: str | None = None  # hash of the audio segment, for speech
    flagged: tuple[str, ...] = ()  # injection-filter findings


@dataclass(frozen=True)
class ActionRequest:
    """An action with exact, typed, canonical parameters (money as integer cents, ids as strings)."""

    action: str
    params: Mapping[str, Any]
    risk: Risk
    evidence: Evidence
    request_id: str = ""  # filled in by the gate


@dataclass(frozen=True)
class Decision:
    path: Path
    reasons: tuple[str, ...] = ()
    allowed: bool = True  # False: refused outright (e.g. not authenticated, flagged input in a slot)
    channels: tuple[Channel, ...] = ()  # out-of-band channels offered for this request


@dataclass(frozen=True)
class Challenge:
    request_id: str
    channel: Channel
    destination_masked: str  # e.g. "***-***-1234"; never the calling number
    expires_at: dt.datetime


@dataclass(frozen=True)
class StepResult:
    ok: bool
    reason: str = ""
    attempts_left: int | None = None
    locked: bool = False  # too many wrong codes: the request is refused and the account flagged


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    audit_seq: int | None = None  # the committed write-ahead audit row
    duplicate: bool = False  # the idempotency key had already run; ``result`` is the earlier one


class CallGate(Protocol):
    """One per call. Every method is called from the call's worker thread only."""

    binding: SessionBinding

    @property
    def confirmation(self) -> ConfirmRules:
        """The policy's rules for a yes (lexicon in voiceivr.policy.confirm, confidence threshold): the engine
        reads answers and pre-checks confidence with the very rules ``confirm`` applies, so it never refuses a
        yes the gate would take, nor asks the gate about one it would refuse for want of confidence."""

    # --- identity -------------------------------------------------------------------------------------
    def principal(self) -> str | None:
        """The authenticated customer, if the binding still holds."""

    def login(self, principal: str, evidence: Evidence) -> StepResult:
        """Bind a successful identification (verified by an action) to this session."""

    def binding_changed(self, new_binding: SessionBinding | None, reason: str) -> None:
        """Media moved, dialog replaced or transferred: privileges are dropped."""

    # --- the path -------------------------------------------------------------------------------------
    def decide(self, request: ActionRequest) -> tuple[ActionRequest, Decision]:
        """Fast or safe path. Returns the request with its ``request_id`` set."""

    def readback_played(self, request_id: str, finished_at: float) -> None:
        """The uninterruptible read-back of this request finished playing at ``finished_at`` (call clock)."""

    def confirm(self, request_id: str, evidence: Evidence) -> StepResult:
        """An explicit yes. Refused if it overlapped the read-back or its recognition was not confident."""

    def send_challenge(self, request_id: str, channel: Channel) -> Challenge:
        """Send (SMS) or expect (TOTP) a code bound to this exact request. Raises :class:`GateRefused`."""

    def verify_code(self, request_id: str, code: str, evidence: Evidence) -> StepResult:
        """The caller read the code back (voice or keypad)."""

    def execute(self, request_id: str) -> ActionResult:
        """Commit the audit row, then run the action once (fast path: straight after ``decide``)."""

    def abandon(self, request_id: str, reason: str) -> None:
        """The caller changed their mind, went back, or hung up: the request and its code are void."""

    def note_input(self, evidence: Evidence, reason: str, request_id: str | None = None) -> None:
        """Caller input that matters to the safe path but reached no step above, for the audit trail: text the
        injection filter flagged (``reason="injection_flagged"``; ``evidence.flagged`` holds the categories)
        or a yes the engine did not pass on (``readback_not_played``, ``low_confidence``). Grants nothing."""
