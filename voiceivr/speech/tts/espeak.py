"""espeak-ng through its C library (Debian ``libespeak-ng1`` + ``espeak-ng-data``), loaded with ctypes.

Why the Debian library rather than the PyPI ``espeakng-loader`` wheel: it gets Debian security updates, its
licence and provenance are clear (GPL-3.0-or-later, from the distribution), it is a small install that the
project's APT_PACKAGES already manages, and the same data directory serves every tool on the machine.

libespeak-ng is a process-wide singleton (global state, one synthesis at a time), so every call into it
holds :data:`_LOCK`. Synthesis runs in synchronous mode: ``espeak_Synth`` calls our callback with each
buffer of audio and the events (word starts with their audio position) that fall in it; returning 1 from
the callback aborts synthesis, which is how :meth:`EspeakStream.cancel` stops it mid-sentence. The text is
synthesised a sentence at a time as the stream is iterated, so the first audio is out after the first
sentence (about a millisecond) and a cancelled prompt costs nothing more. ctypes releases the GIL while the
C code runs and takes it back only for the callback.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceivr.audio.frames import Pcm
from voiceivr.audio.resample import StreamResampler
from voiceivr.errors import VoiceivrError
from voiceivr.speech.base import EngineStream, TtsCapabilities, TtsChunk, TtsEngine, TtsStream, WordMark

log = logging.getLogger(__name__)

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(VoiceivrError):
    """libespeak-ng is missing or refused a request."""


@dataclass
class _Collector:
    """What one espeak_Synth call produced; the callback appends here."""

    cancelled: threading.Event
    pcm: list[Pcm]
    words: list[tuple[int, int]]  # (character position, start sample at the native rate) of each word event
    samples: int = 0
    aborted: bool = False


class _Espeak:
    """The one libespeak-ng of this process."""

    def __init__(self, library: str, data_path: str) -> None:
        name = library or ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise EspeakError(
                f"cannot load the espeak-ng library {name!r} (setting speech.espeak_library): {exc}",
                hint="install it with: apt-get install libespeak-ng1 espeak-ng-data",
            ) from None
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 100, data_path.encode() if data_path else None, INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(
                f"espeak-ng could not initialise (data path {data_path or 'built-in'!r}; "
                "setting speech.espeak_data)",
                hint="install the voices with: apt-get install espeak-ng-data",
            )
        self.rate = rate
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._current: _Collector | None = None
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: tuple[str, int, int] | None = None

    def _on_audio(self, wav: Any, numsamples: int, events: Any) -> int:
        c = self._current
        if c is None:
            return 1
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_WORD:  # text_position is 1-based, in characters
                c.words.append((max(ev.text_position - 1, 0), round(ev.audio_position * self.rate / 1000)))
            i += 1
        if numsamples > 0 and wav:
            c.pcm.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).astype(np.int16, copy=True))
            c.samples += numsamples
        if c.cancelled.is_set():
            c.aborted = True
            return 1
        return 0

    def synth(self, text: str, voice: str, wpm: int, pitch: int, cancelled: threading.Event) -> _Collector:
        """Synthesise ``text``; holds the process-wide lock throughout (the library has one state)."""
        data = text.encode("utf-8")
        collector = _Collector(cancelled, [], [])
        buf = ctypes.create_string_buffer(data)
        with _LOCK:
            if self._voice != (voice, wpm, pitch):
                if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                    raise EspeakError(
                        f"espeak-ng has no voice {voice!r} (setting speech.espeak_voice)",
                        hint="list voices with: espeak-ng --voices (package espeak-ng), e.g. en-us, en, en-us+f3, ko",
                    )
                self.lib.espeak_SetParameter(PARAM_RATE, wpm, 0)
                self.lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
                self._voice = (voice, wpm, pitch)
            self._current = collector
            try:
                err = self.lib.espeak_Synth(buf, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            finally:
                self._current = None
        if err != EE_OK and not collector.aborted:
            raise EspeakError(f"espeak-ng failed to synthesise (error {err})")
        return collector


_LOCK = threading.Lock()
_INSTANCE: _Espeak | None = None
_INSTANCE_KEY: tuple[str, str] | None = None


def _library(library: str, data_path: str) -> _Espeak:
    global _INSTANCE, _INSTANCE_KEY
    with _LOCK:
        if _INSTANCE is None:
            _INSTANCE = _Espeak(library, data_path)
            _INSTANCE_KEY = (library, data_path)
        elif (library, data_path) != _INSTANCE_KEY:
            raise EspeakError(
                "espeak-ng is already loaded in this process with another library or data path "
                f"({_INSTANCE_KEY}); it is a process-wide singleton"
            )
        return _INSTANCE


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_sentences(text: str) -> list[tuple[int, str]]:
    """(character offset, sentence) pieces; synthesised one at a time so the first audio comes early."""
    pieces: list[tuple[int, str]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        if text[pos : m.start()].strip():
            pieces.append((pos, text[pos : m.start()]))
        pos = m.end()
    if text[pos:].strip():
        pieces.append((pos, text[pos:]))
    return pieces


class EspeakStream(EngineStream):
    def __init__(self, engine: EspeakEngine, text: str, rate: int) -> None:
        super().__init__(text, rate)
        self._engine = engine

    def __iter__(self) -> Iterator[TtsChunk]:
        lib = self._engine.lib
        native = lib.rate
        resampler = StreamResampler(native, self._rate) if native != self._rate else None
        to_drop = resampler.delay_out if resampler else 0  # the filter's latency: keeps marks aligned
        native_offset = 0  # samples (native rate) produced so far, across sentences
        emitted = 0
        pieces = split_sentences(self._text)
        for n, (_, sentence) in enumerate(pieces):
            if self._cancelled.is_set():
                return
            t0 = time.thread_time()
            got = lib.synth(sentence, self._engine.voice_name, self._engine.wpm, self._engine.pitch, self._cancelled)
            pcm = np.concatenate(got.pcm) if got.pcm else np.zeros(0, dtype=np.int16)
            marks = _word_marks(sentence, got.words, native_offset, len(pcm), native, self._rate)
            native_offset += len(pcm)
            last = n == len(pieces) - 1 and not got.aborted
            if resampler is not None:
                out = resampler.process(pcm)
                if last:
                    out = np.concatenate([out, resampler.flush()])
                if to_drop:
                    dropped = min(to_drop, len(out))
                    out = out[dropped:]
                    to_drop -= dropped
                if last:  # exactly the resampled length of everything: the flush adds a little zero tail
                    out = out[: max(0, -(-native_offset * self._rate // native) - emitted)]
            else:
                out = pcm
            emitted += len(out)
            self.engine_seconds += time.thread_time() - t0
            if got.aborted:
                return
            yield TtsChunk(out, self._rate, tuple(marks), final=last)


_TOKEN = re.compile(r"\S+")


def _word_marks(
    sentence: str, events: list[tuple[int, int]], offset: int, length: int, native: int, rate: int
) -> list[WordMark]:
    """One mark per whitespace-separated token of the text that espeak spoke.

    espeak may say several words for one token ("$1,234.50") or none (a lone dash); its events are mapped
    back to the token holding their character position, so marks count the prompt's own words, which is
    what the call records when a prompt is cut.
    """
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(sentence)]
    starts = [t[0] for t in tokens]
    merged: list[tuple[str, int]] = []  # (token, first start sample)
    last_token = -1
    for char_pos, sample in events:
        k = bisect.bisect_right(starts, char_pos) - 1
        if k < 0 or k <= last_token:
            continue
        merged.append((tokens[k][2], sample))
        last_token = k
    marks: list[WordMark] = []
    starts = [(offset + start) * rate // native for _, start in merged]
    for i, (word, _) in enumerate(merged):
        # a word ends where the next begins; the last one ends with the audio (rounded up, as the output is)
        end = starts[i + 1] if i + 1 < len(merged) else -(-(offset + length) * rate // native)
        marks.append(WordMark(word, starts[i], max(end, starts[i])))
    return marks


class EspeakEngine(TtsEngine):
    name = "espeak-ng"

    def __init__(self, voice: str = "en-us", wpm: int = 165, pitch: int = 50, library: str = "",
                 data_path: str = "") -> None:
        self.voice_name = voice
        self.wpm = wpm
        self.pitch = pitch
        self.lib = _library(library, data_path)
        self.capabilities = TtsCapabilities(streaming=True, native_rate=self.lib.rate, releases_gil=True)
        # Fail now, not on the first call, if the voice does not exist.
        self.lib.synth("", voice, wpm, pitch, threading.Event())

    @property
    def voice(self) -> str:
        return f"espeak-ng {self.lib.version} {self.voice_name} wpm={self.wpm} pitch={self.pitch}"

    def stream(self, text: str, rate: int) -> TtsStream:
        return EspeakStream(self, text, rate)
