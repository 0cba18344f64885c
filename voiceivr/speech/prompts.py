"""The prompt cache: static prompts synthesised once per (text, voice, rate) and kept on disk.

A dialplan's fixed prompts are warmed when it is loaded (:meth:`PromptCache.warm`); during a call
:meth:`PromptCache.get` returns the whole utterance from memory, or from disk once per process, so a cached
prompt starts playing with no synthesis at all; the call session may also :meth:`PromptCache.put` a static
prompt it synthesised. Only dynamic text (amounts, names) is synthesised mid-call.

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
from voiceivr.speech.base import Synthesis, TtsChunk, TtsEngine, TtsStream, WordMark

FORMAT_VERSION = 1  # bump when the stored layout changes: old entries are then simply not found


def prompt_key(voice: str, rate: int, text: str) -> str:
    material = json.dumps([FORMAT_VERSION, voice, rate, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class PromptCache:
    """``get``/``put`` by (text, voice, rate) is what the call session uses; ``synthesize`` and ``warm`` also
    make what is missing with the cache's own TTS engine."""

    def __init__(self, directory: Path, tts: TtsEngine, memory_limit: int = 512) -> None:
        self.directory = Path(directory)
        self.tts = tts
        self._memory: dict[str, Synthesis] = {}
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def paths(self, text: str, voice: str, rate: int) -> tuple[Path, Path]:
        key = prompt_key(voice, rate, text)
        folder = self.directory / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def get(self, text: str, voice: str, rate: int) -> Synthesis | None:
        """The prompt if it is cached (memory, else disk); None if not. Never synthesises."""
        key = prompt_key(voice, rate, text)
        with self._lock:
            hit = self._memory.get(key)
        if hit is None:
            hit = self._load(text, voice, rate)
            if hit is not None:
                self._remember(key, hit)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def _load(self, text: str, voice: str, rate: int) -> Synthesis | None:
        wav, marks = self.paths(text, voice, rate)
        if not wav.exists():
            return None
        try:
            audio = read_wav(wav)
            words = [WordMark(w, s, e) for w, s, e in json.loads(marks.read_text(encoding="utf-8"))["words"]]
        except (WavError, OSError, ValueError, KeyError, TypeError):
            return None  # unreadable entry (disk trouble, an old layout): it is made again and overwritten
        if audio.rate != rate or audio.channels != 1:
            return None
        return Synthesis(audio.pcm, rate, words)

    def put(self, text: str, voice: str, rate: int, utterance: Synthesis) -> None:
        """Store a whole prompt (atomically; several processes may share the directory)."""
        wav, marks = self.paths(text, voice, rate)
        wav.parent.mkdir(parents=True, exist_ok=True)
        payload = {"text": text, "voice": voice, "rate": rate,
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
        self._remember(prompt_key(voice, rate, text), utterance)

    def synthesize(self, text: str, rate: int) -> Synthesis:
        """The whole prompt in this cache's voice: from the cache, or synthesised now and stored."""
        hit = self.get(text, self.tts.voice, rate)
        if hit is not None:
            return hit
        utterance = self.tts.synthesize(text, rate)
        self.put(text, self.tts.voice, rate, utterance)
        return utterance

    def warm(self, texts: Iterable[str], rate: int) -> int:
        """Make sure every text is cached (at dialplan load); returns how many had to be synthesised."""
        made = 0
        for text in texts:
            if self.get(text, self.tts.voice, rate) is None:
                self.put(text, self.tts.voice, rate, self.tts.synthesize(text, rate))
                made += 1
        return made

    def _remember(self, key: str, utterance: Synthesis) -> None:
        with self._lock:
            if len(self._memory) >= self._memory_limit:
                self._memory.pop(next(iter(self._memory)))
            self._memory[key] = utterance


class UtteranceStream(TtsStream):
    """A finished utterance played through the streaming interface: one chunk, no synthesis."""

    def __init__(self, utterance: Synthesis) -> None:
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
    hit = cache.get(text, cache.tts.voice, rate)
    if hit is not None:
        return UtteranceStream(hit)
    return cache.tts.stream(text, rate)
