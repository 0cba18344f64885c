"""Call recordings: a stereo WAV (caller left, agent right) and a JSON file of what happened.

The pjsua2 clock thread hands every 20 ms frame of each direction to :meth:`CallRecording.caller_frame` and
:meth:`CallRecording.agent_frame`, which only append to a deque. A :class:`RecordingWriter` thread (one per
process, no pjsua2 object ever touches it) interleaves the two channels and appends them to the WAV every
few hundred milliseconds; Python's ``wave`` module rewrites the header after each append, so a worker that
dies mid-call still leaves a readable file. The JSON is written when the call ends. docs/recordings.md
describes both files for readers such as ``voiceivr replay``.

While the caller gives a secret (a PIN, a one-time code: the call's
:class:`~voiceivr.call.secrecy.SecretInput` is active) the recording pauses, PCI-style, without losing time: the
caller channel gets silence frame for frame, key presses are written without their digit, and the JSON lists
the paused spans (``secret_spans``) so a replay knows what it cannot hear.
"""

from __future__ import annotations

import array
import collections
import datetime as dt
import json
import logging
import os
import threading
import time
import wave
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS, bytes_per_frame
from voiceivr.call.secrecy import SecretInput, hides

FORMAT = "voiceivr-recording/1"
log = logging.getLogger(__name__)


class FrameGaps:
    """Intervals between consecutive outgoing-frame requests of one call: the media thread's pace.

    A histogram of 0.25 ms bins up to 250 ms (the last bin holds everything longer) keeps it O(1) per frame.
    """

    BIN_MS = 0.25
    BINS = 1001

    __slots__ = ("bins", "count", "max_ms", "over_40ms")

    def __init__(self) -> None:
        self.bins = array.array("L", bytes(self.BINS * array.array("L").itemsize))
        self.count = 0
        self.max_ms = 0.0
        self.over_40ms = 0

    def add(self, gap_s: float) -> None:
        ms = gap_s * 1000.0
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms
        if ms > 40.0:
            self.over_40ms += 1
        self.bins[min(int(ms / self.BIN_MS), self.BINS - 1)] += 1

    def merge(self, other: FrameGaps) -> None:
        for i, n in enumerate(other.bins):
            self.bins[i] += n
        self.count += other.count
        self.max_ms = max(self.max_ms, other.max_ms)
        self.over_40ms += other.over_40ms

    def percentile(self, q: float) -> float:
        """The gap (ms, bin centre; the maximum in the overflow bin) below which a fraction q of gaps fall."""
        if not self.count:
            return 0.0
        target = q * self.count
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if seen >= target:
                return self.max_ms if i == self.BINS - 1 else min((i + 0.5) * self.BIN_MS, self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float]:
        return {
            "frames": self.count,
            "median_ms": round(self.percentile(0.5), 2),
            "p95_ms": round(self.percentile(0.95), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "max_ms": round(self.max_ms, 2),
            "over_40ms": self.over_40ms,
        }


class CallRecording:
    """One call's recording. Frame methods are called from the media clock; the rest from anywhere."""

    def __init__(self, directory: Path, call_id: str, rate: int, sip: dict[str, Any],
                 secret: SecretInput | None = None) -> None:
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        self.directory = directory / day
        self.call_id = call_id
        self.rate = rate
        self.frame_bytes = bytes_per_frame(rate)
        self.wav_path = self.directory / f"{call_id}.wav"
        self.json_path = self.directory / f"{call_id}.json"
        self.sip = dict(sip)
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self._caller: collections.deque[bytes] = collections.deque()
        self._agent: collections.deque[bytes] = collections.deque()
        self.caller_frames = 0  # frames heard so far: the recording's clock
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._secret = secret  # the call's secret-input state (None: nothing is ever secret)
        self._silence = bytes(self.frame_bytes)
        self._spans: list[list[int]] = []  # [first frame, frame after the last] of each pause; -1: still open
        self._keys = 0  # key presses the call session was given so far
        self._clear_keys: list[tuple[int, dict[str, Any]]] = []  # (index, event) of digits written in clear
        self._wav: wave.Wave_write | None = None
        self._written = 0
        self.finished = False
        self.closed = False
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------ media clock

    def caller_frame(self, pcm: bytes) -> None:
        secret = self._secret is not None and self._secret.active
        if secret:
            if not self._spans or self._spans[-1][1] >= 0:
                self._spans.append([self.caller_frames, -1])
            pcm = self._silence
        elif self._spans and self._spans[-1][1] < 0:
            self._spans[-1][1] = self.caller_frames
        self._caller.append(pcm)
        self.caller_frames += 1

    def agent_frame(self, pcm: bytes) -> None:
        self._agent.append(pcm)

    # --------------------------------------------------------------------------------------- anywhere

    def position(self) -> float:
        """Seconds of audio recorded so far: where an event falls on the WAV's timeline."""
        return self.caller_frames * FRAME_MS / 1000.0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"t": round(self.position(), 3), "wall": round(time.time() - self.started_wall, 3), "type": kind}
        record.update(fields)
        with self._lock:
            self._events.append(record)
        return record

    def dtmf(self, digit: str, method: str, delivered: bool = True) -> None:
        """A key press arrived (SIP thread). ``delivered``: it was passed on to the call session, which then
        says whether it took it as secret. During secret input, and for keys no session ever saw, the digit is
        not written."""
        secret = hides(digit) and (not delivered or (self._secret is not None and self._secret.active))
        record = self.event("dtmf", method=method, secret=True) if secret else \
            self.event("dtmf", digit=digit, method=method)
        if delivered:
            if not secret and hides(digit):
                self._clear_keys.append((self._keys, record))
            self._keys += 1

    def update_sip(self, **fields: Any) -> None:
        with self._lock:
            self.sip.update(fields)

    def finish(self, **summary: Any) -> None:
        """The call ended; the writer thread flushes the rest and writes the JSON."""
        with self._lock:
            self.summary.update(summary)
        self.finished = True

    # ---------------------------------------------------------------------------------- writer thread

    def _open(self) -> wave.Wave_write:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Recordings hold callers' voices and key presses: owner-only.
        fd = os.open(self.wav_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        wav = wave.open(os.fdopen(fd, "wb"), "wb")  # noqa: SIM115 (kept open for the whole call)
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(self.rate)
        return wav

    def flush(self, final: bool = False) -> None:
        pairs = min(len(self._caller), len(self._agent))
        if final:
            pairs = max(len(self._caller), len(self._agent))
        if not pairs and not final:
            return
        silence = bytes(self.frame_bytes)
        left = [self._caller.popleft() if self._caller else silence for _ in range(pairs)]
        right = [self._agent.popleft() if self._agent else silence for _ in range(pairs)]
        if self._wav is None:
            self._wav = self._open()
        if pairs:
            stereo = np.empty((pairs * (self.frame_bytes // 2), 2), dtype="<i2")
            stereo[:, 0] = np.frombuffer(b"".join(left), dtype="<i2")
            stereo[:, 1] = np.frombuffer(b"".join(right), dtype="<i2")
            self._wav.writeframes(stereo.tobytes())
            self._written += pairs
        if final:
            self._wav.close()
            self._write_json()
            self.closed = True

    def _mask_late_keys(self) -> None:
        """Keys the session took as secret after the SIP thread had written them down (typed ahead of the
        question, while the session was still busy with the previous answer) lose their digit now."""
        if self._secret is None:
            return
        for index, record in self._clear_keys:
            if self._secret.key_was_secret(index):
                del record["digit"]
                record["secret"] = True
        self._clear_keys = []

    def secret_spans(self) -> list[list[float]]:
        """The paused spans, in seconds on the WAV's timeline (a span still open ends where the audio does)."""
        end = self.caller_frames
        return [[round(a * FRAME_MS / 1000.0, 3), round((b if b >= 0 else end) * FRAME_MS / 1000.0, 3)]
                for a, b in list(self._spans)]

    def _write_json(self) -> None:
        with self._lock:
            self._mask_late_keys()
            doc = {
                "format": FORMAT,
                "call_id": self.call_id,
                "wav": self.wav_path.name,
                "rate": self.rate,
                "channels": ["caller", "agent"],
                "started_at": dt.datetime.fromtimestamp(self.started_wall, dt.UTC).isoformat(),
                "duration_s": round(self._written * FRAME_MS / 1000.0, 3),
                "sip": self.sip,
                "events": list(self._events),
                "secret_spans": self.secret_spans(),
                **self.summary,
            }
        tmp = self.json_path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False, default=_jsonable)
        tmp.replace(self.json_path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


class RecordingWriter:
    """The one thread of a process that writes recordings to disk."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self._interval = interval_s
        self._active: list[CallRecording] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voiceivr-recorder", daemon=True)
        self._thread.start()

    def add(self, recording: CallRecording) -> None:
        with self._lock:
            self._active.append(recording)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush_all(final=False)
        self._flush_all(final=True)

    def _flush_all(self, final: bool) -> None:
        with self._lock:
            active = list(self._active)
        for rec in active:
            try:
                rec.flush(final=final or rec.finished)
            except Exception:
                # A full disk or a removed directory loses this recording, never the call.
                log.exception("recording failed", extra={"call_id": rec.call_id, "path": str(rec.wav_path)})
                rec.closed = True
        with self._lock:
            self._active = [r for r in self._active if not r.closed]

    def close(self, timeout: float = 5.0) -> None:
        """Flush and close every recording (calls still running are closed as they are)."""
        self._stop.set()
        self._thread.join(timeout)
