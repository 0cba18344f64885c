"""One call as the edge holds it (:class:`CallSlot`), the handle its worker gets (:class:`CallRemote`), and
:class:`EdgeBase`: the SIP thread's tables and what every part of the edge does to a slot (queue a command to
the SIP thread, record an event, notify the handler, start the handler, hang up).

The edge is built in layers, each a class adding one job on top of the one below:
:class:`EdgeBase` (here) -> ``streams.MediaPart`` (media bridge, RTP timeout and source lock) ->
``dtmf.DtmfPart`` -> ``dialogs.DialogPart`` (incoming and outgoing calls, re-INVITE, Replaces, transfer, the
end of a call) -> ``endpoint.EndpointPart`` (endpoint, transports, account) -> ``edge.SipEdge`` (the SIP
thread, start, stop).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pjsua2 as pj

from voiceivr.call.handler import CallEvents, CallHandler, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel
from voiceivr.telephony.admission import Admission
from voiceivr.telephony.bridge import MediaBridge
from voiceivr.telephony.edgeconfig import EdgeConfig, SipEdgeError
from voiceivr.telephony.pjcalls import PjAccount, PjCall
from voiceivr.telephony.pjlog import PjLogWriter
from voiceivr.telephony.recording import CallRecording, RecordingWriter
from voiceivr.telephony.rtplock import SourceLock
from voiceivr.telephony.sipmsg import parse_networks

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class CallSlot:
    """Everything the edge knows about one call. Lives in the SIP thread's tables; never in a handler."""

    key: str
    direction: str  # "inbound" or "outbound"
    handler: CallHandler
    channel: MediaChannel
    control: CallRemote
    info: CallInfo
    pj_id: int
    recording: CallRecording | None = None
    bridge: MediaBridge | None = None
    conf_slot: int = -1
    events: CallEvents | None = None
    started: bool = False
    media_ready: bool = False
    answered: bool = False  # the 200 OK was sent (inbound) or received (outbound)
    remote_media: MediaAddress | None = None
    hangup_by: str = ""  # "agent" (the handler), "edge" (timeouts, errors); empty = the far end
    hangup_reason: str = ""
    created: float = field(default_factory=time.monotonic)
    confirmed: bool = False
    rtp_rx: int = -1
    rtp_rx_at: float = field(default_factory=time.monotonic)
    transfer_target: str = ""
    transferred_to: str = ""  # a REFER we followed (test caller)
    dtmf_method_out: str = "rfc4733"
    ended: threading.Event = field(default_factory=threading.Event)
    end_status: int = 0
    end_reason: str = ""
    media_stats: dict[str, int] = field(default_factory=dict)  # RTP receive side, read as the stream goes
    media_index: int = -1  # the audio stream's index in pjsua2's media list
    rtp_lock: SourceLock | None = None  # whom its RTP may come from (rtplock.py)


class EdgeCommands(Protocol):
    """The commands a :class:`CallRemote` queues to the SIP thread."""

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]: ...

    def _hangup(self, key: str, by: str, reason: str) -> None: ...

    def _transfer(self, key: str, target: str) -> None: ...

    def _send_dtmf(self, key: str, digits: str, method: str) -> None: ...

    def _reinvite(self, key: str) -> None: ...


class CallRemote:
    """:class:`~voiceivr.call.handler.CallControl` for one call: each method queues a command and returns."""

    def __init__(self, edge: EdgeCommands, key: str) -> None:
        self._edge = edge
        self.call_id = key

    def hangup(self, reason: str = "normal") -> None:
        self._edge.submit(lambda: self._edge._hangup(self.call_id, "agent", reason))

    def transfer(self, target: str) -> None:
        self._edge.submit(lambda: self._edge._transfer(self.call_id, target))

    def send_dtmf(self, digits: str, method: str = "rfc4733") -> None:
        """Send DTMF to the far end (the test caller uses this); method ``rfc4733`` or ``sip-info``."""
        self._edge.submit(lambda: self._edge._send_dtmf(self.call_id, digits, method))

    def reinvite(self) -> None:
        """Re-INVITE with fresh media transports (a new RTP port): how tests move media."""
        self._edge.submit(lambda: self._edge._reinvite(self.call_id))


class EdgeBase:
    """The SIP thread's tables and the per-slot steps every part of the edge uses."""

    def __init__(self, config: EdgeConfig, handler: CallHandler | None) -> None:
        config.check()
        self.config = config
        self.sip = config.sip
        self.rate = config.sip.media_rate
        self._handler = handler
        self._trusted = parse_networks(config.sip.trusted_proxies)
        # Behind our Kamailio the per-source limits are counted there, across all workers (admission.py).
        self._admission = Admission(config.sip, count_limits=not config.front_proxy)
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._stopping = False
        self._draining = False  # set from any thread (drain()); read on the SIP thread: refuse new calls
        self._stopped = threading.Event()
        # SIP-thread tables. _calls holds every pjsua2 Call until its DISCONNECTED callback.
        self._calls: dict[int, PjCall] = {}
        self._pending_calls: list[PjCall] = []  # created for pjsua2 before it gave them an id (followed REFER)
        self._slots: dict[str, CallSlot] = {}
        self._slot_by_pj: dict[int, CallSlot] = {}
        self._ep: Any = None
        self._account: PjAccount | None = None
        self._log_writer: PjLogWriter | None = None
        self._transports: list[int] = []
        self._next_periodic = 0.0
        self.bound_port = 0
        self.registered: bool | None = None  # None: no registration configured
        self.registration_status = 0
        self.rejected_busy = 0
        self.writer = RecordingWriter() if config.recordings_dir else None
        self.ended: list[dict[str, Any]] = []  # summaries of finished calls (bounded), for tests and stats

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the SIP thread (within ~10 ms). Safe from any thread."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._stopped.is_set():
            future.set_exception(SipEdgeError("the SIP edge has stopped"))
            return future
        self._commands.put((fn, future))
        return future

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        return self.submit(fn).result(timeout)

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run a callback body; an exception is logged and stays here (never reaches SWIG)."""
        try:
            fn(*args)
        except Exception:
            log.exception("SIP edge callback failed", extra={"callback": what})

    def _notify(self, slot: CallSlot, method: str, *args: Any) -> None:
        events = slot.events
        if events is None:
            return
        fn = getattr(events, method, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("call handler event failed", extra={"call_id": slot.key, "event": method})

    def _record(self, slot: CallSlot, kind: str, **fields: Any) -> None:
        if slot.recording is not None:
            slot.recording.event(kind, **fields)

    def _maybe_start(self, slot: CallSlot) -> None:
        """Start the handler once media flows and the 200 OK is out (or in): CallInfo is then complete."""
        if slot.started or not slot.media_ready or not slot.answered or slot.hangup_by:
            return
        slot.started = True
        try:
            slot.events = slot.handler.start(slot.info, slot.channel, slot.control)
        except Exception:
            log.exception("call handler failed to start", extra={"call_id": slot.key})
            self._hangup(slot.key, "edge", "handler failed to start")

    # ---------------------------------------------------------------------------- commands (SIP thread)

    def _hangup(self, key: str, by: str, reason: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        if not slot.hangup_by:
            slot.hangup_by, slot.hangup_reason = by, reason
        op = pj.CallOpParam(True)
        if not slot.answered and slot.direction == "inbound":
            op.statusCode = 500
        try:
            call.hangup(op)
        except pj.Error as exc:
            log.warning("hangup failed", extra={"call_id": key, "status": exc.status})

    def hangup(self, key: str, by: str, reason: str) -> None:
        """Hang up the call ``key``; ``by`` is "agent" or "edge". SIP thread only: wrap it in :meth:`call`."""
        self._hangup(key, by, reason)
