"""Publishing versions, the live version for new calls, and the demo bank, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.actions.registry import ActionContext, ActionError
from voiceivr.db import migrate
from voiceivr.db.models import Call
from voiceivr.demo import actions as bank
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.demo.identity import DemoIdentity
from voiceivr.dialplan.loader import DialplanInvalid
from voiceivr.dialplan.router import IntentRouter
from voiceivr.dialplan.store import LiveDialplans, NoLiveDialplan, get_version, list_versions, publish, record_call
from voiceivr.errors import VoiceivrError

ROOT = Path(__file__).resolve().parents[1]
HELLO = (ROOT / "dialplans" / "hello.yaml").read_text()


def test_schema_matches_models(migrated_engine: Engine) -> None:
    assert migrate.schema_diff(migrated_engine) == []


def test_publish_versions_and_refusal(migrated_engine: Engine) -> None:
    reg = demo_registry()
    first = publish(migrated_engine, HELLO, "hello.yaml", reg, "alice")
    assert first.created and first.version.version == 1 and len(first.version.sha256) == 64
    assert not publish(migrated_engine, HELLO, "hello.yaml", reg).created  # same content: nothing new
    changed = HELLO.replace("Hello!", "Hi there!")
    second = publish(migrated_engine, changed, "hello.yaml", reg)
    assert second.version.version == 2
    with pytest.raises(DialplanInvalid):
        publish(migrated_engine, changed.replace("goto: hours", "goto: nowhere"), "hello.yaml", reg)
    assert [v.version for v in list_versions(migrated_engine, "hello")] == [1, 2]
    assert get_version(migrated_engine, "hello").source == changed
    with pytest.raises(VoiceivrError, match="no longer live"):
        publish(migrated_engine, HELLO, "hello.yaml", reg)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_new_version_reaches_new_calls_only(migrated_engine: Engine) -> None:
    reg = demo_registry()
    live = LiveDialplans(migrated_engine, "hello", reg, lambda p: IntentRouter(p, tiers=(0, 1)))
    with pytest.raises(NoLiveDialplan):
        live.for_new_call()
    publish(migrated_engine, HELLO, "hello.yaml", reg)
    call_a = live.for_new_call()
    assert live.for_new_call() is call_a  # loaded once
    publish(migrated_engine, HELLO.replace("Hello!", "Hi there!"), "hello.yaml", reg)
    call_b = live.for_new_call()
    assert call_b.version == 2 and call_a.version == 1
    assert "Hello!" in call_a.plan.nodes["welcome"].say[0].text  # the call in progress keeps its version
    record_call(migrated_engine, "call-b", call_b.version_id, source="test")
    with migrated_engine.connect() as conn:
        vid = conn.execute(sa.select(Call.__table__.c.dialplan_version_id).where(Call.__table__.c.id == "call-b")
                           ).scalar_one()
    assert vid == call_b.version_id


def _ctx(engine: Engine, principal: str | None, key: str = "") -> ActionContext:
    return ActionContext("c1", principal, engine, dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC), key)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_bank_actions_do_real_things(migrated_engine: Engine) -> None:
    assert bank.seed(migrated_engine) == ["c-1001", "c-1002"]
    assert bank.seed(migrated_engine) == []
    e = migrated_engine
    assert bank.login({"account_number": "10000001", "pin": "1234"}, _ctx(e, None))["principal"] == "c-1001"
    with pytest.raises(ActionError):
        bank.login({"account_number": "10000001", "pin": "0000"}, _ctx(e, None))
    out = bank.transfer_funds({"amount": 2550, "to": "landlord"}, _ctx(e, "c-1001", "k1"))
    again = bank.transfer_funds({"amount": 2550, "to": "landlord"}, _ctx(e, "c-1001", "k1"))
    assert again["reference"] == out["reference"] and again.get("duplicate")
    assert out["balance"] == 250_000 - 2550
    with pytest.raises(ActionError, match="enough money"):
        bank.transfer_funds({"amount": 10**9, "to": "savings"}, _ctx(e, "c-1002", "k2"))
    with pytest.raises(ActionError, match="payee called mom"):
        bank.transfer_funds({"amount": 100, "to": "mom"}, _ctx(e, "c-1002", "k3"))
    with pytest.raises(ActionError, match="identify you"):
        bank.get_balance({"account": "checking"}, _ctx(e, None))
    assert bank.get_balance({"account": "checking"}, _ctx(e, "c-1001"))["balance"] == 250_000 - 2550
    assert bank.block_card({"card_last4": "4242"}, _ctx(e, "c-1001"))["card"] == "4242"
    with pytest.raises(ActionError):
        bank.block_card({"card_last4": "1881"}, _ctx(e, "c-1001"))  # Bob's card, not Alice's
    bank.change_address({"address": "5 Birch Road, Springfield"}, _ctx(e, "c-1001", "k4"))
    with e.connect() as conn:
        rows = conn.execute(sa.text("select address, current from bank_addresses where customer_id='c-1001' "
                                    "order by id")).all()
    assert [(r[0], bool(r[1])) for r in rows] == [("12 Oak Street, Springfield", False),
                                                   ("5 Birch Road, Springfield", True)]
    contact = DemoIdentity(e).contact("c-1001", {"principal": "c-1001"})
    assert contact is not None and contact.phone_on_file == "+15555550101" and contact.totp_enrolled


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_five_wrong_pins_lock_the_customer(migrated_engine: Engine) -> None:
    bank.seed(migrated_engine)
    for _ in range(5):
        with pytest.raises(ActionError):
            bank.login({"account_number": "20000001", "pin": "0000"}, _ctx(migrated_engine, None))
    with pytest.raises(ActionError, match="locked"):
        bank.login({"account_number": "20000001", "pin": "4321"}, _ctx(migrated_engine, None))
