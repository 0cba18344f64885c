"""The real speech engines inside the call session (voiceivr.call), on the virtual clock: the greeting is
synthesised by espeak-ng through the prompt cache, the caller's answer (a telephone fixture) is found by
Silero and recognised by pocketsphinx under the turn's grammar, and a caller who talks over a long prompt cuts
it with the words heard recorded from espeak's word marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.fakes import ScriptedBrain
from tests.support.speech_fixtures import entries, grammar_phrases, pcm
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.driver import drive
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.settings import Settings
from voiceivr.speech.registry import build_prompt_cache, build_stt, build_tts, build_vad

pytestmark = pytest.mark.slow


def make(brain: ScriptedBrain, tmp_path: Path) -> CallSession:
    settings = Settings()
    settings.speech.prompt_cache_dir = str(tmp_path / "prompts")
    return CallSession(
        call_id="speech-call", media=MediaChannel(8000), brain=brain, vad=build_vad(settings),
        stt=build_stt(settings, workers=0), tts=build_tts(settings), prompt_cache=build_prompt_cache(settings),
    )


def caller(file: str, at_s: float, total_s: float) -> np.ndarray:
    audio = np.zeros(int(total_s * 8000), dtype=np.int16)
    clip = pcm(file)
    start = int(at_s * 8000)
    audio[start : start + len(clip)] = clip[: len(audio) - start]
    return audio


def test_a_turn_with_real_engines(tmp_path: Path) -> None:
    greeting = "Welcome to First Bank. How can I help?"
    brain = ScriptedBrain(
        greeting=[ev.Reply(0.0, prompt_id=1, text=greeting), b.Listen(grammar=grammar_phrases())],
        replies=[[ev.Reply(0.0, prompt_id=2, text="Goodbye."), b.EndCall("done")]],
    )
    session = make(brain, tmp_path)
    answer = next(e for e in entries("phrase", "tel") if e["intent"] == "check_balance" and e["voice"] == "piper-joe")
    drive(session, caller(answer["file"], 3.0, 7.0))
    (utterance,) = brain.inputs(b.Utterance)
    assert utterance.text == "check my balance" and utterance.confidence > 0.5
    assert abs(utterance.started_at - (3.0 + answer["onsets"][0])) < 0.25
    assert session.ended


def test_talking_over_a_prompt_cuts_it_where_the_caller_was(tmp_path: Path) -> None:
    long_prompt = ("Please listen carefully as our menu options have changed. For your balance say balance. "
                   "To transfer money say transfer. To hear our opening hours say hours.")
    brain = ScriptedBrain(
        greeting=[ev.Reply(0.0, prompt_id=1, text=long_prompt), b.Listen(grammar=grammar_phrases())],
        replies=[[b.EndCall("done")]],
    )
    session = make(brain, tmp_path)
    talk = next(e for e in entries("phrase", "tel") if e["intent"] == "agent" and e["voice"] == "piper-joe")
    drive(session, caller(talk["file"], 2.0, 8.0))
    cut = [e for e in session.timeline if isinstance(e, ev.PromptCut)]
    assert cut, [type(e).__name__ for e in session.timeline]
    words = long_prompt.split()
    heard = cut[0].words_heard
    assert 0 < heard < len(words) and cut[0].heard_text == " ".join(words[:heard])
    # the caller started about 2.5 s in; espeak's marks put word `heard` ending before that point
    assert abs(cut[0].t - (2.0 + talk["onsets"][0])) < 0.25
    # words_total counts the words synthesised so far: espeak streams a sentence at a time
    assert heard <= cut[0].words_total <= len(words)
