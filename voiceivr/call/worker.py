"""The live call's worker thread: runs one :class:`~voiceivr.call.session.CallSession` for a SIP call.

The SIP edge's callbacks (:class:`~voiceivr.call.handler.CallEvents`) only post control events to the session;
this thread reads the caller's frames from the call's media channel and drives the session one tick at a
time, or on its idle clock while no audio arrives. A failure ends this call only.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from voiceivr.call import events as ev
from voiceivr.call.session import CallSession

log = logging.getLogger(__name__)


class CallWorker:
    """Runs one session on its own thread for a live call; implements the SIP edge's CallEvents."""

    def __init__(self, session: CallSession, idle_poll_s: float = 0.1) -> None:
        self.session = session
        self._idle_poll_s = idle_poll_s
        self._thread = threading.Thread(target=self._run, name=f"call-{session.call_id[:8]}", daemon=True)
        self.error: BaseException | None = None
        self._t0 = time.monotonic()

    def start(self) -> CallWorker:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # CallEvents (called by the SIP thread; each only enqueues)
    def on_dtmf(self, digit: str, method: str) -> None:
        self.session.post(ev.DtmfDigit(0.0, digit=digit, method=method))

    def on_media_moved(self, new_address: Any) -> None:
        addr = "" if new_address is None else f"{new_address.host}:{new_address.port}"
        self.session.post(ev.MediaMoved(0.0, address=addr))

    def on_dialog_replaced(self, reason: str) -> None:
        self.session.post(ev.DialogReplaced(0.0, reason=reason))

    def on_remote_hangup(self) -> None:
        self.session.post(ev.Hangup(0.0, by="caller"))
        self.session.media.close()

    def _run(self) -> None:
        s = self.session
        try:
            s.start()
            while not s.ended:
                frame = s.media.read(timeout=self._idle_poll_s)
                if frame is None:
                    if s.media.closed:
                        s.idle(time.monotonic() - self._t0)
                        if not s.ended:
                            s.post(ev.Hangup(0.0, by="caller", reason="media closed"))
                            s.idle(time.monotonic() - self._t0)
                        break
                    s.idle(time.monotonic() - self._t0)
                    continue
                s.process(frame)
        except BaseException as exc:  # reported, and this call is ended; other calls go on
            self.error = exc
            log.exception("call worker failed", extra={"call_id": s.call_id})
            if s.control is not None:
                s.control.hangup("internal error")
