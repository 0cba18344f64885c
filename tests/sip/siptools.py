"""Helpers for the SIP tests: free ports, raw SIP over UDP, and running voiceivr/pjsua2 in subprocesses.

Every pjsua2 endpoint runs in a process of its own (``voiceivr serve`` and its workers, ``voiceivr call``,
``tests/sip/sip_peer.py``, ``tests/sip/sip_multicall.py``); the test process itself never loads pjsua2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The caller scripts run as subprocesses (sip_peer.py, sip_multicall.py, sip_script_caller.py) live next to this file.
SIP_SCRIPTS = Path(__file__).resolve().parent
PY = sys.executable


def free_udp_port() -> int:
    """A port of 127.0.0.1 free for UDP and for TCP too (serve listens on both with sip.tcp): a port the kernel
    gives out for UDP can be the local end of a TCP connection (a database client's), and serve then failed to
    start with "Address already in use" (the RFC 4475 test, 2026-12-06)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise AssertionError("no port of 127.0.0.1 free for both UDP and TCP in 50 tries")


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEIVR_") or k.startswith("VOICEIVR_TEST")}
    # This tree first; then whatever the suite put there (the stand-in of setup.cfg's entry points, if the
    # installed ones are stale: tests/support/entrypoints.py).
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT), *inherited]),
        "VOICEIVR_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEIVR_SIP_HANDLER": "tests.sip.sip_handlers:ScriptedIvr",
        "VIVR_TEST_OUT": str(tmp / "calls"),
        "VOICEIVR_CONFIG": str(tmp / "none.toml"),
        # Names in test messages (example.com...) must never reach a real resolver.
        "VOICEIVR_SIP_NAMESERVERS": "127.0.0.1",
        # Every test caller dials from 127.0.0.1, many calls at once and many in a row: the per-source limits
        # (tested in test_sip_admission.py) would refuse them.
        "VOICEIVR_SIP_SOURCE_MAX_CALLS": "0",
        "VOICEIVR_SIP_SOURCE_MAX_INVITES": "0",
        # A test ends serve with SIGTERM, often with calls still up: stop at once (tests/sip/test_drain.py drains).
        "VOICEIVR_SIP_DRAIN_TIMEOUT_S": "0",
    })
    (tmp / "none.toml").write_text("")
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------ raw SIP


def options_msg(port: int, local_port: int, call_id: str | None = None) -> bytes:
    call_id = call_id or uuid.uuid4().hex
    return (
        f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:ping@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def invite_msg(port: int, local_port: int, sdp_payloads: str = "0 8 101", call_id: str | None = None,
               extra_headers: str = "", rtpmaps: str = "101 telephone-event/8000") -> bytes:
    call_id = call_id or uuid.uuid4().hex
    maps = "".join(f"a=rtpmap:{m.strip()}\r\n" for m in rtpmaps.split(",") if m.strip())
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {local_port + 2} RTP/AVP {sdp_payloads}\r\n{maps}"
    )
    return (
        f"INVITE sip:ivr@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: \"Raw\" <sip:raw@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:ivr@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:raw@127.0.0.1:{local_port}>\r\n{extra_headers}"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


STATUS = re.compile(rb"^SIP/2\.0 (\d{3})")


def status_of(data: bytes) -> int | None:
    m = STATUS.match(data)
    return int(m.group(1)) if m else None


class UdpProbe:
    """A UDP socket on 127.0.0.1 that sends raw SIP and collects answers."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, port))
        self.port = int(self.sock.getsockname()[1])

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def recv_all(self, timeout: float) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except (TimeoutError, ConnectionRefusedError):
                return out
            out.append(data)

    def answers_for(self, call_id: str, timeout: float) -> list[int]:
        """Statuses of the answers whose Call-ID is ``call_id`` (other traffic is ignored)."""
        codes = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for data in self.recv_all(min(0.2, max(0.01, deadline - time.monotonic()))):
                if call_id.encode() in data:
                    code = status_of(data)
                    if code is not None:
                        codes.append(code)
            if codes and codes[-1] >= 200:
                return codes
        return codes

    def options(self, port: int, timeout: float = 2.0) -> int | None:
        """Send OPTIONS, retransmitting like a UA would (a flood may have filled the server's socket buffer)."""
        call_id = uuid.uuid4().hex
        msg = options_msg(port, self.port, call_id)
        deadline = time.monotonic() + timeout
        interval = 0.5
        while True:
            self.send(msg, port)
            codes = self.answers_for(call_id, min(interval, max(0.05, deadline - time.monotonic())))
            if codes or time.monotonic() >= deadline:
                return codes[-1] if codes else None
            interval *= 2

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------------------------------ processes


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    tmp: Path
    log_path: Path
    env: dict[str, str]
    probe: UdpProbe = field(default_factory=UdpProbe)

    @property
    def calls_dir(self) -> Path:
        return self.tmp / "calls"

    @property
    def var(self) -> Path:
        return self.tmp / "var"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return json.loads((self.var / "serve" / "state.json").read_text())

    def alive(self) -> bool:
        return self.proc.poll() is None and self.probe.options(self.port, 2.0) == 200

    def call_logs(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait for ``n`` finished calls' handler logs (tests/sip/sip_handlers.py writes them)."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.calls_dir.glob("*.json")) if self.calls_dir.exists() else []
            if len(files) >= n or time.monotonic() > deadline:
                return [json.loads(f.read_text()) for f in files]
            time.sleep(0.1)

    def call_log(self, sip_call_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The handler log of one finished call, by its SIP Call-ID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for log in self.call_logs(0, 0):
                if log["sip_call_id"] == sip_call_id:
                    return log
            time.sleep(0.1)
        raise AssertionError(f"no handler log for {sip_call_id}")


@contextmanager
def serve(tmp: Path, workers: int = 1, kamailio: str = "no", timeout: float = 25.0,
          **env_extra: str) -> Iterator[Served]:
    """``voiceivr serve`` on a free port of 127.0.0.1, stopped (SIGTERM) at the end. ``{port}`` in an
    environment value becomes that port."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    env = base_env(tmp, VOICEIVR_SIP_KAMAILIO=kamailio,
                   **{k: v.replace("{port}", str(port)) for k, v in env_extra.items()})
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([PY, "-m", "voiceivr", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(workers)], env=env, cwd=tmp, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(port=port, proc=proc, tmp=tmp, log_path=log_path, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"voiceivr serve exited ({proc.returncode}):\n{served.log()[-3000:]}")
            if b"serving SIP" in log_path.read_bytes() and served.probe.options(port, 0.5) == 200:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"voiceivr serve did not answer OPTIONS:\n{served.log()[-3000:]}")
            time.sleep(0.2)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        served.probe.close()


def run_json_lines(cmd: list[str], env: dict[str, str], timeout: float) -> list[dict[str, Any]]:
    result = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, cwd=ROOT)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"{cmd[:3]} printed no JSON (exit {result.returncode}):\n"
                             f"{result.stderr.decode(errors='replace')[-3000:]}")
    return lines


def peer(spec: dict[str, Any], env: dict[str, str], timeout: float = 40.0) -> list[dict[str, Any]]:
    return run_json_lines([PY, str(SIP_SCRIPTS / "sip_peer.py"), json.dumps(spec)], env, timeout)


def start_peer(spec: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PY, str(SIP_SCRIPTS / "sip_peer.py"), json.dumps(spec)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The next JSON line a peer prints (e.g. its "answered" event)."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"{"):
                return json.loads(line)
    raise AssertionError("peer printed nothing in time")


def finish_peer(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert lines, "peer printed no report"
    return lines[-1]


def voiceivr_call(args: list[str], env: dict[str, str], timeout: float = 40.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "voiceivr", "call", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def ack_and_bye(probe: UdpProbe, response: bytes, port: int) -> int | None:
    """End a call a raw INVITE started (ACK its 2xx, then BYE); returns the BYE's final answer."""
    def header(name: bytes) -> bytes:
        m = re.search(rb"^" + name + rb"\s*:\s*(.*?)\r?$", response, re.I | re.M)
        return m.group(1).strip() if m else b""

    cseq = int(header(b"CSeq").split()[0])
    call_id = header(b"Call-ID")
    for method, num in ((b"ACK", cseq), (b"BYE", cseq + 1)):
        probe.send(method + f" sip:ivr@127.0.0.1:{port} SIP/2.0\r\n".encode()
                   + f"Via: SIP/2.0/UDP 127.0.0.1:{probe.port};rport;branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n".encode()
                   + b"Max-Forwards: 70\r\nFrom: " + header(b"From") + b"\r\nTo: " + header(b"To")
                   + b"\r\nCall-ID: " + call_id + f"\r\nCSeq: {num} ".encode() + method
                   + b"\r\nContent-Length: 0\r\n\r\n", port)
    codes = probe.answers_for(call_id.decode(), 3.0)
    return codes[-1] if codes else None
