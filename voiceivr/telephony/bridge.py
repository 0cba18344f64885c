"""The audio port between one pjsua2 call and its :class:`~voiceivr.call.media.MediaChannel`.

pjsua2's clock thread calls ``onFrameReceived`` (a 20 ms frame the caller sent) and ``onFrameRequested`` (the
next 20 ms to send) for every call of the process, 50 times a second each. The callbacks here only move
bytes: ctypes to read the frame (:mod:`voiceivr.telephony.framebuf`), ``MediaChannel.deliver`` /
``next_outgoing`` (O(1), never blocking), and a deque append for the recording. Nothing else runs here.

Lifetime: the SIP thread creates the bridge, connects it to the call's conference slot, and destroys it with
:meth:`MediaBridge.destroy` when the call ends, while the object is intact. Letting Python collect a
connected port can run the C++ destructor while the clock thread is inside it (a segfault in the spike).
"""

from __future__ import annotations

import time
from typing import Any

import pjsua2 as pj

from voiceivr.call.media import MediaChannel
from voiceivr.telephony.framebuf import OutBuffer, vector_bytes
from voiceivr.telephony.recording import CallRecording, FrameGaps

_AUDIO = pj.PJMEDIA_FRAME_TYPE_AUDIO


class MediaBridge(pj.AudioMediaPort):
    def __init__(self, name: str, channel: MediaChannel, recording: CallRecording | None) -> None:
        super().__init__()
        self.channel = channel
        self.frame_bytes = channel.frame_bytes
        self._deliver = channel.deliver
        self._next = channel.next_outgoing
        self._silence = bytes(self.frame_bytes)
        self._out = OutBuffer(pj.ByteVector(self.frame_bytes), self.frame_bytes)
        self._rec_in = recording.caller_frame if recording else None
        self._rec_out = recording.agent_frame if recording else None
        self.gaps = FrameGaps()
        self._last_request = 0.0
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0
        self.destroyed = False
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_L16, channel.rate, 1, 20000, 16)
        self.createPort(name, fmt)

    # ------------------------------------------------------------------------ clock thread (hot path)

    def onFrameReceived(self, frame: Any) -> None:
        try:
            pcm = self._silence
            if frame.type == _AUDIO:
                data = vector_bytes(frame.buf)
                if len(data) == self.frame_bytes:
                    pcm = data
            self.frames_in += 1
            self._deliver(pcm)
            if self._rec_in is not None:
                self._rec_in(pcm)
        except Exception:
            # Never let an exception reach SWIG: it would print it and keep a traceback (and with it this
            # port) alive in sys.last_traceback, past libDestroy.
            self.errors += 1

    def onFrameRequested(self, frame: Any) -> None:
        try:
            now = time.perf_counter()
            if self._last_request:
                self.gaps.add(now - self._last_request)
            self._last_request = now
            pcm = self._next()
            frame.buf = self._out.fill(pcm)
            frame.size = self.frame_bytes
            frame.type = _AUDIO
            self.frames_out += 1
            if self._rec_out is not None:
                self._rec_out(pcm)
        except Exception:
            self.errors += 1

    # ------------------------------------------------------------------------------------- SIP thread

    def connect(self, call_media: Any) -> None:
        call_media.startTransmit(self)
        self.startTransmit(call_media)

    def destroy(self) -> None:
        """Remove the port from the conference bridge and free it now, on the calling (SIP) thread."""
        if self.destroyed:
            return
        self.destroyed = True
        self._rec_in = self._rec_out = None
        type(self).__swig_destroy__(self)
