"""Drive a call session on a virtual clock, from recorded caller audio (replays, tests, benchmarks) or from an
interactive :class:`Caller` that reacts to the call (simulations).

Each 20 ms tick does what the pjsua2 clock thread does on a live call, in a fixed order: take the agent's
next frame (what the caller hears), deliver the caller's frame of that tick, then let the session process
it. Nothing depends on wall time, so two runs of the same input give the same timeline.

An optional :class:`EchoPath` feeds a copy of the agent's audio back into the caller channel (attenuated,
delayed, lightly filtered, under noise), the way line hybrids and speakerphones do, to test that the
session does not interrupt itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm, samples_per_frame
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

    @property
    def seconds(self) -> float:
        return len(self.agent) / self.rate


class Caller(Protocol):
    """A caller that reacts to the call (a simulation script): asked once per tick, before the tick runs."""

    def tick(self, t: float, n: int) -> tuple[Pcm | None, Sequence[ev.SystemEvent]]:
        """The caller's ``n`` samples for the tick starting at ``t`` (None: silence) and control events (keys,
        hangup, media moved) to post before it."""
        ...

    @property
    def done(self) -> bool:
        """Nothing more to say or do: the call runs ``tail_s`` more, then the caller hangs up."""
        ...


class _Recorded:
    """Recorded caller audio and control events at fixed times, as a :class:`Caller`."""

    def __init__(self, pcm: Pcm, control: Sequence[tuple[float, ev.SystemEvent]]) -> None:
        self.pcm = pcm
        self.pending = sorted(control, key=lambda pair: pair[0])
        self.pos = 0

    def tick(self, t: float, n: int) -> tuple[Pcm | None, Sequence[ev.SystemEvent]]:
        events = []
        while self.pending and self.pending[0][0] <= t:
            events.append(self.pending.pop(0)[1])
        frame = self.pcm[self.pos : self.pos + n]
        self.pos += n
        return frame, events

    @property
    def done(self) -> bool:
        return self.pos >= len(self.pcm)


def drive(
    session: CallSession,
    caller: Pcm | Caller,
    *,
    control: Sequence[tuple[float, ev.SystemEvent]] = (),
    echo: EchoPath | None = None,
    tail_s: float = 4.0,
    max_s: float | None = None,
) -> DriveResult:
    """Run ``session`` with ``caller``: int16 audio at the session's rate (with ``control`` events posted at
    their times), or an interactive :class:`Caller`. After the caller is done the call runs ``tail_s`` more
    seconds, so the agent can answer the last turn; ``max_s`` caps the whole call (an interactive caller
    without it gets 3600 s).
    """
    rate = session.rate
    n = samples_per_frame(rate)
    media = session.media
    if isinstance(caller, np.ndarray):
        source: Caller = _Recorded(caller, control)
        total_ticks = int(np.ceil((len(caller) / rate + tail_s) * 1000 / FRAME_MS))
    else:
        if control:
            raise ValueError("an interactive caller posts its own control events")
        source = caller
        total_ticks = int((max_s if max_s is not None else 3600.0) * 1000 / FRAME_MS)
    if max_s is not None:
        total_ticks = min(total_ticks, int(max_s * 1000 / FRAME_MS))
    tail_ticks = int(np.ceil(tail_s * 1000 / FRAME_MS))
    done_at: int | None = None
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
        if done_at is not None and tick - done_at >= tail_ticks:
            break
        t = tick * FRAME_MS / 1000
        frame, events = source.tick(t, n)
        for event in events:
            session.post(event)
        if done_at is None and source.done:
            done_at = tick
        sent = np.frombuffer(media.next_outgoing(), dtype="<i2").astype(np.int16)
        agent_out.append(sent)
        if frame is None:
            frame = np.zeros(0, dtype=np.int16)
        if len(frame) < n:
            frame = np.concatenate([frame, np.zeros(n - len(frame), dtype=np.int16)])
        if echo is not None:
            agent_history = np.concatenate([agent_history[n:], sent.astype(np.float32)])
            back = agent_history[-(delay + n) : len(agent_history) - delay]
            back = np.convolve(back, [0.6, 0.3, 0.1], mode="same").astype(np.float32)  # mild line low-pass
            mixed = frame.astype(np.float32) + gain * back + rng.normal(0.0, noise, n)
            frame = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
        caller_out.append(frame)
        media.deliver(frame.astype("<i2").tobytes())
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
    )
