"""The bridge between a media clock and a call worker.

A media clock (the pjsua2 clock thread on a live call, the replay driver's virtual clock, a test) calls
:meth:`MediaChannel.deliver` with each 20 ms frame heard from the caller and :meth:`MediaChannel.next_outgoing`
for each 20 ms frame to send. Both are O(1), take one short lock, allocate nothing but the frame they move,
and never block: the media side must stay cheap because one clock thread serves every call of a process.

The call worker reads caller frames with :meth:`read` and queues agent audio with :meth:`play`, tagging each
frame with the prompt it belongs to and how far into the prompt it ends. :meth:`clear` (barge-in) drops
everything queued at once; :attr:`played` says how far the caller actually heard, frame by frame, so a cut
prompt is recorded exactly as heard. :attr:`MediaChannel.secret` tells whoever records the call that the caller
is giving a secret (:mod:`voiceivr.call.secrecy`).
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass

from voiceivr.audio.frames import bytes_per_frame
from voiceivr.call.secrecy import SecretInput


@dataclass(frozen=True, slots=True)
class PlayedMark:
    """The last agent frame that left for the caller: which prompt, and where in it (samples) it ended."""

    prompt_id: int
    end_sample: int
    last_of_prompt: bool


@dataclass(frozen=True, slots=True)
class InboundFrame:
    pcm: bytes
    seq: int  # frame number on the media clock: seq * 20 ms is the arrival time
    sent: bytes | None = None  # the agent frame sent in the same tick (None: silence), for echo removal


class MediaChannel:
    """Bounded queues between the media clock and one call's worker."""

    def __init__(self, rate: int = 8000, inbox_frames: int = 250) -> None:
        self.rate = rate
        self.frame_bytes = bytes_per_frame(rate)
        self._silence = bytes(self.frame_bytes)
        self._inbox: queue.Queue[InboundFrame | None] = queue.Queue(maxsize=inbox_frames)
        self._out: collections.deque[tuple[bytes, PlayedMark]] = collections.deque()
        self._lock = threading.Lock()
        self._in_seq = 0
        self.out_seq = 0  # frames sent so far (agent audio or silence)
        self.inbox_dropped = 0
        self.played: PlayedMark | None = None
        self.played_seq = 0  # out_seq of the tick that sent ``played``
        self.closed = False
        self._last_sent: bytes | None = None
        self.secret = SecretInput()  # set by the call's worker, read by the recorder

    # ---------------------------------------------------------------------------- media side (hot path)

    def deliver(self, pcm: bytes) -> None:
        """A caller frame arrived. Never blocks: if the worker fell behind, the oldest frame is dropped."""
        frame = InboundFrame(pcm, self._in_seq, self._last_sent)
        self._in_seq += 1
        try:
            self._inbox.put_nowait(frame)
        except queue.Full:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                pass
            self.inbox_dropped += 1
            try:
                self._inbox.put_nowait(frame)
            except queue.Full:
                self.inbox_dropped += 1

    def next_outgoing(self) -> bytes:
        """The next 20 ms to send to the caller: queued agent audio, else silence."""
        with self._lock:
            self.out_seq += 1
            if not self._out:
                self._last_sent = None
                return self._silence
            pcm, mark = self._out.popleft()
            self.played = mark
            self.played_seq = self.out_seq
            self._last_sent = pcm
            return pcm

    # ------------------------------------------------------------------------------------- worker side

    def read(self, timeout: float | None = None) -> InboundFrame | None:
        """The next caller frame; None when the channel was closed (or on timeout)."""
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def play(self, pcm: bytes, mark: PlayedMark) -> None:
        if len(pcm) != self.frame_bytes:
            raise ValueError(f"agent frames must be {self.frame_bytes} bytes, got {len(pcm)}")
        with self._lock:
            self._out.append((pcm, mark))

    def clear(self) -> int:
        """Drop every queued agent frame (barge-in). Returns how many were dropped."""
        with self._lock:
            dropped = len(self._out)
            self._out.clear()
            return dropped

    def take_queued(self) -> list[tuple[bytes, PlayedMark]]:
        """Remove and return every queued agent frame (a prompt on hold puts them back later)."""
        with self._lock:
            taken = list(self._out)
            self._out.clear()
            return taken

    def played_position(self) -> tuple[PlayedMark | None, int]:
        """The last agent frame sent and the tick it went out on, read together."""
        with self._lock:
            return self.played, self.played_seq

    def queued_frames(self) -> int:
        with self._lock:
            return len(self._out)

    def close(self) -> None:
        """The call ended: wake the worker (``read`` returns None)."""
        self.closed = True
        try:
            self._inbox.put_nowait(None)
        except queue.Full:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                pass
            self._inbox.put_nowait(None)
