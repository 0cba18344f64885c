"""A noisy line through the real call session (Silero, pocketsphinx, espeak-ng on the virtual clock): the noise
suppressor set on and off (speech.noise_suppression), and other voices on the line (babble) that the VAD hears
as speech without end, which the level gate (call.level_gate) tells from the caller."""

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
from voiceivr.settings import CallSettings, Settings
from voiceivr.speech.denoise import build_denoiser
from voiceivr.speech.registry import build_prompt_cache, build_stt, build_tts, build_vad

pytestmark = pytest.mark.slow

RATE = 8000


def make(brain: ScriptedBrain, tmp_path: Path, noise_suppression: str = "off",
         call: CallSettings | None = None) -> CallSession:
    settings = Settings()
    settings.speech.prompt_cache_dir = str(tmp_path / "prompts")
    return CallSession(
        call_id="noise-call", media=MediaChannel(RATE), brain=brain, vad=build_vad(settings),
        stt=build_stt(settings, workers=0), tts=build_tts(settings), prompt_cache=build_prompt_cache(settings),
        settings=call or CallSettings(), denoiser=build_denoiser(noise_suppression),
    )


def menu_brain() -> ScriptedBrain:
    return ScriptedBrain(
        greeting=[ev.Reply(0.0, prompt_id=1, text="How can I help?"), b.Listen(grammar=grammar_phrases())],
        replies=[[ev.Reply(0.0, prompt_id=2, text="Goodbye."), b.EndCall("done")]],
    )


def answer() -> tuple[np.ndarray, float]:
    e = next(e for e in entries("phrase", "tel") if e["intent"] == "check_balance" and e["voice"] == "piper-joe")
    return pcm(e["file"]), e["onsets"][0]


def active_rms(x: np.ndarray) -> float:
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    p = np.mean(f * f, axis=1)
    return float(np.sqrt(p[p > p.max() / 1000].mean()))


def line(words: np.ndarray, at_s: float, total_s: float, background: np.ndarray, snr_db: float) -> np.ndarray:
    """The caller's words at ``at_s`` over ``background`` for the whole call, ``snr_db`` under the words."""
    n = int(total_s * RATE)
    x = np.resize(background.astype(np.float64), n)
    x *= active_rms(words) / np.sqrt(np.mean(x**2)) / 10 ** (snr_db / 20)
    start = int(at_s * RATE)
    x[start : start + len(words)] += words[: n - start]
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def babble() -> np.ndarray:
    """Four other voices saying other phrases over each other, their pauses cut out (as the evaluation's)."""
    others = [e for e in entries("phrase", "tel") if e["intent"] not in ("check_balance", "long")]
    voices = []
    for k in range(4):
        frames = np.concatenate([pcm(e["file"]) for e in others[k::4]])
        frames = frames[: len(frames) // 160 * 160].reshape(-1, 160).astype(np.float64)
        power = np.mean(frames * frames, axis=1)
        voice = frames[power > power.max() / 300].ravel()  # within 25 dB of the loudest: words, not pauses
        voices.append(np.roll(np.resize(voice, 40 * RATE), k * 3217))
    return np.sum(voices, axis=0)


def test_the_suppressor_runs_per_call_and_its_cost_is_counted(tmp_path: Path) -> None:
    words, _ = answer()
    noisy = line(words, 3.0, 7.0, pcm("nonspeech/pink_noise.wav"), 12.0)
    for engine in ("off", "webrtc2"):
        brain = menu_brain()
        session = make(brain, tmp_path, engine)
        drive(session, noisy)
        (utterance,) = brain.inputs(b.Utterance)
        assert utterance.text == "check my balance", engine
        assert ("denoise" in session.costs.by_engine) == (engine != "off"), session.costs.by_engine


def test_babble_on_the_line_no_longer_holds_the_turn_open(tmp_path: Path) -> None:
    """Babble 10 dB under the caller from the first frame: the VAD hears speech through the greeting and on.
    Without the gate the turn opens on the babble at the start of the call and the caller's words drown in it;
    with it the turn opens when the caller's level rises and ends soon after their words."""
    words, onset = answer()
    at = 3.0
    noisy = line(words, at, 12.0, babble(), 10.0)
    words_end = at + len(words) / RATE
    brain = menu_brain()
    session = make(brain, tmp_path, call=CallSettings(level_gate=False))
    drive(session, noisy, tail_s=0.0)
    first = next(e for e in session.timeline if isinstance(e, ev.TranscriptFinal))
    assert first.speech_start < at - 1.0 and first.speech_end > at  # the VAD alone: babble and words as one turn
    assert first.text != "check my balance"

    brain = menu_brain()
    session = make(brain, tmp_path, call=CallSettings(level_gate=True))
    drive(session, noisy, tail_s=0.0)
    finals = [e for e in session.timeline if isinstance(e, ev.TranscriptFinal) and not e.ignored]
    assert finals, [type(e).__name__ for e in session.timeline]
    caller_turn = next(e for e in finals if e.speech_end > at)
    assert abs(caller_turn.speech_start - (at + onset)) < 0.5
    assert caller_turn.speech_end - words_end < 1.5
    assert caller_turn.t - words_end < 2.5
    assert caller_turn.text == "check my balance"
