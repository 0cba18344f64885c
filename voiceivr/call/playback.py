"""Playback: the call's prompt queue and the prompt on the wire -- queue, play, hold, resume, cut, drop.

:class:`Playback` turns prompts into 20 ms frames in the call's :class:`~voiceivr.call.media.MediaChannel`
(a few frames ahead, call.lookahead_ms), follows what has actually left, and can take queued frames back
(hold), send them again (resume) or throw them away (cut). It returns the timeline events of what it did;
the session (:mod:`voiceivr.call.session`) puts them on the timeline, tells the brain and decides when, with
:mod:`voiceivr.call.bargein`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm, samples_per_frame
from voiceivr.call import events as ev
from voiceivr.call.bargein import PromptState
from voiceivr.call.budget import CallLatencies, EngineCosts
from voiceivr.call.media import MediaChannel, PlayedMark
from voiceivr.speech.base import Synthesis, TtsChunk, TtsEngine, WordMark

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000


class PromptAudio:
    """Where a prompt's audio comes from: a cache that may already hold it, else the TTS engine."""

    def __init__(self, tts: TtsEngine, cache: Any | None = None) -> None:
        self.tts = tts
        self.cache = cache  # voiceivr.speech prompt cache: get(text, voice, rate) / put(text, voice, rate, utt)

    def chunks(self, prompt: ev.Prompt, rate: int) -> tuple[Iterator[TtsChunk], Any | None]:
        """(chunks, stream-to-cancel or None)."""
        if prompt.cacheable and self.cache is not None:
            cached = self.cache.get(prompt.text, self.tts.voice, rate)
            if cached is not None:
                return iter([TtsChunk(cached.pcm, cached.rate, tuple(cached.words), final=True)]), None
        stream = self.tts.stream(prompt.text, rate)
        return iter(stream), stream


@dataclass
class Playing:
    """The prompt on the wire and how far it got."""

    prompt: ev.Prompt
    chunks: Iterator[TtsChunk]
    stream: Any | None  # the TTS stream to cancel on barge-in
    queued_at_wall: float
    pending: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    produced: int = 0  # samples queued so far
    exhausted: bool = False
    words: list[WordMark] = field(default_factory=list)
    first_sent_seq: int | None = None
    synthesis_recorded: bool = False
    all_pcm: list[Pcm] = field(default_factory=list)  # what was queued, for caching static prompts
    held: bool = False  # caller speech started over it: nothing more goes out until barge-in or release
    held_at: float = 0.0


class Playback:
    """The prompt queue of one call. Owned by the session's thread."""

    def __init__(
        self,
        *,
        call_id: str,
        media: MediaChannel,
        audio: PromptAudio,
        lookahead_ms: int,
        latency: CallLatencies,
        costs: EngineCosts,
    ) -> None:
        self.call_id = call_id
        self.media = media
        self.audio = audio
        self.rate = media.rate
        self.latency = latency
        self.costs = costs
        self._lookahead = max(1, lookahead_ms // FRAME_MS)
        self._frame_samples = samples_per_frame(self.rate)
        self.current: Playing | None = None
        self.queued: deque[ev.Prompt] = deque()
        self._own_prompt_id = 0

    def state(self, now: float) -> PromptState:
        """The prompt on the wire, as barge-in sees it."""
        pb = self.current
        if pb is None:
            return PromptState(playing=False)
        return PromptState(playing=True, interruptible=pb.prompt.interruptible, held=pb.held, held_s=now - pb.held_at)

    @property
    def busy(self) -> bool:
        """Something is playing or waiting to."""
        return self.current is not None or bool(self.queued)

    def new_prompt_id(self) -> int:
        """Ids for the session's own prompts are negative; the brain numbers its prompts from 1."""
        self._own_prompt_id -= 1
        return self._own_prompt_id

    def begin_next(self, now: float, response_wall: float | None) -> ev.PromptStarted | None:
        """Start the next queued prompt if nothing plays (its first frames go out at once)."""
        if self.current is not None or not self.queued:
            return None
        prompt = self.queued.popleft()
        wall = time.perf_counter()
        chunks, stream = self.audio.chunks(prompt, self.rate)
        self.current = Playing(prompt, chunks, stream, queued_at_wall=response_wall or wall)
        return ev.PromptStarted(now, prompt_id=prompt.prompt_id, kind=type(prompt).__name__, text=prompt.text)

    def fill(self) -> bool:
        """Keep call.lookahead_ms of the prompt queued. True when its first frame was just queued."""
        pb = self.current
        if pb is None or pb.held:
            return False
        first = False
        n = self._frame_samples
        tts_before = pb.stream.engine_seconds if pb.stream is not None else 0.0
        while self.media.queued_frames() < self._lookahead and not (pb.exhausted and len(pb.pending) == 0):
            if len(pb.pending) < n and not pb.exhausted:
                try:
                    chunk = next(pb.chunks)
                except StopIteration:
                    pb.exhausted = True
                    continue
                if chunk.rate != self.rate:
                    raise ValueError(f"TTS gave {chunk.rate} Hz audio for a {self.rate} Hz call")
                pb.words.extend(chunk.words)
                pb.pending = np.concatenate([pb.pending, chunk.pcm.astype(np.int16, copy=False)])
                continue
            piece = pb.pending[:n]
            pb.pending = pb.pending[n:]
            if len(piece) < n:
                piece = np.concatenate([piece, np.zeros(n - len(piece), dtype=np.int16)])
            pb.produced += n
            pb.all_pcm.append(piece)
            last = pb.exhausted and len(pb.pending) == 0
            self.media.play(piece.astype("<i2").tobytes(),
                            PlayedMark(pb.prompt.prompt_id, pb.produced, last_of_prompt=last))
            if not pb.synthesis_recorded:
                pb.synthesis_recorded = True
                self.latency.record("synthesis", (time.perf_counter() - pb.queued_at_wall) * 1000)
                first = True
        if pb.stream is not None:
            self.costs.add(f"tts.{self.audio.tts.name}", pb.stream.engine_seconds - tts_before)
        return first

    def track(self, seq: int) -> tuple[float | None, bool]:
        """Follow what has left: (call time of the prompt's first frame if just learnt, whether it is done)."""
        pb = self.current
        if pb is None:
            return None, False
        mark, sent_seq = self.media.played_position()
        if mark is None or mark.prompt_id != pb.prompt.prompt_id:
            return None, False
        first_audio_t = None
        if pb.first_sent_seq is None:
            pb.first_sent_seq = sent_seq - (mark.end_sample // self._frame_samples - 1)
            first_audio_t = pb.first_sent_seq * FRAME_S
        # Done once the last frame has gone out entirely (it is on the wire during the tick it was sent).
        done = pb.exhausted and len(pb.pending) == 0 and mark.end_sample >= pb.produced and seq > sent_seq
        return first_audio_t, done

    def finished(self, now: float) -> tuple[Playing, ev.PromptPlayed]:
        """The prompt on the wire played to the end (and goes into the prompt cache if it may)."""
        pb = self.current
        assert pb is not None
        self.current = None
        if pb.prompt.cacheable and self.audio.cache is not None and pb.stream is not None and pb.all_pcm:
            self._cache(pb)
        return pb, ev.PromptPlayed(now, prompt_id=pb.prompt.prompt_id, played_ms=int(pb.produced * 1000 / self.rate))

    def _cache(self, pb: Playing) -> None:
        pcm = np.concatenate(pb.all_pcm)
        cache = self.audio.cache
        assert cache is not None
        try:
            cache.put(pb.prompt.text, self.audio.tts.voice, self.rate, Synthesis(pcm, self.rate, pb.words))
        except OSError as exc:  # a full disk must not end the call
            log.warning("prompt cache write failed", extra={"call_id": self.call_id, "error": str(exc)})

    def stop(self) -> tuple[int, int]:
        """Stop the prompt on the wire at once: (frames thrown away, samples that had left)."""
        pb = self.current
        assert pb is not None
        dropped = self.media.clear()
        if pb.stream is not None:
            pb.stream.cancel()
        mark, _ = self.media.played_position()
        played = mark.end_sample if mark is not None and mark.prompt_id == pb.prompt.prompt_id else 0
        return dropped, played

    def cut(self, now: float, played: int) -> tuple[Playing, ev.PromptCut]:
        """The prompt on the wire is over after ``played`` samples: heard up to the last word that left."""
        pb = self.current
        assert pb is not None
        self.current = None
        heard = [w for w in pb.words if w.end_sample <= played]
        return pb, ev.PromptCut(now, prompt_id=pb.prompt.prompt_id, played_ms=int(played * 1000 / self.rate),
                                total_ms=int(pb.produced * 1000 / self.rate), words_heard=len(heard),
                                words_total=len(pb.words), heard_text=" ".join(w.word for w in heard))

    def drop_queued(self, now: float) -> list[tuple[ev.Prompt, ev.PromptDropped]]:
        """Throw away the prompts that never started (heard with 0 words)."""
        flushed = [(p, ev.PromptDropped(now, prompt_id=p.prompt_id)) for p in self.queued]
        self.queued.clear()
        return flushed

    def stop_all(self, now: float) -> list[ev.Event]:
        """Cut the prompt on the wire and drop the queued ones (a limit ran out): what to put on the timeline."""
        events: list[ev.Event] = []
        if self.current is not None:
            _, played = self.stop()
            events.append(self.cut(now, played)[1])
        events += [dropped for _, dropped in self.drop_queued(now)]
        return events

    def hold(self, now: float, trigger: str) -> ev.PromptHeld | None:
        """Caller speech started over an interruptible prompt: stop sending it at once, keep its place.

        The VAD's start event comes about 70 ms after the true onset; the barge-in itself waits for
        call.barge_in_min_speech_ms of speech (or, with backchannels ignored, for words). Holding the prompt in
        between makes the agent go quiet as fast as the VAD can tell, and a cough or an "uh-huh" only pauses
        it: :meth:`resume` sends the rest from where it stopped.
        """
        pb = self.current
        if pb is None or pb.held or not pb.prompt.interruptible:
            return None
        taken = self.media.take_queued()
        if taken:
            back = np.frombuffer(b"".join(pcm for pcm, _ in taken), dtype="<i2").astype(np.int16)
            pb.pending = np.concatenate([back, pb.pending])
            pb.produced -= len(back)
            del pb.all_pcm[-len(taken):]
        pb.held = True
        pb.held_at = now
        return ev.PromptHeld(now, prompt_id=pb.prompt.prompt_id, by=trigger, frames_taken_back=len(taken))

    def resume(self, now: float) -> ev.PromptResumed | None:
        """Take a hold off (the caller then fills the outbox again)."""
        pb = self.current
        if pb is None or not pb.held:
            return None
        pb.held = False
        return ev.PromptResumed(now, prompt_id=pb.prompt.prompt_id)

    def cancel(self) -> None:
        """The call is over: stop synthesising and sending."""
        if self.current is not None and self.current.stream is not None:
            self.current.stream.cancel()
        self.media.clear()
