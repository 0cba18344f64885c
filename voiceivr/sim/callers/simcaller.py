"""A scripted caller that reacts to the call, for simulations driven by :func:`voiceivr.call.driver.drive`.

Unlike :class:`~voiceivr.sim.callers.scripted.ScriptedCaller`, which plays recorded speech and listens only to
the agent's audio, this caller speaks symbolically (for the simulation's recogniser) and reads the session's
timeline, so it can time an act to a prompt of a given kind -- e.g. start a "yes" 40 ms before a read-back
ends. A script is a list of acts -- say something, key digits, a network event (media moved, dialog replaced), hang
up, or something that happens outside the call -- each with a :class:`Cue` saying when: when it is the
caller's turn (the agent has spoken and fallen silent), a set time into a prompt of some kind (talking over
a read-back), just before such a prompt ends, or a set time after the previous act. Speech is a tone from
the call's :class:`~voiceivr.testing.speech.ToneLexicon`, so the session hears it as audio (VAD, turn taking,
barge-in) and :class:`~voiceivr.testing.speech.LexiconStt` gives back the scripted words.

The caller watches the session's timeline, the way a person listens to the line; ``expect`` on an act checks
what the dialplan engine is waiting for at that moment (``menu``, ``slot:amount``, ``confirm``, ``channel``,
``code``), so a script that has drifted from the conversation shows up in its log instead of talking past it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm, samples_per_frame
from voiceivr.call import events as ev
from voiceivr.call.session import CallSession
from voiceivr.testing.speech import ToneLexicon, WordToneTts, tone

Text = str | Callable[[], str]
CueKind = Literal["turn", "during", "before_end", "after"]
FRAME_S = FRAME_MS / 1000


@dataclass(frozen=True)
class Cue:
    """``turn``: ``seconds`` of silence after the agent spoke; ``during``: ``seconds`` after a prompt of class
    ``prompt`` (e.g. ``ReadBack``) started; ``before_end``: so that the act starts ``seconds`` before that prompt
    ends; ``after``: ``seconds`` after the previous act ended. The prompt must have started after the previous
    act began."""

    kind: CueKind = "turn"
    seconds: float = 0.5
    prompt: str = ""


TURN = Cue()
AT_ONCE = Cue("after", 0.0)


def during(prompt: str, seconds: float) -> Cue:
    return Cue("during", seconds, prompt)


def before_end(prompt: str, seconds: float) -> Cue:
    return Cue("before_end", seconds, prompt)


def after(seconds: float) -> Cue:
    return Cue("after", seconds)


@dataclass(frozen=True)
class Say:
    text: Text
    confidence: float = 0.93
    cue: Cue = TURN
    expect: str = ""
    seconds: float | None = None  # how long it takes to say (default: from the word count)
    secret: bool = False  # a PIN or a code read out: the caller's log does not repeat it


@dataclass(frozen=True)
class Keys:
    digits: Text
    cue: Cue = TURN
    expect: str = ""
    gap_s: float = 0.15


@dataclass(frozen=True)
class Network:
    """``media_moved`` (a re-INVITE moving the media to ``address``) or ``replaced`` (transfer, Replaces)."""

    event: Literal["media_moved", "replaced"]
    address: str = ""
    cue: Cue = TURN
    expect: str = ""


@dataclass(frozen=True)
class HangUp:
    cue: Cue = TURN
    expect: str = ""


@dataclass(frozen=True)
class Outside:
    """Something that happens outside the call (the clock jumps, the SMS provider fails); ``what`` says it."""

    fn: Callable[[], None]
    what: str
    cue: Cue = AT_ONCE
    expect: str = ""


Act = Say | Keys | Network | HangUp | Outside


@dataclass
class ActLog:
    act: str
    at: float
    expected: str
    engine: str  # what the engine was waiting for when the act started
    detail: str = ""


@dataclass
class _Prompt:
    kind: str
    text: str
    started: float
    finished: float | None = None


@dataclass
class SimCaller:
    """Plays ``script`` against ``session``. ``engine_state`` says what the conversation waits for (the
    dialplan engine's phase and slot, e.g. ``slot:amount``), for ``expect`` checks."""

    session: CallSession
    script: Sequence[Act]
    lexicon: ToneLexicon
    tts: WordToneTts
    engine_state: Callable[[], str] = lambda: ""
    seconds_per_word: float = 0.3
    quiet_timeout_s: float = 10.0  # act on a turn cue anyway after this long without the agent speaking
    log: list[ActLog] = field(default_factory=list)
    _next: int = 0
    _seen: int = 0
    _prompts: dict[int, _Prompt] = field(default_factory=dict)
    _last_start: float = 0.0
    _last_end: float = 0.0
    _audio: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    _keys: list[tuple[float, str]] = field(default_factory=list)
    _ended: bool = False

    @property
    def done(self) -> bool:
        return self._ended or (self._next >= len(self.script) and not len(self._audio) and not self._keys)

    @property
    def hung_up(self) -> bool:
        return self._ended

    def frame(self, tick: int, heard: Pcm) -> tuple[Pcm, list[ev.SystemEvent]]:
        """The caller's next 20 ms and the events to post (keys, a hang-up, media moved); :class:`Caller` of
        :func:`voiceivr.call.driver.drive`. The caller follows the call on the session's timeline, not ``heard``."""
        t = tick * FRAME_MS / 1000
        n = samples_per_frame(self.session.rate)
        self._watch()
        events: list[ev.SystemEvent] = []
        busy = bool(len(self._audio)) or bool(self._keys)
        if not busy and not self._ended and self._next < len(self.script):
            act = self.script[self._next]
            if self._due(act.cue, t):
                self._next += 1
                events += self._start(act, t)
        while self._keys and self._keys[0][0] <= t + 1e-9:
            events.append(ev.DtmfDigit(0.0, digit=self._keys.pop(0)[1]))
            if not self._keys:
                self._last_end = t
        frame = np.zeros(n, dtype=np.int16)
        if len(self._audio):
            chunk, self._audio = self._audio[:n], self._audio[n:]
            frame[: len(chunk)] = chunk
            if not len(self._audio):
                self._last_end = t + FRAME_S
        return frame, events

    # ------------------------------------------------------------------------------------------ listening

    def _watch(self) -> None:
        timeline = self.session.timeline
        for e in timeline[self._seen:]:
            if isinstance(e, ev.PromptStarted):
                self._prompts[e.prompt_id] = _Prompt(e.kind, e.text, e.t)
            elif isinstance(e, ev.PromptPlayed | ev.PromptCut) and e.prompt_id in self._prompts:
                self._prompts[e.prompt_id].finished = e.t
            elif isinstance(e, ev.CallEnded):
                self._ended = True
        self._seen = len(timeline)

    def _since_last(self) -> list[_Prompt]:
        """The agent's prompts that started after the caller's previous act began (the answer to a keyed entry
        can start before its last key, the # that many callers add)."""
        return [p for p in self._prompts.values() if p.started > self._last_start]

    def _due(self, cue: Cue, t: float) -> bool:
        if cue.kind == "after":
            return t >= self._last_end + cue.seconds
        recent = self._since_last()
        if cue.kind == "turn":
            if any(p.finished is None for p in self._prompts.values()):
                return False
            if not recent:
                return t >= self._last_end + self.quiet_timeout_s
            return t >= max(p.finished or 0.0 for p in recent) + cue.seconds
        match = next((p for p in recent if p.kind == cue.prompt), None)
        if match is None:
            return False
        if cue.kind == "during":
            return t >= match.started + cue.seconds
        # The prompt's first frame leaves on the tick after it started; the sim voice's length is exact.
        ends = match.started + FRAME_S + self.tts.duration(match.text, self.session.rate)
        return t >= ends - cue.seconds

    # ------------------------------------------------------------------------------------------ acting

    def _start(self, act: Act, t: float) -> list[ev.SystemEvent]:
        engine = self.engine_state()
        self._last_start = t
        entry = ActLog(type(act).__name__, round(t, 2), act.expect, engine)
        self.log.append(entry)
        if isinstance(act, Say):
            text = act.text() if callable(act.text) else act.text
            word = self.lexicon.word(text, act.confidence)
            seconds = act.seconds or max(0.4, self.seconds_per_word * len(text.split()))
            self._audio = tone(word.freq, seconds, self.session.rate)
            entry.detail = "[secret]" if act.secret else text
            return []
        if isinstance(act, Keys):
            digits = act.digits() if callable(act.digits) else act.digits
            self._keys = [(t + i * act.gap_s, d) for i, d in enumerate(digits)]
            entry.detail = f"{len(digits)} keys"
            out: list[ev.SystemEvent] = []
            while self._keys and self._keys[0][0] <= t + 1e-9:
                out.append(ev.DtmfDigit(0.0, digit=self._keys.pop(0)[1]))
            if not self._keys:
                self._last_end = t
            return out
        self._last_end = t
        if isinstance(act, Network):
            entry.detail = f"{act.event} {act.address}".strip()
            if act.event == "media_moved":
                return [ev.MediaMoved(0.0, address=act.address)]
            return [ev.DialogReplaced(0.0, reason=act.event)]
        if isinstance(act, HangUp):
            self._ended = True
            return [ev.Hangup(0.0, by="caller", reason="caller hung up")]
        entry.detail = act.what
        act.fn()
        return []
