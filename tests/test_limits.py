"""Call limits on the media clock: no progress (the `*`-every-45-s hold), max duration, and their goodbyes.

The bank cases run the real dialplan engine, router and demo bank behind the call session (keys do the
talking); the others use the scripted brain of tests/support/fakes.py and the fake engines of
voiceivr/testing/speech.py. Nothing here waits on a wall clock: a 900 s call takes a few seconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.fakes import RATE, ScriptedBrain, WordTts, caller_audio, prompt_seconds
from voiceivr import metrics
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.budget import StageStats
from voiceivr.call.dialplan_brain import DialplanBrain, TimedGate
from voiceivr.call.driver import drive
from voiceivr.call.limits import CallLimits
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
WORDS = {700: "yes", 900: "check my balance"}


class Control:
    def __init__(self) -> None:
        self.hangups: list[str] = []

    def hangup(self, reason: str = "normal") -> None:
        self.hangups.append(reason)

    def transfer(self, target: str) -> None:
        raise AssertionError("no transfer expected")


@pytest.fixture
def bank_db(sqlite_url: str) -> sa.Engine:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seed(engine)
    return engine


def bank_session(engine: sa.Engine, **call: object) -> tuple[CallSession, Control]:
    """The bank dialplan behind a call session with the default call settings (or ``call`` over them)."""
    registry = demo_registry()
    plan = load_file(DIALPLANS / "bank.yaml", registry)
    gate = TimedGate(gate_for(registry, engine, SessionBinding(call_id="c-limits")))
    conv = Conversation(plan, gate, make_router(plan, [0, 1]), call_id="c-limits", registry=registry)
    control = Control()
    session = CallSession(call_id="c-limits", media=MediaChannel(RATE), brain=DialplanBrain(conv, gate),
                          vad=EnergyVad(), stt=ToneStt(WORDS), tts=WordTts(),
                          settings=dataclasses.replace(CallSettings(), **call),  # type: ignore[arg-type]
                          control=control, stats=StageStats())
    return session, control


def keys(presses: list[tuple[float, str]]) -> list[tuple[float, ev.SystemEvent]]:
    out: list[tuple[float, ev.SystemEvent]] = []
    for t, group in presses:
        out += [(t + 0.15 * i, ev.DtmfDigit(0, digit=d)) for i, d in enumerate(group)]
    return out


def ended(session: CallSession) -> ev.CallEnded:
    (end,) = [e for e in session.timeline if isinstance(e, ev.CallEnded)]
    return end


def said(session: CallSession) -> list[str]:
    return [e.text for e in session.timeline if isinstance(e, ev.PromptStarted)]


# ------------------------------------------------------------------------------------------ no progress


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_star_every_45_s_no_longer_holds_the_line(bank_db: sa.Engine) -> None:
    # The attack from issue 13: `*` (repeat) every 45 s. Each press is caller activity, so the idle timer
    # (60 s) never ran out and the call stayed up for the whole 900 s.
    session, control = bank_session(bank_db)
    presses = [(10.0 + 45.0 * i, "*") for i in range(20)]
    drive(session, caller_audio([], total_s=900.0), control=keys(presses), tail_s=0.0)

    end = ended(session)
    assert end.reason == "no progress" and session.outcome == "no_progress", end
    # Nothing new has been said since the greeting's first reprompts (~20 s): 180 s later it is over.
    assert 180.0 < end.t < 230.0, end
    assert said(session)[-1] == CallSettings().no_progress_goodbye
    assert control.hangups == ["no progress"]
    assert session.summary()["ended_by_limit"] == "no_progress"
    note = next(e for e in session.timeline if isinstance(e, ev.Note) and e.kind == "limit.no_progress")
    assert note.detail["since_progress_s"] >= CallSettings().no_progress_hangup_s


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_slow_caller_who_gets_somewhere_is_not_cut_off(bank_db: sa.Engine) -> None:
    # 17 s of thought before every answer (each one hears "Are you still there?"), for 220 s in all, more than
    # no_progress_hangup_s: every answer brings something new (a question, a balance, the hours), so the call
    # goes on until the caller is done.
    session, control = bank_session(bank_db)
    presses, t = [], 14.0
    for group in ["2", "10000001#", "1234#", "1", "9", "2", "2", "9", "1", "9", "2", "1"]:
        presses.append((t, group))
        t += 17.0 + 0.15 * len(group)
    drive(session, caller_audio([], total_s=t), control=keys(presses), tail_s=0.0)

    assert t > CallSettings().no_progress_hangup_s
    end = ended(session)
    assert end.reason == "hangup by caller" and end.t >= t - 0.1, end  # the recording ran out, not a limit
    assert control.hangups == ["hangup by caller"] and session.summary()["ended_by_limit"] == ""
    text = " | ".join(said(session))
    assert "Your savings balance is" in text and "We're open" in text


def test_repeats_are_no_progress_new_prompts_are() -> None:
    limits = CallLimits(dataclasses.replace(CallSettings(), no_progress_hangup_s=30.0, max_duration_s=0.0))
    assert limits.said("Main menu.  Press 1", 1.0)
    assert not limits.said("main menu. press 1", 20.0)  # the same words, heard again
    assert limits.due(30.9) is None
    assert limits.said("Your balance is 5 dollars.", 31.0)
    assert limits.due(60.9) is None
    end = limits.due(61.0)
    assert end is not None and end.kind == "no_progress" and end.outcome == "no_progress"
    assert limits.due(100.0) is None  # fires once


# ------------------------------------------------------------------------------------------ max duration


def _chatty_session(**call: object) -> tuple[CallSession, ScriptedBrain, WordTts, Control]:
    """A caller who talks every 6 s and a brain with something new to say each time (progress all along)."""
    long_reply = " ".join(f"word{i}" for i in range(30))  # ~5.4 s
    brain = ScriptedBrain(
        greeting=[ev.Reply(0.0, prompt_id=1, text="hello"), b.Listen()],
        replies=[[ev.Reply(0.0, prompt_id=10 + i, text=f"answer {i} {long_reply}"), b.Listen()]
                 for i in range(40)],
    )
    tts, control = WordTts(), Control()
    session = CallSession(call_id="c-max", media=MediaChannel(RATE), brain=brain, vad=EnergyVad(),
                          stt=ToneStt(WORDS), tts=tts,
                          settings=dataclasses.replace(CallSettings(), **call),  # type: ignore[arg-type]
                          control=control, stats=StageStats())
    return session, brain, tts, control


def test_max_duration_cuts_the_prompt_says_goodbye_and_hangs_up() -> None:
    session, brain, tts, control = _chatty_session(max_duration_s=30.0)
    speech = [(1.0 + 6.0 * i, 1.5 + 6.0 * i, 900) for i in range(20)]
    drive(session, caller_audio(speech, total_s=120.0), tail_s=0.0)

    end = ended(session)
    goodbye = CallSettings().max_duration_goodbye
    assert end.reason == "max call duration" and session.outcome == "time_limit"
    assert 30.0 <= end.t <= 30.0 + prompt_seconds(goodbye) + 0.5, end
    assert control.hangups == ["max call duration"]
    assert tts.spoken[-1] == goodbye
    # The answer that was playing at 30 s was cut for the goodbye, and the goodbye is uninterruptible: the
    # caller's speech over it answered nothing (the brain's last input is the hang-up, at 30 s).
    cut = [e for e in session.timeline if isinstance(e, ev.PromptCut)]
    assert cut and cut[-1].t == pytest.approx(30.0, abs=0.03)
    assert 0 < cut[-1].words_heard < cut[-1].words_total and cut[-1].heard_text.startswith("answer")
    started = [e for e in session.timeline if isinstance(e, ev.PromptStarted)]
    assert started[-1].kind == "Disclosure" and started[-1].text == goodbye
    last = [e for e in brain.seen if not isinstance(e, b.PromptFinished)][-1]
    assert isinstance(last, b.HungUp) and last.at == pytest.approx(30.0, abs=0.03)
    assert not [e for e in brain.inputs(b.Utterance) if e.started_at > 30.0]  # type: ignore[attr-defined]
    assert session.summary()["ended_by_limit"] == "max_duration"


def test_keys_during_the_goodbye_cannot_cancel_the_hang_up() -> None:
    session, _brain, _tts, control = _chatty_session(max_duration_s=10.0)
    presses = [(10.0 + 0.3 * i, ev.DtmfDigit(0, digit="*")) for i in range(10)]
    drive(session, caller_audio([(1.0, 1.5, 900)], total_s=60.0), control=presses, tail_s=0.0)
    assert control.hangups == ["max call duration"] and session.outcome == "time_limit"
    assert ended(session).t < 10.0 + prompt_seconds(CallSettings().max_duration_goodbye) + 0.5
    assert not any(isinstance(e, ev.BargeIn) and e.t >= 10.0 for e in session.timeline)


def test_a_caller_who_hangs_up_during_the_goodbye_keeps_the_limit_as_outcome() -> None:
    session, *_ = _chatty_session(max_duration_s=10.0)
    drive(session, caller_audio([(1.0, 1.5, 900)], total_s=60.0),
          control=[(11.0, ev.Hangup(0.0, by="caller"))], tail_s=0.0)
    end = ended(session)
    assert end.t == pytest.approx(11.0, abs=0.05) and session.outcome == "time_limit"


def test_limit_endings_are_counted_by_kind() -> None:
    def value(limit: str) -> float:
        return metrics.REGISTRY.get_sample_value("voiceivr_calls_ended_by_limit_total", {"limit": limit}) or 0.0

    before = value("max_duration"), value("idle")
    metrics.observe_call({"outcome": "time_limit", "ended_by_limit": "max_duration"}, [])
    metrics.observe_call({"outcome": "abandoned", "ended_by_limit": "idle"}, [])
    metrics.observe_call({"outcome": "completed", "ended_by_limit": ""}, [])
    assert (value("max_duration"), value("idle")) == (before[0] + 1, before[1] + 1)
