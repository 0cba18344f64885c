"""The open transcript: Whisper's second opinion on the menu turns the grammar recogniser is unsure of."""

from __future__ import annotations

from collections.abc import Sequence
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
               sequence: Sequence[str] = (), builtin: str | None = None, open_transcript: bool = False
               ) -> SttStream:
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
        assert got == unsure


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


def test_a_missing_model_is_a_config_error_when_the_recogniser_is_built(tmp_path: Path) -> None:
    """Loading lazily must not hide a bad setting until the first caller: the cheap checks run up front."""
    import dataclasses

    speech = dataclasses.replace(Settings().speech, whisper_model=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"speech\.whisper_model: no model\.bin"):
        ot.LazyTranscriber(speech)
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "model.bin").write_bytes(b"")
    assert not ot.LazyTranscriber(speech).loaded  # found, not loaded
