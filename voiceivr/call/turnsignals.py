"""What turn detection talks about: :class:`Turn` (one stretch of caller speech) and the signals a caller frame
gives the session (:meth:`voiceivr.call.turns.TurnDetector.hear`), in the order they happened."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

from voiceivr.audio.frames import Pcm
from voiceivr.call.bargein import Heard
from voiceivr.call.turnend import TurnEnding
from voiceivr.speech import endofturn
from voiceivr.speech.base import SttStream


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
    ending: TurnEnding | None = None  # the end-of-turn model's decision (call.turn_detector = smart_turn)
    pcm: deque[Pcm] = field(default_factory=lambda: deque(maxlen=endofturn.MAX_SECONDS * 50))  # for the model


# What a caller frame says about turns (TurnDetector.hear), in the order it happened.


@dataclass(frozen=True)
class Onset:
    """The caller began to speak (or, within the end-of-turn wait, went on speaking)."""

    onset: float
    decided_at: float


@dataclass(frozen=True)
class Offset:
    """The caller stopped speaking (the turn may still go on)."""

    t: float


@dataclass(frozen=True)
class Tentative:
    """No turn yet, but maybe speech over a prompt: barge-in may hold it."""

    heard: Heard


@dataclass(frozen=True)
class Partial:
    """The recogniser's words so far changed."""

    turn: Turn
    text: str


@dataclass(frozen=True)
class StillSpeaking:
    """A frame of a turn whose barge-in is pending."""

    turn: Turn
    heard: Heard


@dataclass(frozen=True)
class TurnOver:
    turn: Turn
    reason: str  # silence | max_utterance


Signal = Onset | Offset | Tentative | Partial | StillSpeaking | TurnOver
