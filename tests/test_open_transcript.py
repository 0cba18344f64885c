"""The open transcript: Whisper's second opinion on the menu turns the grammar recogniser is unsure of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voiceivr.audio.frames import Frame
from voiceivr.audio.wav import read_wav
from voiceivr.errors import ConfigError
from voiceivr.settings import Settings
from voiceivr.speech.base import SttEngine, SttResult, SttStream
from voiceivr.speech.stt import open_transcript as ot

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000


class _Grammar(SttStream):
    def __init__(self, result: SttResult) -> None:
        self.result = result
        self.fed = 0

    def feed(self, frame: Frame) -> SttResult | None:
        self.fed += 1
        return None

    def finish(self) -> SttResult:
        return self.result


class _GrammarEngine(SttEngine):
    name = "grammar"

    def __init__(self, result: SttResult) -> None:
        self.result = result

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *, repeat: tuple[int, int] | None = None,
               sequence: Sequence[str] = (), builtin: str | None = None, open_transcript: bool = False,
               noisy_check: bool = False) -> SttStream:
        return _Grammar(self.result)


class _Whisper:
    def __init__(self, text: str = "what's left in my checking", no_speech: float = 0.01, fail: bool = False) -> None:
        self.text, self.no_speech, self.fail = text, no_speech, fail
        self.calls: list[int] = []

    def transcribe(self, pcm: np.ndarray, rate: int) -> ot.OpenTranscript:
        self.calls.append(len(pcm))
        if self.fail:
            raise RuntimeError("decoder blew up")
        return ot.OpenTranscript(self.text, -0.3, self.no_speech, 0.05, 4.0)


def _run(engine: SttEngine, seconds: float, **kw: object) -> SttResult:
    s = engine.stream(RATE, ["check my balance", "transfer money"], **kw)  # type: ignore[arg-type]
    for k in range(int(seconds / 0.02)):
        s.feed(Frame(np.full(160, 100, np.int16), RATE, k * 0.02))
    return s.finish()


def test_only_unsure_menu_turns_pay_for_a_second_opinion() -> None:
    whisper = _Whisper()
    unsure = SttResult("transfer money", 0.3, True)
    engine = ot.OpenTranscriptEngine(_GrammarEngine(unsure), whisper, below=0.6)  # type: ignore[arg-type]
    got = _run(engine, 1.5, open_transcript=True)
    assert got.open_text == "what's left in my checking" and got.text == "transfer money"
    assert whisper.calls == [int(1.5 * RATE)]  # the whole turn, once
    assert _run(engine, 1.5).open_text == ""  # a slot or a read-back did not ask for one
    assert _run(engine, 0.2, open_transcript=True).open_text == ""  # too short to be worth it
    sure = ot.OpenTranscriptEngine(_GrammarEngine(SttResult("check my balance", 0.9, True)), whisper, below=0.6)  # type: ignore[arg-type]
    assert _run(sure, 1.5, open_transcript=True).open_text == ""
    assert len(whisper.calls) == 1


def test_a_doubtful_or_failed_second_opinion_leaves_the_first() -> None:
    unsure = SttResult("transfer money", 0.3, True)
    for whisper in (_Whisper(no_speech=0.9), _Whisper(text=""), _Whisper(fail=True)):
        engine = ot.OpenTranscriptEngine(_GrammarEngine(unsure), whisper, below=0.6)  # type: ignore[arg-type]
        got = _run(engine, 1.0, open_transcript=True)
        assert replace(got, decode_seconds=0.0) == unsure  # (the time spent asking is counted)


def test_a_repackaged_model_that_differs_from_the_published_one_is_refused(tmp_path: Path) -> None:
    for name, (size, _) in ot.OFFICIAL.items():
        (tmp_path / name).write_bytes(b"\0" * min(size, 10))
    assert sorted(ot._check(tmp_path)) == sorted(ot.OFFICIAL)
    with pytest.raises(ConfigError, match=r"speech\.whisper_model"):
        ot.WhisperTranscriber(tmp_path / "missing")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> ot.WhisperTranscriber:
    return ot.shared_transcriber(ot.model_dir(Settings().speech))


def test_whisper_from_its_packages_hears_telephone_speech(whisper: ot.WhisperTranscriber) -> None:
    """The packaged model, joined and checked, on real telephone-band G.711 audio: the words, not a phrase list."""
    wav = read_wav(ROOT / "tests" / "fixtures" / "audio" / "phrases" / "check_balance__piper-joe__tel.wav")
    assert wav.rate == RATE
    got = whisper.transcribe(wav.mono(), wav.rate)
    assert got.usable and "balance" in got.text.lower(), got
    assert got.window_s <= 8.0 and got.cpu_s < 5.0
    silence = whisper.transcribe(np.random.default_rng(1).normal(0, 30, RATE * 2).astype(np.int16), RATE)
    assert not silence.usable or len(silence.text.split()) <= 3


def test_whisper_loads_on_the_first_unsure_turn_once_not_when_the_recogniser_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``voiceivr call --stt``'s test caller builds a recogniser that never asks for an open transcript: it must not
    pay ~0.5 s and ~150 MB for Whisper. Two turns finishing at once load it once."""
    import threading
    import time as _time

    loads: list[Path] = []
    whisper = _Whisper()

    def load(directory: Path, threads: int = 1) -> _Whisper:
        loads.append(directory)
        _time.sleep(0.05)  # long enough for the other thread to arrive while loading
        return whisper

    monkeypatch.setattr(ot, "check_available", lambda speech: None)
    monkeypatch.setattr(ot, "model_dir", lambda speech: Path("/models/whisper"))
    monkeypatch.setattr(ot, "shared_transcriber", load)
    lazy = ot.LazyTranscriber(Settings().speech)
    engine = ot.OpenTranscriptEngine(_GrammarEngine(SttResult("transfer money", 0.3, True)), lazy, below=0.6)
    assert _run(engine, 1.0).open_text == "" and not lazy.loaded and loads == []  # no menu turn: nothing loaded
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(_run(engine, 1.0, open_transcript=True).open_text))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["what's left in my checking"] * 2 and loads == [Path("/models/whisper")] and lazy.loaded
    assert len(whisper.calls) == 2


def test_a_process_that_serves_calls_warms_whisper_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recogniser's worker process calls warm() once it is up (voiceivr/speech/stt/remote.py): the first
    unsure turn of a call must not wait for the load (it took the bank demo's goodbye to 1.59 s). A load that fails
    is logged and tried again on the turn."""
    import threading
    import time as _time

    started = threading.Event()
    loads: list[Path] = []

    def load(directory: Path, threads: int = 1) -> _Whisper:
        started.set()
        loads.append(directory)
        if len(loads) == 1:
            raise OSError("disk hiccup")
        return _Whisper()

    monkeypatch.setattr(ot, "check_available", lambda speech: None)
    monkeypatch.setattr(ot, "model_dir", lambda speech: Path("/models/whisper"))
    monkeypatch.setattr(ot, "shared_transcriber", load)
    lazy = ot.LazyTranscriber(Settings().speech)
    engine = ot.OpenTranscriptEngine(_GrammarEngine(SttResult("transfer money", 0.3, True)), lazy, below=0.6)
    engine.warm()
    assert started.wait(5.0)
    deadline = _time.monotonic() + 5.0
    while _time.monotonic() < deadline and not loads:
        _time.sleep(0.01)
    assert loads == [Path("/models/whisper")] and not lazy.loaded  # the failed warm-up left it to the turn
    assert _run(engine, 1.0, open_transcript=True).open_text == "what's left in my checking" and lazy.loaded
    engine.warm()  # loaded: nothing more to do
    assert len(loads) == 2


def test_a_missing_model_is_a_config_error_when_the_recogniser_is_built(tmp_path: Path) -> None:
    """Loading lazily must not hide a bad setting until the first caller: the cheap checks run up front."""
    import dataclasses

    speech = dataclasses.replace(Settings().speech, whisper_model=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"speech\.whisper_model: no model\.bin"):
        ot.LazyTranscriber(speech)
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "model.bin").write_bytes(b"")
    assert not ot.LazyTranscriber(speech).loaded  # found, not loaded


def _speech_like(seconds: float, noise: float, seed: int = 3) -> np.ndarray:
    """A loud 300 Hz tone in bursts (words) with pauses, over white noise of ``noise`` rms."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    words = (np.sin(2 * np.pi * 300 * t) * 8000 * ((t % 0.5) < 0.3)).astype(np.float64)
    return np.clip(words + rng.normal(0, noise, len(t)), -32768, 32767).astype(np.int16)


def _run_pcm(engine: SttEngine, pcm: np.ndarray, noisy_check: bool = True) -> SttResult:
    s = engine.stream(RATE, ["check my balance", "transfer money"], open_transcript=True, noisy_check=noisy_check)
    for k in range(0, len(pcm), 160):
        s.feed(Frame(pcm[k : k + 160], RATE, k / RATE))
    return s.finish()


def test_the_turns_snr_tells_a_noisy_line_from_a_clean_one() -> None:
    assert ot.turn_snr_db(_speech_like(2.0, 3.0), RATE) > 40  # a clean line's floor
    assert ot.turn_snr_db(_speech_like(2.0, 2000.0), RATE) < 15  # ~10 dB of noise under the words
    assert ot.turn_snr_db(np.zeros(40, np.int16), RATE) == float("inf")  # too short to tell: not noise


def test_on_a_noisy_line_a_sure_grammar_phrase_stands_only_if_whisper_heard_it() -> None:
    sure = SttResult("check my balance", 0.9, True)
    noisy, clean = _speech_like(2.0, 2000.0), _speech_like(2.0, 3.0)

    def engine(whisper: _Whisper) -> ot.OpenTranscriptEngine:
        return ot.OpenTranscriptEngine(_GrammarEngine(sure), whisper, below=0.6, noisy_below_db=20.0)  # type: ignore[arg-type]

    confirmed = _Whisper("I need to check my balance please")
    assert replace(_run_pcm(engine(confirmed), noisy), decode_seconds=0.0) == sure and len(confirmed.calls) == 1
    other = _Whisper("I want to transfer some money")  # babble forced the grammar; Whisper heard another request
    got = _run_pcm(engine(other), noisy)
    assert got.confidence == pytest.approx(0.3) and got.open_text == "I want to transfer some money"
    got = _run_pcm(engine(_Whisper(no_speech=0.95)), noisy)  # Whisper heard nothing it trusts: reprompt
    assert got.confidence == pytest.approx(0.3) and got.open_text == ""
    quiet = _Whisper("I want to transfer some money")
    assert _run_pcm(engine(quiet), clean) == sure and quiet.calls == []  # a clean line: the grammar is trusted


def test_a_noisy_slot_answer_gets_whisper_beside_a_sure_grammar_result_which_it_does_not_halve() -> None:
    """Slot answers and read-backs (``noisy_check=False``) on a noisy line: Whisper's words are handed over beside
    the sure grammar result, whose confidence stays (the slot's parser compares the two values); halving it, as a
    menu's check does, lost sure yes/no answers that Whisper did not echo word for word (docs/speech.md, "Open
    transcript in noise")."""
    sure = SttResult("yes", 0.9, True)
    whisper = _Whisper("the earth")
    engine = ot.OpenTranscriptEngine(_GrammarEngine(sure), whisper, below=0.6, noisy_below_db=20.0)  # type: ignore[arg-type]
    got = _run_pcm(engine, _speech_like(2.0, 2000.0), noisy_check=False)
    assert replace(got, decode_seconds=0.0) == replace(sure, open_text="the earth") and len(whisper.calls) == 1
    unusable = _Whisper("the earth", no_speech=0.95)  # nothing Whisper trusts: the grammar's answer as it was
    engine = ot.OpenTranscriptEngine(_GrammarEngine(sure), unusable, below=0.6, noisy_below_db=20.0)  # type: ignore[arg-type]
    assert replace(_run_pcm(engine, _speech_like(2.0, 2000.0), noisy_check=False), decode_seconds=0.0) == sure
    quiet = _Whisper("the earth")  # a clean line: a sure answer is not transcribed again
    engine = ot.OpenTranscriptEngine(_GrammarEngine(sure), quiet, below=0.6, noisy_below_db=20.0)  # type: ignore[arg-type]
    assert _run_pcm(engine, _speech_like(2.0, 3.0), noisy_check=False) == sure and quiet.calls == []
    off = _Whisper("the earth")  # no noise threshold (the default): as before, sure answers are never transcribed
    engine = ot.OpenTranscriptEngine(_GrammarEngine(sure), off, below=0.6)  # type: ignore[arg-type]
    assert _run_pcm(engine, _speech_like(2.0, 2000.0), noisy_check=False) == sure and off.calls == []


def test_the_turn_is_denoised_for_whisper_only() -> None:
    """The suppressor runs on the turn's audio before Whisper; the grammar heard the line as it was."""
    from voiceivr.speech.denoise import build_denoiser

    class _Heard(_Whisper):
        def transcribe(self, pcm: np.ndarray, rate: int) -> ot.OpenTranscript:
            self.pcm = pcm
            return super().transcribe(pcm, rate)

    whisper = _Heard()
    unsure = SttResult("transfer money", 0.3, True)
    engine = ot.OpenTranscriptEngine(_GrammarEngine(unsure), whisper, below=0.6,  # type: ignore[arg-type]
                                     denoiser=build_denoiser("webrtc2"))
    line = _speech_like(2.0, 2000.0)
    s = engine.stream(RATE, ["check my balance", "transfer money"], open_transcript=True)
    for k in range(0, len(line), 160):
        s.feed(Frame(line[k : k + 160], RATE, k / RATE))
    assert s.finish().open_text == "what's left in my checking"
    assert len(whisper.pcm) == len(line)
    assert ot.turn_snr_db(whisper.pcm, RATE) > ot.turn_snr_db(line, RATE) + 5  # Whisper got a cleaner turn
    assert s.engine_seconds > 0  # the suppressor's CPU is counted with Whisper's


def test_with_a_noise_threshold_only_noisy_turns_are_suppressed_for_whisper() -> None:
    """On a clean line the suppressor cost Whisper right answers: with speech.open_transcript_noisy_db set, an
    unsure turn on a clean line reaches Whisper as it was, a noisy one suppressed."""
    from voiceivr.speech.denoise import build_denoiser

    class _Heard(_Whisper):
        def transcribe(self, pcm: np.ndarray, rate: int) -> ot.OpenTranscript:
            self.pcm = pcm
            return super().transcribe(pcm, rate)

    whisper = _Heard()
    engine = ot.OpenTranscriptEngine(_GrammarEngine(SttResult("transfer money", 0.3, True)), whisper,  # type: ignore[arg-type]
                                     below=0.6, denoiser=build_denoiser("webrtc2"), noisy_below_db=25.0)
    clean, noisy = _speech_like(2.0, 3.0), _speech_like(2.0, 2000.0)
    assert _run_pcm(engine, clean).open_text and np.array_equal(whisper.pcm, clean)
    assert _run_pcm(engine, noisy).open_text and not np.array_equal(whisper.pcm, noisy)
