"""Turn detection: where the caller's speech starts and where their turn ends.

:class:`TurnDetector` watches the caller channel after echo removal: the VAD (its start and end events, its
tentative onset), the level gate (other voices on the line), the line's level against its noise floor, and
which side of the call the line carries (the caller, or our own prompt coming back). It answers the
session's questions -- is this onset our echo, has the caller gone quiet long enough, is the turn over -- and
keeps the pre-roll that a new turn's recogniser is fed first. :class:`Turn` is one stretch of caller speech.
The session (:mod:`voiceivr.call.session`) opens and ends turns and decides what they mean.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from voiceivr.audio.frames import FRAME_MS, Frame, Pcm
from voiceivr.call.levelgate import LevelGate, level_dbfs
from voiceivr.settings import CallSettings
from voiceivr.speech.base import SttStream, VadEvent, VadStream

FRAME_S = FRAME_MS / 1000
ECHO = "echo of our prompt"  # Turn.ignored: the onset was our own prompt on the caller channel
UNINTERRUPTIBLE = "during uninterruptible prompt"  # Turn.ignored: no answer to anything


@dataclass
class Turn:
    """One stretch of caller speech, from VAD onset to end of turn."""

    onset: float
    decided_at: float
    stt: SttStream | None
    ignored: str = ""  # why it cannot be an answer
    during_prompt: int | None = None
    last_speech_end: float | None = None
    speaking: bool = True
    partial: str = ""
    audio: hashlib._Hash = field(default_factory=hashlib.sha256)
    barge_pending: bool = False
    fed_until: float = float("-inf")  # end of the last frame given to the recogniser
    quiet_since: float | None = None  # start of the current run of quiet caller frames (energy end of turn)
    peak_level: float = -96.0  # loudest caller frame of the turn, dBFS
    gate_quiet_since: float | None = None  # end of the turn's last frame the level gate called loud
    secret: bool = False  # began while the brain listened for a secret: its words are kept nowhere


class TurnDetector:
    """The caller channel's speech, level and echo state for one call. Owned by the session's thread."""

    def __init__(self, settings: CallSettings, vad: VadStream) -> None:
        self.s = settings
        self.vad = vad
        self.preroll: deque[Frame] = deque(maxlen=max(1, settings.preroll_ms // FRAME_MS))
        self.dominant: deque[bool] = deque(maxlen=100)  # per frame: the line carries the caller, not our echo
        self.noise_floor = -60.0  # dBFS of the caller channel between words
        self.level = -96.0
        self.loud_onset = False
        self.gate = LevelGate(settings.level_gate_open_db) if settings.level_gate else None
        self.vad_unconfirmed = False  # the VAD hears speech that the level gate did not take for the caller's
        self.track_levels = settings.barge_in_hold == "energy" or settings.energy_end_of_turn
        self._whole_phrases: frozenset[str] = frozenset()  # the grammar's phrases, normalised (complete_phrase)

    def feed_gate(self, clean: Pcm) -> None:
        if self.gate is not None:
            self.gate.feed(level_dbfs(clean))

    @property
    def gate_loud(self) -> bool:
        """The level gate takes the line for the caller's voice (always, without a gate)."""
        return self.gate is None or self.gate.loud

    def track_level(self, clean: Pcm) -> None:
        """The caller channel's level against its noise floor: a sudden rise is the earliest sign of speech."""
        if not self.track_levels:
            return
        level = level_dbfs(clean)
        self.level = level
        floor = self.noise_floor
        # The floor falls at once and rises slowly (3 dB a second): speech never becomes the floor. It never
        # goes below -70 dBFS, so a line that was digitally silent does not hold the prompt on its first hiss.
        self.noise_floor = max(-70.0, level if level < floor else floor + 3.0 * FRAME_S)
        self.loud_onset = level > -45.0 and level > floor + self.s.barge_in_hold_db

    def hear(self, frame: Frame) -> list[VadEvent]:
        """The VAD's events for this frame (which also goes into the pre-roll)."""
        events = self.vad.feed(frame)
        self.preroll.append(frame)
        return events

    @property
    def caller_dominant(self) -> bool:
        """The last frame carried the caller more than our echo."""
        return bool(self.dominant) and self.dominant[-1]

    def is_echo(self, onset: float, now: float) -> bool:
        frames = max(1, round((now - onset) / FRAME_S) + 1)
        recent = list(self.dominant)[-frames:]
        return sum(recent) < 0.5 * len(recent)

    def echo_became_speech(self, turn: Turn) -> float | None:
        """Our echo may hide the caller starting to talk over it: once the residual has been the caller's for a
        while, this is speech after all. How long ago it began (seconds), if so."""
        k = max(1, self.s.barge_in_min_speech_ms // FRAME_MS)
        recent = list(self.dominant)[-k:]
        if turn.speaking and len(recent) == k and all(recent):
            return k * FRAME_S
        return None

    def quiet_long_enough(self, turn: Turn, now: float) -> bool:
        """Has the caller's level been near the noise floor for fast_end_of_turn_ms after a complete phrase?

        Quiet is near the line's noise floor or far under the turn's loudest frame: the floor estimate lags a
        line whose noise just rose (it climbs 3 dB a second), the drop from the peak does not."""
        turn.peak_level = max(turn.peak_level, self.level)
        quiet = self.level < max(self.noise_floor + self.s.end_of_turn_quiet_db,
                                 turn.peak_level - self.s.end_of_turn_drop_db)
        if not quiet:
            turn.quiet_since = None
            return False
        if turn.quiet_since is None:
            turn.quiet_since = now
        waited_ms = (now + FRAME_S - turn.quiet_since) * 1000
        return waited_ms >= self.s.fast_end_of_turn_ms and self.complete_phrase(turn.partial)

    def gate_says_ended(self, turn: Turn, now: float) -> bool:
        """Has the caller not been loud over the line's background for level_gate_end_ms, whatever the VAD says?"""
        if self.gate is None or self.gate.loud:
            turn.gate_quiet_since = None
            return False
        if turn.gate_quiet_since is None:
            turn.gate_quiet_since = now
        return (now + FRAME_S - turn.gate_quiet_since) * 1000 >= self.s.level_gate_end_ms

    def silence_ends(self, turn: Turn, now: float) -> bool:
        """Has the silence after the turn's speech lasted the end-of-turn wait (shorter after a whole phrase)?"""
        assert turn.last_speech_end is not None
        wait_ms = self.s.end_of_turn_ms
        if self.complete_phrase(turn.partial):
            wait_ms = self.s.fast_end_of_turn_ms
        return (now + FRAME_S - turn.last_speech_end) * 1000 >= wait_ms

    def expect(self, grammar: Sequence[str] | None, whole: bool) -> None:
        """What the brain listens for: the grammar's phrases are whole answers unless a run goes on after pauses."""
        self._whole_phrases = frozenset(" ".join(p.lower().split()) for p in grammar or ()) if whole \
            else frozenset()

    def complete_phrase(self, partial: str) -> bool:
        """Is the partial transcript a whole phrase of the grammar? Asked on every quiet frame after speech."""
        return bool(partial) and " ".join(partial.lower().split()) in self._whole_phrases
