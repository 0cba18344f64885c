"""Actions through the gate, and the safe path's steps: read-back, confirm, channel, code.

Builds the :class:`~voiceivr.policy.gate.ActionRequest` from the slots (with the injection-filter findings of
every input behind them), asks the gate, runs the fast path, and walks the safe path: the uninterruptible
read-back, the caller's yes / no / correction, the choice of channel, the one-time code, then the execution
and its result (login, saved results, secrets dropped).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from voiceivr.dialplan.context import _Pending, _union
from voiceivr.dialplan.filling import SlotFilling
from voiceivr.dialplan.io import Utterance
from voiceivr.dialplan.model import ActionCall, Node, PromptSpec
from voiceivr.dialplan.second_opinion import reconcile
from voiceivr.dialplan.slots import Money, Parsed, extract_digits, tokens
from voiceivr.policy.confirm import read_answer
from voiceivr.policy.gate import ActionRequest, ActionResult, Channel, GateRefused


class Confirmation(SlotFilling):
    """A node's action from request to result, with the caller's confirmation on the safe path."""

    # === the read-back's answer ===========================================================================

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
        if u.kind == "speech" and u.open_text:
            # An unsure grammar, and the same audio transcribed again: both must read the same answer
            # (second_opinion.py). A yes still needs policy.confirm_min_confidence from the grammar: the open
            # transcript can refuse one, or say no, but never confirm a money move on its own.
            heard = read_answer(u.open_text)
            reading = reconcile("yesno", None if answer is None else Parsed(answer.yes, answer.start),
                                None if heard is None else Parsed(heard.yes, heard.start))
            self._event("second_opinion", slot="confirm", verdict=reading.verdict)
            if reading.verdict == "disagree":
                self._confirm_miss()
                return
            if reading.verdict == "open" and heard is not None:
                self._confirm_answer(heard.yes, u.open_text, u.confidence)
                return
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

    # === actions through the gate =========================================================================

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
