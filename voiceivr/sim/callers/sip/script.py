"""The SIP test caller's script runner: the :class:`CallerPlan` listing the steps a test call runs (``Wait``,
``Play``, ``Dtmf``, ``Pause``, ``Hangup``: :mod:`voiceivr.sim.callers.steps`), and :class:`CallerScript`, the
call handler whose threads listen to the agent and run the steps once the call is answered (the pjsua2 side
is :mod:`.call`).
"""

from __future__ import annotations

import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS
from voiceivr.call.handler import CallControl, CallEvents, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel, PlayedMark
from voiceivr.errors import VoiceivrError
from voiceivr.sim.callers.sip.report import SPEECH_DBFS, CallerReport, Segment, frame_dbfs
from voiceivr.sim.callers.steps import Dtmf, Hangup, Pause, Play, Step, Wait

HANGOVER_MS = 300  # silence this long ends a stretch of agent audio
END_OF_PROMPT_MS = 800  # silence this long after agent audio: the prompt is over


class CallerError(VoiceivrError):
    """The test call could not be placed or scripted."""



@dataclass
class CallerPlan:
    steps: list[Step] = field(default_factory=list)
    dtmf_method: str = "rfc4733"
    duration_s: float = 10.0  # listen until this long after answer (or the far end hangs up)
    # The classic order, for callers that do not list steps: wait for the greeting, play, key digits.
    play: list[tuple[str, np.ndarray[Any, np.dtype[np.int16]]]] = field(default_factory=list)  # (label, pcm)
    dtmf: str = ""
    wait_prompt_s: float = 0.0

    def all_steps(self) -> list[Step]:
        if self.steps:
            return list(self.steps)
        steps: list[Step] = [Wait(self.wait_prompt_s)] if self.wait_prompt_s > 0 else []
        steps += [Play(label, pcm) for label, pcm in self.play]
        if self.dtmf:
            steps.append(Dtmf(self.dtmf))
        return steps

    def longest_s(self) -> float:
        """An upper bound of how long the steps may take, for the caller's own timeout."""
        total = self.duration_s
        for step in self.all_steps():
            if isinstance(step, Wait):
                total += step.limit_s
            elif isinstance(step, Play):
                total += len(step.pcm) / 8000 + (30.0 if step.barge_after_s is not None else 0.0)
            elif isinstance(step, Dtmf) and isinstance(step.digits, str):
                total += 0.5 * len(step.digits) + 10.0 * sum(c in "wW" for c in step.digits)
            elif isinstance(step, Dtmf):
                total += 10.0  # digits from a function: its own wait (e.g. for an SMS) is bounded by it
            elif isinstance(step, Pause):
                total += step.seconds
        return total


def voiced_span(pcm: np.ndarray[Any, np.dtype[np.int16]], rate: int) -> tuple[float, float] | None:
    """Where speech starts and ends in a clip (s from its start): 10 ms windows above -40 dBFS."""
    n = rate // 100
    if len(pcm) < n:
        return None
    x = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    loud = np.flatnonzero(20 * np.log10(np.maximum(np.sqrt((x * x).mean(axis=1)), 1e-9) / 32768) > -40.0)
    if not len(loud):
        return None
    return float(loud[0]) / 100, float(loud[-1] + 1) / 100


class CallerScript:
    """The caller's side of one call: a CallHandler whose worker runs the plan. Times are from answer."""

    def __init__(self, plan: CallerPlan, report: CallerReport, t_dialed: float) -> None:
        self.plan = plan
        self.report = report
        self.t_dialed = t_dialed
        self.t0 = 0.0
        self.heard: list[bytes] = []
        self.done = threading.Event()
        self._voiced_ms = 0
        self._silent_ms = 0
        self._media: MediaChannel | None = None
        self._control: CallControl | None = None
        self._ended = threading.Event()
        self._clip_left: dict[int, float] = {}  # clip (step number) -> when its first frame left
        self.error: Exception | None = None

    # CallHandler
    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        self.t0 = time.monotonic()
        self.report.answered = True
        self.report.setup_s = round(self.t0 - self.t_dialed, 3)
        self.report.codec = info.codec
        self.report.sip_call_id = info.sip_call_id
        self._media, self._control = media, control
        threading.Thread(target=self._listen, name="caller-listen", daemon=True).start()
        threading.Thread(target=self._script, name="caller-script", daemon=True).start()
        return self

    # CallEvents
    def on_dtmf(self, digit: str, method: str) -> None:
        self.report.dtmf_received.append(digit)

    def on_media_moved(self, new_address: MediaAddress | None) -> None:
        pass

    def on_dialog_replaced(self, reason: str) -> None:
        pass

    def on_remote_hangup(self) -> None:
        self._ended.set()

    # ------------------------------------------------------------------------------------------ threads

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _listen(self) -> None:
        assert self._media is not None
        media = self._media
        while True:
            frame = media.read(timeout=0.5)
            if frame is None:
                if media.closed:
                    break
                continue
            self.heard.append(frame.pcm)
            self._track(frame.pcm, (frame.seq + 1) * FRAME_MS / 1000.0)
            self._note_played(media)
        self._close_segment(len(self.heard) * FRAME_MS / 1000.0)
        self._ended.set()

    def _note_played(self, media: MediaChannel) -> None:
        """When did the first frame of each clip leave (media-clock time, like the heard frames)?"""
        mark, seq = media.played_position()
        if mark is None or mark.prompt_id in self._clip_left:
            return
        frames_before = mark.end_sample // (media.frame_bytes // 2) - 1
        self._clip_left[mark.prompt_id] = (seq - 1 - frames_before) * FRAME_MS / 1000.0

    def _track(self, pcm: bytes, t_end: float) -> None:
        segments = self.report.agent_audio
        if frame_dbfs(pcm) > SPEECH_DBFS:
            self._silent_ms = 0
            self._voiced_ms += FRAME_MS
            if not segments or segments[-1].end is not None:
                segments.append(Segment(start=t_end - FRAME_MS / 1000.0))
        else:
            self._silent_ms += FRAME_MS
            if segments and segments[-1].end is None and self._silent_ms >= HANGOVER_MS:
                segments[-1].end = t_end - self._silent_ms / 1000.0

    def _close_segment(self, t: float) -> None:
        if self.report.agent_audio and self.report.agent_audio[-1].end is None:
            self.report.agent_audio[-1].end = t

    def _wait_end_of_prompt(self, limit_s: float, silence_ms: int = END_OF_PROMPT_MS) -> None:
        """Wait until the agent spoke and then stayed silent ``silence_ms``, or ``limit_s`` passed."""
        start = self.now()
        spoke_before = len(self.report.agent_audio)
        heard = False
        while not self._ended.is_set() and self.now() - start < limit_s:
            segs = self.report.agent_audio
            heard = heard or len(segs) > spoke_before or bool(segs and segs[-1].end is None)
            if heard and segs[-1].end is not None and self._silent_ms >= silence_ms:
                break
            self._ended.wait(0.02)
        self.report.prompt_waits.append({"start": round(start, 3), "end": round(self.now(), 3), "heard": heard})

    def _wait_agent_talking(self, after_s: float, limit_s: float = 30.0) -> bool:
        """Wait until the agent has been talking ``after_s`` without a pause (a barge-in's cue)."""
        start = self.now()
        while not self._ended.is_set() and self.now() - start < limit_s:
            segs = self.report.agent_audio
            if segs and segs[-1].end is None and len(self.heard) * FRAME_MS / 1000.0 - segs[-1].start >= after_s:
                return True
            self._ended.wait(0.01)
        return False

    def _play(self, label: str, pcm: np.ndarray[Any, np.dtype[np.int16]], prompt_id: int,
              barge_in: bool = False) -> None:
        assert self._media is not None
        media = self._media
        n = media.frame_bytes // 2
        if len(pcm) % n:
            pcm = np.concatenate([pcm, np.zeros(n - len(pcm) % n, dtype=np.int16)])
        start = self.now()
        frames = len(pcm) // n
        for i in range(frames):
            media.play(pcm[i * n:(i + 1) * n].astype("<i2").tobytes(), PlayedMark(prompt_id, (i + 1) * n,
                                                                                 i == frames - 1))
        while media.queued_frames() and not self._ended.is_set():
            self._ended.wait(0.02)
        entry: dict[str, Any] = {"what": label, "start": round(start, 3), "end": round(self.now(), 3)}
        left = self._clip_left.get(prompt_id)
        span = voiced_span(pcm, media.rate)
        if left is not None and span is not None:  # on the media clock, comparable with agent_audio
            entry["speech_start"] = round(left + span[0], 3)
            entry["speech_end"] = round(left + span[1], 3)
        if barge_in:
            entry["barge_in"] = True
        self.report.played.append(entry)

    def _keys(self, digits: str, limit_s: float, gap_s: float = 0.25) -> None:
        assert self._control is not None
        for ch in digits:
            if self._ended.is_set():
                break
            if ch == ",":
                self._ended.wait(0.5)
            elif ch in "wW":
                self._wait_end_of_prompt(max(limit_s, 10.0))
            else:
                self.report.dtmf.append({"digit": ch, "t": round(self.now(), 3)})
                send = getattr(self._control, "send_dtmf", None)
                if send is None:
                    raise CallerError("this CallControl cannot send DTMF")
                send(ch, self.plan.dtmf_method)
                self._ended.wait(gap_s)  # 160 ms tone + gap

    def _script(self) -> None:
        assert self._control is not None
        plan = self.plan
        try:
            for i, step in enumerate(plan.all_steps(), start=1):
                if self._ended.is_set():
                    break
                if isinstance(step, Wait):
                    self._wait_end_of_prompt(step.limit_s, round(step.silence_s * 1000))
                elif isinstance(step, Play):
                    if step.barge_after_s is not None and not self._wait_agent_talking(step.barge_after_s):
                        self.report.played.append({"what": step.label, "start": round(self.now(), 3),
                                                   "end": None, "barge_in": True, "skipped": "agent never talked"})
                        continue
                    self._play(step.label, step.pcm, i, barge_in=step.barge_after_s is not None)
                elif isinstance(step, Dtmf):
                    self._keys(step.digits if isinstance(step.digits, str) else step.digits(), plan.wait_prompt_s,
                               step.gap_s)
                elif isinstance(step, Pause):
                    self._ended.wait(step.seconds)
                elif isinstance(step, Hangup):
                    break
            else:
                remaining = plan.duration_s - self.now()
                if remaining > 0:
                    self._ended.wait(remaining)
        except Exception as exc:  # a failing step (say a code fetch) ends this call with a reason
            self.report.error = f"caller script failed: {exc}"
            self.error = exc
        finally:
            if not self._ended.is_set():
                self._control.hangup("caller script finished")
            self.done.set()

    def write_heard(self, path: Path, rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(b"".join(self.heard))
