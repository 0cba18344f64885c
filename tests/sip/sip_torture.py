"""Fire the 49 RFC 4475 torture messages (../shared/sip-torture) at a SIP server on 127.0.0.1.

Each .dat goes out unchanged as one UDP datagram, or over a TCP connection when its top Via says TCP/TLS
(the answer then comes back on that connection). UDP answers go where RFC 3261 18.2.2 says: to the source
address (``received``) and the Via's port, 5060 when it names none. So the harness sends from, and listens
on, port 5060 (and 5050 for quotbal.dat) of a random 127.x.y.z address: still loopback, and no clash with
anything bound to 127.0.0.1:5060 or with a parallel run. After every message a plain OPTIONS (with rport)
must get 200: the server is alive. INVITEs that get a 2xx are ACKed and hung up with BYE, and their SDP
media address is moved onto loopback (see ``fire``), so nothing is ever sent off this machine (the servers
under test also resolve names only through a nameserver on 127.0.0.1, i.e. not at all).
"""

from __future__ import annotations

import csv
import random
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.sip.siptools import UdpProbe, status_of

TORTURE_DIR = Path(__file__).resolve().parents[3] / "shared" / "sip-torture"
TCP_VIA = re.compile(rb"^(?:Via|v)\s*:\s*SIP\s*/\s*2\.0\s*/\s*(TCP|TLS)", re.I | re.M)


def torture_dir() -> Path:
    for candidate in (TORTURE_DIR, Path("/work/shared/sip-torture")):
        if (candidate / "expected.tsv").exists():
            return candidate
    raise FileNotFoundError("../shared/sip-torture/expected.tsv not found")


@dataclass
class Expectation:
    file: str
    section: str
    valid: str
    expected: str
    notes: str


def expectations() -> list[Expectation]:
    with (torture_dir() / "expected.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Expectation(r["file"], r["section"], r["valid"], r["expected"], r.get("notes", "")) for r in rows]


def matches(expected: str, final: int | None) -> bool:
    """Does the final answer (None: nothing came back) satisfy expected.tsv's value?"""
    for option in expected.split("-or-"):
        if option == "accept" and final is not None and final != 400:
            return True
        if option == "drop" and final is None:
            return True
        if option == "4xx" and final is not None and 400 <= final < 500:
            return True
        if option.isdigit() and final == int(option):
            return True
    return False


@dataclass
class Outcome:
    file: str
    expected: str
    transport: str
    answers: list[int] = field(default_factory=list)
    alive: bool = True

    @property
    def final(self) -> int | None:
        finals = [a for a in self.answers if a >= 200]
        return finals[0] if finals else None

    @property
    def ok(self) -> bool:
        return matches(self.expected, self.final)


class TortureHarness:
    def __init__(self, server_port: int, tcp: bool = True) -> None:
        self.server_port = server_port
        self.tcp = tcp
        self.host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.udp = UdpProbe(5060, self.host)
        self.udp5050 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp5050.bind((self.host, 5050))
        self.probe = UdpProbe()
        self.bye_answers: list[tuple[str, int | None]] = []  # (Call-ID, final answer to our BYE)

    def close(self) -> None:
        self.udp.close()
        self.udp5050.close()
        self.probe.close()

    def _collect(self, raw: bytes, timeout: float) -> list[bytes]:
        # An answer is ours if it names our Call-ID, or (insuf.dat has none) our CSeq.
        call_id = _call_id(raw)
        key = call_id or (b"CSeq: " + _header(raw, b"CSeq") if raw else None)
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        for sock in (self.udp.sock, self.udp5050):
            sock.setblocking(False)
        while time.monotonic() < deadline:
            for sock in (self.udp.sock, self.udp5050):
                try:
                    while True:
                        data = sock.recv(65535)
                        if key is None or key in data:
                            got.append(data)
                except BlockingIOError:
                    pass
            if any((status_of(d) or 0) >= 200 for d in got):
                break
            time.sleep(0.02)
        return got

    def _tcp(self, raw: bytes, timeout: float) -> list[bytes]:
        got: list[bytes] = []
        with socket.create_connection(("127.0.0.1", self.server_port), timeout=timeout) as conn:
            conn.sendall(raw)
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                conn.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65535)
                except (TimeoutError, ConnectionResetError):
                    break
                if not chunk:
                    break
                buf += chunk
                got = [part for part in re.split(rb"(?=^SIP/2\.0 \d{3} )", buf, flags=re.M) if part]
                if any((status_of(d) or 0) >= 200 for d in got):
                    break
        return got

    def fire(self, exp: Expectation, wait: float = 1.5) -> Outcome:
        # The one change to the bytes: SDP media addresses 192.0.2.x (TEST-NET-1) become 127.0.0.x, the
        # same length, so an accepted INVITE's RTP stays on this machine.
        raw = (torture_dir() / exp.file).read_bytes().replace(b"c=IN IP4 192.0.2.", b"c=IN IP4 127.0.0.")
        transport = "tcp" if (self.tcp and TCP_VIA.search(raw)) else "udp"
        if transport == "tcp":
            answers = self._tcp(raw, wait * 2)
        else:
            self.udp.sock.sendto(raw, ("127.0.0.1", self.server_port))
            answers = self._collect(raw, wait)
        outcome = Outcome(exp.file, exp.expected, transport)
        for data in answers:
            code = status_of(data)
            if code is not None:
                outcome.answers.append(code)
            if code is not None and 200 <= code < 300 and raw.startswith(b"INVITE"):
                self._ack_and_bye(data)
        outcome.alive = self.probe.options(self.server_port, 3.0) == 200
        return outcome

    def _ack_and_bye(self, response: bytes) -> None:
        """End a call a torture INVITE started, so the server stops retransmitting its 200."""
        call_id = _header(response, b"Call-ID") or _header(response, b"i")
        from_ = _header(response, b"From") or _header(response, b"f")
        to = _header(response, b"To") or _header(response, b"t")
        cseq = (_header(response, b"CSeq").split() or [b"1"])[0]
        contact = re.search(rb"<([^>]+)>", _header(response, b"Contact") or _header(response, b"m"))
        target = contact.group(1) if contact else f"sip:ivr@127.0.0.1:{self.server_port}".encode()
        # Through Kamailio the dialog has a route set (Record-Route): in-dialog requests follow it.
        rr = _header(response, b"Record-Route")
        route = b"Route: " + rr + b"\r\n" if rr else b""
        for method, num in ((b"ACK", cseq), (b"BYE", str(int(cseq) + 1).encode())):
            msg = (method + b" " + target + b" SIP/2.0\r\nVia: SIP/2.0/UDP " + f"{self.host}:5060".encode()
                   + b";rport;branch=z9hG4bK" + uuid.uuid4().hex[:12].encode() + b"\r\nMax-Forwards: 70\r\n" + route
                   + b"From: " + from_ + b"\r\nTo: " + to + b"\r\nCall-ID: " + call_id + b"\r\nCSeq: " + num + b" "
                   + method + b"\r\nContent-Length: 0\r\n\r\n")
            self.udp.sock.sendto(msg, ("127.0.0.1", self.server_port))
            if method == b"BYE":
                codes = [status_of(d) for d in self._collect(msg, 2.0) if b"BYE" in _header(d, b"CSeq")]
                self.bye_answers.append((call_id.decode(errors="replace"), max((c or 0) for c in codes)
                                         if codes else None))


def _header(msg: bytes, name: bytes) -> bytes:
    m = re.search(rb"^" + re.escape(name) + rb"\s*:\s*(.*?)\r?$", msg, re.I | re.M)
    return m.group(1).strip() if m else b""


def _call_id(raw: bytes) -> bytes | None:
    head = raw.split(b"\r\n\r\n", 1)[0]  # dblreq.dat carries a second message after its own
    value = _header(head, b"Call-ID") or _header(head, b"i")
    return value or None


def branch_key(exp: Expectation) -> tuple[bytes, bytes]:
    raw = (torture_dir() / exp.file).read_bytes()
    branch = re.search(rb"branch=([^;,\s]+)", raw)
    return (branch.group(1) if branch else b"", raw.split(b" ", 1)[0])


def rounds(exps: list[Expectation]) -> list[list[Expectation]]:
    """Split the messages so that no round has two with the same top-Via branch and method.

    Many RFC 4475 messages reuse ``branch=z9hG4bKkdjuw``; pjsip keys its transactions on branch and method
    alone and keeps a finished one for 32 s, so a second message with the same pair is taken for a
    retransmission and gets the first one's cached answer. Each round runs against a fresh server.
    """
    out: list[list[Expectation]] = []
    keys: list[set[tuple[bytes, bytes]]] = []
    for exp in exps:
        key = branch_key(exp)
        for i, used in enumerate(keys):
            if key not in used:
                used.add(key)
                out[i].append(exp)
                break
        else:
            keys.append({key})
            out.append([exp])
    return out
