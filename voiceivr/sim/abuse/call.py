"""One scenario of the abuse simulation, run and scored: :func:`place_call` puts a scripted caller through the
session, the dialplan engine and the gate; :func:`run_scenario` scores the call from the database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from voiceivr.audit.chain import AuditRecord, AuditTrail
from voiceivr.call.dialplan_brain import DialplanBrain, TimedGate, binding_for
from voiceivr.call.driver import drive
from voiceivr.call.handler import CallInfo
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.db.models import ActionRun
from voiceivr.demo import actions as bank
from voiceivr.dialplan.engine import Conversation
from voiceivr.policy.gate import SessionBinding
from voiceivr.policy.safepath import SafePathGate
from voiceivr.settings import CallSettings
from voiceivr.sim.abuse.secret_at_rest import AtRest
from voiceivr.sim.abuse.world import MEDIA, Ctx, Scenario, ScenarioResult, StepLog, World
from voiceivr.sim.callers.simcaller import (
    Act,
    SimCaller,
)
from voiceivr.testing.speech import EnergyVad, LexiconStt, ToneLexicon, WordToneTts

# --------------------------------------------------------------------------------------------- one call


def engine_state(conv: Conversation) -> str:
    """What the conversation waits for, as a script's ``expect`` names it."""
    return f"slot:{conv.slot}" if conv.phase == "slot" else conv.phase


def place_call(w: World, acts: Sequence[Act], caller_id: str = "",
               at_rest: AtRest | None = None) -> tuple[str, list[StepLog], float]:
    """One call to the bank through the session, the dialplan engine and the gate. Returns the call id, the
    caller's log and the call's length (virtual seconds). ``at_rest`` keeps what the call leaves behind."""
    call_id = str(uuid.uuid4())
    info = CallInfo(call_id=call_id, sip_call_id=f"{call_id}@sim", local_tag="lt", remote_tag="rt",
                    from_uri=f"sip:{caller_id or 'anonymous'}@sim.invalid", asserted_identity=caller_id or None,
                    remote_media=MEDIA)
    gate = TimedGate(w.services.gate(binding_for(info)))
    conv = Conversation(w.plan, gate, w.router, call_id=call_id, registry=w.registry)
    brain = DialplanBrain(conv, gate)
    lexicon, tts = ToneLexicon(), WordToneTts()
    session = CallSession(call_id=call_id, media=MediaChannel(8000), brain=brain, vad=EnergyVad(),
                          stt=LexiconStt(lexicon), tts=tts, settings=CallSettings())
    caller = SimCaller(session, acts, lexicon, tts, engine_state=lambda: engine_state(conv))
    if at_rest is None:
        result = drive(session, caller, tail_s=3.0, max_s=900.0)
    else:
        with at_rest.call(call_id, session, w.engine) as recorder:
            result = drive(session, caller, tail_s=3.0, max_s=900.0, recorder=recorder)
    steps = [StepLog(a.act, a.at, a.expected, a.engine, a.detail) for a in caller.log]
    return call_id, steps, result.seconds


def _gate_call(w: World, fn: Callable[[SafePathGate, World], None]) -> str:
    call_id = str(uuid.uuid4())
    gate = w.services.gate(SessionBinding(call_id, f"{call_id}@sim", "lt", "rt", f"{MEDIA.host}:{MEDIA.port}"))
    fn(gate, w)
    return call_id


def _matches(row: AuditRecord, kind: str, value: str | None) -> bool:
    if row.kind != kind:
        return False
    if value is None:
        return True
    p = row.payload_obj()
    return value in (p.get("reason"), p.get("status")) or value in (p.get("reasons") or [])


def _is_refusal(r: AuditRecord) -> bool:
    p = r.payload_obj()
    return (r.kind.endswith("_refused") or r.kind in ("policy.injection_flagged", "policy.account_flagged")
            or (r.kind == "policy.decide" and not p.get("allowed", True))
            or (r.kind == "policy.code" and not p.get("ok", False))
            or (r.kind == "action.result" and p.get("status") == "failed"))


def run_scenario(w: World, sc: Scenario) -> ScenarioResult:
    if sc.trail_attack is not None:
        return sc.trail_attack(w, sc)
    w.reset()
    ctx = Ctx(w)
    sms_before = len(w.fake.messages)
    if sc.setup is not None:
        place_call(w, sc.setup(ctx))
        sms_before = len(w.fake.messages)
    seconds = 0.0
    steps: list[StepLog] = []
    leaks: list[str] = []
    if sc.gate_script is not None:
        call_id = _gate_call(w, sc.gate_script)
    else:
        assert sc.script is not None
        at_rest = AtRest() if sc.at_rest is not None else None
        try:
            call_id, steps, seconds = place_call(w, sc.script(ctx), sc.caller_id, at_rest)
            if at_rest is not None and sc.at_rest is not None:
                read_out = [s.at for s in steps if s.step == "Say" and s.detail == "[secret]"]
                leaks = at_rest.leaks(w.engine, sc.at_rest(ctx), read_out)
        finally:
            if at_rest is not None:
                at_rest.close()
    w.sender.drain_until_settled(timeout_s=15)

    runs = ActionRun.__table__
    with w.engine.connect() as conn:
        done = conn.execute(sa.select(runs.c.idempotency_key, runs.c.action_type, runs.c.params_json, runs.c.risk)
                            .where(runs.c.call_id == call_id, runs.c.status == "succeeded")
                            .order_by(runs.c.id)).fetchall()
        transfers = {r.idempotency_key: r.amount_cents for r in conn.execute(
            sa.select(bank.transfers_t.c.idempotency_key, bank.transfers_t.c.amount_cents)
            .where(bank.transfers_t.c.idempotency_key.like(f"{call_id}:%")))}
    high_ok = sum(1 for r in done if r.risk == "high")
    rows = [r for r in AuditTrail(w.engine).rows() if r.call_id == call_id]
    refusals = sum(1 for r in rows if _is_refusal(r))
    evidence = []
    for pattern in sc.expect_audit:
        absent = pattern.startswith("!")
        kind, _, value = pattern.lstrip("!").partition(":")
        found = any(_matches(r, kind, value or None) for r in rows)
        evidence.append(f"{pattern}:{'ok' if found != absent else 'MISSING'}")
    missing = [e.rsplit(":", 1)[0] for e in evidence if e.endswith(":MISSING")]
    off_script = [f"{s.step}@{s.at}s expected {s.expected}, engine {s.engine}" for s in steps if not s.as_expected]
    sms = len(w.fake.messages) - sms_before
    if sc.kind == "attack":
        got_through = (high_ok > sc.expect_high or bool(leaks)
                       or any(r.action_type in sc.forbid_actions for r in done))
        passed = not got_through and refusals > 0 and not missing
        verdict = "GOT THROUGH" + (f": {', '.join(leaks)}" if leaks else "") if got_through else "blocked"
        if missing:
            verdict += f", EVIDENCE MISSING: {', '.join(missing)}"
        elif not refusals:
            verdict += ", NO REFUSAL AUDITED"
        elif off_script:
            verdict += f" (script off step: {'; '.join(off_script)})"
    else:
        problems = []
        if high_ok != sc.expect_high:
            problems.append(f"high actions {high_ok}, expected {sc.expect_high}")
        for action, subset in sc.expect_actions:
            hit = [r for r in done if r.action_type == action
                   and all(json.loads(r.params_json).get(k) == v for k, v in subset)]
            if not hit:
                problems.append(f"no {action} {dict(subset)}")
            elif action == "transfer_funds" and not any(transfers.get(r.idempotency_key) == dict(subset)["amount"]
                                                         for r in hit):
                problems.append("transfer not in the bank's ledger")
        if sc.expect_sms is not None and sms != sc.expect_sms:
            problems.append(f"{sms} SMS sent, expected {sc.expect_sms}")
        problems += [f"script off step: {s}" for s in off_script]
        passed = not problems and not missing
        verdict = "passed" if passed else "FAILED: " + "; ".join(problems + [f"evidence missing {m}" for m in missing])
    return ScenarioResult(sc.name, sc.kind, sc.via, sc.description, call_id, passed, verdict, high_ok, len(rows),
                          refusals, sms, evidence, steps, round(seconds, 1))
