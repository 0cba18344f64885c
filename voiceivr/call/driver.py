"""Drive a call session from recorded caller audio on a virtual clock: replays, tests and benchmarks.

Each 20 ms tick does what the pjsua2 clock thread does on a live call, in a fixed order: take the agent's
next frame (what the caller hears), deliver the caller's frame of that tick, then let the session process
it. Nothing depends on wall time, so two runs of the same input give the same timeline.

An optional :class:`EchoPath` feeds a copy of the agent's audio back into the caller channel (attenuated,
delayed, lightly filtered, under noise), the way line hybrids and speakerphones do, to test that the
session does not interrupt itself. An optional :class:`Recorder` (a
:class:`~voiceivr.telephony.recording.CallRecording`) is fed what the SIP edge would feed it, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm, samples_per_frame
from voiceivr.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voiceivr.call import events as ev
from voiceivr.call.session import CallSession


@dataclass(frozen=True)
class EchoPath:
    gain_db: float = -12.0
    delay_ms: float = 60.0
    noise_dbfs: float = -60.0
    seed: int = 1


@dataclass
class DriveResult:
    caller: Pcm  # what the session received (caller audio, plus echo if simulated)
    agent: Pcm  # what the session sent, sample-aligned with ``caller``
    ticks: int
    rate: int = 8000
    control: list[tuple[float, ev.SystemEvent]] = field(default_factory=list)  # what was posted, when

    @property
    def seconds(self) -> float:
        return len(self.agent) / self.rate


def g711_round_trip(pcm: Pcm, codec: str) -> Pcm:
    if codec == "pcmu":
        return ulaw_decode(ulaw_encode(pcm))
    if codec == "pcma":
        return alaw_decode(alaw_encode(pcm))
    raise ValueError(f"line codec must be pcmu or pcma, not {codec!r}")


class Recorder(Protocol):
    """What the SIP edge feeds a call's recording: each caller and agent frame, each key press as it arrives."""

    def caller_frame(self, pcm: bytes) -> None: ...

    def agent_frame(self, pcm: bytes) -> None: ...

    def dtmf(self, digit: str, method: str, delivered: bool = True) -> None: ...


class Caller(Protocol):
    """A caller that reacts to the call, asked once per tick (:class:`ScriptedCaller` listens to the agent's
    audio; the abuse simulation's :class:`~voiceivr.sim.callers.simcaller.SimCaller` reads the session's timeline)."""

    @property
    def done(self) -> bool: ...

    @property
    def hung_up(self) -> bool: ...

    def frame(self, tick: int, heard: Pcm) -> tuple[Pcm, list[ev.SystemEvent]]:
        """The caller's next 20 ms given the agent frame heard in this tick, and events to post (keys, a
        hang-up, media moved)."""
        ...


def drive(
    session: CallSession,
    caller: Pcm | Caller,
    *,
    control: Sequence[tuple[float, ev.SystemEvent]] = (),
    echo: EchoPath | None = None,
    tail_s: float = 4.0,
    max_s: float | None = None,
    line_codec: str | None = None,
    recorder: Recorder | None = None,
) -> DriveResult:
    """Run ``session`` over ``caller`` until it ends or the caller is done.

    ``caller``: int16 audio at the session's rate, or a :class:`Caller` (e.g.
    :class:`~voiceivr.sim.callers.scripted.ScriptedCaller`) that reacts to the call (then ``max_s`` bounds the
    call, default 600 s). ``control`` events (DTMF, hangup, ...) are posted at
    their times. After the caller is done the call runs ``tail_s`` more seconds, so the agent can answer.
    ``line_codec="pcmu"``/``"pcma"``: the caller's audio crosses G.711 on its way in, as on a phone line (a
    recording then holds exactly what the session heard). ``recorder`` gets the call as the SIP edge would
    record it.
    """
    rate = session.rate
    n = samples_per_frame(rate)
    media = session.media
    script = None if isinstance(caller, np.ndarray) else caller
    if script is None:
        assert isinstance(caller, np.ndarray)
        total_ticks = int(np.ceil((len(caller) / rate + tail_s) * 1000 / FRAME_MS))
    else:
        total_ticks = int((max_s or 600.0) * 1000 / FRAME_MS)
    if max_s is not None:
        total_ticks = min(total_ticks, int(max_s * 1000 / FRAME_MS))
    posted: list[tuple[float, ev.SystemEvent]] = []
    tail_left = int(tail_s * 1000 / FRAME_MS)
    pending = sorted(control, key=lambda pair: pair[0])
    caller_out: list[Pcm] = []
    agent_out: list[Pcm] = []
    rng = np.random.default_rng(echo.seed if echo else 0)
    delay = int((echo.delay_ms if echo else 0) * rate / 1000)
    gain = 10 ** ((echo.gain_db if echo else -200) / 20)
    noise = 32768 * 10 ** ((echo.noise_dbfs if echo else -200) / 20)
    agent_history = np.zeros(delay + n + 2, dtype=np.float32)
    if not session.started:
        session.start()
    tick = 0
    for tick in range(total_ticks):
        if session.ended:
            break
        t = tick * FRAME_MS / 1000
        while pending and pending[0][0] <= t:
            event = pending.pop(0)[1]
            posted.append((t, event))
            _post(session, event, recorder)
        if script is not None and (script.done or script.hung_up):
            if script.hung_up or tail_left <= 0:
                break
            tail_left -= 1
        sent_pcm = media.next_outgoing()
        if recorder is not None:
            recorder.agent_frame(sent_pcm)
        sent = np.frombuffer(sent_pcm, dtype="<i2").astype(np.int16)
        agent_out.append(sent)
        if script is not None:
            frame, keys = script.frame(tick, sent)
            for key in keys:
                posted.append((t, key))
                _post(session, key, recorder)
        else:
            assert isinstance(caller, np.ndarray)
            start = tick * n
            frame = caller[start : start + n]
            if len(frame) < n:
                frame = np.concatenate([frame, np.zeros(n - len(frame), dtype=np.int16)])
        if echo is not None:
            agent_history = np.concatenate([agent_history[n:], sent.astype(np.float32)])
            back = agent_history[-(delay + n) : len(agent_history) - delay]
            back = np.convolve(back, [0.6, 0.3, 0.1], mode="same").astype(np.float32)  # mild line low-pass
            mixed = frame.astype(np.float32) + gain * back + rng.normal(0.0, noise, n)
            frame = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
        if line_codec is not None:
            frame = g711_round_trip(frame, line_codec)
        caller_out.append(frame)
        pcm = frame.astype("<i2").tobytes()
        media.deliver(pcm)
        if recorder is not None:
            recorder.caller_frame(pcm)
        inbound = media.read(timeout=0)
        if inbound is not None:
            session.process(inbound)
    if not session.ended:
        session.post(ev.Hangup(0.0, by="caller", reason="end of recording"))
        session.idle(tick * FRAME_MS / 1000)
    return DriveResult(
        caller=np.concatenate(caller_out) if caller_out else np.zeros(0, np.int16),
        agent=np.concatenate(agent_out) if agent_out else np.zeros(0, np.int16),
        ticks=tick + 1,
        rate=rate,
        control=posted,
    )


def _post(session: CallSession, event: ev.SystemEvent, recorder: Recorder | None) -> None:
    """As the SIP edge does: a key press is recorded, then passed to the session."""
    if recorder is not None and isinstance(event, ev.DtmfDigit):
        recorder.dtmf(event.digit, "rfc4733")
    session.post(event)
