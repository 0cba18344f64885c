"""The demo bank dialplan, driven as text through the real dialplan engine and the real safe path."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from voiceivr.audit.chain import AuditTrail
from voiceivr.cli import cli
from voiceivr.db.engine import make_engine

ROOT = Path(__file__).resolve().parents[1]
BANK = str(ROOT / "dialplans" / "bank.yaml")


@pytest.fixture
def runner(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", db_url)
    monkeypatch.setenv("VOICEIVR_PATHS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEIVR_DIALPLAN_TIERS", "0,1")
    r = CliRunner()
    assert r.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert r.invoke(cli, ["bank", "seed"]).exit_code == 0
    return r


def _totp_secret(url: str) -> str:
    engine = make_engine(url)
    with engine.connect() as conn:
        secret = conn.execute(sa.text("SELECT totp_secret FROM bank_customers WHERE id = 'c-1001'")).scalar_one()
    engine.dispose()
    return str(secret)


def _simulate(runner: CliRunner, *inputs: str) -> list[dict[str, object]]:
    out = runner.invoke(cli, ["dialplan", "simulate", BANK, "--json", *inputs])
    assert out.exit_code == 0, out.output
    events: list[dict[str, object]] = json.loads(out.stdout)["events"]
    return events


def _gate(events: list[dict[str, object]], call: str) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == "gate" and e["call"] == call]


def test_transfer_through_the_dialplan_needs_readback_yes_and_a_single_use_code(runner: CliRunner,
                                                                                db_url: str) -> None:
    code = pyotp.TOTP(_totp_secret(db_url)).now()
    login = ("--say", "transfer fifty dollars to savings", "--dtmf", "10000001", "--dtmf", "1234")
    events = _simulate(runner, *login, "--say", "yes", "--dtmf", code, "--say", "goodbye")
    (decide,) = [e for e in _gate(events, "decide") if e["path"] == "safe"]
    assert decide["allowed"] is True and decide["channels"] == ["totp"]
    assert [e["ok"] for e in _gate(events, "verify_code")] == [True]
    executed = [e for e in _gate(events, "execute") if e["request_id"] == decide["request_id"]]
    assert executed and executed[0]["ok"] is True
    # The same authenticator code, replayed on a second call for the same transfer: refused, nothing runs.
    again = _simulate(runner, *login, "--say", "yes", "--dtmf", code, "--say", "goodbye")
    assert [e["ok"] for e in _gate(again, "verify_code")][:1] == [False]
    (decide2,) = [e for e in _gate(again, "decide") if e["path"] == "safe"]
    assert not [e for e in _gate(again, "execute") if e["request_id"] == decide2["request_id"] and e["ok"]]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        transfers = conn.execute(sa.text("SELECT amount_cents FROM bank_transfers")).fetchall()
    trail = AuditTrail(engine)
    kinds = [r.kind for r in trail.rows()]
    assert trail.verify().ok
    assert not [r.kind for r in trail.rows() if '"1234"' in r.payload]  # the PIN never reaches the trail
    engine.dispose()
    assert [t.amount_cents for t in transfers] == [5000]
    assert kinds.count("action.intent") >= 3 and "policy.code_refused" not in kinds
    assert sum(1 for k in kinds if k == "policy.code") == 2


def test_a_yes_is_not_a_code(runner: CliRunner) -> None:
    events = _simulate(runner, "--say", "transfer fifty dollars to savings", "--dtmf", "10000001", "--dtmf",
                       "1234", "--say", "yes", "--dtmf", "000000", "--say", "goodbye")
    assert [e["ok"] for e in _gate(events, "verify_code")][:1] == [False]
    (decide,) = [e for e in _gate(events, "decide") if e["path"] == "safe"]
    assert not [e for e in _gate(events, "execute") if e["request_id"] == decide["request_id"] and e["ok"]]
