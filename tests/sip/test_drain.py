"""SIGTERM drains `voiceivr serve` behind Kamailio (sip.drain_timeout_s): new calls and OPTIONS get 503 at once,
a call that ends within the drain time goes on to its end, one that does not is hung up at the drain time, and then
serve exits by itself."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.sip import siptools
from tests.sip.test_sip_serve import write_prompt
from tests.support.wait import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("kamailio") is None, reason="Kamailio is not installed (scripts/test installs it)"),
]

DRAIN_S = 4.0


def place(port: int, count: int, seconds: float, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([siptools.PY, "-m", "voiceivr.cluster.caller", f"sip:ivr@127.0.0.1:{port}", str(count),
                             str(seconds), "--bind", "127.0.0.1"], env=env, cwd=siptools.ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def reports(proc: subprocess.Popen[bytes], timeout: float = 60) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=timeout)
    return [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]


def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    prompt = write_prompt(tmp_path / "long.wav", 30.0)
    with siptools.serve(tmp_path, workers=1, kamailio="yes", VIVR_TEST_PROMPT=str(prompt),
                        VOICEIVR_SIP_DRAIN_TIMEOUT_S=str(DRAIN_S)) as ivr:
        short = place(ivr.port, 1, 3.0, ivr.env)
        long = place(ivr.port, 1, 30.0, ivr.env)
        try:
            assert wait_until(lambda: ivr.log().count("incoming call") >= 2, timeout=8.0)
            ivr.proc.send_signal(signal.SIGTERM)
            termed = time.time()
            # The node says at once that it takes no calls: OPTIONS (a front dispatcher's ping) and INVITE get 503.
            assert wait_until(lambda: ivr.probe.options(ivr.port, 0.5) == 503, timeout=2.0)
            call_id = uuid.uuid4().hex
            ivr.probe.send(siptools.invite_msg(ivr.port, ivr.probe.port, call_id=call_id), ivr.port)
            assert 503 in ivr.probe.answers_for(call_id, 3.0)
            short_done, long_done = reports(short), reports(long)
            exit_code = ivr.proc.wait(DRAIN_S + 15)
            exited = time.time()
        finally:
            for proc in (short, long):
                if proc.poll() is None:
                    proc.kill()
    (s,), (lg,) = short_done, long_done
    # The short call went to its end (the caller hung up at 3 s), undisturbed by the drain.
    assert s["answered"] and s["by"] == "caller" and s["ended_at"] - s["answered_at"] >= 2.9, s
    # The long one was hung up by the node when the drain time was up, not before.
    assert lg["answered"] and lg["by"] == "far end", lg
    assert DRAIN_S - 0.5 <= lg["ended_at"] - termed <= DRAIN_S + 3.0, (lg, termed)
    assert exit_code == 0 and exited - termed <= DRAIN_S + 10.0
    log = ivr.log()
    assert "worker draining" in log and "drain time is up: hanging up" in log
