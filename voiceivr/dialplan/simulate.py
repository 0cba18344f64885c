"""Text-only conversations through the real engine: ``voiceivr dialplan simulate`` and whole-dialplan tests.

Time is virtual: a prompt "plays" for its word count at ``words_per_second`` and is then reported played
(so read-backs finish before the caller answers, as on a call); each caller input starts half a second after
the last prompt ended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from voiceivr.dialplan.engine import Conversation, ConversationOptions, Step, TraceEvent, Utterance
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter
from voiceivr.injection import scan
from voiceivr.policy.gate import CallGate

InputKind = Literal["say", "dtmf", "no_input", "hangup"]


@dataclass(frozen=True)
class SimInput:
    kind: InputKind
    value: str = ""
    confidence: float = 0.95


@dataclass
class SimResult:
    events: list[TraceEvent] = field(default_factory=list)
    conversation: Conversation | None = None
    ended: str = ""  # "hangup", "transfer", "caller hung up", or "" (inputs ran out mid-call)
    unused_inputs: int = 0

    def prompts(self) -> list[str]:
        return [str(e.data["text"]) for e in self.events if e.kind == "say"]

    def of(self, kind: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]

    def gate_calls(self) -> list[str]:
        return [str(e.data["call"]) for e in self.events if e.kind == "gate"]

    def to_json(self) -> dict[str, Any]:
        conv = self.conversation
        return {
            "dialplan": conv.plan.name if conv else None,
            "ended": self.ended,
            "unused_inputs": self.unused_inputs,
            "context": conv.context() if conv else None,
            "events": [{"event": e.kind, "at": round(e.at, 3), **_jsonable(e.data)} for e in self.events],
        }


def _jsonable(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_jsonable(v) for v in data]
    if isinstance(data, str | int | float | bool) or data is None:
        return data
    return str(data)


def run(plan: Dialplan, inputs: Sequence[SimInput], *, gate: CallGate, router: IntentRouter, call_id: str = "sim",
        today: dt.date | None = None, now: dt.datetime | None = None, registry: Any = None,
        words_per_second: float = 2.5) -> SimResult:
    conv = Conversation(plan, gate, router, call_id=call_id, today=today, now=now, registry=registry,
                        options=ConversationOptions(words_per_second=words_per_second))
    result = SimResult(conversation=conv)
    t = 0.0

    def play(step: Step) -> float:
        nonlocal t
        result.events.extend(step.events)
        for say in step.say:
            t += max(0.4, len(say.text.split()) / words_per_second)
            result.events.extend(conv.prompt_played(say.id, t).events)
        if step.transfer is not None:
            result.ended = "transfer"
        elif step.hangup:
            result.ended = "hangup"
        return t

    play(conv.start(t))
    for n, item in enumerate(inputs):
        if result.ended:
            result.unused_inputs = len(inputs) - n
            break
        t += 0.5
        if item.kind == "say":
            end = t + max(0.3, len(item.value.split()) * 0.35)
            step = conv.utterance(Utterance(item.value, item.confidence, started_at=t, ended_at=end, kind="text",
                                            flagged=scan(item.value).categories))
            t = end
        elif item.kind == "dtmf":
            t += 0.25 * len(item.value)
            step = conv.dtmf(item.value, t)
        elif item.kind == "no_input":
            t += 6.0
            step = conv.no_input(t)
        else:
            result.events.extend(conv.hangup(t).events)
            result.ended = "caller hung up"
            break
        play(step)
    if not result.ended:
        result.events.extend(conv.hangup(t + 1.0).events)  # end of script: release anything pending
    return result


# --- printing -------------------------------------------------------------------------------------------


def describe(e: TraceEvent) -> str | None:
    """One line per event for people (``simulate`` without --json)."""
    d = e.data
    if e.kind == "say":
        flag = "" if d["interruptible"] else ", uninterruptible"
        return f"  agent  [{d['kind']}{flag}] {d['text']}"
    if e.kind == "input":
        return f"  caller [{d['kind']}] {d['text']}"
    if e.kind in ("intent", "intent_unsure"):
        tiers = " ".join(
            f"t{t['tier']}:{t['guess'] or '-'}@{t['confidence']:.2f}{'*' if t['accepted'] else ''}"
            for t in d.get("tiers", [])
        )
        cost = f"{float(d.get('cost_s', 0.0)) * 1000:.1f} ms"
        if e.kind == "intent":
            return f"    intent {d['intent']} (tier {d['tier']}, confidence {d['confidence']:.2f}, {cost}) {tiers}"
        return f"    no confident intent ({cost}) {tiers}"
    if e.kind == "slot":
        return f"    slot {d['slot']} = {d['value']} ({d['type']}, from {d['source']})"
    if e.kind == "transition":
        return f"    -> {d['to']} ({d['reason']})"
    if e.kind == "action_requested":
        return f"    action {d['action']} ({d['risk']}) {d['params']}"
    if e.kind == "gate":
        shown = {k: v for k, v in d.items() if k not in ("call", "request_id") and v not in (None, [], "")}
        rest = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"    gate.{d['call']}({rest})"
    if e.kind == "action_result":
        return f"    result {d['action']}: {'ok ' + str(d.get('result', {})) if d['ok'] else 'failed: ' + d['reason']}"
    if e.kind == "schedule":
        why = f", {d['holiday']}" if d.get("holiday") else ""
        return f"    schedule {d['schedule']}: {d['state']} (at {d['local']}{why})"
    if e.kind in ("rewind", "correction", "checkpoint", "fallback", "no_match", "transfer", "hangup", "ignored",
                  "error", "repeat", "slot_rejected"):
        return f"    {e.kind}: " + ", ".join(f"{k}={v}" for k, v in d.items())
    return None
