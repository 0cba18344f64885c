"""A phone made of plain sockets, and a stranger who sends RTP into its call. No pjsua2 in this process.

:class:`RawCaller` places one call over UDP on 127.0.0.1: an INVITE whose SDP offers PCMU and
telephone-event and no ``a=ssrc`` (as many phones and trunks send it), the ACK, RTP every 20 ms from the port
its SDP names (or, ``behind_nat``, from another one), RFC 4733 digits in that stream, and the BYE. What the
agent says comes back as PCMU; its loudness tells when a prompt has begun or ended.

:class:`Stranger` is someone else on the network who found the call's RTP port: a second socket that sends
well-formed RTP (its own SSRC, PCMU and telephone-event packets) there, faster than the caller does, so that
pjmedia's ten-packets-in-a-row probation passes, and counts what the agent sends back to it.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from voiceivr.audio.g711 import ulaw_decode

PCMU, EVENT_PT = 0, 101
FRAME_S = 0.02
SILENCE = b"\xff" * 160  # PCMU digital silence
LOUD_RMS = 300.0  # a 20 ms frame this loud is the agent talking
_EVENTS = {d: i for i, d in enumerate("0123456789*#")}
_STATUS = re.compile(rb"^SIP/2\.0 (\d{3})")


def rtp_packet(seq: int, ts: int, ssrc: int, pt: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def event_payload(digit: str, duration: int, end: bool = False) -> bytes:
    """RFC 4733 telephone-event: event, E bit + volume 10, duration in timestamp units."""
    return struct.pack("!BBH", _EVENTS[digit], (0x80 if end else 0) | 10, duration)


def _header(msg: bytes, name: str) -> str:
    m = re.search(rb"^" + name.encode() + rb"\s*:\s*(.*?)\r?$", msg, re.I | re.M)
    return m.group(1).decode().strip() if m else ""


@dataclass
class Heard:
    """What came back on one RTP socket."""

    packets: int = 0
    loud_frames: int = 0
    last_loud: float = 0.0
    sources: set[tuple[str, int]] = field(default_factory=set)


class RawCaller:
    """One call from 127.0.0.1 to ``sip:ivr@127.0.0.1:<port>``. Use :meth:`dial`, then the steps, then
    :meth:`hang_up`; :meth:`close` always."""

    def __init__(self, server_port: int, behind_nat: bool = False) -> None:
        self.server_port = server_port
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        # Behind a NAT the SDP names the phone's own port, and its RTP arrives from the port the NAT mapped it
        # to: here the SDP names a second socket (which only drains what is sent to it) and RTP leaves from
        # self.rtp, which also takes what comes back (symmetric RTP).
        self.advertised: socket.socket | None = None
        if behind_nat:
            self.advertised = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.advertised.bind(("127.0.0.1", 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.sdp_port = (self.advertised or self.rtp).getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.to_tag = ""
        self.remote_rtp: tuple[str, int] | None = None
        self.answered = threading.Event()
        self.ended = threading.Event()
        self.bye_from_server = False
        self.final_status = 0
        self.heard = Heard()
        self.heard_advertised = Heard()  # behind_nat: what the agent sent to the SDP's port
        self._digits: deque[str] = deque()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ssrc = int.from_bytes(uuid.uuid4().bytes[:4], "big")

    # ------------------------------------------------------------------------------------------ SIP

    def _request(self, method: str, cseq: int, body: str = "", to_tag: str = "") -> bytes:
        port = self.sip.getsockname()[1]
        to = f"<sip:ivr@127.0.0.1:{self.server_port}>" + (f";tag={to_tag}" if to_tag else "")
        head = (f"{method} sip:ivr@127.0.0.1:{self.server_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: \"Raw\" <sip:raw@127.0.0.1>;tag={self.tag}\r\nTo: {to}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:raw@127.0.0.1:{port}>\r\n")
        if body:
            head += "Content-Type: application/sdp\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()

    def dial(self, timeout: float = 10.0) -> None:
        rtp_port = self.sdp_port
        sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP {PCMU} {EVENT_PT}\r\na=rtpmap:{PCMU} PCMU/8000\r\n"
               f"a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-16\r\na=ptime:20\r\n")
        invite = self._request("INVITE", 1, sdp)
        self.sip.settimeout(0.5)
        deadline = time.monotonic() + timeout
        self.sip.sendto(invite, ("127.0.0.1", self.server_port))
        while time.monotonic() < deadline:
            try:
                data, _ = self.sip.recvfrom(65535)
            except TimeoutError:
                continue
            m = _STATUS.match(data)
            if not m or self.call_id not in _header(data, "Call-ID"):
                continue
            status = int(m.group(1))
            if status < 200:
                continue
            self.final_status = status
            if status >= 300:
                raise AssertionError(f"the call was refused: {data[:200]!r}")
            self.to_tag = _header(data, "To").partition("tag=")[2].split(";")[0]
            body = data.partition(b"\r\n\r\n")[2].decode()
            host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
            port = re.search(r"^m=audio (\d+)", body, re.M)
            assert host and port, body
            self.remote_rtp = (host.group(1), int(port.group(1)))
            self.sip.sendto(self._request("ACK", 1, to_tag=self.to_tag), ("127.0.0.1", self.server_port))
            break
        else:
            raise AssertionError("no final answer to the INVITE")
        self.answered.set()
        for target in (self._send_rtp, self._receive_rtp, self._sip_loop, self._drain_advertised):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def _sip_loop(self) -> None:
        """Answer what the server sends in the dialog: its BYE, or a 200 retransmitted before our ACK."""
        self.sip.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, addr = self.sip.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if data.startswith(b"BYE "):
                self.bye_from_server = True
                self.sip.sendto(self._ok(data), addr)
                self.ended.set()
            elif data.startswith(b"SIP/2.0 200") and "INVITE" in _header(data, "CSeq"):
                self.sip.sendto(self._request("ACK", 1, to_tag=self.to_tag), ("127.0.0.1", self.server_port))
            elif data.startswith(b"SIP/2.0 ") and "BYE" in _header(data, "CSeq"):
                self.ended.set()

    @staticmethod
    def _ok(request: bytes) -> bytes:
        keep = [f"{name}: {_header(request, name)}" for name in ("Via", "From", "To", "Call-ID", "CSeq")]
        return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def hang_up(self, timeout: float = 5.0) -> bool:
        """BYE; True once the server answered it (or had hung up itself)."""
        if not self.ended.is_set():
            self.sip.sendto(self._request("BYE", 2, to_tag=self.to_tag), ("127.0.0.1", self.server_port))
        return self.ended.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self.sip, self.rtp, self.advertised):
            if s is not None:
                s.close()

    # ------------------------------------------------------------------------------------------ RTP

    def key(self, digits: str) -> None:
        """Queue RFC 4733 digits; they go out in the RTP stream, 160 ms each with 100 ms between."""
        self._digits.extend(digits)

    def keyed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._digits and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.25)  # the last digit's end packets

    def _send_rtp(self) -> None:
        assert self.remote_rtp is not None
        seq, ts, t_next = 1, 0, time.monotonic()
        digit, sent, gap = "", 0, 0
        while not self._stop.is_set() and not self.ended.is_set():
            if not digit and gap == 0 and self._digits:
                digit, sent, event_ts = self._digits.popleft(), 0, ts
            if digit:
                sent += 1
                end = sent > 8
                pkt = rtp_packet(seq, event_ts, self.ssrc, EVENT_PT,
                                 event_payload(digit, 160 * min(sent, 8), end), marker=sent == 1)
                if sent == 11:  # 8 updates, then the end packet three times (RFC 4733 2.5.1.4)
                    digit, gap = "", 5
            else:
                pkt = rtp_packet(seq, ts, self.ssrc, PCMU, SILENCE)
                gap = max(0, gap - 1)
            try:
                self.rtp.sendto(pkt, self.remote_rtp)
            except OSError:
                pass
            seq += 1
            ts += 160
            t_next += FRAME_S
            time.sleep(max(0.0, t_next - time.monotonic()))

    def _receive_rtp(self) -> None:
        _drain(self.rtp, self.heard, self._stop)

    def _drain_advertised(self) -> None:
        if self.advertised is not None:
            _drain(self.advertised, self.heard_advertised, self._stop)

    def wait_speech(self, limit_s: float) -> bool:
        """Wait until the agent starts saying something new (``limit_s`` at most)."""
        start = time.monotonic()
        loud_before = self.heard.loud_frames
        while time.monotonic() - start < limit_s and not self.ended.is_set():
            if self.heard.loud_frames > loud_before:
                return True
            time.sleep(0.02)
        return False

    def wait_prompt(self, limit_s: float, quiet_s: float = 0.8) -> bool:
        """Wait until the agent has spoken and then been quiet ``quiet_s`` (``limit_s`` at most)."""
        start = time.monotonic()
        loud_before = self.heard.loud_frames
        while time.monotonic() - start < limit_s and not self.ended.is_set():
            spoke = self.heard.loud_frames > loud_before
            if spoke and time.monotonic() - self.heard.last_loud >= quiet_s:
                return True
            time.sleep(0.05)
        return False


def _drain(sock: socket.socket, heard: Heard, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        except OSError:  # ICMP port unreachable from a peer that is gone, or the socket closed
            if stop.is_set():
                return
            continue
        if len(data) < 12:
            continue
        heard.packets += 1
        heard.sources.add(addr)
        if data[1] & 0x7F == PCMU:
            pcm = ulaw_decode(data[12:]).astype(np.float64)
            if len(pcm) and float(np.sqrt(np.mean(pcm * pcm))) > LOUD_RMS:
                heard.loud_frames += 1
                heard.last_loud = time.monotonic()


class Stranger:
    """Someone who is not in the call, sending RTP to its port from 127.0.0.1 (another port)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock_name: tuple[str, int] = self.sock.getsockname()
        self.heard = Heard()
        self.ssrc = int.from_bytes(uuid.uuid4().bytes[:4], "big")
        self.sent = 0

    def inject(self, target: tuple[str, int], digit: str, hold_s: float) -> Heard:
        """Take the stream over and key ``digit``: 20 packets back to back (pjmedia switches at the 10th),
        the digit's events, then audio every 2 ms for ``hold_s`` (ten times the caller's rate, so the caller
        never gets the ten in a row it would need to switch back) while listening for what comes back."""
        stop = threading.Event()
        listener = threading.Thread(target=_drain, args=(self.sock, self.heard, stop), daemon=True)
        listener.start()
        seq, ts = 1000, 80000
        try:
            for _ in range(20):
                self._send(target, rtp_packet(seq, ts, self.ssrc, PCMU, SILENCE))
                seq, ts = seq + 1, ts + 160
            for n in range(1, 12):
                payload = event_payload(digit, 160 * min(n, 8), end=n > 8)
                self._send(target, rtp_packet(seq, ts, self.ssrc, EVENT_PT, payload, marker=n == 1))
                seq += 1
                time.sleep(0.002)
            ts += 160 * 8
            end = time.monotonic() + hold_s
            while time.monotonic() < end:
                self._send(target, rtp_packet(seq, ts, self.ssrc, PCMU, SILENCE))
                seq, ts = seq + 1, ts + 16
                time.sleep(0.002)
        finally:
            stop.set()
            listener.join(1)
        return self.heard

    def _send(self, target: tuple[str, int], pkt: bytes) -> None:
        try:
            self.sock.sendto(pkt, target)
            self.sent += 1
        except OSError:  # ICMP port unreachable for an earlier packet: the port takes nothing from us
            pass

    def close(self) -> None:
        self.sock.close()
