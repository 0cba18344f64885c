"""The prompt cache: static prompts synthesised once per (text, voice, rate) and kept on disk.

A dialplan's fixed prompts are warmed when it is loaded (:meth:`PromptCache.warm`); during a call
:meth:`PromptCache.get` returns the whole utterance from memory, or from disk once per process, so a cached
prompt starts playing with no synthesis at all. Only dynamic text (amounts, names) is synthesised mid-call.

Files live in ``<dir>/<key[:2]>/<key>.wav`` (PCM16 at the call rate) with the word marks beside them in
``<key>.json``; the key is a SHA-256 of the voice, rate and text. Several processes may share the directory:
each file is written to a temporary name and renamed into place (atomic on POSIX), the marks first and the
audio last, so a reader that finds the .wav also finds complete marks, and two writers racing on the same
prompt both write identical content.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from voiceivr.audio.wav import WavError, read_wav, write_wav
from voiceivr.speech.base import TtsChunk, TtsEngine, TtsStream, Utterance, WordMark

FORMAT_VERSION = 1  # bump when the stored layout changes: old entries are then simply not found


def prompt_key(voice: str, rate: int, text: str) -> str:
    material = json.dumps([FORMAT_VERSION, voice, rate, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class PromptCache:
    def __init__(self, directory: Path, tts: TtsEngine, memory_limit: int = 512) -> None:
        self.directory = Path(directory)
        self.tts = tts
        self._memory: dict[str, Utterance] = {}
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def paths(self, text: str, rate: int) -> tuple[Path, Path]:
        key = prompt_key(self.tts.voice, rate, text)
        folder = self.directory / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def cached(self, text: str, rate: int) -> Utterance | None:
        """The prompt if it is cached (memory or disk), without synthesising."""
        key = prompt_key(self.tts.voice, rate, text)
        with self._lock:
            hit = self._memory.get(key)
        if hit is not None:
            return hit
        wav, marks = self.paths(text, rate)
        if not wav.exists():
            return None
        try:
            audio = read_wav(wav)
            words = [WordMark(w, s, e) for w, s, e in json.loads(marks.read_text(encoding="utf-8"))["words"]]
        except (WavError, OSError, ValueError, KeyError, TypeError):
            return None  # unreadable entry (disk trouble, an old layout): synthesise again and overwrite it
        if audio.rate != rate or audio.channels != 1:
            return None
        utterance = Utterance(audio.pcm, rate, words)
        self._remember(key, utterance)
        return utterance

    def get(self, text: str, rate: int) -> Utterance:
        """The whole prompt: from the cache, or synthesised now and stored."""
        hit = self.cached(text, rate)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        utterance = self.tts.synthesize(text, rate)
        self._store(text, rate, utterance)
        return utterance

    def warm(self, texts: Iterable[str], rate: int) -> int:
        """Make sure every text is cached; returns how many had to be synthesised."""
        made = 0
        for text in texts:
            if self.cached(text, rate) is None:
                self._store(text, rate, self.tts.synthesize(text, rate))
                made += 1
        return made

    def _store(self, text: str, rate: int, utterance: Utterance) -> None:
        wav, marks = self.paths(text, rate)
        wav.parent.mkdir(parents=True, exist_ok=True)
        payload = {"text": text, "voice": self.tts.voice, "rate": rate,
                   "words": [[w.word, w.start_sample, w.end_sample] for w in utterance.words]}
        fd, tmp = tempfile.mkstemp(prefix=f".{marks.name}.", suffix=".tmp", dir=marks.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, ensure_ascii=False)
            os.replace(tmp, marks)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        write_wav(wav, utterance.pcm, rate)  # atomic too; written last, so a visible .wav has its marks
        self._remember(prompt_key(self.tts.voice, rate, text), utterance)

    def _remember(self, key: str, utterance: Utterance) -> None:
        with self._lock:
            if len(self._memory) >= self._memory_limit:
                self._memory.pop(next(iter(self._memory)))
            self._memory[key] = utterance


class UtteranceStream(TtsStream):
    """A finished utterance played through the streaming interface: one chunk, no synthesis."""

    def __init__(self, utterance: Utterance) -> None:
        self._utterance = utterance
        self._cancelled = False
        self.engine_seconds = 0.0

    def __iter__(self) -> Iterator[TtsChunk]:
        if not self._cancelled:
            u = self._utterance
            yield TtsChunk(u.pcm, u.rate, tuple(u.words), final=True)

    def cancel(self) -> None:
        self._cancelled = True


def prompt_stream(cache: PromptCache, text: str, rate: int) -> TtsStream:
    """A cached prompt if there is one (first audio at once), else live synthesis (not stored: dynamic text)."""
    hit = cache.cached(text, rate)
    if hit is not None:
        cache.hits += 1
        return UtteranceStream(hit)
    return cache.tts.stream(text, rate)
