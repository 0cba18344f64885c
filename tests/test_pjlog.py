"""pjsip's start-up lines (voiceivr/telephony/pjlog.py): printed by pjlib's own writer before ours is installed,
they used to land raw on every `voiceivr call` and worker start; now they go through the voiceivr.pjsip logger."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sip import siptools
from voiceivr.telephony.pjlog import log_startup_lines

# What pjlib 2.15.1 prints while libCreate runs (its default decoration: time, sender, indent).
STARTUP = """\
19:53:16.836         os_core_unix.c !pjlib 2.15.1 for POSIX initialized
19:53:16.836         sip_endpoint.c  .Creating endpoint instance...
19:53:16.836                  pjlib  .select() I/O Queue created (0x7f133000dac8)
19:53:16.836           pjsua_core.c  .PJSUA state changed: NULL --> CREATED

"""
RAW = re.compile(r"os_core_unix\.c|sip_endpoint\.c|pjsua_core\.c|^\d\d:\d\d:\d\d\.\d{3} ", re.M)


def test_startup_lines_are_parsed_into_debug_records(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="voiceivr.pjsip"):
        assert log_startup_lines(STARTUP) == 4
    records = [r for r in caplog.records if r.name == "voiceivr.pjsip"]
    messages = [r.getMessage() for r in records]
    assert messages[:2] == ["pjlib 2.15.1 for POSIX initialized", "Creating endpoint instance..."]
    assert messages[2].startswith("select() I/O Queue created (0x")  # its digits may be masked (logs.py)
    assert messages[3] == "PJSUA state changed: NULL --> CREATED" and len(messages) == 4
    assert {r.levelno for r in records} == {logging.DEBUG}
    assert [r.pj_sender for r in records][:2] == ["os_core_unix.c", "sip_endpoint.c"]  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, logger="voiceivr.pjsip"):
        assert log_startup_lines("an undecorated line\n") == 1
    assert caplog.records[-1].getMessage() == "an undecorated line"


@pytest.fixture
def busy_line() -> Iterator[int]:
    """A SIP peer on 127.0.0.1 that answers every INVITE with 486 Busy Here: a `voiceivr call` that ends at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if not data.startswith(b"INVITE "):
                continue
            head = {m.group(1).lower(): m.group(2) for m in re.finditer(rb"^([A-Za-z-]+):\s*(.*?)\r?$", data, re.M)}
            sock.sendto(b"SIP/2.0 486 Busy Here\r\nVia: " + head[b"via"] + b"\r\nFrom: " + head[b"from"]
                        + b"\r\nTo: " + head[b"to"] + b";tag=busy\r\nCall-ID: " + head[b"call-id"]
                        + b"\r\nCSeq: " + head[b"cseq"] + b"\r\nContent-Length: 0\r\n\r\n", addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


@pytest.mark.slow
def test_voiceivr_call_prints_no_raw_pjsip_lines(busy_line: int, tmp_path: Path) -> None:
    uri = f"sip:ivr@127.0.0.1:{busy_line}"
    env = siptools.base_env(tmp_path)
    done = siptools.voiceivr_call([uri, "--duration", "1", "--json"], env, timeout=60)
    assert json.loads(done.stdout)["hangup"]["status"] == 486  # stdout is the report and nothing else
    assert not RAW.search(done.stdout) and not RAW.search(done.stderr), done.stderr
    # At DEBUG the same lines are there, as records of the voiceivr.pjsip logger.
    debug = siptools.voiceivr_call([uri, "--duration", "1", "--json"], {**env, "VOICEIVR_LOG_LEVEL": "DEBUG"},
                                   timeout=60)
    assert "voiceivr.pjsip: pjlib 2.15.1 for POSIX initialized" in debug.stderr
    assert "voiceivr.pjsip: PJSUA state changed: NULL --> CREATED" in debug.stderr
    assert not RAW.search(debug.stdout)
