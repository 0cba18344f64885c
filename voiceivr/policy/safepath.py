"""The safe path: one :class:`SafePathGate` per call, implementing :class:`voiceivr.policy.gate.CallGate`.

What the dialplan engine calls, in order::

    gate = services.gate(binding)            # or voiceivr.policy.make_gate(...)
    # identification: a low action (e.g. "identify": account + PIN) returns {"authenticated": True,
    # "principal": P}; only then does login(P) succeed
    req, d = gate.decide(request)             # fast or safe path; d.allowed False -> say why, do not run
    fast path:  gate.execute(req.request_id)
    safe path:  play the read-back (uninterruptible), then gate.readback_played(req.request_id, t_end)
                gate.confirm(req.request_id, yes_evidence)            # a yes that began after t_end
                gate.send_challenge(req.request_id, d.channels[0])    # raises GateRefused if out of order
                gate.verify_code(req.request_id, digits, evidence)    # up to policy.code_max_attempts
                gate.execute(req.request_id)
    any time:   gate.binding_changed(new_binding, reason)   # re-INVITE moving media, transfer, Replaces
                                                            # (always drops privileges; not for refreshes)
                gate.abandon(req.request_id, reason)          # caller changed their mind / hung up
                gate.note_external(source, text)              # tool results, CRM notes, SMS replies

Every step and every refusal writes an audit row; the action's own intent row is committed before it runs
(voiceivr.actions.runner). The gate keeps its own copy of each request's parameters, canonical JSON, taken at
``decide``: what runs is exactly what was read back and bound to the code, whatever happens to the engine's
objects afterwards. What the gate keeps of a request between its steps, and the audit form of evidence and
bindings, are in :mod:`voiceivr.policy.pending`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from voiceivr import injection
from voiceivr.actions.effects import RunContext
from voiceivr.actions.runner import ActionRunner
from voiceivr.audit.chain import AuditTrail, canonical_json
from voiceivr.policy.codes import BoundAction, Checked, CodeBook
from voiceivr.policy.confirm import ConfirmRules, is_explicit_yes
from voiceivr.policy.flags import PrincipalFlags
from voiceivr.policy.gate import (
    ActionRequest,
    ActionResult,
    Challenge,
    Channel,
    Decision,
    Evidence,
    GateRefused,
    SessionBinding,
    StepResult,
)
from voiceivr.policy.identity import IdentityProvider, LoginContacts
from voiceivr.policy.pending import PendingRequest, binding_audit, evidence_audit
from voiceivr.policy.rules import Policy
from voiceivr.policy.sms import SmsSender

log = logging.getLogger(__name__)

REQUEST_ID_MAX = 64


class SafePathGate:
    """The :class:`~voiceivr.policy.gate.CallGate` of one call. Called from the call's worker thread only."""

    def __init__(
        self,
        *,
        binding: SessionBinding,
        policy: Policy,
        runner: ActionRunner,
        codebook: CodeBook,
        identity: IdentityProvider | None,
        flags: PrincipalFlags,
        audit: AuditTrail,
        sms: SmsSender | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.binding = binding
        self.policy = policy
        self.confirmation = ConfirmRules(policy.confirm_min_confidence)
        self.runner = runner
        self.codes = codebook
        self.flags = flags
        self.audit = audit
        self.sms = sms
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._principal: str | None = None
        self._epoch = 0
        self._closed = False
        self._requests: dict[str, PendingRequest] = {}
        # principal -> epoch in which an identification action of this call vouched for them
        self._identified: dict[str, int] = {}
        # What the identity provider said at each identification (phone on file, TOTP); None: no plugin
        # answers for identities, so no code can be sent.
        self.contacts = LoginContacts(identity, binding.call_id, self._audit)
        # Values of secret parameters seen in this call (a PIN): masked wherever evidence text is audited,
        # since the keypress that carried a PIN is also the evidence of the request that follows it.
        self._secrets: set[str] = set()

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def call_id(self) -> str:
        return self.binding.call_id

    def _audit(self, kind: str, payload: Mapping[str, Any]) -> int:
        record = self.audit.append(kind, {**payload, "binding": binding_audit(self.binding), "epoch": self._epoch},
                                   actor="policy", call_id=self.call_id)
        return record.seq

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        return text

    def _ev(self, e: Evidence | None) -> dict[str, Any] | None:
        return evidence_audit(e, self._mask)

    def _session_id(self, principal: str | None) -> str:
        b = self.binding
        raw = "|".join((b.call_id, b.sip_call_id, b.local_tag, b.remote_tag, b.media_address, principal or "",
                        str(self._epoch)))
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def _refuse(self, kind: str, reason: str, payload: Mapping[str, Any]) -> int:
        log.info("safe path refused a step", extra={"step": kind, "reason": reason, "call_id": self.call_id})
        return self._audit(f"policy.{kind}_refused", {**payload, "reason": reason})

    def _live(self, request_id: str, step: str) -> tuple[PendingRequest | None, str]:
        """The request if it may still go on in this session, else why not."""
        p = self._requests.get(request_id)
        if p is None:
            return None, "unknown_request"
        if p.state == "void":
            return p, "request_void"
        if self._closed:
            return p, "session_closed"
        if p.epoch != self._epoch or p.session_id != self._session_id(p.principal):
            return p, "binding_changed"
        if p.decision.path == "safe" and p.principal != self._principal:
            return p, "principal_changed"
        return p, ""

    def _bound(self, p: PendingRequest) -> BoundAction:
        return BoundAction(p.request.action, p.request.params, p.session_id, self.policy.amount_params,
                           self.policy.destination_params)

    # ------------------------------------------------------------------------------------------ identity

    def principal(self) -> str | None:
        return None if self._closed else self._principal

    def login(self, principal: str, evidence: Evidence) -> StepResult:
        payload = {"principal": principal, "evidence": self._ev(evidence)}
        if self._closed:
            self._refuse("login", "session_closed", payload)
            return StepResult(False, "session_closed")
        if self._identified.get(principal) != self._epoch:
            # Only an identification action that ran in this call, since the last binding change, vouches.
            self._refuse("login", "not_identified", payload)
            return StepResult(False, "not_identified")
        if self._principal not in (None, principal):
            # Someone else logs in on the same call: nothing of the first customer's carries over.
            self._void_all("principal_changed")
        self._principal = principal
        self._audit("policy.login", {**payload, "session_id": self._session_id(principal)})
        return StepResult(True)

    def binding_changed(self, new_binding: SessionBinding | None, reason: str) -> None:
        # Every call drops privileges, even with an unchanged binding: a transfer or a Replaces can keep the
        # media address, and only the SIP side knows what happened (a mere session refresh is not reported).
        old = self.binding
        dropped = self._principal
        self._void_all(f"binding_changed:{reason}")
        self._principal = None
        self._identified.clear()
        self.contacts.clear()
        self._epoch += 1
        if new_binding is None:
            self._closed = True
        else:
            if new_binding.call_id != old.call_id:
                raise ValueError("a binding change keeps the call id; a new call gets a new gate")
            self.binding = new_binding
        self._audit("policy.binding_changed", {
            "reason": reason, "old_binding": binding_audit(old),
            "new_binding": binding_audit(new_binding) if new_binding else None,
            "dropped_principal": dropped,
        })

    def _void_all(self, reason: str) -> None:
        for rid, p in self._requests.items():
            if p.state not in ("void", "executed"):
                p.state = "void"
                self.codes.void(rid, self.call_id, reason)

    # ------------------------------------------------------------------------------------------ the path

    def decide(self, request: ActionRequest) -> tuple[ActionRequest, Decision]:
        # Unique per call and derived from it, so a replayed call decides under the same ids every time.
        rid = request.request_id or uuid.uuid5(uuid.NAMESPACE_OID, f"{self.call_id}/{len(self._requests)}").hex
        if len(rid) > REQUEST_ID_MAX or not rid.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"request_id must be 1-{REQUEST_ID_MAX} letters, digits, - or _")
        if rid in self._requests:
            raise ValueError(f"request_id {rid!r} was already decided in this call")
        try:
            params = json.loads(canonical_json(dict(request.params)))
        except (TypeError, ValueError):
            params = None
        req = replace(request, request_id=rid, params=params or {})
        reasons: list[str] = []
        refusal = ""
        spec = self.runner.registry.get(req.action) if req.action in self.runner.registry else None
        declared = request.risk
        if spec is None:
            refusal = "unknown_action"
        elif spec.risk == "high" and declared != "high":
            declared = "high"  # the action's own floor: a dialplan cannot run it on the fast path
            reasons.append("action:high")
        if params is None:
            refusal = "params_not_json"
            cls_risk: str = "high"
        else:
            cls = self.policy.classify(req.action, params, declared)
            cls_risk, reasons = cls.risk, [*reasons, *cls.reasons]
            if cls.malformed and not refusal:
                refusal = "malformed_amount"
            problems = spec.check(params) if spec is not None else []
            if problems and not refusal:
                refusal = "bad_params"
                reasons.extend(problems)

        if spec is not None and params is not None:
            self._secrets.update(str(params[k]) for k in spec.secret_params
                                 if k in params and len(str(params[k])) >= 3)
        findings = injection.scan(request.evidence.text)
        for name, f in injection.scan_fields(params or {}).items():
            findings = findings.merge(f)
            reasons.append(f"flagged_slot:{name}")
        flags = tuple(dict.fromkeys((*request.evidence.flagged, *findings.categories)))
        principal = self._principal if not self._closed else None
        channels: list[Channel] = []
        if cls_risk == "high":
            contact = self.contacts.get(principal)
            if contact is not None:
                if contact.totp_enrolled:
                    channels.append("totp")
                if self.sms is not None and contact.phone_on_file:
                    channels.append("sms")
            if refusal:
                pass
            elif self._closed:
                refusal = "session_closed"
            elif flags:
                refusal = "flagged_input"
            elif principal is None:
                refusal = "not_authenticated"
            elif self.flags.is_flagged(principal):
                refusal = "account_flagged"
            elif not channels:
                refusal = "no_out_of_band_channel"
        elif refusal:
            pass
        elif self._closed:
            refusal = "session_closed"
        elif spec is not None and spec.requires_login and principal is None:
            refusal = "not_authenticated"
        elif flags:
            reasons.append("flagged_input_low_risk")
        if refusal:
            reasons.append(refusal)
            if flags and cls_risk == "high" and refusal != "flagged_input":
                # Refused for another reason first (an address that is not one): the trail still says the
                # input was instruction-like, which is what an auditor looks for.
                reasons.append("flagged_input")
        decision = Decision(
            path="safe" if cls_risk == "high" else "fast",
            reasons=tuple(reasons),
            allowed=not refusal,
            channels=tuple(channels) if not refusal else (),
        )
        pending = PendingRequest(req, decision, principal, self._session_id(principal), self._epoch, flags=flags)
        if refusal:
            pending.state = "void"
        self._requests[rid] = pending
        self._audit("policy.decide", {
            "request_id": rid, "action": req.action,
            "params": self.runner.redacted(req.action, params) if params is not None else "(not JSON)",
            "declared_risk": request.risk, "path": decision.path, "allowed": decision.allowed,
            "reasons": list(decision.reasons), "channels": list(decision.channels), "principal": principal,
            "evidence": self._ev(request.evidence), "injection": {"categories": list(flags),
                                                                         "rules": list(findings.rules)},
        })
        return req, decision

    def readback_played(self, request_id: str, finished_at: float) -> None:
        p, why = self._live(request_id, "readback")
        if p is None or why or p.decision.path != "safe" or p.state not in ("decided", "read_back"):
            self._refuse("readback", why or f"state:{p.state if p else '-'}", {"request_id": request_id,
                                                                              "finished_at": finished_at})
            return
        p.readback_at = finished_at
        p.state = "read_back"
        self._audit("policy.readback", {"request_id": request_id, "finished_at": finished_at})

    def confirm(self, request_id: str, evidence: Evidence) -> StepResult:
        payload = {"request_id": request_id, "evidence": self._ev(evidence)}
        p, why = self._live(request_id, "confirm")
        if p is not None and not why:
            if p.decision.path != "safe":
                why = "fast_path_needs_no_confirmation"
            elif p.state != "read_back" or p.readback_at is None:
                why = "readback_not_played" if p.state == "decided" else f"state:{p.state}"
            elif evidence.started_at is None:
                why = "no_timing"  # a yes we cannot place in time cannot be shown to follow the read-back
            elif evidence.started_at < p.readback_at:
                why = "barged_in"
            elif not self.confirmation.confident(evidence.kind, evidence.confidence):
                why = "low_confidence"
            elif evidence.flagged or injection.scan(evidence.text).flagged:
                why = "flagged_input"
            elif not is_explicit_yes(evidence):
                why = "not_a_yes"
        if why:
            self._refuse("confirm", why, {**payload, "readback_at": p.readback_at if p else None})
            return StepResult(False, why)
        assert p is not None
        p.confirmation = evidence
        p.confirm_seq = self._audit("policy.confirm", {**payload, "readback_at": p.readback_at})
        p.state = "confirmed"
        return StepResult(True)

    def send_challenge(self, request_id: str, channel: Channel) -> Challenge:
        payload = {"request_id": request_id, "channel": channel}
        p, why = self._live(request_id, "challenge")
        if p is not None and not why:
            if p.decision.path != "safe":
                why = "fast_path_needs_no_code"
            elif p.state not in ("confirmed", "challenged"):
                why = "not_confirmed" if p.state in ("decided", "read_back") else f"state:{p.state}"
            elif channel not in p.decision.channels:
                why = "channel_not_offered"
            elif p.principal is None or self.flags.is_flagged(p.principal):
                why = "account_flagged"
        if why or p is None or p.principal is None:
            self._refuse("challenge", why or "not_authenticated", payload)
            raise GateRefused(why or "not_authenticated")
        contact = self.contacts.get(p.principal)
        to_number = contact.phone_on_file if channel == "sms" and contact is not None else None
        if channel == "sms" and not to_number:
            self._refuse("challenge", "no_phone_on_file", payload)
            raise GateRefused("no_phone_on_file")
        issued = self.codes.issue(
            request_id=request_id, call_id=self.call_id, principal=p.principal, bound=self._bound(p),
            channel=channel, to_number=to_number,
            describe=self.policy.describe(p.request.action, p.request.params),
            audit={"binding": binding_audit(self.binding), "confirm_seq": p.confirm_seq},
        )
        if isinstance(issued, Checked):
            raise GateRefused(issued.reason)
        p.challenge = issued
        p.state = "challenged"
        if channel == "sms" and self.sms is not None:
            self.sms.kick()
        return Challenge(request_id, channel, issued.destination_masked, issued.expires_at)

    def verify_code(self, request_id: str, code: str, evidence: Evidence) -> StepResult:
        payload = {"request_id": request_id, "evidence": {**(self._ev(evidence) or {}), "text": "[code]"}}
        p, why = self._live(request_id, "code")
        if p is not None and not why and (p.state != "challenged" or p.challenge is None):
            why = "no_code_issued" if p.state in ("decided", "read_back", "confirmed") else f"state:{p.state}"
        if why or p is None or p.principal is None or p.challenge is None:
            self._refuse("code", why or "not_authenticated", payload)
            return StepResult(False, why or "not_authenticated")
        checked = self.codes.verify(
            request_id=request_id, call_id=self.call_id, principal=p.principal, bound=self._bound(p),
            code_text=code,
            totp=self.contacts.totp_check(p.principal) if p.challenge.channel == "totp" else None,
            audit={"binding": binding_audit(self.binding), "evidence": payload["evidence"]},
        )
        if checked.ok:
            p.code_check, p.code_evidence, p.state = checked, evidence, "verified"
            return StepResult(True, "verified", checked.attempts_left)
        if checked.locked:
            self.flags.flag(p.principal, "too_many_wrong_codes", call_id=self.call_id, at=self.clock())
            p.state = "void"
            self._audit("policy.account_flagged", {"request_id": request_id, "principal": p.principal,
                                                   "reason": "too_many_wrong_codes"})
        elif checked.reason in ("action_changed", "expired", "wrong_session"):
            p.state = "confirmed"  # a new code may be sent for the same, read-back request
        return StepResult(False, checked.reason, checked.attempts_left, checked.locked)

    def execute(self, request_id: str) -> ActionResult:
        p, why = self._live(request_id, "execute")
        if p is not None and not why:
            if not p.decision.allowed:
                why = "not_allowed"
            elif p.state == "executed":
                pass  # a retry: the runner answers with the first run's result (same idempotency key)
            elif p.decision.path == "safe":
                if p.state != "verified" or p.code_check is None or not p.code_check.ok:
                    why = "code_not_verified"
                elif p.principal is None or self.flags.is_flagged(p.principal):
                    why = "account_flagged"
        if why or p is None:
            seq = self._refuse("execute", why, {"request_id": request_id})
            return ActionResult(False, {}, why, seq)
        req = p.request
        intent = {
            "request_id": request_id,
            "transcript": self._mask(req.evidence.text),
            "audio_sha256": req.evidence.audio_sha256,
            "intent": req.evidence.intent,
            "confidence": req.evidence.confidence,
            "tier": req.evidence.tier,
            "evidence": self._ev(req.evidence),
            "decision": {"path": p.decision.path, "reasons": list(p.decision.reasons),
                         "declared_risk": req.risk},
            "confirmation": None if p.confirmation is None else {
                **(self._ev(p.confirmation) or {}), "readback_finished_at": p.readback_at,
                "audit_seq": p.confirm_seq},
            "code": None if p.challenge is None or p.code_check is None else {
                "channel": p.challenge.channel, "confirmation_id": p.challenge.confirmation_id,
                "issued_seq": p.challenge.audit_seq, "verified_seq": p.code_check.audit_seq,
                "evidence": {**(self._ev(p.code_evidence) or {}), "text": "[code]"}},
            "binding": binding_audit(self.binding),
            "injection_flags": list(p.flags),
        }
        key = f"{self.call_id}:{request_id}"
        p.state = "executed"
        outcome = self.runner.run(
            key=key, action=req.action, params=req.params, risk="high" if p.decision.path == "safe" else "low",
            context=RunContext(key, self.call_id, p.principal, p.session_id), audit=intent,
        )
        result = dict(outcome.result)
        spec = self.runner.registry.get(req.action)
        if outcome.ok and spec.authenticates and isinstance(result.get("principal"), str):
            # Only an action registered as authenticating vouches for a principal (never a transcript).
            self._identified[result["principal"]] = self._epoch
            self.contacts.learn(result["principal"], result)
        return ActionResult(
            ok=outcome.ok, result=result, reason=outcome.reason or ("" if outcome.ok else outcome.status),
            audit_seq=outcome.intent_seq, duplicate=outcome.status == "duplicate",
        )

    def abandon(self, request_id: str, reason: str) -> None:
        p = self._requests.get(request_id)
        if p is not None and p.state not in ("void", "executed"):
            p.state = "void"
            self.codes.void(request_id, self.call_id, reason)
        self._audit("policy.abandon", {"request_id": request_id, "reason": reason,
                                       "known": p is not None})

    def note_input(self, evidence: Evidence, reason: str, request_id: str | None = None) -> None:
        payload = {"request_id": request_id, "evidence": self._ev(evidence), "reason": reason, "by": "engine"}
        if reason == "injection_flagged":
            self._audit("policy.injection_flagged", {**payload, "source": "caller",
                                                     "categories": list(evidence.flagged)})
        else:
            self._refuse("input", reason, payload)

    # ------------------------------------------------------------------------------------------ extras

    def note_external(self, source: str, text: str) -> injection.Findings:
        """Scan text from outside the call (tool result, CRM note, SMS reply); flagged text is audited.

        The engine must not put flagged external text into a high action's slots (``decide`` refuses it
        anyway) nor read it out as instructions."""
        findings = injection.scan(text)
        if findings.flagged:
            self._audit("policy.injection_flagged", {"source": source, "text": text,
                                                     "categories": list(findings.categories),
                                                     "rules": list(findings.rules)})
        return findings

    def request_state(self, request_id: str) -> str | None:
        p = self._requests.get(request_id)
        return None if p is None else p.state
