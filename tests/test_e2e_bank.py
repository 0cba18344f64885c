"""End to end over 127.0.0.1: the bank demo by phone through `voiceivr serve` with the real call session.

The real pieces only: `voiceivr serve` (pjsua2 worker, Silero VAD, pocketsphinx, espeak-ng, dialplans/bank.yaml,
the safe path) on an SQLite database set up by the CLI as `scripts/serve` does, the test caller
(voiceivr/sim/callers/sip/, its own pjsua2 endpoint in tests/sip/sip_script_caller.py) speaking recorded
telephone phrases and keying DTMF, and the local stand-in for Twilio's Messages API that carries the one-time
code. Timings are read off the audio at the caller.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sip import siptools
from voiceivr.sim.abuse.secret_at_rest import found
from voiceivr.sim.twilio_fake import FakeTwilio

PHRASES = siptools.ROOT / "tests" / "fixtures" / "audio" / "phrases"
ALICE_PHONE = "+15555550101"

pytestmark = pytest.mark.slow  # real SIP, real speech models: deselected by scripts/test --fast


def phrase(intent: str, voice: str = "espeak-us") -> str:
    return str(PHRASES / f"{intent}__{voice}__tel.wav")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[siptools.Served, FakeTwilio]]:
    tmp = tmp_path_factory.mktemp("bank")
    with FakeTwilio() as sms:
        env_extra = {
            "VOICEIVR_SIP_HANDLER": "voiceivr.live:handler_factory",
            "VOICEIVR_PLUGINS_ENABLED": "demo",  # the demo bank, live, as scripts/serve runs it
            "VOICEIVR_DIALPLAN_LIVE_NAME": "bank",
            "VOICEIVR_POLICY_TWILIO_ACCOUNT_SID": sms.account_sid,
            "VOICEIVR_POLICY_TWILIO_AUTH_TOKEN": sms.auth_token,
            "VOICEIVR_POLICY_TWILIO_BASE_URL": sms.base_url,
            "VOICEIVR_POLICY_SMS_FROM": "+15550100000",
            "VOICEIVR_AUDIT_CHECKPOINT_EVERY_S": "1",  # the worker signs the call's rows within a second
        }
        env = siptools.base_env(tmp, **env_extra)
        for args in (["db", "upgrade"], ["demo", "seed"], ["dialplan", "publish", "dialplans/bank.yaml"]):
            done = subprocess.run([siptools.PY, "-m", "voiceivr", *args], env=env, cwd=siptools.ROOT,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"voiceivr {' '.join(args)}:\n{done.stderr[-2000:]}"
        with siptools.serve(tmp, workers=1, kamailio="no", timeout=60.0, **env_extra) as ivr:
            yield ivr, sms


def place(ivr: siptools.Served, steps: list[list[Any]], **spec: Any) -> dict[str, Any]:
    doc = {"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "steps": steps, **spec}
    lines = siptools.run_json_lines([siptools.PY, str(siptools.SIP_SCRIPTS / "sip_script_caller.py"), json.dumps(doc)],
                                    ivr.env, timeout=240)
    return lines[-1]


def db_rows(ivr: siptools.Served, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(ivr.var / "voiceivr.sqlite3")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def recording(ivr: siptools.Served, call_id: str, timeout: float = 10.0) -> tuple[dict[str, Any], np.ndarray]:
    """The call's recording JSON and the caller channel of its WAV (the JSON is written just after the call)."""
    deadline = time.monotonic() + timeout
    while not (found_json := list((ivr.var / "recordings").glob(f"*/{call_id}.json"))):
        assert time.monotonic() < deadline, f"no recording of {call_id}"
        time.sleep(0.2)
    doc = json.loads(found_json[0].read_text())
    with wave.open(str(found_json[0].with_name(doc["wav"])), "rb") as w:
        caller = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
    return doc, caller


def test_bank_demo_by_phone(bank: tuple[siptools.Served, FakeTwilio], tmp_path: Path) -> None:
    ivr, sms = bank
    api = {"base_url": sms.base_url, "sid": sms.account_sid, "token": sms.auth_token, "to": ALICE_PHONE}
    heard = tmp_path / "heard.wav"
    report = place(ivr, [
        ["wait", 20],                                   # greeting and main menu
        ["play", phrase("check_balance")], ["wait", 10],  # "what's my balance" -> account number?
        ["dtmf", "10000001#"], ["wait", 10],            # -> PIN?
        ["dtmf", "1234#"], ["wait", 10],                # -> "Thank you, Alice Martin." which account?
        ["dtmf", "1"], ["wait", 15],                    # -> balance read back, anything else?
        # piper's "transfer money": of 16 lead-in trims on the menu grammar it decodes 16 right, espeak-us 15
        ["play", phrase("transfer", "piper-joe")], ["wait", 10],  # -> how much?
        ["dtmf", "5000#"], ["wait", 10],                # fifty dollars -> to which account?
        ["dtmf", "2"], ["wait", 10],                    # savings -> from which account?
        ["dtmf", "1"], ["wait", 15],                    # checking -> read back, "is that right?"
        ["play", phrase("yes")], ["wait", 15],          # -> text or app?
        ["dtmf", "1"], ["wait", 15],                    # text -> "I've sent a code..."
        ["sms_code", api, "#"], ["wait", 15],           # the code off the phone -> "Done. The reference is..."
        ["play", phrase("goodbye")], ["wait", 10],
    ], duration=2.0, record=str(heard), transcribe=True)

    assert report["answered"] and not report["error"], report
    assert heard.exists() and report["transcript"]
    # Free-speech pocketsphinx on 8 kHz espeak is rough ("welcome to acme bank" comes out garbled), but the
    # longer prompts come through: the main menu, the balance, the questions of the transfer.
    transcript = report["transcript"].lower()
    expected = ("you can ask about opening", "dollar", "how much would you like", "anything", "checking account")
    assert sum(e in transcript for e in expected) >= 3, transcript

    call_id = db_rows(ivr, "select id from calls order by started_at desc limit 1")[0][0]
    runs = {t: (s, r) for t, s, r in db_rows(
        ivr, f"select action_type, status, result_json from action_runs where call_id = '{call_id}'")}
    assert runs.get("login", ("",))[0] == "succeeded", runs
    assert runs.get("get_balance", ("",))[0] == "succeeded", runs
    assert json.loads(runs["get_balance"][1] or "{}").get("balance"), runs
    assert runs.get("transfer_funds", ("",))[0] == "succeeded", runs
    assert json.loads(runs["transfer_funds"][1] or "{}").get("reference"), runs
    assert len(sms.messages) >= 1 and sms.messages[-1].to == ALICE_PHONE

    # What the call left behind holds neither the PIN nor the code it keyed (docs/recordings.md).
    code = re.search(r"code (\d+)", sms.messages[-1].body).group(1)  # type: ignore[union-attr]
    doc, _ = recording(ivr, call_id)
    turns = db_rows(ivr, f"select input_kind, transcript from turns where call_id = '{call_id}' order by idx")
    assert ("dtmf", "10000001") in turns and turns.count(("dtmf", "[secret]")) == 2, turns
    masked = [e for e in doc["events"] if e["type"] == "dtmf" and e.get("secret")]
    assert len(masked) == 4 + len(code) and not any("digit" in e for e in masked), doc["events"]
    for secret in ("1234", code):
        assert not found(secret, doc) and not found(secret, [list(t) for t in turns]), secret

    # The worker keyed the call's audit rows and checkpointed them on its own, outside the database.
    checkpoints = ivr.var / "audit-checkpoints.jsonl"
    deadline = time.monotonic() + 10
    while not checkpoints.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    done = subprocess.run([siptools.PY, "-m", "voiceivr", "audit", "verify"], env=ivr.env, cwd=siptools.ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "intact" in done.stdout and "checkpoint(s)" in done.stdout, done.stderr

    # What the caller heard, turn by turn: an answer after each thing said, in well under a second.
    v2v = [t["voice_to_voice_s"] for t in report["turns"] if "voice_to_voice_s" in t]
    assert len(v2v) >= 3, report["turns"]
    assert max(v2v) < 1.5, report["turns"]
    assert ivr.alive()


def test_caller_talks_over_a_long_prompt_and_the_agent_stops(bank: tuple[siptools.Served, FakeTwilio]) -> None:
    ivr, _ = bank
    report = place(ivr, [
        ["wait", 20],
        ["play", phrase("opening_hours")],         # -> the hours, then "anything else?"
        ["barge", phrase("check_balance", "espeak-gb"), 1.5],  # talk over the answer mid-word
        ["wait", 10],
    ], duration=1.0)
    assert report["answered"] and not report["error"], report
    barge = [t for t in report["turns"] if "barge_in_stop_s" in t]
    assert barge, report
    assert barge[0]["barge_in_stop_s"] <= 0.150, report["turns"]
    assert ivr.alive()


def test_a_pin_said_aloud_is_not_recorded(bank: tuple[siptools.Served, FakeTwilio]) -> None:
    """The caller says the PIN ("one two three four"): it logs them in, but the recording's caller channel is silence
    from the question for the PIN until the answer was taken, with no time lost, and the turn says [secret]."""
    ivr, _ = bank
    report = place(ivr, [
        ["wait", 20], ["play", phrase("check_balance")], ["wait", 10],
        ["dtmf", "10000001#"], ["wait", 10],            # -> PIN?
        ["play", phrase("digits")], ["wait", 10],        # "one two three four" -> which account?
        ["play", phrase("goodbye")], ["wait", 10],
    ], duration=1.0)
    assert report["answered"] and not report["error"], report
    call_id, started = db_rows(ivr, "select id, started_at from calls order by started_at desc limit 1")[0]
    runs = db_rows(ivr, f"select action_type, status from action_runs where call_id = '{call_id}'")
    assert ("login", "succeeded") in runs, runs
    turns = db_rows(ivr, f"select input_kind, transcript, started_at from turns where call_id = '{call_id}' "
                         "order by idx")
    said = [t for t in turns if t[:2] == ("speech", "[secret]")]
    assert len(said) == 1, turns
    doc, caller = recording(ivr, call_id)
    spans = doc["secret_spans"]
    assert len(spans) == 1 and all(not np.any(caller[int(a * 8000):int(b * 8000)]) for a, b in spans), spans
    # The session's clock and the recording's both count the call's media frames: the answer is inside the pause.
    at = (dt.datetime.fromisoformat(said[0][2]) - dt.datetime.fromisoformat(started)).total_seconds()
    assert spans[0][0] < at < spans[0][1], (at, spans)
    assert np.abs(caller[: int(spans[0][0] * 8000)]).max() > 1000  # "check my balance" before it is kept
    assert abs(len(caller) / 8000 - doc["duration_s"]) < 0.05
    assert ivr.alive()


BOB_ACCOUNT, BOB_PIN, BOB_PHONE = "20000001", "4321", "+15555550102"


@pytest.fixture(scope="module")
def http_bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[siptools.Served, FakeTwilio, Any]]:
    """`voiceivr serve` with no plugin at all: every action and the caller's identity come from the backends file,
    served by the example backend (voiceivr/demo/backend.py) on 127.0.0.1, which checks every signature."""
    from voiceivr.demo import backend as demo_backend

    tmp = tmp_path_factory.mktemp("http-bank")
    secret = secrets.token_hex(32)
    server, books = demo_backend.make_server(secret.encode(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backends = tmp / "bank_http.backends.yaml"
    text = (siptools.ROOT / "dialplans" / "bank_http.backends.yaml").read_text()
    assert "http://127.0.0.1:8099" in text
    backends.write_text(text.replace("http://127.0.0.1:8099", f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        with FakeTwilio() as sms:
            env_extra = {
                "VOICEIVR_SIP_HANDLER": "voiceivr.live:handler_factory",
                "VOICEIVR_PLUGINS_ENABLED": "",
                "VOICEIVR_PLUGINS_BACKENDS": str(backends),
                "VOICEIVR_DEMO_BACKEND_SECRET": secret,
                "VOICEIVR_DIALPLAN_LIVE_NAME": "bank_http",
                "VOICEIVR_POLICY_TWILIO_ACCOUNT_SID": sms.account_sid,
                "VOICEIVR_POLICY_TWILIO_AUTH_TOKEN": sms.auth_token,
                "VOICEIVR_POLICY_TWILIO_BASE_URL": sms.base_url,
                "VOICEIVR_POLICY_SMS_FROM": "+15550100000",
            }
            env = siptools.base_env(tmp, **env_extra)
            for args in (["db", "upgrade"], ["backend", "check", str(backends)],
                         ["dialplan", "publish", "dialplans/bank_http.yaml"]):
                done = subprocess.run([siptools.PY, "-m", "voiceivr", *args], env=env, cwd=siptools.ROOT,
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, f"voiceivr {' '.join(args)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            with siptools.serve(tmp, workers=1, kamailio="no", timeout=60.0, **env_extra) as ivr:
                yield ivr, sms, books
    finally:
        server.shutdown()
        server.server_close()


def test_bank_over_signed_webhooks_by_phone(http_bank: tuple[siptools.Served, FakeTwilio, Any]) -> None:
    """A login, a balance and a transfer with an SMS code by phone, every step answered by the contact centre's own
    HTTP service: the PIN it checks, the phone on file it names, the transfer it makes once."""
    ivr, sms, books = http_bank
    api = {"base_url": sms.base_url, "sid": sms.account_sid, "token": sms.auth_token, "to": BOB_PHONE}
    report = place(ivr, [
        ["wait", 20],                                   # greeting and main menu
        ["play", phrase("check_balance")], ["wait", 10],  # -> account number?
        ["dtmf", f"{BOB_ACCOUNT}#"], ["wait", 10],      # -> PIN?
        ["dtmf", f"{BOB_PIN}#"], ["wait", 10],          # the backend checks it -> which account?
        ["dtmf", "1"], ["wait", 15],                    # checking -> the backend's balance, anything else?
        # The rest on the keypad: this test is about the backend; what speech gets right is the test above's.
        ["dtmf", "3"], ["wait", 10],                    # transfer -> how much?
        ["dtmf", "5000#"], ["wait", 10],                # fifty dollars -> to which account?
        ["dtmf", "2"], ["wait", 10],                    # savings -> from which account?
        ["dtmf", "1"], ["wait", 15],                    # checking -> read back, "is that right?"
        ["dtmf", "1"], ["wait", 15],                    # yes; Bob has no authenticator: the code goes by text
        ["sms_code", api, "#"], ["wait", 15],           # -> "Done. The reference is..."
        ["play", phrase("goodbye")], ["wait", 10],
    ], duration=2.0)
    assert report["answered"] and not report["error"], report

    call_id = db_rows(ivr, "select id from calls order by started_at desc limit 1")[0][0]
    runs = {t: (s, r) for t, s, r in db_rows(
        ivr, f"select action_type, status, result_json from action_runs where call_id = '{call_id}'")}
    assert runs.get("login", ("",))[0] == "succeeded", runs
    assert json.loads(runs["get_balance"][1] or "{}").get("balance") == 15_025, runs
    assert runs.get("transfer_funds", ("",))[0] == "succeeded", runs
    assert sms.messages and sms.messages[-1].to == BOB_PHONE  # the phone on file came from the backend's reply
    # The backend ran each request once (a signed request with a bad signature would have been refused there).
    assert books.executions and set(books.executions.values()) == {1}, books.executions
    checking, savings = (books.customers["c-1002"].accounts[k][1] for k in ("checking", "savings"))
    assert (checking, savings) == (15_025 - 5_000, 5_000)
    assert not found(BOB_PIN, [list(r) for r in db_rows(ivr, "select * from turns")])
    assert ivr.alive()
