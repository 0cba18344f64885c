"""Scripted engines for unit tests of call logic (the real engines have their own tests on real audio).

Caller "speech" in these tests is a tone burst: :class:`ToneStt` hears its frequency and looks up the words
it stands for, so a test can say "the caller says 'yes' from 2.0 s to 2.6 s" with one line, and the session's
timing, echo handling and barge-in run on real sample streams. :class:`EnergyVad` is a plain level detector;
:class:`WordTts` speaks each word as a short tone with exact word marks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from voiceivr.audio.frames import Frame, Pcm
from voiceivr.call import brain as b
from voiceivr.speech.base import (
    SttEngine,
    SttResult,
    SttStream,
    TtsChunk,
    TtsEngine,
    TtsStream,
    VadEngine,
    VadEvent,
    VadStream,
    WordMark,
)

RATE = 8000


def tone(freq: float, seconds: float, dbfs: float = -12.0, rate: int = RATE) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20)
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def caller_audio(segments: Sequence[tuple[float, float, float]], total_s: float, rate: int = RATE,
                 noise_dbfs: float = -65.0) -> Pcm:
    """segments: (start_s, end_s, freq). A faint noise floor keeps it from being digital silence."""
    rng = np.random.default_rng(3)
    out = rng.normal(0, 32768 * 10 ** (noise_dbfs / 20), int(total_s * rate))
    for start, end, freq in segments:
        a, z = int(start * rate), int(end * rate)
        out[a:z] += tone(freq, (z - a) / rate, rate=rate)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------------- VAD


class _EnergyVadStream(VadStream):
    def __init__(self, threshold_dbfs: float, min_speech_ms: int, min_silence_ms: int) -> None:
        self.threshold = threshold_dbfs
        self.min_speech = min_speech_ms / 1000
        self.min_silence = min_silence_ms / 1000
        self._speaking = False
        self._run_start: float | None = None
        self._last_loud_end: float | None = None
        self._p = 0.0

    def feed(self, frame: Frame) -> list[VadEvent]:
        rms = float(np.sqrt(np.mean(frame.pcm.astype(np.float64) ** 2)))
        db = 20 * np.log10(max(rms, 1e-9) / 32768)
        loud = db > self.threshold
        self._p = 1.0 if loud else 0.0
        events: list[VadEvent] = []
        if loud:
            if self._run_start is None:
                self._run_start = frame.t
            self._last_loud_end = frame.end
            if not self._speaking and frame.end - self._run_start >= self.min_speech:
                self._speaking = True
                events.append(VadEvent("start", self._run_start, frame.end, 1.0))
        else:
            if not self._speaking:
                self._run_start = None
            elif self._last_loud_end is not None and frame.end - self._last_loud_end >= self.min_silence:
                self._speaking = False
                self._run_start = None
                events.append(VadEvent("end", self._last_loud_end, frame.end, 0.0))
        return events

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def last_probability(self) -> float:
        return self._p

    def reset(self) -> None:
        self._speaking = False
        self._run_start = None


class EnergyVad(VadEngine):
    name = "energy"

    def __init__(self, threshold_dbfs: float = -40.0, min_speech_ms: int = 60, min_silence_ms: int = 100) -> None:
        self.args = (threshold_dbfs, min_speech_ms, min_silence_ms)

    def stream(self, rate: int) -> VadStream:
        return _EnergyVadStream(*self.args)


# --------------------------------------------------------------------------------------------------- STT


class _ToneSttStream(SttStream):
    def __init__(self, words: dict[int, str], grammar: Sequence[str] | None, rate: int) -> None:
        self.words = words
        self.grammar = grammar
        self.rate = rate
        self.audio: list[Pcm] = []
        self.fed = 0
        self.fed_at: list[float] = []  # each frame's start time
        self.cancelled = False

    def _guess(self) -> str:
        if not self.audio:
            return ""
        pcm = np.concatenate(self.audio).astype(np.float64)
        spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
        freqs = np.fft.rfftfreq(len(pcm), 1 / self.rate)
        band = (freqs > 450) & (freqs < 3400)  # prompts are 300 Hz tones: not the caller
        if not band.any() or spec[band].max() < 1e3 * len(pcm) ** 0.5:
            return ""
        peak = float(freqs[band][np.argmax(spec[band])])
        key = min(self.words, key=lambda f: abs(f - peak))
        return self.words[key] if abs(key - peak) < 40 else ""

    def feed(self, frame: Frame) -> SttResult | None:
        t0 = time.perf_counter()
        self.audio.append(frame.pcm)
        self.fed += 1
        self.fed_at.append(frame.t)
        self.engine_seconds += time.perf_counter() - t0
        if self.fed % 10 == 0:
            return SttResult(self._guess(), 0.5, is_final=False)
        return None

    def finish(self) -> SttResult:
        text = self._guess()
        return SttResult(text, 0.9 if text else 0.0, is_final=True, audio_seconds=self.fed * 0.02)

    def cancel(self) -> None:
        self.cancelled = True


class ToneStt(SttEngine):
    name = "tone"

    def __init__(self, words: dict[int, str]) -> None:
        self.words = words
        self.streams: list[_ToneSttStream] = []

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
        repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
    ) -> SttStream:
        s = _ToneSttStream(self.words, grammar, rate)
        self.streams.append(s)
        return s


# --------------------------------------------------------------------------------------------------- TTS

WORD_S = 0.15
GAP_S = 0.03
PROMPT_HZ = 300.0


class _WordTtsStream(TtsStream):
    def __init__(self, text: str, rate: int, log: list[str]) -> None:
        self.text = text
        self.rate = rate
        self.cancelled = False
        self.chunks_made = 0
        log.append(text)

    def __iter__(self) -> Iterator[TtsChunk]:
        offset = 0
        words = self.text.split()
        for i, word in enumerate(words):
            if self.cancelled:
                return
            voiced = tone(PROMPT_HZ, WORD_S, dbfs=-10.0, rate=self.rate)
            gap = np.zeros(int(GAP_S * self.rate), dtype=np.int16)
            pcm = np.concatenate([voiced, gap])
            mark = WordMark(word, offset, offset + len(voiced))
            offset += len(pcm)
            self.chunks_made += 1
            yield TtsChunk(pcm, self.rate, (mark,), final=i == len(words) - 1)

    def cancel(self) -> None:
        self.cancelled = True


class WordTts(TtsEngine):
    name = "wordtone"

    def __init__(self) -> None:
        self.spoken: list[str] = []
        self.streams: list[_WordTtsStream] = []

    @property
    def voice(self) -> str:
        return "wordtone"

    def stream(self, text: str, rate: int) -> TtsStream:
        s = _WordTtsStream(text, rate, self.spoken)
        self.streams.append(s)
        return s


def prompt_seconds(text: str) -> float:
    return len(text.split()) * (WORD_S + GAP_S)


# ------------------------------------------------------------------------------------------------- brain


@dataclass
class ScriptedBrain:
    """Answers each input with the next scripted reply; records everything it was told."""

    greeting: list[b.BrainOutput]
    replies: list[list[b.BrainOutput]] = field(default_factory=list)
    seen: list[b.BrainInput] = field(default_factory=list)
    answer_prompt_events: bool = False
    tasks: int = 0

    def start(self) -> list[b.BrainOutput]:
        return list(self.greeting)

    def handle(self, event: b.BrainInput) -> list[b.BrainOutput]:
        self.seen.append(event)
        if isinstance(event, b.PromptFinished) and not self.answer_prompt_events:
            return []
        if isinstance(event, b.SessionChanged | b.HungUp | b.Overheard):
            return []
        return list(self.replies.pop(0)) if self.replies else []

    def resolved_tasks(self) -> int:
        return self.tasks

    def outcome(self) -> str:
        return "completed"

    def inputs(self, kind: type) -> list[b.BrainInput]:
        return [e for e in self.seen if isinstance(e, kind)]
