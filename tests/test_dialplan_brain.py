"""The dialplan engine driven by the call session: prompts, listens, digits and actions, on a media clock.

Audio engines are the fakes of voiceivr/testing/speech.py (keys do most of the talking here); the dialplan, router,
demo bank and database are real.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.db_templates import MigratedTemplates
from tests.support.fakes import RATE, WordTts, caller_audio
from voiceivr.call import events as ev
from voiceivr.call.budget import StageStats
from voiceivr.call.dialplan_brain import DialplanBrain, TimedGate
from voiceivr.call.driver import drive
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.demo.actions import seed
from voiceivr.dialplan.engine import Conversation
from voiceivr.dialplan.gates import gate_for
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.router import make_router
from voiceivr.policy.gate import SessionBinding
from voiceivr.settings import CallSettings
from voiceivr.testing.speech import EnergyVad, ToneStt

DIALPLANS = Path(__file__).resolve().parents[1] / "dialplans"
WORDS = {700: "yes", 900: "what are your opening hours", 1300: "no"}


@pytest.fixture
def bank_db(sqlite_url: str, migrated_templates: MigratedTemplates) -> sa.Engine:
    migrated_templates.fill(sqlite_url)  # migrated once per run (tests/support/db_templates.py)
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seed(engine)
    return engine


def _session(engine: sa.Engine, plan_name: str) -> tuple[CallSession, DialplanBrain]:
    registry = demo_registry()
    plan = load_file(DIALPLANS / f"{plan_name}.yaml", registry)
    router = make_router(plan, [0, 1])
    gate = TimedGate(gate_for(registry, engine, SessionBinding(call_id="c-brain")))
    conv = Conversation(plan, gate, router, call_id="c-brain", registry=registry)
    brain = DialplanBrain(conv, gate)
    session = CallSession(call_id="c-brain", media=MediaChannel(RATE), brain=brain, vad=EnergyVad(),
                          stt=ToneStt(WORDS), tts=WordTts(),
                          settings=dataclasses.replace(CallSettings(), idle_hangup_s=120.0, idle_sleep_s=90.0),
                          stats=StageStats())
    return session, brain


def _said(session: CallSession) -> list[str]:
    return [e.text for e in session.timeline if isinstance(e, ev.PromptStarted)]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_hello_by_voice(bank_db: sa.Engine) -> None:
    session, brain = _session(bank_db, "hello")
    audio = caller_audio([(5.0, 6.5, 900)], total_s=8.0)  # "what are your opening hours"
    drive(session, audio, tail_s=8.0)
    said = _said(session)
    assert said[0].startswith("Hello!")
    assert any(s.startswith("We're open") for s in said)
    intents = [e for e in session.timeline if isinstance(e, ev.IntentRecognized)]
    assert intents and intents[0].intent == "hours" and intents[0].tier == 0  # an example phrase: exact match
    assert session.ended and brain.resolved_tasks() == 1
    lat = session.summary()["latency"]
    assert {"capture", "intent", "tool", "synthesis", "e2e"} <= set(lat)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_bank_balance_by_keypad(bank_db: sa.Engine) -> None:
    session, brain = _session(bank_db, "bank")
    keys: list[tuple[float, str]] = []
    t = 14.0
    for group in ["2", "10000001#", "1234#", "1"]:  # balance, account number, PIN, checking
        for d in group:
            keys.append((t, d))
            t += 0.15
        t += 9.0
    drive(session, caller_audio([], total_s=t), control=[(k, ev.DtmfDigit(0, digit=d)) for k, d in keys],
          tail_s=10.0)
    said = " | ".join(_said(session))
    assert "Welcome to Acme Bank" in said
    assert "Thank you, Alice." in said
    assert "Your checking balance is" in said, said
    notes = [e for e in session.timeline if isinstance(e, ev.Note) and e.kind == "action_result"]
    assert [n.detail["action"] for n in notes] == ["login", "get_balance"]
    assert brain.resolved_tasks() == 2
    # the PIN went to the conversation as digits but never onto a prompt or a note
    assert "1234" not in said and all("1234" not in str(n.detail) for n in notes)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_disclosure_cannot_be_skipped(bank_db: sa.Engine) -> None:
    session, _ = _session(bank_db, "bank")
    drive(session, caller_audio([], total_s=3.0), control=[(0.5, ev.DtmfDigit(0, digit="1"))], tail_s=0.0)
    first = next(e for e in session.timeline if isinstance(e, ev.PromptStarted))
    assert first.kind == "Disclosure"
    assert not any(isinstance(e, ev.BargeIn) for e in session.timeline)
