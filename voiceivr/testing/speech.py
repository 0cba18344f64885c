"""Audio engines for simulated calls, where what is said matters and how it sounds does not.

``voiceivr demo abuse`` runs whole calls through the real call session, dialplan engine and safe path;
recognition accuracy is not what it measures (the real engines have their own figures, docs/speech.md), so
the speech is symbolic but still travels as audio through the session:

* :class:`ToneLexicon` gives each utterance of a call its own tone; the caller "says" it by sending that tone
  for as long as the words would take, with the confidence a recogniser would report.
* :class:`LexiconStt` hears the tone and returns the utterance's text and confidence (grammar or not: a
  simulated caller says exactly what the script says).
* :class:`EnergyVad` is a level detector; :class:`WordToneTts` speaks each word of a prompt as a short low tone
  with exact word marks, so barge-in and "words heard" work as with a real voice.

All of it is deterministic and cheap: a minute of call takes a few milliseconds of engine time.

The unit tests of call logic use the same engines (the real engines have their own tests on real audio):
there caller "speech" is a tone burst at a frequency the test chose, and :class:`ToneStt` looks up the words
it stands for (:meth:`ToneLexicon.fixed`), so a test can say "the caller says 'yes' from 2.0 s to 2.6 s" with
one line, and the session's timing, echo handling and barge-in run on real sample streams. Each engine keeps
what it was asked for (the streams it opened, the prompts it spoke) for the tests to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from voiceivr.audio.frames import Frame, Pcm
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

CALLER_BAND = (500.0, 3300.0)  # caller tones live here; prompts are below it
TONE_STEP_HZ = 50.0
PROMPT_HZ = 300.0


def tone(freq: float, seconds: float, rate: int = 8000, dbfs: float = -12.0) -> Pcm:
    t = np.arange(round(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20)
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float
    freq: float


class ToneLexicon:
    """What each caller tone means, for one call (one frequency per distinct utterance and confidence)."""

    def __init__(self, tolerance_hz: float = TONE_STEP_HZ / 2,
                 band: tuple[float, float] = (CALLER_BAND[0] - TONE_STEP_HZ, CALLER_BAND[1] + TONE_STEP_HZ)) -> None:
        self._by_key: dict[tuple[str, float], Word] = {}
        self._by_freq: dict[float, Word] = {}
        lo, hi = CALLER_BAND
        self._free = list(np.arange(lo, hi + 1, TONE_STEP_HZ))
        self.tolerance_hz = tolerance_hz
        self.band = band  # where the recogniser looks for the caller's tone (prompts are below it)

    @classmethod
    def fixed(cls, words: Mapping[float, str], confidence: float = 0.9) -> ToneLexicon:
        """Tones a test chose (``{700: "yes"}``): heard within 40 Hz, between 450 and 3400 Hz."""
        lexicon = cls(tolerance_hz=40.0, band=(450.0, 3400.0))
        lexicon._free = []
        for freq, text in words.items():
            w = Word(text, confidence, float(freq))
            lexicon._by_key[(text, round(confidence, 3))] = w
            lexicon._by_freq[w.freq] = w
        return lexicon

    def word(self, text: str, confidence: float = 0.93) -> Word:
        key = (text, round(confidence, 3))
        if key not in self._by_key:
            if not self._free:
                raise ValueError(f"more than {len(self._by_freq)} distinct utterances in one simulated call")
            w = Word(text, confidence, float(self._free.pop(0)))
            self._by_key[key] = w
            self._by_freq[w.freq] = w
        return self._by_key[key]

    def lookup(self, freq: float) -> Word | None:
        if not self._by_freq:
            return None
        nearest = min(self._by_freq, key=lambda f: abs(f - freq))
        return self._by_freq[nearest] if abs(nearest - freq) < self.tolerance_hz else None


# --------------------------------------------------------------------------------------------------- VAD


class _EnergyVadStream(VadStream):
    def __init__(self, threshold_dbfs: float, min_speech_s: float, min_silence_s: float) -> None:
        self.threshold = threshold_dbfs
        self.min_speech = min_speech_s
        self.min_silence = min_silence_s
        self._speaking = False
        self._run_start: float | None = None
        self._last_loud_end: float | None = None
        self._p = 0.0

    def feed(self, frame: Frame) -> list[VadEvent]:
        rms = float(np.sqrt(np.mean(frame.pcm.astype(np.float64) ** 2))) if len(frame.pcm) else 0.0
        loud = 20 * np.log10(max(rms, 1e-9) / 32768) > self.threshold
        self._p = 1.0 if loud else 0.0
        events: list[VadEvent] = []
        if loud:
            if self._run_start is None:
                self._run_start = frame.t
            self._last_loud_end = frame.end
            if not self._speaking and frame.end - self._run_start >= self.min_speech:
                self._speaking = True
                events.append(VadEvent("start", self._run_start, frame.end, 1.0))
        elif not self._speaking:
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
        self.args = (threshold_dbfs, min_speech_ms / 1000, min_silence_ms / 1000)

    def stream(self, rate: int) -> VadStream:
        return _EnergyVadStream(*self.args)


# --------------------------------------------------------------------------------------------------- STT


class _LexiconSttStream(SttStream):
    def __init__(self, lexicon: ToneLexicon, rate: int, grammar: Sequence[str] | None = None) -> None:
        self.lexicon = lexicon
        self.grammar = grammar
        self.rate = rate
        self.audio: list[Pcm] = []
        self.fed = 0
        self.fed_at: list[float] = []  # each frame's start time
        self.cancelled = False

    def _heard(self) -> Word | None:
        if not self.audio:
            return None
        pcm = np.concatenate(self.audio).astype(np.float64)
        spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
        freqs = np.fft.rfftfreq(len(pcm), 1 / self.rate)
        lo, hi = self.lexicon.band
        band = (freqs > lo) & (freqs < hi)
        if not band.any() or spec[band].max() < 1e3 * len(pcm) ** 0.5:
            return None
        return self.lexicon.lookup(float(freqs[band][np.argmax(spec[band])]))

    def feed(self, frame: Frame) -> SttResult | None:
        t0 = time.perf_counter()
        self.audio.append(frame.pcm)
        self.fed += 1
        self.fed_at.append(frame.t)
        result = None
        if self.fed % 10 == 0:
            w = self._heard()
            result = SttResult(w.text if w else "", 0.5, is_final=False)
        self.engine_seconds += time.perf_counter() - t0
        return result

    def finish(self) -> SttResult:
        w = self._heard()
        if w is None:
            return SttResult("", 0.0, is_final=True, audio_seconds=self.fed * 0.02)
        return SttResult(w.text, w.confidence, is_final=True, audio_seconds=self.fed * 0.02)

    def cancel(self) -> None:
        self.cancelled = True


class LexiconStt(SttEngine):
    name = "lexicon"

    def __init__(self, lexicon: ToneLexicon) -> None:
        self.lexicon = lexicon
        self.streams: list[_LexiconSttStream] = []

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *, repeat: tuple[int, int] | None = None,
               sequence: Sequence[str] = (), builtin: str | None = None, open_transcript: bool = False,
               noisy_check: bool = False) -> SttStream:
        # A simulated caller says exactly what the script says, whatever the recogniser was told to expect.
        s = _LexiconSttStream(self.lexicon, rate, grammar)
        self.streams.append(s)
        return s


class ToneStt(LexiconStt):
    """The tests' recogniser: each tone a test chose (``{700: "yes"}``) stands for its words."""

    name = "tone"

    def __init__(self, words: Mapping[float, str]) -> None:
        super().__init__(ToneLexicon.fixed(words))
        self.words = words


# --------------------------------------------------------------------------------------------------- TTS


class _WordToneStream(TtsStream):
    def __init__(self, text: str, rate: int, word_s: float, gap_s: float) -> None:
        self.text, self.rate, self.word_s, self.gap_s = text, rate, word_s, gap_s
        self.cancelled = False
        self.chunks_made = 0

    def __iter__(self) -> Iterator[TtsChunk]:
        offset = 0
        words = self.text.split()
        for i, word in enumerate(words):
            if self.cancelled:
                return
            voiced = tone(PROMPT_HZ, self.word_s, self.rate, dbfs=-10.0)
            pcm = np.concatenate([voiced, np.zeros(round(self.gap_s * self.rate), dtype=np.int16)])
            mark = WordMark(word, offset, offset + len(voiced))
            offset += len(pcm)
            self.chunks_made += 1
            yield TtsChunk(pcm, self.rate, (mark,), final=i == len(words) - 1)

    def cancel(self) -> None:
        self.cancelled = True


class WordToneTts(TtsEngine):
    """Each word a ``word_s`` tone and a ``gap_s`` gap; keeps what it was asked to say (``spoken``) and its
    streams."""

    name = "wordtone"

    def __init__(self, word_s: float = 0.1, gap_s: float = 0.02) -> None:
        self.word_s, self.gap_s = word_s, gap_s
        self.spoken: list[str] = []
        self.streams: list[_WordToneStream] = []

    @property
    def voice(self) -> str:
        return "wordtone"

    def stream(self, text: str, rate: int) -> TtsStream:
        s = _WordToneStream(text, rate, self.word_s, self.gap_s)
        self.spoken.append(text)
        self.streams.append(s)
        return s

    def duration(self, text: str, rate: int = 8000) -> float:
        """Seconds of audio this engine makes for ``text`` (what a caller timing its words needs)."""
        per_word = round(self.word_s * rate) + round(self.gap_s * rate)
        return len(text.split()) * per_word / rate
