"""A scripted caller that listens: it waits for the agent to finish, talks, keys digits, barges in.

Used to make replayable recordings (scripts/make_replay_fixture.py), in tests, and in benchmarks: unlike a
fixed WAV, the script reacts to what it hears, so its turns line up with the agent's prompts whatever the
prompts' lengths. It only hears audio (an energy detector on the agent channel), as a person on a phone
would. Its steps are those of the SIP test caller (:mod:`voiceivr.sim.callers.steps`); a ``Play`` that barges
in waits at most 30 s for the agent to talk, then talks anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm, samples_per_frame
from voiceivr.call import events as ev
from voiceivr.sim.callers.steps import Dtmf, Hangup, Pause, Play, Step, Wait

AGENT_SPEECH_DBFS = -45.0  # the agent channel is digital: anything above this is the agent talking


@dataclass
class ScriptedCaller:
    steps: Sequence[Step]
    rate: int = 8000
    noise_dbfs: float = -60.0  # a real line is never digitally silent
    seed: int = 5
    log: list[tuple[float, str]] = field(default_factory=list)  # (time, what the caller did)

    def __post_init__(self) -> None:
        self._n = samples_per_frame(self.rate)
        self._i = 0
        self._pcm: Pcm | None = None
        self._pos = 0
        self._keys: list[tuple[float, str]] = []
        self._agent_heard = False
        self._agent_talk_s = 0.0
        self._agent_quiet_s = 0.0
        self._step_started: float | None = None
        self._rng = np.random.default_rng(self.seed)
        self.hung_up = False

    @property
    def done(self) -> bool:
        return self._i >= len(self.steps) and self._pcm is None and not self._keys

    def frame(self, tick: int, heard: Pcm) -> tuple[Pcm, list[ev.SystemEvent]]:
        """The caller's next 20 ms, given the agent frame heard in this tick, and any key presses."""
        t = tick * FRAME_MS / 1000
        level = float(np.sqrt(np.mean(heard.astype(np.float64) ** 2))) if len(heard) else 0.0
        talking = 20 * np.log10(max(level, 1e-9) / 32768) > AGENT_SPEECH_DBFS
        if talking:
            self._agent_heard = True
            self._agent_talk_s += FRAME_MS / 1000
            self._agent_quiet_s = 0.0
        else:
            self._agent_quiet_s += FRAME_MS / 1000
            self._agent_talk_s = 0.0 if self._agent_quiet_s > 0.3 else self._agent_talk_s
        events: list[ev.SystemEvent] = []
        while self._keys and self._keys[0][0] <= t:
            _, digit = self._keys.pop(0)
            events.append(ev.DtmfDigit(t, digit=digit, method="rfc4733"))
        out = self._rng.normal(0.0, 32768 * 10 ** (self.noise_dbfs / 20), self._n)
        if self._pcm is None and not self._keys:
            self._advance(t)
        if self._pcm is not None:
            chunk = self._pcm[self._pos : self._pos + self._n]
            out[: len(chunk)] += chunk
            self._pos += self._n
            if self._pos >= len(self._pcm):
                self._pcm = None
        return np.clip(np.round(out), -32768, 32767).astype(np.int16), events

    def _advance(self, t: float) -> None:
        while self._i < len(self.steps):
            step = self.steps[self._i]
            if self._step_started is None:
                self._step_started = t
            waited = t - self._step_started
            if isinstance(step, Wait):
                if not ((self._agent_heard and self._agent_quiet_s >= step.silence_s) or waited >= step.limit_s):
                    return
                self._agent_heard = False
            elif isinstance(step, Pause):
                if waited < step.seconds:
                    return
            elif isinstance(step, Play) and step.barge_after_s is not None:
                if self._agent_talk_s < step.barge_after_s and waited < 30.0:
                    return
                self._start_audio(t, step.pcm, f"barge in: {step.label}")
            elif isinstance(step, Play):
                self._start_audio(t, step.pcm, f"say: {step.label}")
            elif isinstance(step, Dtmf):
                digits = step.digits if isinstance(step.digits, str) else step.digits()
                self._keys = [(t + k * step.gap_s, d) for k, d in enumerate(digits)]
                self.log.append((t, f"keys: {digits}"))
            elif isinstance(step, Hangup):
                self.hung_up = True
                self.log.append((t, "hang up"))
            self._i += 1
            self._step_started = None
            if self._pcm is not None or self._keys or self.hung_up:
                return

    def _start_audio(self, t: float, pcm: Pcm, what: str) -> None:
        self._pcm = pcm.astype(np.float64)
        self._pos = 0
        self.log.append((t, what))
