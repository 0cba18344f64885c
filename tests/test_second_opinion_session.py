"""An unsure slot answer in a whole call: the open transcript rescues it or vetoes it, and a PIN never gets one.

The call session, the bank dialplan, its router and the demo bank are real; the recogniser is the tests' tone
recogniser (voiceivr/testing/speech.py) with the confidence a test chooses, wrapped in the open transcript's
engine (voiceivr/speech/stt/open_transcript.py) with a scripted Whisper that records the audio it was given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
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
from voiceivr.dialplan.slots import Money
from voiceivr.policy.gate import SessionBinding
from voiceivr.settings import CallSettings
from voiceivr.speech.stt.open_transcript import OpenTranscript, OpenTranscriptEngine
from voiceivr.testing.speech import EnergyVad, LexiconStt, ToneLexicon

pytestmark = pytest.mark.slow  # whole calls of ~50 s of media each
DIALPLANS = Path(__file__).resolve().parents[1] / "dialplans"
WHERE_TO = "Where should the money go?"


class _ScriptedWhisper:
    """Whisper's words for each unsure turn, in order; every call is recorded."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.calls: list[int] = []

    def transcribe(self, pcm: np.ndarray, rate: int) -> OpenTranscript:
        self.calls.append(len(pcm))
        return OpenTranscript(self.texts.pop(0), -0.3, 0.02, 0.05, 4.0)


@pytest.fixture
def bank_db(sqlite_url: str, migrated_templates: MigratedTemplates) -> sa.Engine:
    migrated_templates.fill(sqlite_url)
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seed(engine)
    return engine


def _transfer_call(engine: sa.Engine, whisper: _ScriptedWhisper, pin: tuple[str, float],
                   amount: tuple[str, float], answers: bool = True,
                   noisy_below_db: float = 0.0) -> tuple[CallSession, Conversation]:
    """Transfer (key 3), account number keyed, the PIN and then the amount said aloud, as the recogniser hears
    them (words, confidence)."""
    registry = demo_registry()
    plan = load_file(DIALPLANS / "bank.yaml", registry)
    gate = TimedGate(gate_for(registry, engine, SessionBinding(call_id="c-second")))
    conv = Conversation(plan, gate, make_router(plan, [0, 1]), call_id="c-second", registry=registry)
    lexicon = ToneLexicon()
    pin_tone, amount_tone = lexicon.word(*pin).freq, lexicon.word(*amount).freq
    stt = OpenTranscriptEngine(LexiconStt(lexicon), whisper, below=0.6,  # type: ignore[arg-type]
                               noisy_below_db=noisy_below_db)
    settings = dataclasses.replace(CallSettings(), idle_hangup_s=120.0, idle_sleep_s=90.0,
                                   open_transcript_answers=answers)
    session = CallSession(call_id="c-second", media=MediaChannel(RATE), brain=DialplanBrain(conv, gate),
                          vad=EnergyVad(), stt=stt, tts=WordTts(), settings=settings, stats=StageStats())
    keys = [(14.0, "3")] + [(23.0 + 0.15 * i, d) for i, d in enumerate("10000001#")]
    audio = caller_audio([(34.0, 35.2, pin_tone), (44.0, 45.2, amount_tone)], total_s=54.0)
    drive(session, audio, control=[(t, ev.DtmfDigit(0, digit=d)) for t, d in keys], tail_s=6.0)
    return session, conv


def _said(session: CallSession) -> str:
    return " | ".join(e.text for e in session.timeline if isinstance(e, ev.PromptStarted))


def _finals(session: CallSession) -> list[ev.TranscriptFinal]:
    return [e for e in session.timeline if isinstance(e, ev.TranscriptFinal)]


def test_an_unsure_amount_is_rescued_when_the_open_transcript_agrees(bank_db: sa.Engine) -> None:
    # under routing.slot_min_confidence (0.2) the grammar's "fifty dollars" alone is asked again ...
    alone = _ScriptedWhisper(["$50."])
    session, conv = _transfer_call(bank_db, alone, ("one two three four", 0.9), ("fifty dollars", 0.1),
                                   answers=False)
    assert "amount" not in conv.slots and WHERE_TO not in _said(session)
    assert alone.calls == []  # call.open_transcript_answers off: only menus get a second opinion
    # ... and taken when Whisper, on the same audio, heard the same amount
    whisper = _ScriptedWhisper(["$50."])
    session, conv = _transfer_call(bank_db, whisper, ("one two three four", 0.9), ("fifty dollars", 0.1))
    assert "Thank you, Alice." in _said(session)
    assert conv.slots["amount"].value == Money(5000) and WHERE_TO in _said(session)
    assert len(whisper.calls) == 1 and whisper.calls[0] >= int(1.0 * RATE)  # the amount's turn, once
    assert _finals(session)[-1].open_text == "$50."


def test_an_unsure_amount_the_open_transcript_hears_otherwise_is_asked_again(bank_db: sa.Engine) -> None:
    whisper = _ScriptedWhisper(["$50."])  # the caller said fifty; the grammar's nearest phrase was eighty
    session, conv = _transfer_call(bank_db, whisper, ("one two three four", 0.9), ("eighty dollars", 0.4))
    assert "amount" not in conv.slots and WHERE_TO not in _said(session)
    assert "How much would you like to transfer?" in _said(session).split("Thank you, Alice.")[-1]
    assert len(whisper.calls) == 1


def test_a_spoken_pin_never_reaches_the_open_transcript(bank_db: sa.Engine) -> None:
    # the grammar is unsure of the PIN (0.3, under speech.open_transcript_below): a menu or an amount this
    # unsure would be transcribed again; a secret is not, nor does any text of it reach the timeline
    whisper = _ScriptedWhisper(["$50.", "$50."])
    session, conv = _transfer_call(bank_db, whisper, ("one two three four", 0.3), ("fifty dollars", 0.3))
    assert "Thank you, Alice." in _said(session)  # the PIN was taken (0.3 is over routing.slot_min_confidence)
    assert len(whisper.calls) == 1  # both turns were as unsure: only the amount's was transcribed again
    pin_turn = next(f for f in _finals(session) if f.secret)
    assert pin_turn.text == "" and pin_turn.open_text == ""
    assert "1234" not in " ".join(f"{f.text} {f.open_text}" for f in _finals(session))
    assert conv.slots["amount"].value == Money(5000)


def test_on_a_noisy_line_a_sure_amount_is_checked_against_the_open_transcript(bank_db: sa.Engine) -> None:
    # speech.open_transcript_noisy_db over the test line's SNR: every turn counts as noisy. A sure amount (0.9,
    # over speech.open_transcript_below) is transcribed again and, heard otherwise, asked again ...
    whisper = _ScriptedWhisper(["$50."])
    session, conv = _transfer_call(bank_db, whisper, ("one two three four", 0.9), ("eighty dollars", 0.9),
                                   noisy_below_db=200.0)
    assert "Thank you, Alice." in _said(session)  # the sure PIN was taken, and never transcribed (a secret)
    assert "amount" not in conv.slots and WHERE_TO not in _said(session)
    assert len(whisper.calls) == 1 and "1234" not in " ".join(f.open_text for f in _finals(session))
    # ... taken when Whisper heard the same amount, and when its words hold no amount at all (it heard the
    # voice badly: the grammar's answer stands, as on a clean line)
    for heard in ("$80.", "Eddie doll."):
        whisper = _ScriptedWhisper([heard])
        session, conv = _transfer_call(bank_db, whisper, ("one two three four", 0.9), ("eighty dollars", 0.9),
                                       noisy_below_db=200.0)
        assert conv.slots["amount"].value == Money(8000) and WHERE_TO in _said(session), heard
        assert len(whisper.calls) == 1
