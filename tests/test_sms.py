"""The outbox sender with the real twilio client against the local Messages API: one SMS per confirmation,
whatever the provider does."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from voiceivr.audit.chain import AuditTrail
from voiceivr.db.models import SmsOutbox
from voiceivr.errors import ConfigError
from voiceivr.policy.codes import BoundAction, CodeBook, Issued
from voiceivr.policy.sms import CLAIM_LEASE_S, SmsSender, twilio_client
from voiceivr.settings import PolicySettings
from voiceivr.sim.twilio_fake import FakeTwilio

TO = "+15550001111"


def _settings(fake: FakeTwilio) -> PolicySettings:
    return PolicySettings(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                          twilio_base_url=fake.base_url, sms_from="+15550000000", sms_timeout_s=0.3)


def _issue(engine: Engine, request_id: str) -> Issued:
    book = CodeBook(engine, b"s" * 32, clock=lambda: dt.datetime.now(dt.UTC))
    issued = book.issue(request_id=request_id, call_id="c1", principal="alice",
                        bound=BoundAction("transfer", {"amount_cents": 500}, "sess"), channel="sms", to_number=TO,
                        describe="transfer $5.00")
    assert isinstance(issued, Issued)
    return issued


def _outbox(engine: Engine) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(SmsOutbox).order_by(SmsOutbox.id)))


def test_the_real_client_talks_to_the_fake() -> None:
    with FakeTwilio() as fake:
        client = twilio_client(_settings(fake))
        msg = client.messages.create(to=TO, from_="+15550000000", body="hello")
        assert msg.sid.startswith("SM") and msg.body == "hello" and msg.to == TO
        assert [m.body for m in client.messages.list(to=TO, limit=5)] == ["hello"]
        with pytest.raises(TwilioRestException) as bad:
            client.messages.create(to="not-a-number", from_="+15550000000", body="x")
        assert bad.value.status == 400 and bad.value.code == 21211
        wrong = Client(fake.account_sid, "wrong-token")
        wrong.api.base_url = fake.base_url
        with pytest.raises(TwilioRestException) as denied:
            wrong.messages.create(to=TO, from_="+15550000000", body="x")
        assert denied.value.status == 401


def test_missing_twilio_settings_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="twilio_account_sid"):
        twilio_client(PolicySettings())


@pytest.mark.slow
@pytest.mark.parametrize(
    "faults",
    [(), ("500",), ("503", "503"), ("500_after_send",), ("429", "429"), ("hang",), ("hang_after_send",),
     ("429", "500_after_send", "hang"), ("hang", "hang_after_send")],
    ids=lambda f: "+".join(f) or "clean",
)
def test_exactly_one_message_per_confirmation_despite_faults(migrated_engine: Engine, faults: tuple[str, ...]) -> None:
    with FakeTwilio(hang_s=0.8) as fake:
        sender = SmsSender(migrated_engine, twilio_client(_settings(fake)), "+15550000000", backoff_s=0.02)
        fake.fail_next(*faults)
        issued = _issue(migrated_engine, "r1")
        sender.drain_until_settled(timeout_s=20)
        assert len(fake.messages) == 1, [m.body for m in fake.messages]
        # Faults are used up until one lets the message through; after a "sent but unanswered" one the sender
        # finds the message at the provider and never posts again.
        through = next((i for i, f in enumerate(faults) if f.endswith("_after_send")), None)
        assert fake.attempts == (through + 1 if through is not None else len(faults) + 1)
        (row,) = _outbox(migrated_engine)
        assert row.status == "sent" and row.body == "" and row.provider_sid == fake.messages[0].sid
        assert row.confirmation_id == issued.confirmation_id
        sent_rows = [r for r in AuditTrail(migrated_engine).rows() if r.kind == "sms.sent"]
        assert len(sent_rows) == 1


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_permanent_rejection_fails_without_retry(migrated_engine: Engine) -> None:
    with FakeTwilio() as fake:
        ps = _settings(fake)
        ps.twilio_auth_token = "wrong"
        sender = SmsSender(migrated_engine, twilio_client(ps), "+15550000000", backoff_s=0.02)
        _issue(migrated_engine, "r1")
        sender.drain_until_settled(timeout_s=5)
        (row,) = _outbox(migrated_engine)
        assert row.status == "failed" and row.body == "" and "401" in (row.last_error or "")
        assert fake.messages == []


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_gives_up_after_max_attempts(migrated_engine: Engine) -> None:
    with FakeTwilio() as fake:
        sender = SmsSender(migrated_engine, twilio_client(_settings(fake)), "+15550000000", max_attempts=3,
                           backoff_s=0.01)
        fake.fail_next(*["429"] * 10)
        _issue(migrated_engine, "r1")
        sender.drain_until_settled(timeout_s=10)
        (row,) = _outbox(migrated_engine)
        assert row.status == "failed" and row.attempts == 3 and fake.messages == []


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_sender_that_died_mid_send_is_reconciled_not_resent(migrated_engine: Engine) -> None:
    with FakeTwilio() as fake:
        client = twilio_client(_settings(fake))
        _issue(migrated_engine, "r1")
        (row,) = _outbox(migrated_engine)
        # Sender A claimed the row and the provider took the message, then A died before recording it.
        client.messages.create(to=row.to_number, from_="+15550000000", body=row.body)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CLAIM_LEASE_S + 1)
        with migrated_engine.begin() as conn:
            conn.execute(sa.update(SmsOutbox).values(status="sending", claimed_until=past))
        # Sender B, after A's lease ran out:
        SmsSender(migrated_engine, client, "+15550000000", backoff_s=0.01).drain_until_settled(timeout_s=5)
        assert len(fake.messages) == 1
        (row,) = _outbox(migrated_engine)
        assert row.status == "sent" and row.provider_sid == fake.messages[0].sid


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_two_senders_draining_at_once_send_once(migrated_engine: Engine) -> None:
    with FakeTwilio() as fake:
        for i in range(6):
            _issue(migrated_engine, f"r{i}")
        senders = [SmsSender(migrated_engine, twilio_client(_settings(fake)), "+15550000000") for _ in range(2)]
        threads = [threading.Thread(target=s.drain_until_settled, kwargs={"timeout_s": 10}) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(fake.messages) == 6
        assert len({m.body for m in fake.messages}) == 6


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_background_sender_delivers_after_kick(migrated_engine: Engine) -> None:
    with FakeTwilio() as fake:
        sender = SmsSender(migrated_engine, twilio_client(_settings(fake)), "+15550000000")
        sender.start()
        try:
            _issue(migrated_engine, "r1")
            sender.kick()
            for _ in range(100):
                if fake.messages:
                    break
                threading.Event().wait(0.05)
        finally:
            sender.stop()
        assert len(fake.messages) == 1
