"""Recordings: the frame-gap histogram and the stereo WAV + JSON a call leaves behind."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

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
