"""The dialplan engine as the brain of a call session.

:class:`DialplanBrain` translates between the session's timed audio world (:mod:`voiceivr.call.brain`) and
the text-level :class:`~voiceivr.dialplan.engine.Conversation`: prompt kinds become prompt classes (a
read-back is a :class:`~voiceivr.call.events.ReadBack`, uninterruptible by type), listen specs become
as they are, what the session listens for, every prompt is reported back as played or cut (with the
words the caller heard), and the time each input spent in routing (intent), in the gate's decisions
(policy) and in actions (tool) is measured for the latency budgets.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.handler import CallInfo
from voiceivr.dialplan import engine as de
from voiceivr.policy.confirm import ConfirmRules
from voiceivr.policy.gate import (
    ActionRequest,
    ActionResult,
    CallGate,
    Challenge,
    Channel,
    Decision,
    Evidence,
    InputKind,
    SessionBinding,
    StepResult,
)

_PROMPT_CLASS: dict[str, type[ev.Prompt]] = {
    "readback": ev.ReadBack,
    "disclosure": ev.Disclosure,
    "code_request": ev.CodeRequest,
}
# Text of these kinds never changes between calls (no amounts, names or codes), so it is worth caching.
_STATIC_KINDS = frozenset({"prompt", "reprompt", "menu", "goodbye", "info"})


def binding_for(info: CallInfo) -> SessionBinding:
    """What the safe path binds a call's privileges to: the SIP dialog and where the media comes from. Never
    the caller ID (From, P-Asserted-Identity): anyone can present any number."""
    media = f"{info.remote_media.host}:{info.remote_media.port}" if info.remote_media else ""
    return SessionBinding(info.call_id, info.sip_call_id, info.local_tag, info.remote_tag, media)


def injection_categories(text: str) -> tuple[str, ...]:
    from voiceivr.injection import scan

    return scan(text).categories


class TimedGate:
    """Wraps the call's gate and measures where the time of a turn goes: policy decisions vs actions."""

    def __init__(self, gate: CallGate) -> None:
        self.inner = gate
        self.policy_s = 0.0
        self.tool_s = 0.0

    @property
    def binding(self) -> SessionBinding:
        return self.inner.binding

    @binding.setter
    def binding(self, value: SessionBinding) -> None:
        self.inner.binding = value

    @property
    def confirmation(self) -> ConfirmRules:
        return self.inner.confirmation

    def _policy(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.policy_s += time.perf_counter() - t0

    def principal(self) -> str | None:
        return self.inner.principal()

    def login(self, principal: str, evidence: Evidence) -> StepResult:
        return self._policy(self.inner.login, principal, evidence)

    def binding_changed(self, new_binding: SessionBinding | None, reason: str) -> None:
        self._policy(self.inner.binding_changed, new_binding, reason)

    def decide(self, request: ActionRequest) -> tuple[ActionRequest, Decision]:
        return self._policy(self.inner.decide, request)

    def readback_played(self, request_id: str, finished_at: float) -> None:
        self._policy(self.inner.readback_played, request_id, finished_at)

    def confirm(self, request_id: str, evidence: Evidence) -> StepResult:
        return self._policy(self.inner.confirm, request_id, evidence)

    def send_challenge(self, request_id: str, channel: Channel) -> Challenge:
        return self._policy(self.inner.send_challenge, request_id, channel)

    def verify_code(self, request_id: str, code: str, evidence: Evidence) -> StepResult:
        return self._policy(self.inner.verify_code, request_id, code, evidence)

    def execute(self, request_id: str) -> ActionResult:
        t0 = time.perf_counter()
        try:
            return self.inner.execute(request_id)
        finally:
            self.tool_s += time.perf_counter() - t0

    def abandon(self, request_id: str, reason: str) -> None:
        self._policy(self.inner.abandon, request_id, reason)

    def note_input(self, evidence: Evidence, reason: str, request_id: str | None = None) -> None:
        self._policy(self.inner.note_input, evidence, reason, request_id)

    def take(self) -> tuple[float, float]:
        out = (self.policy_s, self.tool_s)
        self.policy_s = self.tool_s = 0.0
        return out


class DialplanBrain:
    """One call's conversation. Built per call by the live handler, the replay tool or a test."""

    def __init__(
        self,
        conversation: de.Conversation,
        gate: TimedGate,
        *,
        flag_text: Callable[[str], tuple[str, ...]] | None = None,
    ) -> None:
        self.conv = conversation
        self.gate = gate
        # The injection filter (categories found in a transcript): the policy's own unless a test swaps it.
        self.flag_text = flag_text or injection_categories
        self._ids: dict[int, str] = {}  # session prompt id -> engine prompt id, until it has played
        self._played: dict[int, str] = {}  # the same for prompts that have played (speech over them may end later)
        self._next_id = 1
        self._resolved = 0
        self._outcome = ""

    # ------------------------------------------------------------------------------------------ Brain

    def start(self) -> list[b.BrainOutput]:
        return self._run(lambda: self.conv.start(0.0))

    def handle(self, event: b.BrainInput) -> list[b.BrainOutput]:
        if isinstance(event, b.Utterance):
            said = " ".join(t for t in (event.text, event.open_text) if t)
            flagged = self.flag_text(said) if said else ()
            # a fresh id (a redelivered one is a duplicate to the engine) and the injection filter's findings
            u = dataclasses.replace(event, id=uuid.uuid4().hex, flagged=flagged)
            return self._run(lambda: self.conv.utterance(u))
        if isinstance(event, b.Digits):
            return self._run(lambda: self.conv.dtmf(event.digits, event.ended_at))
        if isinstance(event, b.NoInputTimeout):
            return self._run(lambda: self.conv.no_input(event.at))
        if isinstance(event, b.PromptFinished):
            engine_id = self._ids.pop(event.prompt_id, None)
            if engine_id is None:  # a prompt the session made itself (idle goodbye, error)
                return []
            self._played[event.prompt_id] = engine_id
            if event.cut:
                return self._run(lambda: self.conv.prompt_cut(engine_id, event.words_heard, event.at))
            return self._run(lambda: self.conv.prompt_played(engine_id, event.at))
        if isinstance(event, b.Overheard):
            over = self._ids.get(event.prompt_id) or self._played.get(event.prompt_id)
            if over is None:
                return []
            kind: InputKind = "dtmf" if event.kind == "dtmf" else "speech"
            return self._run(lambda: self.conv.overheard(over, kind, event.started_at, event.ended_at))
        if isinstance(event, b.HungUp):
            return self._run(lambda: self.conv.hangup(event.at))
        if isinstance(event, b.SessionChanged):
            binding = self.gate.binding
            moved = SessionBinding(binding.call_id, binding.sip_call_id, binding.local_tag, binding.remote_tag,
                                   event.media_address or binding.media_address)
            out = [b.Trace("session_changed", {"reason": event.reason})]
            return out + self._run(lambda: self.conv.binding_changed(moved, event.reason, event.at))
        raise TypeError(f"unknown input {type(event).__name__}")

    def resolved_tasks(self) -> int:
        return self._resolved

    def outcome(self) -> str:
        return self._outcome

    # ------------------------------------------------------------------------------------- conversion

    def _run(self, call: Callable[[], de.Step]) -> list[b.BrainOutput]:
        self.gate.take()
        wall = time.perf_counter()
        step = call()
        total = time.perf_counter() - wall
        policy_s, tool_s = self.gate.take()
        return self._convert(step, total, policy_s, tool_s)

    def _convert(self, step: de.Step, total_s: float, policy_s: float, tool_s: float) -> list[b.BrainOutput]:
        out: list[b.BrainOutput] = []
        intent_s = 0.0
        for e in step.events:
            data = dict(e.data)
            if e.kind in ("intent", "intent_unsure"):
                intent_s += float(data.get("cost_s", 0.0))
                out.append(b.Trace("intent" if e.kind == "intent" else "intent_unsure", {
                    "intent": data.get("intent") or "", "tier": data.get("tier"),
                    "confidence": data.get("confidence", 0.0), "node": self.conv.node_id,
                }, {f"router.tier{t['tier']}": float(t.get("cost_s", 0.0)) for t in data.get("tiers", [])}))
            elif e.kind in ("say", "prompt_played", "input"):
                continue  # the session's own timeline already has these
            else:
                if e.kind == "action_result" and data.get("ok"):
                    self._resolved += 1
                out.append(b.Trace(e.kind, data))
        has_intent = any(isinstance(o, b.Trace) and o.kind.startswith("intent") for o in out)
        stage: dict[str, float] = {}
        if has_intent:
            stage["intent"] = max(intent_s, total_s - policy_s - tool_s)
        if policy_s:
            stage["policy"] = policy_s
        if tool_s:
            stage["tool"] = tool_s
        if stage:
            out.append(b.Trace("timing", {}, stage))
        for say in step.say:
            out.append(self._prompt(say))
        if step.listen is not None:
            out.append(step.listen)
        if step.transfer is not None:
            self._outcome = "transferred"
            out.append(b.TransferCall(step.transfer.target))
        elif step.hangup:
            self._outcome = self._outcome or ("resolved" if self._resolved else "completed")
            out.append(b.EndCall("dialplan ended the call", outcome=self._outcome))
        return out

    def _prompt(self, say: de.Say) -> ev.Prompt:
        pid = self._next_id
        self._next_id += 1
        self._ids[pid] = say.id
        cls = _PROMPT_CLASS.get(say.kind)
        if cls is None:
            cls = ev.Reply if say.interruptible else ev.Disclosure
        cacheable = say.kind in _STATIC_KINDS and not any(ch.isdigit() for ch in say.text)
        return cls(0.0, prompt_id=pid, text=say.text, node=self.conv.node_id, cacheable=cacheable)
