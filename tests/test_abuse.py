"""``voiceivr demo abuse``: whole calls through the session, the dialplan engine and the gate; every attack
blocked and audited, every legitimate flow passes -- and the scorecard notices when something breaks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from voiceivr.call import brain
from voiceivr.call.dialplan_brain import DialplanBrain
from voiceivr.cli import cli
from voiceivr.dialplan import confirmation as dialplan_confirmation
from voiceivr.policy.gate import StepResult
from voiceivr.policy.safepath import SafePathGate
from voiceivr.sim import abuse


def test_catalogue_covers_what_the_issue_names() -> None:
    cat = {s.name: s for s in abuse.catalogue()}
    for needed in ("social-engineering-manager", "code-replayed-from-earlier-action", "code-for-different-amount",
                   "spoofed-caller-id", "injection-in-payee-name", "injection-in-address",
                   "yes-barged-in-during-read-back", "brute-force-codes", "media-moved-by-reinvite", "media-hijack",
                   "transfer-with-sms-code", "transfer-with-totp", "change-address", "block-card",
                   "balance-after-login", "secret-at-rest", "forged-append", "truncation"):
        assert needed in cat
    assert sum(s.kind == "attack" for s in cat.values()) >= 15
    # Only what is not a conversation may skip the call: an engine bug, an integration's CRM note.
    assert {s.name for s in cat.values() if s.via == "gate"} == {"skip-steps", "injection-via-crm-note"}
    # ...and attacks on the stored trail, which happen after any call
    assert {s.name for s in cat.values() if s.via == "db"} == {"forged-append", "truncation"}


@pytest.mark.slow
def test_all_attacks_blocked_and_legit_flows_pass(db_url: str) -> None:
    card = abuse.simulate(db_url)
    failed = [(r.name, r.verdict) for r in card.results if not r.passed]
    assert not failed
    assert card.audit_ok
    for r in card.results:
        assert r.audit_rows > 0, r.name
        if r.via == "call":  # a real call: the caller's acts went through the session, in step with the engine
            assert r.call_seconds > 5 and r.steps and all(s.as_expected for s in r.steps), r.name
        if r.kind == "attack":
            assert r.refusals > 0 and all(e.endswith(":ok") for e in r.evidence), r.name
            # totp-replay's first transfer is the victim's own; secret-at-rest completes its transfer
            assert r.high_executions <= (1 if r.name in ("totp-replay", "secret-at-rest") else 0), r.name
    by_name = {r.name: r for r in card.results}
    assert by_name["transfer-with-totp"].sms_sent == 0 and by_name["provider-hiccups"].sms_sent == 1


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_scorecard_catches_an_attack_that_gets_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a gate whose code check is broken must fail the simulation."""
    original = SafePathGate.verify_code

    def accept_anything(self: SafePathGate, request_id: str, code: str, evidence: Any) -> StepResult:
        res = original(self, request_id, code, evidence)
        p = self._requests[request_id]
        if not res.ok and p.challenge is not None and p.state != "void":
            from voiceivr.policy.codes import Checked

            p.code_check, p.state = Checked(True, "verified"), "verified"  # the bug
            return StepResult(True, "verified")
        return res

    monkeypatch.setattr(SafePathGate, "verify_code", accept_anything)
    card = abuse.simulate(only=["code-replayed-from-earlier-action", "transfer-with-sms-code"])
    verdicts = {r.name: r for r in card.results}
    assert not verdicts["code-replayed-from-earlier-action"].passed
    assert "GOT THROUGH" in verdicts["code-replayed-from-earlier-action"].verdict
    assert verdicts["transfer-with-sms-code"].passed
    assert not card.ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_scorecard_catches_flagged_text_that_is_no_longer_carried_to_the_gate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: an engine that forgets where slot values came from lets flagged words fill a transfer.
    The attacker still lacks the code, so nothing runs -- but the evidence the attack must leave is missing."""
    monkeypatch.setattr(dialplan_confirmation, "_union", lambda *groups: ())
    card = abuse.simulate(only=["injection-in-payee-name"])
    (r,) = card.results
    assert not r.passed and "EVIDENCE MISSING: policy.decide:flagged_input" in r.verdict


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_scorecard_catches_a_media_move_that_no_longer_drops_the_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a session that ignores the edge's media moves lets the stranger's "1" run get_balance
    as alice -- a low-risk action, caught because the scenario forbids it."""
    original = DialplanBrain.handle

    def ignore_moves(self: DialplanBrain, event: brain.BrainInput) -> list[brain.BrainOutput]:
        return [] if isinstance(event, brain.SessionChanged) else original(self, event)

    monkeypatch.setattr(DialplanBrain, "handle", ignore_moves)
    (r,) = abuse.simulate(only=["media-hijack"]).results
    assert not r.passed and r.verdict.startswith("GOT THROUGH")
    assert "EVIDENCE MISSING: policy.binding_changed:media moved" in r.verdict


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_cli_json_and_exit_code() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "abuse", "--json", "--only", "spoofed-caller-id",
                                 "--only", "balance-after-login"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["attacks_blocked"] == 1 and data["legit_passed"] == 1
    spoofed = next(s for s in data["scenarios"] if s["name"] == "spoofed-caller-id")
    assert spoofed["via"] == "call" and spoofed["steps"] and "!policy.login:ok" in spoofed["evidence"]
    assert runner.invoke(cli, ["demo", "abuse", "--only", "nope"]).exit_code == 2
    listed = runner.invoke(cli, ["demo", "abuse", "--list"])
    assert "brute-force-codes" in listed.output


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_trail_attacks_detected_by_the_cli() -> None:
    """Issue 13: rows appended without the key, and a cut tail, are both named by verify; exit 0."""
    result = CliRunner().invoke(cli, ["demo", "abuse", "--json", "--only", "forged-append", "--only",
                                      "truncation"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["attacks_blocked"] == 2 and data["audit_chain_intact"]
    by_name = {s["name"]: s for s in data["scenarios"]}
    forged, cut = by_name["forged-append"], by_name["truncation"]
    assert forged["via"] == cut["via"] == "db"
    assert "db:refused-unkeyed-row:ok" in forged["evidence"] and "forged or altered" in forged["verdict"]
    assert "rows were removed from the tail" in cut["verdict"] and "checkpoints:ok" in cut["evidence"]
    for sc in (forged, cut):  # each began with a real transfer call, whose trail verified before the attack
        assert sc["call_seconds"] > 5 and sc["steps"] and all(st["as_expected"] for st in sc["steps"])
        assert "verify-before:ok" in sc["evidence"] and sc["high_executions"] == 0 and sc["refusals"] > 0


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_scorecard_catches_a_chain_anyone_can_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: back to the plain SHA-256 link (as before issue 13): forged-append must fail."""
    from voiceivr.audit import chain, records

    def sha256_link(key, *fields):  # type: ignore[no-untyped-def]
        return records.compute_hash(*fields)

    monkeypatch.setattr(chain, "compute_mac", sha256_link)
    monkeypatch.setattr(records, "compute_mac", sha256_link)
    card = abuse.simulate(only=["forged-append"])
    (r,) = card.results
    assert not r.passed and "UNDETECTED" in r.verdict and not card.ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_scorecard_catches_missing_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: no automatic checkpoints (as before issue 13): the cut tail goes unseen."""
    from voiceivr.audit.config import AuditConfig

    monkeypatch.setattr(AuditConfig, "automatic", property(lambda self: False))
    card = abuse.simulate(only=["truncation"])
    (r,) = card.results
    assert not r.passed and "UNDETECTED" in r.verdict and "checkpoints:MISSING" in r.evidence
