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
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pjsua2 as pj

from voiceivr import __version__
from voiceivr.call.handler import CallEvents, CallHandler, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel
from voiceivr.errors import ConfigError, VoiceivrError
from voiceivr.settings import SipSettings
from voiceivr.telephony.admission import Admission
from voiceivr.telephony.bridge import MediaBridge
from voiceivr.telephony.pjlog import PjLogWriter, startup_lines_logged
from voiceivr.telephony.recording import CallRecording, RecordingWriter
from voiceivr.telephony.rtplock import LockStep, SourceLock, parse_address
from voiceivr.telephony.sipmsg import (
    SipMessage,
    accepts_sdp,
    address_in,
    host_of,
    parse_message,
    parse_name_addr,
    parse_networks,
    parse_sdp_audio,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PJSUA_MAX_CALLS = 4  # compiled into the pjsua2-python wheel
_DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "sip-info"}
SOURCE_HEADER = "X-Voiceivr-Source"
_SKIP_HEADERS = frozenset({"authorization", "proxy-authorization", "via", "route", "record-route", "content-length",
                           SOURCE_HEADER.lower()})


class SipEdgeError(VoiceivrError):
    """The SIP edge could not start (port taken, bad TLS files, bad settings)."""


@dataclass
class EdgeConfig:
    """What one pjsua2 endpoint needs: the ``sip`` settings plus where this process binds."""

    sip: SipSettings
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (the test caller)
    media_host: str | None = None  # where RTP binds; None: same as host
    front_proxy: str = ""  # IP of our own Kamailio: its X-Voiceivr-Source header names the real sender
    accept_refer: bool = False  # follow a REFER from the far end (the test caller, like a phone); never a server
    tls_client: bool = False  # a TLS transport for outgoing sips:/transport=tls calls (the test caller)
    credentials: tuple[str, str] | None = None  # digest user, password for calls we place (the test caller)
    register: bool = True  # REGISTER to sip.register_uri if set (behind Kamailio only worker 0 does)
    contact: str = ""  # Contact to register (behind Kamailio: the dispatcher's public address)
    recordings_dir: Path | None = None
    max_calls: int = PJSUA_MAX_CALLS
    rtp_port_min: int = 0
    rtp_port_max: int = 0
    name: str = "voiceivr"

    def check(self) -> None:
        s = self.sip
        if not 1 <= self.max_calls <= PJSUA_MAX_CALLS:
            raise ConfigError(
                f"sip.calls_per_worker = {self.max_calls}: must be 1-{PJSUA_MAX_CALLS}",
                hint="the pjsua2 wheel carries at most 4 calls per process; add workers (--workers) instead",
            )
        if s.media_rate not in (8000, 16000):
            raise ConfigError(f"sip.media_rate = {s.media_rate}: must be 8000 or 16000")
        if not 5 <= s.resampler_quality <= 10:
            raise ConfigError(f"sip.resampler_quality = {s.resampler_quality}: must be 5-10 (4 and below alias)")
        if not 0 <= s.rtp_latch_s <= 30:
            raise ConfigError(f"sip.rtp_latch_s = {s.rtp_latch_s}: must be 0-30 seconds")
        if s.srtp not in ("off", "optional", "mandatory"):
            raise ConfigError(f"sip.srtp = {s.srtp!r}: must be off, optional or mandatory")
        if s.tls_port and not (s.tls_cert_file and s.tls_key_file):
            raise ConfigError("sip.tls_port is set but sip.tls_cert_file / sip.tls_key_file are not")
        try:
            parse_networks(s.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"sip.trusted_proxies: {exc}") from None


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


class CallRemote:
    """:class:`~voiceivr.call.handler.CallControl` for one call: each method queues a command and returns."""

    def __init__(self, edge: SipEdge, key: str) -> None:
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


# ------------------------------------------------------------------------------------- pjsua2 subclasses


class _Account(pj.Account):
    def __init__(self, edge: SipEdge) -> None:
        super().__init__()
        self._edge = edge

    def onIncomingCall(self, prm: Any) -> None:
        self._edge._guard("incoming call", self._edge._on_incoming, prm)

    def onRegState(self, prm: Any) -> None:
        self._edge._guard("registration", self._edge._on_reg_state, prm)


class _Call(pj.Call):
    """Forwards pjsua2's callbacks to the edge, which finds the call's slot by pjsua call id."""

    def __init__(self, edge: SipEdge, account: Any, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self._edge = edge

    def onCallState(self, prm: Any) -> None:
        self._edge._guard("call state", self._edge._on_call_state, self, prm)

    def onCallMediaState(self, prm: Any) -> None:
        self._edge._guard("media state", self._edge._on_media_state, self)

    def onDtmfDigit(self, prm: Any) -> None:
        # RFC 4733: the media thread; SIP INFO: the SIP thread.
        self._edge._guard("dtmf", self._edge._on_dtmf, self.getId(), prm.digit, prm.method)

    def onCallTransferStatus(self, prm: Any) -> None:
        self._edge._guard("transfer status", self._edge._on_transfer_status, self, prm)

    def onCallTransferRequest(self, prm: Any) -> None:
        self._edge._guard("transfer request", self._edge._on_transfer_request, self, prm)

    def onCallReplaceRequest(self, prm: Any) -> None:
        self._edge._guard("replace request", self._edge._on_replace_request, self, prm)

    def onCallReplaced(self, prm: Any) -> None:
        self._edge._guard("replaced", self._edge._on_replaced, self, prm)

    def onStreamDestroyed(self, prm: Any) -> None:
        self._edge._guard("stream destroyed", self._edge._on_stream_destroyed, self, prm.streamIdx)


# ------------------------------------------------------------------------------------------- the edge


def _media_address(text: str) -> MediaAddress | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return MediaAddress(host.strip("[]"), int(port))


class SipEdge:
    """One process's pjsua2 endpoint, its SIP thread, and the calls it carries."""

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
        self._thread = threading.Thread(target=self._run, name="voiceivr-sip", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._stopped = threading.Event()
        # SIP-thread tables. _calls holds every pjsua2 Call until its DISCONNECTED callback.
        self._calls: dict[int, _Call] = {}
        self._pending_calls: list[_Call] = []  # created for pjsua2 before it gave them an id (followed REFER)
        self._slots: dict[str, CallSlot] = {}
        self._slot_by_pj: dict[int, CallSlot] = {}
        self._ep: Any = None
        self._account: _Account | None = None
        self._log_writer: PjLogWriter | None = None
        self._transports: list[int] = []
        self._next_periodic = 0.0
        self.bound_port = 0
        self.registered: bool | None = None  # None: no registration configured
        self.registration_status = 0
        self.rejected_busy = 0
        self.writer = RecordingWriter() if config.recordings_dir else None
        self.ended: list[dict[str, Any]] = []  # summaries of finished calls (bounded), for tests and stats

    # ----------------------------------------------------------------------------------- public API

    def start(self, timeout: float = 10.0) -> None:
        """Start the SIP thread; return once the transport listens, or raise :class:`SipEdgeError`."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SipEdgeError("pjsua2 did not start within {timeout:.0f} s")
        if self._start_error is not None:
            err = self._start_error
            self._thread.join(5)
            if isinstance(err, VoiceivrError):
                raise err
            raise SipEdgeError(
                f"cannot start SIP on {self.config.host}:{self.config.port}: {err}",
                hint="is the port already in use, or the address not on this machine?",
            )

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

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run a callback body; an exception is logged and stays here (never reaches SWIG)."""
        try:
            fn(*args)
        except Exception:
            log.exception("SIP edge callback failed", extra={"callback": what})

    def _setup(self) -> None:
        s = self.sip
        ep = pj.Endpoint()
        self._ep = ep
        # Until libInit installs our log writer pjlib prints its banner on stdout, where `voiceivr call --json`
        # and the worker's READY line go: those lines go through our logger too.
        with startup_lines_logged():
            ep.libCreate()
            cfg = pj.EpConfig()
            cfg.uaConfig.threadCnt = 0
            cfg.uaConfig.mainThreadOnly = True
            cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
            cfg.uaConfig.userAgent = f"voiceivr/{__version__}"
            for server in s.nameservers:
                # pjsip's own asynchronous resolver; without it a hostname blocks the SIP thread on getaddrinfo.
                cfg.uaConfig.nameserver.append(server)
            self._log_writer = PjLogWriter()
            cfg.logConfig.writer = self._log_writer
            cfg.logConfig.level = s.pjsip_log_level
            cfg.logConfig.consoleLevel = s.pjsip_log_level
            cfg.logConfig.decor = 0
            med = cfg.medConfig
            med.clockRate = self.rate
            med.sndClockRate = self.rate
            med.channelCount = 1
            med.audioFramePtime = 20
            med.ptime = 20
            med.quality = s.resampler_quality
            med.noVad = True
            med.ecTailLen = 0
            med.threadCnt = 1
            for name, ms in (("jbMinPre", s.jb_min_pre_ms), ("jbMaxPre", s.jb_max_pre_ms), ("jbInit", s.jb_init_ms)):
                if ms >= 0:
                    setattr(med, name, ms)
            ep.libInit(cfg)
        ep.audDevManager().setNullDev()

        tcfg = pj.TransportConfig()
        tcfg.port = self.config.port
        if self.config.host not in ("", "0.0.0.0"):
            tcfg.boundAddress = self.config.host
        if s.public_address:
            tcfg.publicAddress = s.public_address
        udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self._transports.append(udp)
        self.bound_port = int(ep.transportGetInfo(udp).localName.rsplit(":", 1)[1])
        if s.tcp:
            tcp_cfg = pj.TransportConfig()
            tcp_cfg.port = self.bound_port
            tcp_cfg.boundAddress = tcfg.boundAddress
            tcp_cfg.publicAddress = tcfg.publicAddress
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp_cfg))
        if s.tls_port:
            tls_cfg = pj.TransportConfig()
            tls_cfg.port = s.tls_port
            tls_cfg.boundAddress = tcfg.boundAddress
            tls_cfg.publicAddress = tcfg.publicAddress
            tls_cfg.tlsConfig.certFile = s.tls_cert_file
            tls_cfg.tlsConfig.privKeyFile = s.tls_key_file
            tls_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            if s.tls_ca_file:
                tls_cfg.tlsConfig.CaListFile = s.tls_ca_file
                tls_cfg.tlsConfig.verifyServer = True
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls_cfg))
        if self.config.tls_client and not s.tls_port:
            client_cfg = pj.TransportConfig()
            client_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            if tcfg.boundAddress:
                client_cfg.boundAddress = tcfg.boundAddress
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, client_cfg))
        ep.libStart()
        self._set_codecs()
        self._create_account()

    def _set_codecs(self) -> None:
        wanted = [c.strip() for c in self.sip.codecs if c.strip()]
        available = {c.codecId.lower(): c.codecId for c in self._ep.codecEnum2()}
        missing = [c for c in wanted if c.lower() not in available]
        if missing:
            raise ConfigError(
                f"sip.codecs: pjsua2 has no codec {', '.join(missing)}",
                hint=f"available: {', '.join(sorted(available.values()))}",
            )
        for codec_id in available.values():
            self._ep.codecSetPriority(codec_id, 0)
        for rank, codec in enumerate(wanted):
            self._ep.codecSetPriority(available[codec.lower()], 255 - rank)

    def _create_account(self) -> None:
        s = self.sip
        acfg = pj.AccountConfig()
        host = s.public_address or (self.config.host if self.config.host not in ("", "0.0.0.0") else "127.0.0.1")
        acfg.idUri = s.register_aor or f"sip:{self.config.name}@{host}:{self.bound_port}"
        if s.register_uri and self.config.register:
            acfg.regConfig.registrarUri = s.register_uri
            if self.config.contact:
                acfg.sipConfig.contactForced = self.config.contact
            acfg.regConfig.timeoutSec = s.register_expires_s
            acfg.regConfig.retryIntervalSec = 30
            if s.register_user:
                cred = pj.AuthCredInfo("digest", s.register_realm or "*", s.register_user, 0, s.register_password)
                acfg.sipConfig.authCreds.append(cred)
            self.registered = False
        else:
            acfg.regConfig.registerOnAdd = False
        if self.config.credentials:
            user, password = self.config.credentials
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        mcfg = acfg.mediaConfig
        if self.config.rtp_port_min:
            mcfg.transportConfig.port = self.config.rtp_port_min
            mcfg.transportConfig.portRange = max(0, self.config.rtp_port_max - self.config.rtp_port_min)
        media_host = self.config.host if self.config.media_host is None else self.config.media_host
        if media_host not in ("", "0.0.0.0"):
            mcfg.transportConfig.boundAddress = media_host
        if s.public_address:
            mcfg.transportConfig.publicAddress = s.public_address
        mcfg.srtpUse = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                        "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[s.srtp]
        mcfg.srtpSecureSignaling = 1 if s.srtp_require_tls else 0
        # A server behind a SIP proxy must not rewrite its Contact from what a registrar saw.
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acc = _Account(self)
        acc.create(acfg, True)
        self._account = acc

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

    # ---------------------------------------------------------------------------------- incoming calls

    def _on_incoming(self, prm: Any) -> None:
        raw = prm.rdata.wholeMsg
        source = prm.rdata.srcAddress
        call = _Call(self, self._account, prm.callId)
        self._calls[prm.callId] = call
        msg = parse_message(raw)
        if not accepts_sdp(msg.get("accept")):
            # RFC 3261 21.4.7 / RFC 4475 3.3.15: our answer is SDP, which this caller says it cannot take.
            self._reject(call, 406, "Not Acceptable", ("Accept", "application/sdp"))
            return
        real_source = self._real_source(source, msg)
        refusal = self._admission.check(real_source, self._inbound_calls_from)
        if refusal is not None:
            log.info("call refused", extra={"status": refusal.status, "why": refusal.reason, "source": real_source})
            self._reject(call, refusal.status, refusal.phrase, refusal.header())
            return
        full = len(self._slots) >= self.config.max_calls
        if self._stopping or full or self._handler is None:
            self.rejected_busy += 1
            log.info("call refused: no capacity", extra={"active": len(self._slots), "source": source})
            if not self.config.front_proxy:  # behind Kamailio a full worker is not a refusal: the next one is tried
                self._admission.refuse_full()
            self._reject(call, 503, "Service Unavailable", ("Retry-After", str(self.sip.retry_after_s)))
            return
        key = str(uuid.uuid4())
        info = self._info_from_invite(key, msg, source)
        slot = self._new_slot(key, "inbound", self._handler, info, prm.callId)
        log.info("incoming call", extra={"call_id": key, "sip_call_id": info.sip_call_id,
                                         "source": info.source_address})
        op = pj.CallOpParam(True)
        op.statusCode = 200
        try:
            call.answer(op)
        except pj.Error as exc:
            # pjsua2 could not answer (e.g. no codec in common): it has answered the INVITE with an error.
            slot.hangup_by, slot.hangup_reason = "edge", f"answer failed: {exc.info()}"
            log.warning("answer failed", extra={"call_id": key, "status": exc.status})

    @staticmethod
    def _reject(call: _Call, status: int, reason: str, header: tuple[str, str] | None = None) -> None:
        """Answer an INVITE with a final error; the Call stays in ``_calls`` until its DISCONNECTED."""
        op = pj.CallOpParam(True)
        op.statusCode = status
        op.reason = reason
        if header is not None:
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = header
            op.txOption.headers.append(hdr)
        call.answer(op)

    def _inbound_calls_from(self, host: str) -> int:
        return sum(1 for slot in self._slots.values()
                   if slot.direction == "inbound" and host_of(slot.info.source_address) == host)

    def _info_from_invite(self, key: str, msg: SipMessage, source: str) -> CallInfo:
        source = self._real_source(source, msg)
        from_ = parse_name_addr(msg.get("from"))
        to = parse_name_addr(msg.get("to"))
        asserted = None
        if address_in(source, self._trusted):
            for value in msg.get_all("p-asserted-identity"):
                asserted = parse_name_addr(value).uri
                break
        sdp = parse_sdp_audio(msg.body) if "sdp" in msg.get("content-type").lower() else None
        headers = {"request-uri": msg.request_uri}
        for name, value in msg.headers:
            if name not in _SKIP_HEADERS and name not in headers:
                headers[name] = value
        return CallInfo(
            call_id=key,
            sip_call_id=msg.get("call-id"),
            remote_tag=from_.tag,
            from_uri=from_.uri,
            from_display=from_.display,
            to_uri=to.uri,
            asserted_identity=asserted,
            source_address=source,
            remote_media=MediaAddress(sdp.host, sdp.port) if sdp and sdp.host else None,
            rate=self.rate,
            headers=headers,
        )

    def _real_source(self, source: str, msg: SipMessage) -> str:
        """Who sent a request: behind our own dispatcher, the address it wrote down (it deletes any such
        header arriving from outside, so the header is believed only when the packet came from it)."""
        if self.config.front_proxy and host_of(source) == self.config.front_proxy:
            return msg.get(SOURCE_HEADER) or source
        return source

    def _new_slot(self, key: str, direction: str, handler: CallHandler, info: CallInfo, pj_id: int) -> CallSlot:
        channel = MediaChannel(rate=self.rate)
        recording = None
        if self.config.recordings_dir is not None and self.writer is not None:
            recording = CallRecording(self.config.recordings_dir, key, self.rate, _info_dict(info),
                                      secret=channel.secret)
            recording.update_sip(direction=direction)
            self.writer.add(recording)
        slot = CallSlot(key=key, direction=direction, handler=handler, channel=channel,
                        control=CallRemote(self, key), info=info, pj_id=pj_id, recording=recording)
        self._slots[key] = slot
        self._slot_by_pj[pj_id] = slot
        return slot

    # ---------------------------------------------------------------------------------- outgoing calls

    def _make_call(self, uri: str, handler: CallHandler, headers: dict[str, str], dtmf_method: str) -> CallSlot:
        if len(self._slots) >= self.config.max_calls:
            raise SipEdgeError(f"already {len(self._slots)} calls in this process (limit {self.config.max_calls})")
        call = _Call(self, self._account)
        op = pj.CallOpParam(True)
        for name, value in headers.items():
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = name, value
            op.txOption.headers.append(hdr)
        key = str(uuid.uuid4())
        info = CallInfo(call_id=key, to_uri=uri, rate=self.rate)
        try:
            call.makeCall(uri, op)
        except pj.Error as exc:
            raise SipEdgeError(f"cannot call {uri}: {exc.info()}") from None
        pj_id = call.getId()
        self._calls[pj_id] = call
        slot = self._new_slot(key, "outbound", handler, info, pj_id)
        slot.dtmf_method_out = dtmf_method
        return slot

    # ------------------------------------------------------------------------------------- call events

    def _on_call_state(self, call: _Call, prm: Any) -> None:
        ci = call.getInfo()
        pj_id = ci.id
        if call in self._pending_calls:
            self._pending_calls.remove(call)
            self._calls[pj_id] = call
        slot = self._slot_by_pj.get(pj_id)
        if slot is not None and slot.pj_id == pj_id:
            if prm.e.type == pj.PJSIP_EVENT_TSX_STATE:
                self._learn_tags(slot, prm.e.body.tsxState)
            if ci.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED) and not slot.answered:
                slot.answered = True
                if slot.direction == "outbound":
                    slot.info = dataclasses.replace(slot.info, sip_call_id=ci.callIdString, from_uri=ci.localUri)
                self._record(slot, "answered", sip_call_id=ci.callIdString)
                self._maybe_start(slot)
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and not slot.confirmed:
                slot.confirmed = True
                self._record(slot, "confirmed")
        if ci.state != pj.PJSIP_INV_STATE_DISCONNECTED:
            return
        if slot is not None and slot.pj_id == pj_id:
            self._end_slot(slot, ci.lastStatusCode, ci.lastReason)
        # The last reference to the pjsua2 Call goes here, inside its own DISCONNECTED callback.
        self._calls.pop(pj_id, None)

    def _on_stream_destroyed(self, call: _Call, index: int) -> None:
        """The last moment the stream's counters can be read: what arrived, what was lost, and what the
        jitter buffer threw away (a discarded frame is a hole in what the session heard)."""
        slot = self._slot_by_pj.get(call.getId())
        if slot is None:
            return
        stat = call.getStreamStat(index)
        rx, jb = stat.rtcp.rxStat, stat.jbuf
        slot.media_stats = {"rtp_packets": int(rx.pkt), "rtp_lost": int(rx.loss), "rtp_discarded": int(rx.discard),
                            "rtp_reordered": int(rx.reorder), "rtp_duplicated": int(rx.dup),
                            "jb_lost": int(jb.lost), "jb_discarded": int(jb.discard), "jb_empty": int(jb.empty),
                            "jb_avg_delay_ms": int(jb.avgDelayMsec), "jb_max_delay_ms": int(jb.maxDelayMsec)}

    def _on_media_state(self, call: _Call) -> None:
        pj_id = call.getId()
        slot = self._slot_by_pj.get(pj_id)
        if slot is None:
            return
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status not in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                self._record(slot, "media", status=int(mi.status))
                return
            aud = call.getAudioMedia(mi.index)
            if slot.bridge is None:
                slot.bridge = MediaBridge(f"vivr{pj_id}", slot.channel, slot.recording)
            port = aud.getPortId()
            if port != slot.conf_slot:
                slot.bridge.connect(aud)
                slot.conf_slot = port
            si = call.getStreamInfo(mi.index)
            remote = _media_address(si.remoteRtpAddress)
            codec = f"{si.codecName}/{si.codecClockRate}"
            hold = mi.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            if not slot.media_ready:
                slot.media_ready = True
                slot.remote_media = remote
                slot.info = dataclasses.replace(slot.info, codec=codec, remote_media=remote or slot.info.remote_media,
                                     sip_call_id=slot.info.sip_call_id or ci.callIdString)
                self._record(slot, "media_started", codec=codec, remote=_addr_dict(remote), srtp=self.sip.srtp)
                if slot.recording:
                    slot.recording.update_sip(codec=codec, remote_media=_addr_dict(remote))
                self._lock_media(slot, call, mi.index, si)
                self._maybe_start(slot)
            elif remote != slot.remote_media:
                slot.remote_media = remote
                self._record(slot, "media_moved", remote=_addr_dict(remote), codec=codec, hold=hold)
                self._notify(slot, "on_media_moved", remote)
                self._lock_media(slot, call, mi.index, si)
            elif hold:
                self._record(slot, "remote_hold")
            return

    def _learn_tags(self, slot: CallSlot, tsx_state: Any) -> None:
        """Dialog tags from the messages of the INVITE transaction (pjsua2's CallInfo has none)."""
        if slot.info.local_tag and slot.info.remote_tag:
            return
        sent = parse_message(tsx_state.tsx.lastTx.wholeMsg or "")
        received = parse_message(tsx_state.src.rdata.wholeMsg or "")
        local_tag, remote_tag = slot.info.local_tag, slot.info.remote_tag
        if slot.direction == "inbound":
            local_tag = local_tag or parse_name_addr(sent.get("to")).tag
        else:
            local_tag = local_tag or parse_name_addr(sent.get("from")).tag or parse_name_addr(received.get("from")).tag
            remote_tag = remote_tag or parse_name_addr(received.get("to")).tag
        if (local_tag, remote_tag) != (slot.info.local_tag, slot.info.remote_tag):
            slot.info = dataclasses.replace(slot.info, local_tag=local_tag, remote_tag=remote_tag)
            if slot.recording:
                slot.recording.update_sip(local_tag=local_tag, remote_tag=remote_tag)

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

    def _on_dtmf(self, pj_id: int, digit: str, method: int) -> None:
        slot = self._slot_by_pj.get(pj_id)
        if slot is None:
            return
        how = _DTMF_METHODS.get(method, str(method))
        call = self._calls.get(pj_id)
        if how == "rfc4733" and slot.rtp_lock is not None and call is not None:
            # A digit that came in RTP: first, whose RTP is it? (pjsua2 runs this on the SIP thread.)
            self._check_media_source(slot, call, time.monotonic())
        if slot.recording is not None:
            # Written without its digit if the caller is giving a secret (voiceivr.call.secrecy).
            slot.recording.dtmf(digit, how, delivered=slot.events is not None)
        self._notify(slot, "on_dtmf", digit, how)

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

    def _end_slot(self, slot: CallSlot, status: int, reason: str) -> None:
        """The call is over: free its port, wake its worker, close its recording. SIP thread only."""
        if slot.ended.is_set():
            return
        self._slots.pop(slot.key, None)
        if self._slot_by_pj.get(slot.pj_id) is slot:
            self._slot_by_pj.pop(slot.pj_id, None)
        by = slot.hangup_by or "caller"
        gaps: dict[str, float] = {}
        if slot.bridge is not None:
            gaps = slot.bridge.gaps.summary()
            errors = slot.bridge.errors
            slot.bridge.destroy()
            slot.bridge = None
            if errors:
                log.warning("media callback errors", extra={"call_id": slot.key, "errors": errors})
        if by == "caller" and slot.started:
            # Before the channel closes, so a worker that stops reading at close already has the event.
            self._notify(slot, "on_remote_hangup")
        slot.channel.close()
        slot.end_status, slot.end_reason = status, reason
        duration = round(time.monotonic() - slot.created, 3)
        summary = {"call_id": slot.key, "by": by, "reason": slot.hangup_reason or reason, "status": status,
                   "duration_s": duration, "frame_gaps": gaps, "inbox_dropped": slot.channel.inbox_dropped,
                   "media": slot.media_stats}
        self._record(slot, "hangup", by=by, status=status, reason=slot.hangup_reason or reason)
        if slot.recording is not None:
            slot.recording.finish(hangup={"by": by, "status": status, "reason": slot.hangup_reason or reason},
                                  frame_gaps=gaps, media=slot.media_stats)
        self.ended.append(summary)
        del self.ended[:-200]
        log.info("call ended", extra={k: v for k, v in summary.items() if k != "frame_gaps"})
        slot.ended.set()

    # ---------------------------------------------------------------------------- commands (SIP thread)

    def hangup(self, key: str, by: str, reason: str) -> None:
        self._hangup(key, by, reason)

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

    def _transfer(self, key: str, target: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        slot.transfer_target = target
        self._record(slot, "transfer_requested", target=target)
        try:
            call.xfer(target, pj.CallOpParam(True))
        except pj.Error as exc:
            self._record(slot, "transfer_result", ok=False, status=exc.status, reason=exc.info())
            self._notify(slot, "on_transfer_result", False, 0)

    def _on_transfer_status(self, call: _Call, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        if slot is None:
            return
        code = int(prm.statusCode)
        if code < 200 and not prm.finalNotify:
            return
        ok = 200 <= code < 300
        self._record(slot, "transfer_result", ok=ok, status=code, reason=prm.reason)
        self._notify(slot, "on_transfer_result", ok, code)
        prm.cont = False
        if ok:
            # The caller now talks to the transfer target: our leg is done.
            self.submit(lambda: self._hangup(slot.key, "agent", "transferred"))

    def _on_transfer_request(self, call: _Call, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        if not self.config.accept_refer:
            # A REFER from the far end asks us to place a call on its behalf: an IVR never does (toll fraud).
            prm.statusCode = 603
            if slot is not None:
                self._record(slot, "refer_refused", target=prm.dstUri)
            return
        # The test caller follows it like a phone: pjsua2 places the new call on this Call object, which we
        # keep (as every Call) until its DISCONNECTED callback.
        new_call = _Call(self, self._account)
        self._pending_calls.append(new_call)
        prm.newCall = new_call
        if slot is not None:
            slot.transferred_to = prm.dstUri

    def _on_replace_request(self, call: _Call, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        source = self._real_source(prm.rdata.srcAddress, parse_message(prm.rdata.wholeMsg))
        if slot is None:
            prm.statusCode = 481
            return
        # RFC 3891 8: only a party of the dialog (same source) or a trusted proxy may replace it.
        if host_of(source) != host_of(slot.info.source_address or source) and not address_in(source, self._trusted):
            prm.statusCode = 403
            prm.reason = "Replaces not authorized"
            self._record(slot, "replace_refused", source=source)
            return
        self._record(slot, "replace_accepted", source=source)

    def _on_replaced(self, old: _Call, prm: Any) -> None:
        slot = self._slot_by_pj.get(old.getId())
        new_call = _Call(self, self._account, prm.newCallId)
        self._calls[prm.newCallId] = new_call
        prm.newCall = new_call
        if slot is None:
            return
        self._slot_by_pj.pop(slot.pj_id, None)
        slot.pj_id = prm.newCallId
        slot.conf_slot = -1
        self._slot_by_pj[prm.newCallId] = slot
        new_info = new_call.getInfo()
        slot.info = dataclasses.replace(slot.info, sip_call_id=new_info.callIdString)
        self._record(slot, "dialog_replaced", sip_call_id=new_info.callIdString, remote=new_info.remoteUri)
        if slot.recording:
            slot.recording.update_sip(replaced_by=new_info.callIdString)
        self._notify(slot, "on_dialog_replaced", "replaces")

    def _reinvite(self, key: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        op = pj.CallOpParam(True)
        op.opt.flag = pj.PJSUA_CALL_REINIT_MEDIA
        call.reinvite(op)
        self._record(slot, "reinvite_sent")

    def _send_dtmf(self, key: str, digits: str, method: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if method == "sip-info" else pj.PJSUA_DTMF_METHOD_RFC2833
        prm.duration = 160
        call.sendDtmf(prm)
        self._record(slot, "dtmf_sent", count=len(digits), method=method)

    # ----------------------------------------------------------------------------------- registration

    def _on_reg_state(self, prm: Any) -> None:
        self.registration_status = int(prm.code)
        self.registered = 200 <= prm.code < 300 and prm.expiration > 0
        level = logging.INFO if self.registered else logging.WARNING
        log.log(level, "trunk registration", extra={"status": prm.code, "expires": prm.expiration})

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

    def _check_rtp(self, slot: CallSlot, call: _Call, now: float) -> None:
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE or not (mi.dir & pj.PJMEDIA_DIR_DECODING):
                slot.rtp_rx_at = now  # on hold: the caller is not expected to send
                return
            rx = call.getStreamStat(mi.index).rtcp.rxStat.pkt
            if rx != slot.rtp_rx:
                slot.rtp_rx, slot.rtp_rx_at = rx, now
            elif now - slot.rtp_rx_at > self.sip.rtp_timeout_s:
                log.warning("no RTP from caller: hanging up", extra={"call_id": slot.key,
                                                                      "silent_s": round(now - slot.rtp_rx_at, 1)})
                self._record(slot, "rtp_timeout", silent_s=round(now - slot.rtp_rx_at, 1))
                self._hangup(slot.key, "edge", "rtp timeout")
            return

    # ------------------------------------------------------------------------ media source lock (rtplock.py)

    def _lock_media(self, slot: CallSlot, call: _Call, index: int, si: Any) -> None:
        """Media started (a new lock) or a re-INVITE moved it (the lock follows the new SDP address)."""
        ti = call.getMedTransportInfo(index)
        slot.media_index = index
        args = (parse_address(si.remoteRtpAddress), parse_address(si.remoteRtcpAddress),
                parse_address(ti.localRtpName), parse_address(ti.localRtcpName))
        if slot.rtp_lock is None:
            slot.rtp_lock = SourceLock.start(*args, now=time.monotonic(), latch_s=self.sip.rtp_latch_s,
                                             enforce=self.sip.rtp_source_lock)
        else:
            self._lock_steps(slot, slot.rtp_lock.renegotiated(*args, source_now=parse_address(ti.srcRtpName)))

    def _check_media_source(self, slot: CallSlot, call: _Call, now: float) -> None:
        """Where the stream's packets come from, on the SIP thread (never the media thread)."""
        assert slot.rtp_lock is not None
        try:
            ti = call.getMedTransportInfo(slot.media_index)
        except pj.Error:  # no such stream (any more)
            return
        self._lock_steps(slot, slot.rtp_lock.observe(
            parse_address(ti.localRtpName), parse_address(ti.localRtcpName), parse_address(ti.srcRtpName),
            parse_address(ti.srcRtcpName), now))

    def _lock_steps(self, slot: CallSlot, steps: list[LockStep]) -> None:
        for step in steps:
            where = _addr_dict(step.address)
            if step.kind == "moved":
                # Like a re-INVITE moving the media: the call's privileges drop and the gate audits it.
                log.log(logging.INFO if step.how == "latched" else logging.WARNING, "RTP source changed",
                        extra={"call_id": slot.key, "how": step.how,
                               "source": f"{step.address.host}:{step.address.port}"})
                self._record(slot, "media_moved", remote=where, via="rtp", how=step.how)
                self._notify(slot, "on_media_moved", step.address)
            elif step.kind == "locked":
                self._record(slot, "media_locked", channel=step.channel, remote=where)
            else:
                log.warning("cannot lock the media source", extra={"call_id": slot.key, "channel": step.channel,
                                                                   "reason": step.how})
                self._record(slot, "media_lock_failed", channel=step.channel, remote=where, reason=step.how)


def _addr_dict(addr: MediaAddress | None) -> dict[str, Any] | None:
    return {"host": addr.host, "port": addr.port} if addr else None


def _info_dict(info: CallInfo) -> dict[str, Any]:
    return {
        "call_id": info.call_id,
        "sip_call_id": info.sip_call_id,
        "from_uri": info.from_uri,
        "from_display": info.from_display,
        "to_uri": info.to_uri,
        "remote_tag": info.remote_tag,
        "asserted_identity": info.asserted_identity,
        "source_address": info.source_address,
        "remote_media": _addr_dict(info.remote_media),
        "rate": info.rate,
        "headers": dict(info.headers),
    }
