"""``voiceivr simulate abuse``: every attack blocked and audited, every legitimate flow passes -- and the
scorecard does notice when an attack gets through."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from voiceivr.cli import cli
from voiceivr.policy import abuse
from voiceivr.policy.gate import StepResult
from voiceivr.policy.safepath import SafePathGate


def test_catalogue_covers_what_the_issue_names() -> None:
    names = {s.name for s in abuse.catalogue()}
    for needed in ("social-engineering-manager", "code-replayed-from-earlier-action", "code-for-different-amount",
                   "spoofed-caller-id", "injection-in-payee-name", "yes-barged-in-during-read-back",
                   "brute-force-codes", "media-moved-by-reinvite", "transfer-with-sms-code", "transfer-with-totp"):
        assert needed in names
    assert sum(s.kind == "attack" for s in abuse.catalogue()) >= 15


@pytest.mark.slow
def test_all_attacks_blocked_and_legit_flows_pass(db_url: str) -> None:
    card = abuse.simulate(db_url)
    failed = [(r.name, r.verdict) for r in card.results if not r.passed]
    assert not failed
    assert card.audit_ok
    for r in card.results:
        assert r.audit_rows > 0, r.name
        if r.kind == "attack":
            assert r.refusals > 0, r.name
            assert r.high_executions <= (1 if r.name == "totp-replay" else 0), r.name


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
    card = abuse.simulate(only=["code-replayed-from-earlier-action", "brute-force-codes", "transfer-with-sms-code"])
    verdicts = {r.name: r for r in card.results}
    assert not verdicts["code-replayed-from-earlier-action"].passed
    assert "GOT THROUGH" in verdicts["code-replayed-from-earlier-action"].verdict
    assert not card.ok


def test_cli_json_and_exit_code() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "abuse", "--json", "--only", "spoofed-caller-id",
                                 "--only", "balance-after-login"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["attacks_blocked"] == 1 and data["legit_passed"] == 1
    assert runner.invoke(cli, ["simulate", "abuse", "--only", "nope"]).exit_code == 2
    listed = runner.invoke(cli, ["simulate", "abuse", "--list"])
    assert "brute-force-codes" in listed.output
