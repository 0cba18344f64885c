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

from typing import Any

from voiceivr.dialplan.context import Checkpoint, ConversationOptions, HistoryEntry, Phase, SlotFill
from voiceivr.dialplan.io import DtmfSpec, Listen, Say, Step, TraceEvent, Transfer, Utterance
from voiceivr.dialplan.navigation import Navigation
from voiceivr.dialplan.router import RoutingDecision
from voiceivr.policy.confirm import DTMF_NO, DTMF_YES
from voiceivr.policy.gate import Evidence, InputKind, SessionBinding

__all__ = [
    "Checkpoint", "Conversation", "ConversationOptions", "DtmfSpec", "HistoryEntry", "Listen", "Phase", "Say",
    "SlotFill", "Step", "TraceEvent", "Transfer", "Utterance",
]


class Conversation(Navigation):
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
                    ended_at=u.ended_at, **({"flagged": list(u.flagged)} if u.flagged else {}),
                    **({"open_text": u.open_text} if u.open_text and not secret else {}))
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


