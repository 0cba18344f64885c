"""Call handlers for the SIP edge's tests. NOT the product: the real call session lives in voiceivr/call/.

``voiceivr serve`` loads them with ``VOICEIVR_SIP_HANDLER=tests.sip.sip_handlers:ScriptedIvr`` (the repository
root on ``PYTHONPATH``).
What each call did is written to ``$VIVR_TEST_OUT/<call_id>.json`` for the test (another process) to read.

ScriptedIvr, per call, on its own worker thread:
- plays the prompt ($VIVR_TEST_PROMPT WAV, else a 0.6 s 440 Hz tone) once the call starts;
- records every caller frame (count and loud frames) and every DTMF digit with its method;
- after each digit plays a 0.2 s beep (so the caller hears the IVR react);
- '#' hangs up, '0' transfers to $VIVR_TEST_TRANSFER, '9' holds the GIL for $VIVR_TEST_HOG_S seconds
  ($VIVR_TEST_HOG = "python" for a pure-Python loop, "c" for one long C call that never releases the GIL,
  as pocketsphinx does).
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.call.handler import CallControl, CallEvents, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel, PlayedMark
from voiceivr.settings import Settings


def tone(rate: int, freq: float, seconds: float, amplitude: float = 8000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


def hog_gil(kind: str, seconds: float) -> None:
    """Stand-in for a speech engine that does not release the GIL."""
    end = time.perf_counter() + seconds
    if kind == "c":
        # sum() over a range runs entirely in C inside one bytecode: the GIL is never offered to other threads.
        n = 2_000_000
        while time.perf_counter() < end:
            sum(range(n))
    else:
        x = 0
        while time.perf_counter() < end:
            for i in range(1000):
                x += i * i


class _Call:
    def __init__(self, owner: ScriptedIvr, info: CallInfo, media: MediaChannel, control: CallControl) -> None:
        self.owner = owner
        self.info = info
        self.media = media
        self.control = control
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.log: dict[str, Any] = {
            "call_id": info.call_id, "sip_call_id": info.sip_call_id, "from_uri": info.from_uri,
            "from_display": info.from_display, "to_uri": info.to_uri, "local_tag": info.local_tag,
            "remote_tag": info.remote_tag, "asserted_identity": info.asserted_identity,
            "source_address": info.source_address, "codec": info.codec, "rate": info.rate,
            "remote_media": None if info.remote_media is None else [info.remote_media.host, info.remote_media.port],
            "headers": info.headers, "digits": [], "events": [], "frames": 0, "loud_frames": 0,
            "started": time.time(), "pid": os.getpid(), "thread_checks": {},
        }
        self._prompt_id = 0
        threading.Thread(target=self.run, name=f"call-{info.call_id[:8]}", daemon=True).start()

    # CallEvents: only enqueue (they run on the edge's SIP thread).
    def on_dtmf(self, digit: str, method: str) -> None:
        self.log["thread_checks"]["on_dtmf"] = threading.current_thread().name
        self.events.put(("dtmf", (digit, method)))

    def on_media_moved(self, new_address: MediaAddress | None) -> None:
        self.events.put(("media_moved", None if new_address is None else [new_address.host, new_address.port]))

    def on_dialog_replaced(self, reason: str) -> None:
        self.events.put(("dialog_replaced", reason))

    def on_remote_hangup(self) -> None:
        self.log["thread_checks"]["on_remote_hangup"] = threading.current_thread().name
        self.events.put(("remote_hangup", None))

    def on_transfer_result(self, ok: bool, status: int) -> None:
        self.events.put(("transfer_result", [ok, status]))

    def play(self, pcm: bytes) -> None:
        self._prompt_id += 1
        n = self.media.frame_bytes
        if len(pcm) % n:
            pcm += bytes(n - len(pcm) % n)
        frames = len(pcm) // n
        for i in range(frames):
            self.media.play(pcm[i * n:(i + 1) * n], PlayedMark(self._prompt_id, (i + 1) * n // 2, i == frames - 1))

    def run(self) -> None:
        self.play(self.owner.prompt_pcm(self.media.rate))
        while True:
            frame = self.media.read(timeout=0.05)
            if frame is not None:
                self.log["frames"] += 1
                x = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float64)
                if np.sqrt(np.mean(x * x)) > 300:
                    self.log["loud_frames"] += 1
            self.drain_events()
            if frame is None and self.media.closed:
                break
        self.drain_events()
        self.log["ended"] = time.time()
        self.owner.write(self.log)

    def drain_events(self) -> None:
        while True:
            try:
                kind, value = self.events.get_nowait()
            except queue.Empty:
                return
            self.log["events"].append([round(time.time() - self.log["started"], 3), kind, value])
            if kind == "dtmf" and not self.media.closed:
                self.on_digit(*value)
            elif kind == "dtmf":
                self.log["digits"].append(list(value))

    def on_digit(self, digit: str, method: str) -> None:
        self.log["digits"].append([digit, method])
        self.play(tone(self.media.rate, 880, 0.2))
        if digit == "#":
            self.control.hangup("caller pressed #")
        elif digit == "0" and self.owner.transfer_to:
            self.control.transfer(self.owner.transfer_to)
        elif digit == "9":
            t = time.perf_counter()
            hog_gil(self.owner.hog_kind, self.owner.hog_s)
            self.log["hogged_s"] = round(time.perf_counter() - t, 3)


class ScriptedIvr:
    def __init__(self, settings: Settings) -> None:
        self.out = Path(os.environ.get("VIVR_TEST_OUT", "var/test-calls"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.prompt_path = os.environ.get("VIVR_TEST_PROMPT", "")
        self.transfer_to = os.environ.get("VIVR_TEST_TRANSFER", "")
        self.hog_kind = os.environ.get("VIVR_TEST_HOG", "python")
        self.hog_s = float(os.environ.get("VIVR_TEST_HOG_S", "2"))
        self._lock = threading.Lock()

    def prompt_pcm(self, rate: int) -> bytes:
        if not self.prompt_path:
            return tone(rate, 440, 0.6)
        with wave.open(self.prompt_path, "rb") as w:
            if w.getframerate() != rate or w.getnchannels() != 1:
                raise ValueError(f"test prompt must be mono {rate} Hz")
            return w.readframes(w.getnframes())

    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        call = _Call(self, info, media, control)
        call.log["thread_checks"]["start"] = threading.current_thread().name
        return call

    def write(self, log: dict[str, Any]) -> None:
        with self._lock:
            tmp = self.out / f"{log['call_id']}.json.tmp"
            tmp.write_text(json.dumps(log, indent=1))
            tmp.replace(self.out / f"{log['call_id']}.json")


class BrokenHandler:
    """start() raises: the edge must hang that call up and keep serving."""

    def __init__(self, settings: Settings) -> None:
        pass

    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        raise RuntimeError("this handler is broken on purpose")


def fake_tts(settings: Settings) -> Any:
    """`voiceivr call --tts tests.sip.sip_handlers:fake_tts`: one 300 Hz tone per word (tests/support/fakes.py)."""
    from tests.support.fakes import WordTts

    return WordTts()


def fake_stt(settings: Settings) -> Any:
    """`voiceivr call --stt tests.sip.sip_handlers:fake_stt`: hears ScriptedIvr's 880 Hz beep as "beep"."""
    from voiceivr.testing.speech import ToneStt

    return ToneStt({880: "beep"})
