"""Lifetimes of pjsua2 objects in a worker, over many calls: the crashes NOTES-pjsua2.md lists must not
happen. Call slots are reused (a stale Call must never hang up a newer call), ports are destroyed while
intact, and a worker stopped with calls up exits cleanly (no abort in libDestroy)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.sip import siptools

pytestmark = pytest.mark.slow


def test_reused_call_slots_and_clean_exit_with_calls_up(tmp_path: Path) -> None:
    port = siptools.free_udp_port()
    env = siptools.base_env(tmp_path)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([siptools.PY, "-m", "voiceivr", "serve-worker", "--host", "127.0.0.1",
                                   "--port", str(port), "--name", "lifetimes"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=log)
    try:
        assert worker.stdout is not None and worker.stdout.readline().startswith(b"READY")
        # 5 rounds of 4 concurrent calls from one caller process: every pjsua call slot (0-3) is reused on
        # both sides. Odd rounds end by the caller (after 0.6 s), even rounds by the IVR (key '#').
        for rounds, dtmf in ((3, ""), (2, "#")):
            out = subprocess.run([siptools.PY, str(siptools.SIP_SCRIPTS / "sip_multicall.py"),
                                  f"sip:ivr@127.0.0.1:{port}", "4", "0.6" if not dtmf else "6", dtmf, str(rounds)],
                                 env=env, cwd=siptools.ROOT, capture_output=True, timeout=90)
            reports = [json.loads(x) for x in out.stdout.decode().splitlines() if x.startswith("{")
                       and '"event"' not in x]
            assert len(reports) == 4 * rounds and all(r["answered"] for r in reports), out.stderr[-2000:]
            expected_by = "agent" if not dtmf else "far end"
            # A stale Call hanging up a newer call in its slot would show as an early far-end hangup.
            assert all(r["by"] == expected_by for r in reports), [(r["by"], r["lasted_s"]) for r in reports]
            if not dtmf:
                assert all(r["lasted_s"] >= 0.55 for r in reports)
        # Stop the worker while 2 calls are up: it hangs them up, destroys pjsua2 and exits 0.
        callers = [siptools.start_peer({"uri": f"sip:ivr@127.0.0.1:{port}", "steps": [["wait_end", 20]]}, env)
                   for _ in range(2)]
        for c in callers:
            siptools.read_json_line(c, 10)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        for c in callers:
            assert siptools.finish_peer(c, 20)["by"] == "far end"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text and "Assertion" not in text and "callback failed" not in text
    ended = text.count("call ended")
    assert ended == 4 * 5 + 2
    assert "media callback errors" not in text
