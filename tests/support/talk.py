"""One call to the demo bank as text (real engine, real gate), shared by the safe-path, confirmation, speech
injection and webhook end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

from voiceivr import injection
from voiceivr.audit.chain import AuditRecord, AuditTrail
from voiceivr.dialplan.engine import Conversation, Listen, Step, TraceEvent, Utterance
from voiceivr.policy.gate import SessionBinding
from voiceivr.sim import abuse


class Talk:
    """One call to the demo bank as text, through the real engine and the real gate, with prompts reported as
    played (at 10 words a second) so read-backs finish before the caller answers."""

    def __init__(self, w: abuse.World) -> None:
        call_id = str(uuid.uuid4())
        self.binding = SessionBinding(call_id, f"{call_id}@test", "lt", "rt", "203.0.113.5:40000")
        self.gate = w.services.gate(self.binding)
        self.conv = Conversation(w.plan, self.gate, w.router, call_id=call_id, registry=w.registry)
        self.world = w
        self.t = 0.0
        self.events: list[TraceEvent] = []
        self.listen: Listen | None = None  # what the engine listens for now
        self.play(self.conv.start(0.0))

    def play(self, step: Step) -> None:
        self.events += step.events
        self.listen = step.listen or self.listen
        for s in step.say:
            self.t += 0.2 + len(s.text.split()) / 10
            self.play(self.conv.prompt_played(s.id, self.t))

    def say(self, text: str, confidence: float = 0.93, open_text: str = "") -> None:
        """``open_text``: the open transcript of the same words (the recogniser was unsure of ``text``)."""
        start, self.t = self.t + 0.5, self.t + 0.5 + 0.3 * len(text.split())
        u = Utterance(text, confidence, start, self.t, id=uuid.uuid4().hex, flagged=injection.scan(text).categories,
                      open_text=open_text)
        self.play(self.conv.utterance(u))

    def keys(self, digits: str) -> None:
        self.t += 0.5 + 0.15 * len(digits)
        self.play(self.conv.dtmf(digits, self.t))

    def login(self, account: str = abuse.ALICE_ACCOUNT, pin: str = abuse.ALICE_PIN) -> None:
        self.keys(account)
        self.keys(pin)

    def gate_calls(self, call: str) -> list[dict[str, Any]]:
        return [dict(e.data) for e in self.events if e.kind == "gate" and e.data["call"] == call]

    def said(self) -> list[str]:
        return [str(e.data["text"]) for e in self.events if e.kind == "say"]

    def trail(self) -> list[AuditRecord]:
        return [r for r in AuditTrail(self.world.engine).rows() if r.call_id == self.binding.call_id]
