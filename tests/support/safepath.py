"""Shared set-up for the safe-path tests: a migrated database with the simulation bank, the real twilio client
against the local Messages API fake, an in-memory identity provider and a clock the test moves."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest
from sqlalchemy.engine import Engine

from voiceivr.policy.flags import PrincipalFlags
from voiceivr.policy.gate import ActionRequest, Evidence, SessionBinding
from voiceivr.policy.safepath import SafePathGate
from voiceivr.policy.services import SafePathServices
from voiceivr.policy.sms import SmsSender, twilio_client
from voiceivr.settings import PolicySettings, Settings
from voiceivr.sim import ledger
from voiceivr.sim.twilio_fake import FakeTwilio
from voiceivr.testing.identity import InMemoryIdentity

ALICE_PHONE = "+15550001111"
CALLER_ID = "+15559998888"  # what the caller's phone presents: never where codes go
TOTP_SECRET = pyotp.random_base32()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Env:
    engine: Engine
    fake: FakeTwilio
    identity: InMemoryIdentity
    services: SafePathServices
    clock: Clock
    settings: Settings

    @property
    def flags(self) -> PrincipalFlags:
        return self.services.flags

    def gate(self, call_id: str = "call-1", media: str = "203.0.113.5:40000") -> SafePathGate:
        return self.services.gate(binding(call_id, media))

    def last_code(self, to: str = ALICE_PHONE) -> str:
        msg = [m for m in self.fake.messages if m.to == to][-1]
        found = re.search(r"code (\d{6})", msg.body)
        assert found, msg.body
        return found.group(1)


def binding(call_id: str = "call-1", media: str = "203.0.113.5:40000") -> SessionBinding:
    return SessionBinding(call_id=call_id, sip_call_id=f"{call_id}@edge", local_tag="lt1", remote_tag="rt1",
                          media_address=media)


def say(text: str, *, at: float = 10.0, confidence: float = 0.95, kind: str = "speech",
        intent: str | None = None) -> Evidence:
    return Evidence(kind=kind, text=text, confidence=confidence, intent=intent, tier=1, started_at=at,  # type: ignore[arg-type]
                    ended_at=at + 1.0, audio_sha256="ab" * 32 if kind == "speech" else None)


def transfer(cents: int = 5000, payee: str = "222", text: str = "transfer fifty dollars to savings",
             risk: str = "high") -> ActionRequest:
    return ActionRequest(action="transfer", params={"from_account": "111", "payee": payee, "amount_cents": cents},
                         risk=risk, evidence=say(text, intent="transfer"))  # type: ignore[arg-type]


def login(gate: SafePathGate, account: str = "111", pin: str = "1234", principal: str = "alice") -> None:
    req, d = gate.decide(ActionRequest("identify", {"account": account, "pin": pin}, "low",
                                       say("one one one, pin one two three four", kind="dtmf")))
    assert d.allowed and d.path == "fast"
    res = gate.execute(req.request_id)
    assert res.ok, res
    assert gate.login(principal, say("pin", kind="dtmf")).ok


def confirmed_request(gate: SafePathGate, request: ActionRequest | None = None) -> str:
    """decide -> read-back played until t=20 -> yes at t=21. Returns the request id."""
    req, d = gate.decide(request or transfer())
    assert d.allowed and d.path == "safe", d
    gate.readback_played(req.request_id, 20.0)
    assert gate.confirm(req.request_id, say("yes", at=21.0, intent="yes")).ok
    return req.request_id


@pytest.fixture(name="env")
def env_fixture(migrated_engine: Engine, tmp_path: object) -> Iterator[Env]:
    ledger.create_tables(migrated_engine)
    ledger.open_account(migrated_engine, "111", "alice", "1234", 100_000)
    ledger.open_account(migrated_engine, "222", "alice", "1234", 0)
    ledger.open_account(migrated_engine, "333", "bob", "4321", 0)
    identity = InMemoryIdentity()
    identity.add("alice", phone=ALICE_PHONE)
    identity.add("bob", phone="+15550002222", totp_secret=TOTP_SECRET)
    clock = Clock()
    settings = Settings()
    settings.paths.var_dir = tmp_path  # type: ignore[assignment]
    with FakeTwilio(hang_s=1.0) as fake:
        ps = PolicySettings(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                            twilio_base_url=fake.base_url, sms_from="+15550000000", sms_timeout_s=0.3)
        # Real time for the sender's backoff bookkeeping; the test clock drives codes and expiry.
        sender = SmsSender(migrated_engine, twilio_client(ps), ps.sms_from, backoff_s=0.02)
        settings.policy = ps
        services = SafePathServices.from_settings(settings, migrated_engine, ledger.registry(), identity,
                                                  clock=clock, sms=sender)
        yield Env(migrated_engine, fake, identity, services, clock, settings)
