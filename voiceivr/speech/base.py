"""The interfaces every speech engine implements: VAD, streaming STT, streaming cancellable TTS.

Each engine is a small ABC with a capabilities dataclass; engines are chosen by configuration
(:mod:`voiceivr.speech.registry` maps a setting's name to a class), never by ``if`` chains in call code.
Every engine has a real implementation and, for unit tests of call logic, a scripted fake.

Costs are part of the interface: each stream accumulates ``engine_seconds`` (CPU time spent inside the
engine), which the call session reports per stage and per resolved task.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from voiceivr.audio.frames import Frame, Pcm

# ------------------------------------------------------------------------------------------------- VAD


@dataclass(frozen=True)
class VadEvent:
    """Speech began or ended. ``t`` is on the call's clock (seconds): for ``start`` the estimated true onset,
    not the moment the detector became sure (``decided_at``)."""

    kind: Literal["start", "end"]
    t: float
    decided_at: float
    probability: float = 0.0


@dataclass(frozen=True)
class VadCapabilities:
    rates: tuple[int, ...] = (8000, 16000)
    releases_gil: bool = True


class VadStream(abc.ABC):
    """Per-call state. Feed every caller frame in order; get start/end events."""

    engine_seconds: float = 0.0

    @abc.abstractmethod
    def feed(self, frame: Frame) -> list[VadEvent]: ...

    @property
    @abc.abstractmethod
    def speaking(self) -> bool: ...

    @property
    @abc.abstractmethod
    def last_probability(self) -> float: ...

    @abc.abstractmethod
    def reset(self) -> None: ...

    @property
    def tentative_onset(self) -> float | None:
        """Speech seems to have begun (a window over the threshold) but not yet for long enough to be a
        ``start``: when it began, else None. The call session holds a prompt on it; engines that cannot
        tell return None and the hold waits for ``start``."""
        return None


class VadEngine(abc.ABC):
    """Shared by all calls of a process (one model); each call gets its own stream."""

    name: str = "vad"
    capabilities: VadCapabilities = VadCapabilities()

    @abc.abstractmethod
    def stream(self, rate: int) -> VadStream: ...


# ------------------------------------------------------------------------------------------------- STT


@dataclass(frozen=True)
class SttResult:
    text: str
    confidence: float  # 0..1; engines map their own scores here and document how
    is_final: bool
    audio_seconds: float = 0.0  # audio consumed for this result
    decode_seconds: float = 0.0  # time from finish() to the final result (finals only)
    words: tuple[str, ...] = ()
    # The engine's raw evidence behind ``confidence``, for calibration and traces (None: the engine has none).
    # pocketsphinx grammars: (grammar path - phone-loop path) per 10 ms frame, log base 1.0001.
    score: float | None = None
    # An open-vocabulary transcript of the same audio, when the grammar result was unsure and the turn asked
    # for one (voiceivr.speech.stt.open_transcript): what the caller said, for the router's tiers 1-2.
    open_text: str = ""


@dataclass(frozen=True)
class SttCapabilities:
    grammar: bool = False  # accepts a phrase list per turn
    partials: bool = True
    releases_gil: bool = True  # False: keep it out of processes that carry live media, or slice it
    rates: tuple[int, ...] = (8000, 16000)


class SttStream(abc.ABC):
    """One caller turn. Feed frames while the caller speaks, then ``finish()`` for the final result."""

    engine_seconds: float = 0.0

    @abc.abstractmethod
    def feed(self, frame: Frame) -> SttResult | None:
        """Feed audio; may return a partial hypothesis."""

    @abc.abstractmethod
    def finish(self) -> SttResult:
        """End of the turn: the final hypothesis (empty text if nothing was understood)."""

    def cancel(self) -> None:  # noqa: B027 - optional: most engines have nothing to release
        """Drop the turn without a result (e.g. the call ended)."""


class SttEngine(abc.ABC):
    name: str = "stt"
    capabilities: SttCapabilities = SttCapabilities()

    @abc.abstractmethod
    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
        repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
        open_transcript: bool = False, noisy_check: bool = False,
    ) -> SttStream:
        """A stream for one turn. ``grammar``: the phrases expected now, one of which is said (None and no
        ``sequence``: free speech).

        ``sequence`` with ``repeat=(lo, hi)``: the caller may instead say lo to hi of these words in a row (an
        account number read digit by digit, an amount in words). ``repeat`` alone: lo to hi of the phrases in
        a row. The tighter the range, the better a grammar recogniser does: eight digits is a much smaller
        search than "any digits". ``builtin``: a built-in grammar the caller may also use ("money": an
        amount in words; "digits:8", "digits:4-6": a digit string of that many digits, one by one or in pairs;
        voiceivr.speech.stt.grammar). ``open_transcript``: if the grammar result is unsure, also transcribe the
        turn with an open vocabulary (``SttResult.open_text``); engines without such a pass ignore it.
        ``noisy_check``: on a noisy line the grammar's sureness counts for nothing either (a menu turn's: a
        closed grammar forces noise onto a phrase; ``speech.open_transcript_noisy_db``)."""

    def warm(self) -> None:
        """Load now, in the background, what the engine would otherwise load on a caller's turn (a process that
        serves calls calls this once it is up). Most engines load everything when built: nothing to do."""
        return None


# ------------------------------------------------------------------------------------------------- TTS


@dataclass(frozen=True)
class WordMark:
    """Where a word of the prompt text lies in the synthesised audio (sample offsets at the output rate)."""

    word: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class TtsChunk:
    pcm: Pcm  # int16 mono at the rate asked for
    rate: int
    words: tuple[WordMark, ...] = ()  # offsets relative to the start of the whole utterance
    final: bool = False


@dataclass(frozen=True)
class TtsCapabilities:
    streaming: bool = True
    native_rate: int = 22050
    releases_gil: bool = True


@dataclass
class Synthesis:
    """A whole synthesised prompt (what the prompt cache stores)."""

    pcm: Pcm
    rate: int
    words: list[WordMark] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate


class TtsStream(abc.ABC):
    """Chunks as they are made. ``cancel()`` stops synthesis mid-way (barge-in); iteration then ends."""

    engine_seconds: float = 0.0

    @abc.abstractmethod
    def __iter__(self) -> Iterator[TtsChunk]: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...


class EngineStream(TtsStream):
    """What a real engine's stream starts from: the text, the rate the caller wants, and a cancel flag that its
    ``__iter__`` checks between chunks (set from another thread on barge-in)."""

    def __init__(self, text: str, rate: int) -> None:
        self._text = text
        self._rate = rate
        self._cancelled = threading.Event()
        self.engine_seconds = 0.0

    def cancel(self) -> None:
        self._cancelled.set()


class TtsEngine(abc.ABC):
    name: str = "tts"
    capabilities: TtsCapabilities = TtsCapabilities()

    @property
    @abc.abstractmethod
    def voice(self) -> str:
        """Identifies the voice, for the prompt cache key."""

    @abc.abstractmethod
    def stream(self, text: str, rate: int) -> TtsStream: ...

    def synthesize(self, text: str, rate: int) -> Synthesis:
        """The whole prompt at once (prompt cache, tests)."""
        import numpy as np

        pcms: list[Pcm] = []
        words: list[WordMark] = []
        out_rate = rate
        for chunk in self.stream(text, rate):
            pcms.append(chunk.pcm)
            words.extend(chunk.words)
            out_rate = chunk.rate
        pcm = np.concatenate(pcms) if pcms else np.zeros(0, dtype=np.int16)
        return Synthesis(pcm.astype(np.int16, copy=False), out_rate, words)
