"""What the safe path keeps of one request between its steps, and how evidence and session bindings are written
into the audit trail (:class:`voiceivr.policy.safepath.SafePathGate` records every step with them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from voiceivr.policy.codes import Checked, Issued
from voiceivr.policy.gate import ActionRequest, Decision, Evidence, SessionBinding

State = Literal["decided", "read_back", "confirmed", "challenged", "verified", "executed", "void"]


@dataclass
class PendingRequest:
    """One request on its way through the safe path: its decision, the session it is bound to, the step it
    has reached, and the evidence each step collected (what ``execute`` writes into the intent row)."""

    request: ActionRequest
    decision: Decision
    principal: str | None
    session_id: str
    epoch: int
    state: State = "decided"
    readback_at: float | None = None
    confirmation: Evidence | None = None
    confirm_seq: int | None = None
    challenge: Issued | None = None
    code_check: Checked | None = None
    code_evidence: Evidence | None = None
    flags: tuple[str, ...] = ()


def evidence_audit(e: Evidence | None, mask: Callable[[str], str] = str) -> dict[str, Any] | None:
    """Evidence as an audit row holds it, its text through ``mask`` (secrets a call revealed)."""
    if e is None:
        return None
    return {
        "kind": e.kind, "text": mask(e.text), "confidence": e.confidence, "intent": e.intent, "tier": e.tier,
        "started_at": e.started_at, "ended_at": e.ended_at, "audio_sha256": e.audio_sha256,
        "flagged": list(e.flagged),
    }


def binding_audit(b: SessionBinding) -> dict[str, str]:
    """A session binding as an audit row holds it."""
    return asdict(b)
