"""A call session on the fake engines of voiceivr/testing/speech.py: the builder the session tests use and the
barge-in call that test_session checks and test_stats stores."""

from __future__ import annotations

import dataclasses

from tests.support.fakes import RATE, ScriptedBrain, WordTts, caller_audio
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.budget import StageStats
from voiceivr.call.driver import DriveResult, EchoPath, drive
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.settings import CallSettings
from voiceivr.testing.speech import EnergyVad, ToneStt

WORDS = {700: "yes", 900: "check my balance", 1100: "okay", 1300: "no", 1500: "tell me about opening hours please"}
LONG = " ".join(f"word{i}" for i in range(24))  # 24 words, about 4.3 s


class Control:
    def __init__(self) -> None:
        self.hangups: list[str] = []
        self.transfers: list[str] = []

    def hangup(self, reason: str = "normal") -> None:
        self.hangups.append(reason)

    def transfer(self, target: str) -> None:
        self.transfers.append(target)


def make_session(brain: ScriptedBrain, vad: EnergyVad | None = None,
                 **call: object) -> tuple[CallSession, WordTts, ToneStt, Control]:
    tts, stt, control = WordTts(), ToneStt(WORDS), Control()
    settings = dataclasses.replace(CallSettings(), **call)  # type: ignore[arg-type]
    session = CallSession(
        call_id="test-call",
        media=MediaChannel(RATE),
        brain=brain,
        vad=vad or EnergyVad(),
        stt=stt,
        tts=tts,
        settings=settings,
        control=control,
        stats=StageStats(),
    )
    return session, tts, stt, control


def say(text: str, kind: type[ev.Prompt] = ev.Reply, pid: int = 0) -> ev.Prompt:
    return kind(0.0, prompt_id=pid, text=text)


def barge_in_run(echo: EchoPath | None = None, **call: object) -> tuple[CallSession, ScriptedBrain, WordTts,
                                                                         DriveResult]:
    """A long prompt cut by the caller's words at 1.5 s (test_session asserts the barge-in, test_stats stores the
    call)."""
    brain = ScriptedBrain(
        greeting=[say(LONG, pid=1), say("and then this follows", pid=2), b.Listen()],
        replies=[[say("sure", pid=3)]],
    )
    session, tts, _, _ = make_session(brain, **call)
    audio = caller_audio([(1.5, 2.4, 1500)], total_s=3.5)
    return session, brain, tts, drive(session, audio, echo=echo, tail_s=2.0)
