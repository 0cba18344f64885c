"""Recordings: the frame-gap histogram and the stereo WAV + JSON a call leaves behind."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from voiceivr.call.secrecy import SecretInput
from voiceivr.telephony.recording import FORMAT, CallRecording, FrameGaps, RecordingWriter


def test_frame_gap_percentiles() -> None:
    gaps = FrameGaps()
    for _ in range(95):
        gaps.add(0.020)
    for _ in range(5):
        gaps.add(0.090)
    gaps.add(2.5)  # beyond the last bin
    s = gaps.summary()
    assert s["frames"] == 101 and 19.9 < s["median_ms"] < 20.4
    assert s["over_40ms"] == 6 and s["max_ms"] == 2500.0 and s["p99_ms"] >= 90
    empty = FrameGaps().summary()
    assert empty["frames"] == 0 and empty["median_ms"] == 0.0


def test_recording_is_stereo_caller_left_agent_right(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path, "call-1", 8000, {"sip_call_id": "abc"})
    writer = RecordingWriter(interval_s=0.05)
    writer.add(rec)
    caller = np.full(160, 1000, dtype="<i2").tobytes()
    agent = np.full(160, -2000, dtype="<i2").tobytes()
    for i in range(50):
        rec.caller_frame(caller)
        if i < 45:  # the agent side lags a few frames: padded with silence at the end
            rec.agent_frame(agent)
        if i == 10:
            rec.event("dtmf", digit="5", method="rfc4733")
    rec.finish(hangup={"by": "caller", "status": 200, "reason": "bye"})
    writer.close()
    doc = json.loads(rec.json_path.read_text())
    assert doc["format"] == FORMAT and doc["channels"] == ["caller", "agent"] and doc["duration_s"] == 1.0
    assert doc["events"][0]["t"] == 0.22 and doc["events"][0]["digit"] == "5"
    assert doc["hangup"]["by"] == "caller" and doc["sip"]["sip_call_id"] == "abc"
    with wave.open(str(rec.wav_path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 8000)
        pcm = np.frombuffer(w.readframes(8000), dtype="<i2").reshape(-1, 2)
    assert (pcm[:, 0] == 1000).all()
    assert (pcm[: 45 * 160, 1] == -2000).all() and (pcm[45 * 160:, 1] == 0).all()
    assert oct(rec.wav_path.stat().st_mode & 0o777) == "0o600"


def test_secret_input_pauses_the_recording_without_losing_time(tmp_path: Path) -> None:
    """While the call's secret input is active the caller channel is recorded as silence, frame for frame, and a key
    press without its digit. A key the session took as secret after the SIP thread had written it down (typed
    ahead of the question) and a key no session ever saw lose their digit too; # stays readable."""
    secret = SecretInput()
    rec = CallRecording(tmp_path, "call-2", 8000, {}, secret=secret)
    voice = np.full(160, 1000, dtype="<i2").tobytes()
    verdicts = [True, True, True, False, False]  # what the session decided as each key reached it, in order
    for i in range(100):
        secret.active = 40 <= i < 70
        if i == 35:
            rec.dtmf("7", "rfc4733")  # keyed ahead: the session has not started listening for the PIN yet
        if i in (45, 50, 55):
            rec.dtmf("2" if i < 55 else "#", "rfc4733")
        if i == 80:
            rec.dtmf("5", "rfc4733")  # a menu choice after the PIN, kept
        if i == 90:
            rec.dtmf("9", "sip-info", delivered=False)  # never reached a session: nothing says it was not secret
        rec.caller_frame(voice)
        rec.agent_frame(bytes(320))
    for verdict in verdicts:
        secret.key_handled(verdict)
    rec.finish()
    rec.flush(final=True)
    doc = json.loads(rec.json_path.read_text())
    keys = [(e["t"], e.get("digit"), e.get("secret", False)) for e in doc["events"] if e["type"] == "dtmf"]
    assert keys == [(0.7, None, True), (0.9, None, True), (1.0, None, True), (1.1, "#", False), (1.6, "5", False),
                    (1.8, None, True)]
    assert doc["secret_spans"] == [[0.8, 1.4]] and doc["duration_s"] == 2.0
    with wave.open(str(rec.wav_path), "rb") as w:
        caller = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
    assert len(caller) == 100 * 160  # the pause costs no time: a replay stays aligned
    assert (caller[40 * 160:70 * 160] == 0).all()
    assert (caller[:40 * 160] == 1000).all() and (caller[70 * 160:] == 1000).all()
