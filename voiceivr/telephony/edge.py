"""The SIP edge: one pjsua2 endpoint per process, owned by one thread.

Threads of a process that carries calls:

- the **SIP thread** (``voiceivr-sip``) creates the pjsua2 library, calls ``libHandleEvents`` every 10 ms and,
  between two calls, runs the commands other threads queued (:meth:`SipEdge.submit`). Every pjsua2 object
  (endpoint, transports, account, calls, audio ports) is created, used and destroyed here, and every SIP
  callback (``onIncomingCall``, ``onCallState``, ``onCallMediaState``, transfers, registration) runs here
  (``threadCnt=0``, ``mainThreadOnly=True``);
- pjsua2's **clock thread** calls the frame callbacks of every call's :class:`MediaBridge`;
- pjsua2's **media thread** reads RTP and calls ``onDtmfDigit`` (RFC 4733 DTMF);
- one :class:`~voiceivr.telephony.recording.RecordingWriter` thread writes recordings;
- the call handler's own threads (one per call in the real session). They never touch pjsua2: they talk to
  the edge through :class:`CallRemote` (commands queued to the SIP thread) and the ``MediaChannel``.

Lifetimes, each from a crash the pjsua2 spike measured: a ``Call`` is referenced from ``onIncomingCall``
(or ``makeCall``) until its ``DISCONNECTED`` callback and released there; a bridge port is destroyed
explicitly on the SIP thread before its call's slot is dropped; nothing pjsua2 sits in a reference cycle;
everything is gone (and ``gc.collect`` has run on the SIP thread) before ``libDestroy``.

This module holds the SIP thread itself (its loop, the command queue it drains, start, stop, teardown and
the periodic checks). :class:`SipEdge` is built from one class per job, each on top of the one below:
``slots.EdgeBase`` (tables, commands, hang-up) -> ``streams.MediaPart`` (bridge wiring, RTP timeout, source
lock) -> ``dtmf.DtmfPart`` -> ``dialogs.DialogPart`` (INVITEs, transfer, Replaces, re-INVITE, the end of a
call) -> ``endpoint.EndpointPart`` (endpoint, transports, account); ``pjcalls`` holds pjsua2's subclasses.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import queue
import threading
import time

from voiceivr.call.handler import CallHandler
from voiceivr.errors import VoiceivrError
from voiceivr.telephony.edgeconfig import PJSUA_MAX_CALLS, SOURCE_HEADER, EdgeConfig, SipEdgeError
from voiceivr.telephony.endpoint import EndpointPart
from voiceivr.telephony.slots import CallRemote, CallSlot

__all__ = ["PJSUA_MAX_CALLS", "SOURCE_HEADER", "CallRemote", "CallSlot", "EdgeConfig", "SipEdge", "SipEdgeError"]

log = logging.getLogger(__name__)


class SipEdge(EndpointPart):
    """One process's pjsua2 endpoint, its SIP thread, and the calls it carries."""

    def __init__(self, config: EdgeConfig, handler: CallHandler | None) -> None:
        super().__init__(config, handler)
        self._thread = threading.Thread(target=self._run, name="voiceivr-sip", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ----------------------------------------------------------------------------------- public API

    def start(self, timeout: float = 10.0) -> None:
        """Start the SIP thread; return once the transport listens, or raise :class:`SipEdgeError`."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SipEdgeError(f"pjsua2 did not start within {timeout:.0f} s")
        if self._start_error is not None:
            err = self._start_error
            self._thread.join(5)
            if isinstance(err, VoiceivrError):
                raise err
            raise SipEdgeError(
                f"cannot start SIP on {self.config.host}:{self.config.port}: {err}",
                hint="is the port already in use, or the address not on this machine?",
            )

    def make_call(
        self, uri: str, handler: CallHandler, headers: dict[str, str] | None = None, dtmf_method: str = "rfc4733"
    ) -> CallSlot:
        """Place a call (the test caller); its handler starts when media is up. Returns the call's slot."""
        return self.call(lambda: self._make_call(uri, handler, headers or {}, dtmf_method))

    def stop(self, timeout: float = 10.0) -> None:
        """Hang up every call, destroy pjsua2 on its own thread, and wait for the thread to end."""
        if self._thread.is_alive() and not self._stopped.is_set():
            self._commands.put((self._begin_stop, concurrent.futures.Future()))
            self._thread.join(timeout)
        if self.writer is not None:
            self.writer.close()

    def drain(self) -> None:
        """Take no new calls (503 + Retry-After) from now on; the calls up go on. Safe from any thread."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def active_calls(self) -> int:
        return len(self._slots)

    def slot(self, key: str) -> CallSlot | None:
        return self._slots.get(key)

    # ------------------------------------------------------------------------------------ SIP thread

    def _run(self) -> None:
        try:
            self._setup()
        except BaseException as exc:
            self._start_error = exc
            self._teardown()
            self._stopped.set()
            self._ready.set()
            return
        self._ready.set()
        stop_deadline = 0.0
        while True:
            self._ep.libHandleEvents(10)
            self._drain()
            now = time.monotonic()
            if now >= self._next_periodic:
                self._next_periodic = now + 0.5
                self._guard("periodic", self._periodic, now)
            if self._stopping:
                if not stop_deadline:
                    stop_deadline = now + 3.0
                if not self._calls or now > stop_deadline:
                    break
        self._teardown()
        self._stopped.set()
        # Anything queued after the end gets an answer instead of hanging its caller.
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                break
            future.set_exception(SipEdgeError("the SIP edge has stopped"))

    def _drain(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _begin_stop(self) -> None:
        self._stopping = True
        for slot in list(self._slots.values()):
            if not slot.hangup_by:
                slot.hangup_by, slot.hangup_reason = "edge", "shutdown"
        if self._calls:
            self._ep.hangupAllCalls()

    def _teardown(self) -> None:
        """Destroy every pjsua2 object on this thread, in an order that never leaves one half-alive."""
        for slot in list(self._slots.values()):
            self._end_slot(slot, 0, "shutdown")
        self._slots.clear()
        self._slot_by_pj.clear()
        self._calls.clear()
        self._pending_calls.clear()
        if self._account is not None:
            try:
                self._account.shutdown()
            except Exception:
                log.exception("account shutdown failed")
            self._account = None
        gc.collect()  # cycles holding pjsua2 objects must die here, not on some other thread later
        if self._ep is not None:
            try:
                self._ep.libDestroy()
            except Exception:
                log.exception("libDestroy failed")
            self._ep = None
        self._log_writer = None

    # -------------------------------------------------------------------------------------- periodic

    def _periodic(self, now: float) -> None:
        for slot in list(self._slots.values()):
            call = self._calls.get(slot.pj_id)
            if call is None or slot.hangup_by:
                continue
            if not slot.started:
                if now - slot.created > self.sip.no_media_timeout_s and slot.confirmed:
                    self._hangup(slot.key, "edge", "no media")
                continue
            if slot.rtp_lock is not None:
                self._check_media_source(slot, call, now)
            if self.sip.rtp_timeout_s > 0:
                self._check_rtp(slot, call, now)
        if any(slot.rtp_lock is not None and slot.rtp_lock.pending(now) for slot in self._slots.values()):
            self._next_periodic = min(self._next_periodic, now + 0.05)  # lock soon after the first RTP
