"""The dialplan engine: one :class:`Conversation` per call, pure, deterministic and single-threaded.

The call session (or ``voiceivr dialplan simulate``, or a test) feeds it inputs and gets back a :class:`Step`
saying what to do. It has no threads, never sleeps, reads no clock of its own (times come with the inputs;
``today`` is injected for dates, ``now`` -- the call's start -- for business hours) and does I/O only through
the objects it is given: the
:class:`~voiceivr.policy.gate.CallGate` (every action) and the :class:`~voiceivr.dialplan.router.IntentRouter`
(tier 3 may call an LLM).

Inputs (each returns a :class:`Step`)::

    conv.start(at)                                   answer: the start node's prompts
    conv.utterance(Utterance(text, confidence, started_at, ended_at, kind="speech", id=...))
    conv.dtmf(digits, at)                            digits collected per the last Listen.dtmf spec
    conv.no_input(at)                                the Listen.no_input_timeout_s ran out
    conv.prompt_played(prompt_id, at)                a prompt finished playing (at = when its last sample left)
    conv.prompt_cut(prompt_id, words_heard, at)      barge-in (or flush) cut it after words_heard words
    conv.hangup(at)                                  the caller hung up
    conv.overheard(prompt_id, kind, started_at, ended_at)  speech or a key over an uninterruptible prompt: no
                                                     answer, but one over a read-back goes on the record
    conv.binding_changed(binding, reason, at)        media moved (re-INVITE), transfer or Replaces: the gate
                                                     drops privileges; anything that needs a login starts over

Every prompt the engine emits must be answered by exactly one ``prompt_played`` or ``prompt_cut`` (a prompt
flushed before it started is cut with 0 words): the history keeps only what the caller heard, and the
safe path waits for its read-back to have *finished playing* before a "yes" can count.

A :class:`Step` holds: ``say`` (prompts to play in order: id, text, kind, interruptible), ``listen`` (what to
expect next: grammar phrases for the STT, the DTMF collection spec, the no-input timeout), ``transfer``
(to an agent), ``hangup`` (after the prompts have played) and ``events`` (the new trace entries: inputs,
intents with tier/confidence/cost, slot values, transitions, gate calls, actions).

Example::

    conv = Conversation(plan, gate, router, call_id="c1")
    step = conv.start(at=0.0)                       # greeting + main menu
    for p in step.say:
        step = conv.prompt_played(p.id, at=...)     # or prompt_cut(p.id, words, at) on barge-in
    step = conv.utterance(Utterance("what's my balance", 0.92, started_at=4.1, ended_at=5.0))
    step.say[0].text     # "First, I need to identify you."  (the balance node requires login)
    step.listen.expect   # "slot:account_number"; step.listen.dtmf.max_digits == 8

The safe path, for a ``high`` action (gate calls in order)::

    gate.decide(request)             -> Decision(path="safe", channels=("sms", ...))
    say readback (uninterruptible) + confirm question; listen "confirm"
    prompt_played(readback)          -> gate.readback_played(request_id, at)
    "yes" (started after the read-back ended, confident)
                                     -> gate.confirm(request_id, evidence)
    [two channels: ask which]        -> gate.send_challenge(request_id, channel); say code request
    caller reads the code            -> gate.verify_code(request_id, code, evidence)
                                     -> gate.execute(request_id)   (audit row committed, action run once)

The fast path is ``gate.decide`` then ``gate.execute``. A login action's success calls
``gate.login(principal, evidence)``. "No", "go back", "main menu", an agent transfer or a hangup while a
request is pending calls ``gate.abandon(request_id, reason)``.

Context integrity: the context checkpoints at each confirmed intent (an accepted routing decision) and
after each action. A correction ("no, fifty, not fifteen", "no, I meant savings") or "go back" rewinds to
the last checkpoint, discarding the slots filled after it, then applies whatever the correction itself
says. Secret slots (a PIN) are dropped as soon as their action has run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from voiceivr.dialplan import hours
from voiceivr.dialplan.context import Checkpoint, ConversationOptions, HistoryEntry, Phase, SlotFill, _Pending, _union
from voiceivr.dialplan.filling import SlotFilling
from voiceivr.dialplan.io import DtmfSpec, Listen, Say, Step, TraceEvent, Transfer, Utterance
from voiceivr.dialplan.model import AGENT, GOODBYE, RETURN, ActionCall, Node, PromptSpec, ScheduleBranch
from voiceivr.dialplan.router import RoutingDecision
from voiceivr.dialplan.slots import Money, extract_digits, tokens
from voiceivr.policy.confirm import DTMF_NO, DTMF_YES, read_answer
from voiceivr.policy.gate import ActionRequest, ActionResult, Channel, Evidence, GateRefused, InputKind, SessionBinding

__all__ = [
    "Checkpoint", "Conversation", "ConversationOptions", "DtmfSpec", "HistoryEntry", "Listen", "Phase", "Say",
    "SlotFill", "Step", "TraceEvent", "Transfer", "Utterance",
]

MAX_HOPS = 64  # transitions without waiting for the caller (the loader rejects loops; this is a backstop)


class Conversation(SlotFilling):
    """One call's dialogue (see the module docstring): the inputs, each dispatched by phase to the parts below."""

    # === inputs ===========================================================================================

    def start(self, at: float = 0.0) -> Step:
        self._begin(at)
        if self.phase != "idle":
            return self._ignored("start", "already started")
        self._enter(self.plan.start, reason="start")
        return self._finish()

    def utterance(self, u: Utterance) -> Step:
        self._begin(u.ended_at)
        if self.phase in ("idle", "ended"):
            return self._ignored("utterance", f"call is {self.phase}")
        key = (u.text, u.started_at, u.ended_at)
        if (u.id and u.id in self._seen_ids) or (not u.id and key == self._last_input):
            return self._ignored("utterance", "duplicate delivery")
        if u.ended_at < self._last_input_end:
            return self._ignored("utterance", "out of order (ended before the previous input)")
        if u.id:
            self._seen_ids.add(u.id)
        self._last_input = key
        self._last_input_end = u.ended_at
        secret = self._secret_input()
        heard = "[secret]" if secret else u.text
        self.history.append(HistoryEntry("caller", heard, u.started_at))
        self._event("input", kind=u.kind, text=heard, confidence=round(u.confidence, 3), started_at=u.started_at,
                    ended_at=u.ended_at, **({"flagged": list(u.flagged)} if u.flagged else {}))
        # A spoken PIN or code is evidence (of the login, of a pleading over the code prompt), but its words
        # must not reach the audit trail in clear.
        self._last_evidence = Evidence(kind=u.kind, text=heard, confidence=u.confidence,
                                       started_at=u.started_at, ended_at=u.ended_at, audio_sha256=u.audio_sha256,
                                       flagged=u.flagged)
        self._input_flags = tuple(u.flagged)
        if u.flagged:
            rid = self.pending.request.request_id if self.pending else None
            self.gate.note_input(self._last_evidence, "injection_flagged", rid)
            self._event("gate", call="note_input", reason="injection_flagged", categories=list(u.flagged))
        self._on_text(u)
        return self._finish()

    def dtmf(self, digits: str, at: float) -> Step:
        self._begin(at)
        if self.phase in ("idle", "ended"):
            return self._ignored("dtmf", f"call is {self.phase}")
        if at < self._last_input_end:
            return self._ignored("dtmf", "out of order (before the previous input)")
        self._last_input_end = at
        self._last_input = None
        digits = digits.strip()
        shown = "[secret]" if self._secret_input() else digits
        self.history.append(HistoryEntry("caller", f"[keyed {shown}]", at))
        self._event("input", kind="dtmf", text=shown)
        self._last_evidence = Evidence(kind="dtmf", text=shown, confidence=1.0, started_at=at, ended_at=at)
        self._on_dtmf(digits)
        return self._finish()

    def _secret_input(self) -> bool:
        """Is the caller answering with a secret: a slot marked secret, or the one-time code?"""
        return self.phase == "code" or (self.phase == "slot" and self.slot is not None
                                        and self.plan.slots[self.slot].secret)

    def no_input(self, at: float) -> Step:
        self._begin(at)
        if self.phase in ("idle", "ended"):
            return self._ignored("no_input", f"call is {self.phase}")
        self._event("no_input")
        self.no_input_count += 1
        fb = self._fallback()
        if self.no_input_count <= fb.no_input:
            self._prompt(self.plan.messages.no_input, "reprompt")
            self._relisten()
        else:
            self._escalate("no input")
        return self._finish()

    def prompt_played(self, prompt_id: str, at: float) -> Step:
        self._begin(at)
        say = self._queued.pop(prompt_id, None)
        if say is None:
            return self._ignored("prompt_played", f"unknown or already reported prompt {prompt_id}")
        self.history.append(HistoryEntry("agent", say.text, at, prompt_id))
        self._event("prompt_played", id=prompt_id)
        p = self.pending
        if p is not None and prompt_id == p.readback_id and p.readback_done_at is None:
            p.readback_done_at = at
            self.gate.readback_played(p.request.request_id, at)
            self._event("gate", call="readback_played", request_id=p.request.request_id)
        return self._finish()

    def prompt_cut(self, prompt_id: str, words_heard: int, at: float) -> Step:
        self._begin(at)
        say = self._queued.pop(prompt_id, None)
        if say is None:
            return self._ignored("prompt_cut", f"unknown or already reported prompt {prompt_id}")
        words = say.text.split()
        heard = " ".join(words[: max(0, words_heard)])
        if heard:
            self.history.append(HistoryEntry("agent", heard, at, prompt_id, cut=True))
        self._event("prompt_cut", id=prompt_id, words_heard=max(0, words_heard), words=len(words))
        if not say.interruptible and self.phase != "ended":
            # A read-back or code request the caller did not hear in full does not count: say it again.
            self._event("replay", id=prompt_id, reason="uninterruptible prompt was cut")
            self._prompt_say(say.text, say.kind)
            if self.pending is not None and prompt_id == self.pending.readback_id:
                self.pending.readback_id = self._say[-1].id
            self._relisten(keep_prompts=True)
        return self._finish()

    def hangup(self, at: float) -> Step:
        self._begin(at)
        if self.phase == "ended":
            return self._ignored("hangup", "call already ended")
        self._abandon("caller hung up")
        self._event("hangup", by="caller")
        self.phase = "ended"
        return self._finish()

    def overheard(self, prompt_id: str, kind: InputKind, started_at: float, ended_at: float) -> Step:
        """The caller spoke or keyed over an uninterruptible prompt. Nothing is answered; over the read-back of a
        pending request it is audited (a yes said there must never count, and now the attempt is on record)."""
        self._begin(ended_at)
        self._event("overheard", id=prompt_id, kind=kind, started_at=started_at, ended_at=ended_at)
        p = self.pending
        if p is not None and self._kinds.get(prompt_id) == "readback":
            evidence = Evidence(kind=kind, text="", confidence=0.0, started_at=started_at, ended_at=ended_at)
            self.gate.note_input(evidence, "over_readback", p.request.request_id)
            self._event("gate", call="note_input", request_id=p.request.request_id, reason="over_readback")
        return self._finish()

    def binding_changed(self, binding: SessionBinding | None, reason: str, at: float) -> Step:
        """The SIP side moved the call (``None``: the session is closed). The gate drops the principal and voids
        every open request; the conversation follows it, so a caller on the new leg must identify again before
        anything that needs a login, and a half-done safe-path request is not resumed from its old state."""
        self._begin(at)
        self.gate.binding_changed(binding, reason)
        self._event("gate", call="binding_changed", reason=reason)
        if self.phase in ("idle", "ended"):
            return self._finish()
        had_request = self.pending is not None
        self._abandon(f"session changed: {reason}")
        # Nothing said on the old leg carries over: not its slots, not words waiting for a login, not a rewind
        # back to a state collected before the change.
        self.slots.clear()
        self.return_stack.clear()
        self.checkpoints.clear()
        self._visit_flags = ()
        if binding is None:
            self._event("hangup", by="agent", reason=f"session closed: {reason}")
            self.phase = "ended"
            self._hangup = True
            return self._finish()
        node = self.plan.node(self.node_id)
        identifying = node.action is not None and node.action.authenticates
        if had_request or node.requires_login or identifying:
            # The node starts again from the top: through login first if it needs one, and an identification
            # under way asks again for everything (its answers came from the old leg).
            self._prompt(self.plan.messages.reidentify, "info")
            self._enter(self.node_id, reason="session changed")
        return self._finish()

    # === what the engine knows, for the session and tests ==================================================

    def context(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "phase": self.phase,
            "slot": self.slot,
            "slots": {k: self._shown_value(k, v.value) for k, v in self.slots.items()},
            "confirmed": sorted(k for k, v in self.slots.items() if v.confirmed),
            "checkpoints": [c.reason for c in self.checkpoints],
            "pending": self.pending.request.action if self.pending else None,
        }


    # === walking nodes =====================================================================================

    def _enter(self, target: str, reason: str, prefill: str = "") -> None:
        for _ in range(MAX_HOPS):
            nxt = self._enter_once(target, reason, prefill)
            if nxt is None:
                return
            target, reason, prefill = nxt
        self._event("error", reason="too many transitions without waiting for the caller")
        self._to_agent("engine loop guard")

    def _enter_once(self, target: str, reason: str, prefill: str) -> tuple[str, str, str] | None:
        if target == AGENT:
            self._to_agent(reason)
            return None
        if target == GOODBYE:
            self._goodbye(reason)
            return None
        if target == RETURN:
            if self.return_stack:
                back_to, words, flags = self.return_stack.pop()
                self._input_flags = _union(self._input_flags, flags)
                return back_to, "return after login", words
            return self.plan.main_menu, "return (nothing to return to)", ""
        node = self.plan.node(target)
        self._event("transition", **{"from": self.node_id or None, "to": target, "reason": reason})
        if node.requires_login and self.gate.principal() is None and self.plan.login:
            self.return_stack.append((target, prefill, self._input_flags if prefill else ()))
            self._prompt(self.plan.messages.login_first, "prompt")
            return self.plan.login, f"{target} requires login", ""
        self.node_id = target
        self.phase = "menu"
        self.slot = None
        self.action_done = False
        self.no_input_count = self.no_match_count = 0
        self.menu_offered = False
        self.cancel_count = 0
        for s in node.collect:  # a new visit collects afresh: the last transfer's amount is not this one's
            self.slots.pop(s, None)
        self._visit_flags = self._input_flags if prefill else ()
        for p in node.say:
            self._prompt(p)
        if prefill:
            self._fill_from(prefill, node, asked=None)
        return self._advance()

    def _advance(self) -> tuple[str, str, str] | None:
        """Carry on with the current node: ask the next missing slot, run its action, then move on."""
        node = self.plan.node(self.node_id)
        for s in node.collect:
            if s in self.slots:
                continue
            spec = self.plan.slots[s]
            if spec.default is not None:
                self._set_slot(spec, spec.default, "default")
                continue
            self.phase, self.slot = "slot", s
            self._prompt(spec.ask)
            self._listen_for_slot(spec)
            return None
        self.slot = None
        if node.action is not None and not self.action_done:
            return self._request_action(node, node.action)
        return self._continue(node)

    def _continue(self, node: Node) -> tuple[str, str, str] | None:
        if node.schedule is not None:
            return self._branch_on_schedule(node.schedule)
        if node.routes:
            self.phase = "menu"
            self._listen_for_intents(node)
            return None
        if node.goto:
            return node.goto, "goto", ""
        if node.end == "agent":
            self._to_agent("end of dialplan")
        else:
            self._goodbye("end of dialplan")
        return None

    def _branch_on_schedule(self, branch: ScheduleBranch) -> tuple[str, str, str]:
        schedule = self.plan.schedules[branch.schedule]
        reading = hours.state_at(schedule, self.started)
        holiday = reading.holiday
        self._event("schedule", schedule=branch.schedule, state=reading.state,
                    local=reading.local.isoformat(timespec="minutes"), holiday=holiday.name if holiday else None)
        said = schedule.emergency.say if reading.state == "emergency" else \
            holiday.say if holiday is not None and reading.state == "holiday" else None
        if said is not None:
            self._prompt(said)
        return branch.target(reading.state), f"schedule {branch.schedule}: {reading.state}", ""

    # === caller input ======================================================================================

    def _on_text(self, u: Utterance) -> None:
        if self.phase == "menu":
            self._menu_text(u)
        elif self.phase == "slot":
            self._slot_text(u)
        elif self.phase == "confirm":
            self._confirm_text(u)
        elif self.phase == "channel":
            self._channel_input(u.text, None)
        elif self.phase == "code":
            self._code_input(u.text, dtmf=False)

    def _on_dtmf(self, digits: str) -> None:
        g = self._global_for_key(digits)
        if self.phase == "menu":
            node = self.plan.node(self.node_id)
            route = next((r for r in node.routes if r.dtmf == digits), None)
            if route is not None:
                self._accept_intent(route.intent, RoutingDecision(route.intent, 0, 1.0, 0.0), "")
            elif g:
                self._global(g, RoutingDecision(g, 0, 1.0, 0.0))
            else:
                self._no_match("unknown key")
        elif self.phase == "slot":
            assert self.slot is not None
            spec = self.plan.slots[self.slot]
            value = self._slot_from_dtmf(spec, digits)
            if value is not None:
                self._slot_filled(spec, value, "dtmf")
            elif g:
                self._global(g, RoutingDecision(g, 0, 1.0, 0.0))
            else:
                self._no_match("keyed value not valid")
        elif self.phase == "confirm":
            if digits in (DTMF_YES, DTMF_NO):
                self._confirm_answer(digits == DTMF_YES, "", 1.0)
            elif g:
                self._global(g, RoutingDecision(g, 0, 1.0, 0.0))
            else:
                self._no_match("press 1 for yes or 2 for no")
        elif self.phase == "channel":
            self._channel_input("", digits)
        elif self.phase == "code":
            if g and not digits.isdigit():
                self._global(g, RoutingDecision(g, 0, 1.0, 0.0))
            else:
                self._code_input(digits, dtmf=True)

    def _menu_text(self, u: Utterance) -> None:
        node = self.plan.node(self.node_id)
        cands = [r.intent for r in node.routes] + list(self.plan.globals)
        decision = self.router.route(u.text, cands, self._recognition(u))
        self._intent_event(decision, cands)
        if decision.intent is None:
            self._no_match("no confident intent")
        elif decision.intent in self.plan.globals:
            self._global(decision.intent, decision)
        else:
            self._accept_intent(decision.intent, decision, u.text)

    def _accept_intent(self, intent: str, decision: RoutingDecision, words: str) -> None:
        node = self.plan.node(self.node_id)
        route = next(r for r in node.routes if r.intent == intent)
        if decision.tier == 0 and not words:
            self._event("intent", intent=intent, tier=0, confidence=1.0, cost_s=0.0, via="dtmf")
        self._checkpoint("intent", f"intent {intent}", node=route.goto)
        self._enter(route.goto, reason=f"intent {intent}", prefill=words)

    def _enter_continue(self) -> None:
        nxt = self._advance()
        if nxt is not None:
            self._enter(*nxt)

    def _confirm_text(self, u: Utterance) -> None:
        p = self.pending
        assert p is not None
        if p.readback_done_at is None or u.started_at < p.readback_done_at:
            # Speech over the read-back is no answer to it (and a "yes" then must never count).
            self._event("ignored", input="utterance", reason="overlapped the read-back")
            answer = read_answer(u.text)
            if p.readback_done_at is None:
                if answer is not None and answer.yes:
                    self._note_refused_yes(p, "readback_not_played")
                return
            if answer is not None and answer.yes:
                step = self.gate.confirm(p.request.request_id, self._last_evidence)
                self._event("gate", call="confirm", ok=step.ok, reason=step.reason)
            self._prompt(self.plan.messages.confirm_retry, "reprompt")
            self._relisten()
            return
        g = self._route_globals(u.text, cheap_only=True, recognition=self._recognition(u))
        if g is not None:
            self._global(g.intent or "", g)
            return
        answer = read_answer(u.text)
        if answer is None:
            self._confirm_miss()
            return
        # Any yes goes to the gate, which reads it with the same lexicon and audits why it refuses one (a yes
        # inside a longer sentence, a flagged instruction): the engine then asks again.
        self._confirm_answer(answer.yes, u.text, u.confidence)

    def _confirm_answer(self, yes: bool, text: str, confidence: float) -> None:
        p = self.pending
        assert p is not None
        self._event("confirm_answer", yes=yes, confidence=round(confidence, 3))
        if not yes:
            if text and self._has_correction_words(text):
                self._correction(text)
            else:
                self._abandon("caller said no")
                self.cancel_count += 1
                self._plain_no()
            return
        if p.readback_done_at is None:
            self._event("ignored", input="confirm", reason="read-back has not finished playing")
            self._note_refused_yes(p, "readback_not_played")
            self._relisten()
            return
        if not self.gate.confirmation.confident("speech" if text else "dtmf", confidence):
            self._event("ignored", input="confirm", reason="yes not recognised confidently")
            self._note_refused_yes(p, "low_confidence")
            self._confirm_miss()
            return
        step = self.gate.confirm(p.request.request_id, self._last_evidence)
        self._event("gate", call="confirm", request_id=p.request.request_id, ok=step.ok, reason=step.reason)
        if not step.ok:
            self._confirm_miss()
            return
        p.confirmed = True
        for k, v in list(self.slots.items()):
            self.slots[k] = replace(v, confirmed=True)
        self._checkpoint("confirmed", f"confirmed {p.call.name}")
        self._ask_channel_or_send()

    def _note_refused_yes(self, p: _Pending, reason: str) -> None:
        """A yes the engine refused itself never reaches ``gate.confirm``; the trail still gets it."""
        self.gate.note_input(self._last_evidence, reason, p.request.request_id)
        self._event("gate", call="note_input", request_id=p.request.request_id, reason=reason)

    def _plain_no(self, rewound: bool = False) -> None:
        """A bare "no" to a read-back: collect the details again, once; a second "no" cancels."""
        if not rewound:
            self._rewind("caller said no")
        node = self.plan.node(self.node_id)
        if self.cancel_count >= 2:
            self._prompt(self.plan.messages.cancelled, "info")
            self.action_done = True
            nxt = self._continue(node)
            if nxt is not None:
                self._enter(*nxt)
            return
        self._prompt("Okay, let's go through it again.", "info")
        self._resume()

    def _confirm_miss(self) -> None:
        p = self.pending
        assert p is not None
        p.confirm_misses += 1
        if p.confirm_misses > self._fallback().no_match:
            self._abandon("no clear yes or no")
            self._prompt(self.plan.messages.cancelled, "info")
            self._escalate("no clear confirmation")
            return
        self._prompt(self.plan.messages.confirm_retry, "reprompt")
        self._relisten()

    def _correction(self, text: str) -> None:
        """ "No, fifty, not fifteen": back to the last confirmed intent, then take what the correction says."""
        self._abandon("caller corrected it")
        self._rewind("correction")
        node = self.plan.node(self.node_id)
        filled = self._fill_from(text, node, asked=None, bare_numbers=True)
        self._event("correction", filled=sorted(filled))
        if not filled:
            self.cancel_count += 1
            self._plain_no(rewound=True)
            return
        self._resume()

    def _has_correction_words(self, text: str) -> bool:
        toks = tokens(text)
        return len([t for t in toks if t not in ("no", "nope", "wait", "sorry", "i", "meant", "mean", "not", "um",
                                                 "uh", "that's", "wrong", "it", "is", "was")]) > 0


    # === actions through the gate ==========================================================================

    def _params(self, call: ActionCall) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, pv in call.params.items():
            if pv.literal is not None:
                out[name] = pv.literal
                continue
            assert pv.ref is not None
            value = self.slots[pv.ref].value
            if isinstance(value, Money):
                out[name] = value.cents
            elif isinstance(value, dt.date):
                out[name] = value.isoformat()
            else:
                out[name] = value
        return out

    def _request_action(self, node: Node, call: ActionCall) -> tuple[str, str, str] | None:
        self.action_done = True
        params = self._params(call)
        flags = _union(self._last_evidence.flagged, self._input_flags, self._visit_flags,
                       *(self.slots[pv.ref].flagged for pv in call.params.values()
                         if pv.ref is not None and pv.ref in self.slots))
        # The gate refuses a high action whose evidence is flagged: this is what keeps flagged text (said now,
        # before a login detour, or turns ago) out of a high action's slots.
        request = ActionRequest(action=call.name, params=params, risk=call.risk,
                                evidence=replace(self._last_evidence, flagged=flags))
        self._event("action_requested", action=call.name, risk=call.risk, params=self._shown_params(call, params))
        request, decision = self.gate.decide(request)
        self._event("gate", call="decide", request_id=request.request_id, path=decision.path,
                    allowed=decision.allowed, reasons=list(decision.reasons), channels=list(decision.channels))
        if not decision.allowed:
            self._prompt(self.plan.messages.refused, "info")
            return self._action_failed(node, call, "; ".join(decision.reasons) or "refused", speak=False)
        if decision.path == "fast":
            return self._execute(node, call, request.request_id)
        text = self._readback_text(call, params)
        if text is None:
            self._event("error", reason=f"no read-back for {call.name} on the safe path")
            self.gate.abandon(request.request_id, "no read-back available")
            self._prompt(self.plan.messages.refused, "info")
            return self._action_failed(node, call, "no read-back", speak=False)
        self._prompt_say(text, "readback", interruptible=False)
        self.pending = _Pending(request, decision, call, readback_id=self._say[-1].id, readback_text=text)
        self._event("readback", request_id=request.request_id, id=self._say[-1].id)
        ask = call.confirm.ask if call.confirm and call.confirm.ask.text else PromptSpec(
            self.plan.messages.confirm_ask)
        self._prompt(ask)
        self.phase = "confirm"
        self._listen_confirm()
        return None

    def _readback_text(self, call: ActionCall, params: Mapping[str, Any]) -> str | None:
        extra = {k: self._param_spoken(call, k, v) for k, v in params.items()}
        if call.confirm is not None:
            return self._render(call.confirm.readback.text, extra)
        if self.registry is not None and call.name in self.registry:
            template = self.registry.get(call.name).readback
            if template:
                return "You asked me to " + self._render(template, extra) + "."
        return None

    def _param_spoken(self, call: ActionCall, name: str, value: Any) -> str:
        pv = call.params[name]
        if pv.ref is not None:
            return self._spoken_slot(pv.ref)
        return str(value)

    def _shown_params(self, call: ActionCall, params: Mapping[str, Any]) -> dict[str, Any]:
        shown = {}
        for k, v in params.items():
            ref = call.params[k].ref
            shown[k] = "*" * len(str(v)) if ref and self.plan.slots[ref].secret else v
        return shown

    def _ask_channel_or_send(self) -> None:
        p = self.pending
        assert p is not None
        channels = p.decision.channels
        if not channels:
            self._event("error", reason="safe path offered no out-of-band channel")
            self._abandon("no channel for a code")
            self._prompt(self.plan.messages.refused, "info")
            nxt = self._action_failed(self.plan.node(self.node_id), p.call, "no out-of-band channel", speak=False)
            if nxt:
                self._enter(*nxt)
            return
        if len(channels) > 1:
            self.phase = "channel"
            self._prompt(self.plan.messages.choose_channel)
            self._listen_simple("channel", ("text", "text message", "app", "authenticator app"), max_digits=1)
            return
        self._send_code(channels[0])

    def _channel_input(self, text: str, digits: str | None) -> None:
        p = self.pending
        assert p is not None
        choice: Channel | None = None
        if digits is not None:
            choice = {"1": "sms", "2": "totp"}.get(digits)  # type: ignore[assignment]
        else:
            g = self._route_globals(text, cheap_only=True)
            if g is not None:
                self._global(g.intent or "", g)
                return
            toks = set(tokens(text))
            if toks & {"text", "sms", "message", "phone"}:
                choice = "sms"
            elif toks & {"app", "authenticator", "totp"}:
                choice = "totp"
        if choice is None or choice not in p.decision.channels:
            self._no_match("no channel chosen")
            return
        self._send_code(choice)

    def _send_code(self, channel: Channel) -> None:
        p = self.pending
        assert p is not None
        p.channel = channel
        try:
            challenge = self.gate.send_challenge(p.request.request_id, channel)
        except GateRefused as exc:
            # e.g. the account was flagged by another call since the read-back: the request cannot go on.
            self._event("gate", call="send_challenge", request_id=p.request.request_id, channel=channel,
                        ok=False, reason=exc.reason)
            self._abandon(f"code not sent: {exc.reason}")
            self._prompt(self.plan.messages.refused, "info")
            nxt = self._action_failed(self.plan.node(self.node_id), p.call, exc.reason, speak=False)
            if nxt is not None:
                self._enter(*nxt)
            return
        self._event("gate", call="send_challenge", request_id=p.request.request_id, channel=channel,
                    destination=challenge.destination_masked)
        if channel == "sms":
            tail = re.sub(r"\D", "", challenge.destination_masked)[-4:]
            self._prompt(PromptSpec(self.plan.messages.code_sms, kind="code_request", interruptible=False),
                         extra={"destination": " ".join(tail) if tail else "on file"})
        else:
            self._prompt(PromptSpec(self.plan.messages.code_totp, kind="code_request", interruptible=False))
        self.phase = "code"
        self.no_match_count = self.no_input_count = 0
        self._listen_code()

    def _code_input(self, text: str, dtmf: bool) -> None:
        p = self.pending
        assert p is not None
        if not dtmf:
            g = self._route_globals(text, cheap_only=True)
            if g is not None:
                self._global(g.intent or "", g)
                return
        got = extract_digits(text, self.options.code_min_digits, self.options.code_max_digits)
        if got is None:
            self._no_match("no code heard", message="Please say or key the code.")
            return
        step = self.gate.verify_code(p.request.request_id, str(got.value), self._last_evidence)
        self._event("gate", call="verify_code", request_id=p.request.request_id, ok=step.ok, reason=step.reason,
                    attempts_left=step.attempts_left, locked=step.locked)
        node = self.plan.node(self.node_id)
        if step.ok:
            nxt = self._execute(node, p.call, p.request.request_id)
            if nxt is not None:
                self._enter(*nxt)
            return
        if step.locked or step.attempts_left == 0:
            self.pending = None
            self._prompt(self.plan.messages.code_locked, "info")
            nxt = self._action_failed(node, p.call, "code refused", speak=False)
            if nxt is not None:
                self._enter(*nxt)
            return
        # An unreachable identity provider is not a wrong code: say so, rather than blame the caller's typing.
        unavailable = step.reason == "identity_unavailable"
        self._prompt(self.plan.messages.code_unavailable if unavailable else self.plan.messages.code_wrong, "reprompt")
        self._listen_code()

    def _execute(self, node: Node, call: ActionCall, request_id: str) -> tuple[str, str, str] | None:
        result: ActionResult = self.gate.execute(request_id)
        self._event("gate", call="execute", request_id=request_id, ok=result.ok, reason=result.reason,
                    audit_seq=result.audit_seq, duplicate=result.duplicate)
        self.pending = None
        if not result.ok:
            return self._action_failed(node, call, result.reason or "failed")
        values = self._typed_result(call, result.result)
        self._event("action_result", action=call.name, ok=True,
                    result={k: (str(v) if isinstance(v, Money) else v) for k, v in values.items()
                            if k != "principal"})
        if call.save_as:
            self.results[call.save_as] = values
        if call.authenticates:
            principal = str(result.result.get("principal", ""))
            step = self.gate.login(principal, self._last_evidence)
            self._event("gate", call="login", ok=step.ok, reason=step.reason)
            if not step.ok:
                return self._action_failed(node, call, step.reason or "login refused")
        self._drop_secrets(node)
        for k, v in list(self.slots.items()):
            self.slots[k] = replace(v, confirmed=True)
        if call.success is not None:
            self._prompt(call.success, extra={k: self._param_spoken(call, k, v)
                                              for k, v in self._params_safe(call).items()})
        self._checkpoint("action", f"action {call.name}")
        if call.on_success:
            return call.on_success, f"{call.name} succeeded", ""
        return self._continue(node)

    def _action_failed(self, node: Node, call: ActionCall, reason: str, speak: bool = True
                       ) -> tuple[str, str, str] | None:
        self._event("action_result", action=call.name, ok=False, reason=reason)
        self.pending = None
        self._drop_secrets(node)
        if speak:
            if call.failure is not None:
                self._prompt(call.failure, extra={"error": reason})
            else:
                self._prompt(self.plan.messages.failed, "info")
        for s in node.collect:  # what was collected for a failed action is not carried forward
            if s in self.slots and not self.slots[s].confirmed:
                self.slots.pop(s)
        if call.on_failure:
            return call.on_failure, f"{call.name} failed", ""
        return self._continue(node)

    def _params_safe(self, call: ActionCall) -> dict[str, Any]:
        return {k: v for k, v in call.params.items() if v.literal is not None or (
            v.ref in self.slots and not self.plan.slots[v.ref].secret)}

    def _typed_result(self, call: ActionCall, raw: Mapping[str, Any]) -> dict[str, Any]:
        types = self.registry.get(call.name).returns if self.registry and call.name in self.registry else {}
        out: dict[str, Any] = {}
        for k, v in raw.items():
            out[k] = Money(int(v)) if types.get(k) == "money" and isinstance(v, int) else v
        return out

    def _drop_secrets(self, node: Node) -> None:
        for s in node.collect:
            if self.plan.slots[s].secret:
                self.slots.pop(s, None)

    # === globals, fallbacks, checkpoints ===================================================================

    def _global_for_key(self, digits: str) -> str | None:
        return next((g.name for g in self.plan.globals.values() if g.dtmf and g.dtmf == digits), None)

    def _global(self, name: str, decision: RoutingDecision) -> None:
        if decision.tier == 0 and decision.cost_s == 0.0:
            self._event("intent", intent=name, tier=0, confidence=1.0, cost_s=0.0, via="dtmf")
        self.no_match_count = self.no_input_count = 0
        if name == "repeat":
            self._repeat()
        elif name == "agent":
            self._to_agent("caller asked")
        elif name == "goodbye":
            self._goodbye("caller said goodbye")
        elif name == "main_menu":
            self._abandon("main menu")
            self._drop_unconfirmed()
            self.return_stack.clear()
            self._enter(self.plan.main_menu, reason="main menu")
        elif name == "back":
            self._go_back()

    def _repeat(self) -> None:
        prompts, listen = self._last_listen
        self._event("repeat", prompts=[p.id for p in prompts])
        for p in prompts:
            self._prompt_say(p.text, p.kind, p.interruptible)
            if self.pending is not None and p.kind == "readback":
                # The caller hears the read-back again; a yes must now follow this one.
                self.pending.readback_id = self._say[-1].id
                self.pending.readback_done_at = None
        self._listen = listen

    def _go_back(self) -> None:
        """Undo the last step: within a task, back to its start; otherwise back to the menu the last intent was
        said at."""
        self._abandon("caller went back")
        cp = self._last_confirmed()
        if cp is not None and cp.node == self.node_id and any(not v.confirmed for v in self.slots.values()):
            self._rewind("go back")
            self._resume()
            return
        while self.checkpoints and self.checkpoints[-1].kind != "intent":
            self.checkpoints.pop()
        if not self.checkpoints:
            self._drop_unconfirmed()
            self.return_stack.clear()
            self._enter(self.plan.main_menu, reason="go back")
            return
        cp = self.checkpoints.pop()
        self._restore(cp, cp.origin)
        self._event("rewind", to=f"before {cp.reason}", node=cp.origin, reason="go back", dropped=[])
        self._enter(cp.origin, reason="go back")

    def _resume(self) -> None:
        """Carry on at the current node after a rewind (through login again if the node needs it)."""
        node = self.plan.node(self.node_id)
        if node.requires_login and self.gate.principal() is None and self.plan.login:
            self._enter(self.node_id, reason="resume")
            return
        if node.routes and not node.collect and not node.action:
            for p in node.say:
                self._prompt(p)
        self._enter_continue()


