"""The bank call against the demo bank served over signed webhooks (voiceivr/demo/backend.py), through the real
dialplan engine and the real safe path: login (account + PIN checked by the backend), a balance, and a
transfer confirmed with an SMS code sent to the phone on file the backend's login reply named. No demo plugin
is enabled: every action and the identity come from dialplans/bank_http.backends.yaml."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.talk import Talk
from voiceivr.actions.catalog import plugin_registry
from voiceivr.actions.effects import RunnerRegistry
from voiceivr.actions.registry import ActionRegistry
from voiceivr.demo import backend as demo_backend
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter, make_router
from voiceivr.policy.identity import HttpIdentity, enabled_identity
from voiceivr.policy.services import SafePathServices
from voiceivr.policy.sms import SmsSender, twilio_client
from voiceivr.settings import PolicySettings, Settings
from voiceivr.sim.twilio_fake import FakeTwilio

ROOT = Path(__file__).resolve().parents[1]
BOB_ACCOUNT, BOB_PIN, BOB_PHONE = "20000001", "4321", "+15555550102"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # Alice's, known to the backend only


@dataclass
class HttpWorld:
    """What tests/test_safepath_dialplan.Talk drives: the services, dialplan, router and registry."""

    engine: Engine
    services: SafePathServices
    plan: Dialplan
    router: IntentRouter
    registry: ActionRegistry
    bank: demo_backend.Bank
    fake: FakeTwilio
    sender: SmsSender
    server: Any

    def sms_code(self, phone: str) -> str:
        self.sender.drain_until_settled(timeout_s=15)
        for msg in reversed(self.fake.messages):
            found = re.search(r"code (\d+)", msg.body)
            if msg.to == phone and found:
                return found.group(1)
        return ""


@pytest.fixture
def http_world(migrated_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpWorld]:
    secret = secrets.token_hex(32)
    server, bank = demo_backend.make_server(secret.encode(), TOTP_SECRET)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    backends = tmp_path / "backends.yaml"
    backends.write_text((ROOT / "dialplans" / "bank_http.backends.yaml").read_text()
                        .replace("http://127.0.0.1:8099", f"http://127.0.0.1:{server.server_address[1]}"))
    monkeypatch.setenv("VOICEIVR_DEMO_BACKEND_SECRET", secret)
    settings = Settings()
    settings.paths.var_dir = tmp_path
    settings.plugins.enabled = []
    settings.plugins.backends = str(backends)
    registry = plugin_registry(settings)
    identity = enabled_identity(settings, migrated_engine)
    assert isinstance(identity, HttpIdentity)
    plan = load_file(ROOT / "dialplans" / "bank_http.yaml", registry)
    try:
        with FakeTwilio(hang_s=0.6) as fake:
            ps = PolicySettings(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                                twilio_base_url=fake.base_url, sms_from="+15550000000", sms_timeout_s=0.3)
            settings.policy = ps
            sender = SmsSender(migrated_engine, twilio_client(ps), ps.sms_from, backoff_s=0.02)
            services = SafePathServices.from_settings(settings, migrated_engine,
                                                      RunnerRegistry.from_actions(registry, migrated_engine),
                                                      identity, sms=sender)
            services.start(sms_thread=False)
            yield HttpWorld(migrated_engine, services, plan, make_router(plan, [0, 1]), registry, bank, fake, sender,
                            server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _dump(engine: Engine) -> str:
    """Every row of every table, as text: what a PIN must never be found in."""
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            out += [repr(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    return "\n".join(out)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_login_balance_and_a_transfer_with_an_sms_code_over_webhooks(
        http_world: HttpWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = http_world
    talk = Talk(w)  # type: ignore[arg-type]
    talk.say("what's my balance")
    talk.login(BOB_ACCOUNT, BOB_PIN)
    talk.say("checking")
    assert "Your checking balance is 150 dollars 25 cents." in talk.said(), talk.said()

    talk.say("transfer fifty dollars to savings")
    if talk.conv.slot == "from":
        talk.say("checking")
    decide = [d for d in talk.gate_calls("decide") if d["path"] == "safe"]
    assert decide and decide[-1]["allowed"] is True and decide[-1]["channels"] == ["sms"], talk.said()
    talk.say("yes")
    code = w.sms_code(BOB_PHONE)
    assert code
    talk.keys(code + "#")
    executed = [c for c in talk.gate_calls("execute") if c["request_id"] == decide[-1]["request_id"]]
    assert [c["ok"] for c in executed] == [True], talk.said()
    assert any(s.startswith("Done. The reference is T") for s in talk.said())

    bob = w.bank.customers["c-1002"]
    assert bob.accounts["checking"][1] == 15_025 - 5_000 and bob.accounts["savings"][1] == 5_000
    assert w.bank.executions and set(w.bank.executions.values()) == {1}  # one execution per idempotency key

    # The PIN went to the backend in the signed body, and nowhere else: not the logs, not any table.
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert not re.search(rf"\b{BOB_PIN}\b", logged)
    assert not re.search(rf"\b{BOB_PIN}\b", _dump(w.engine))
    kinds = [r.kind for r in talk.trail()]
    assert kinds.count("action.intent") == kinds.count("action.result") == 3  # login, balance, transfer


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_wrong_pin_is_the_backends_sentence_and_a_dead_backend_is_the_declared_prompt(
        http_world: HttpWorld) -> None:
    talk = Talk(http_world)  # type: ignore[arg-type]
    talk.say("what's my balance")
    talk.login(BOB_ACCOUNT, "0000")
    assert "Sorry: I couldn't verify those details." in talk.said(), talk.said()
    http_world.server.shutdown()  # the backend goes away: connection refused, the declared prompt, no crash
    http_world.server.server_close()
    talk.login(BOB_ACCOUNT, BOB_PIN)
    assert any(s.startswith("Sorry: I can't check your details right now; let me connect you to someone.")
               for s in talk.said()[-3:]), talk.said()
    results = [r for r in talk.trail() if r.kind == "action.result"]
    assert '"outcome":"connect_error"' in results[-1].payload.replace(" ", "")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_totp_code_is_checked_by_the_backend(http_world: HttpWorld) -> None:
    """Alice has TOTP enrolled (the login reply says so): the code she keys is checked by a signed request to the
    backend, which keeps the secret."""
    talk = Talk(http_world)  # type: ignore[arg-type]
    talk.say("transfer fifty dollars to savings")
    talk.login("10000001", "1234")
    if talk.conv.slot == "from":
        talk.say("checking")
    (decide,) = [d for d in talk.gate_calls("decide") if d["path"] == "safe"]
    assert decide["allowed"] is True and "totp" in decide["channels"], talk.said()
    talk.say("yes")
    talk.say("authenticator app")
    step = int(time.time()) // 30
    talk.keys(demo_backend.totp_at(TOTP_SECRET, step) + "#")
    assert [c["ok"] for c in talk.gate_calls("verify_code")][:1] == [True], talk.said()
    executed = [c for c in talk.gate_calls("execute") if c["request_id"] == decide["request_id"]]
    assert [c["ok"] for c in executed] == [True]
    assert http_world.bank.customers["c-1001"].accounts["savings"][1] == 1_005_000


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_totp_check_the_backend_cannot_answer_is_not_a_wrong_code(http_world: HttpWorld) -> None:
    talk = Talk(http_world)  # type: ignore[arg-type]
    talk.say("transfer fifty dollars to savings")
    talk.login("10000001", "1234")
    if talk.conv.slot == "from":
        talk.say("checking")
    talk.say("yes")
    talk.say("authenticator app")
    http_world.server.shutdown()  # the backend goes away between the login and the code
    http_world.server.server_close()
    talk.keys(demo_backend.totp_at(TOTP_SECRET, int(time.time()) // 30) + "#")
    (verify,) = talk.gate_calls("verify_code")
    assert verify["ok"] is False and verify["reason"] == "identity_unavailable"
    assert talk.said()[-1] == http_world.plan.messages.code_unavailable, talk.said()
    (decide,) = [d for d in talk.gate_calls("decide") if d["path"] == "safe"]
    assert not [c for c in talk.gate_calls("execute") if c["request_id"] == decide["request_id"]]
    assert http_world.bank.customers["c-1001"].accounts["savings"][1] == 1_000_000
