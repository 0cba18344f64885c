"""The steps of a scripted caller that talks in recorded audio: the one vocabulary of
:class:`~voiceivr.sim.callers.scripted.ScriptedCaller` (on the call driver's virtual clock) and of the SIP test
caller (:class:`~voiceivr.sim.callers.sip.script.CallerScript`, in real time over pjsua2).

Both hear only the agent's audio, as a person on a phone does: ``Wait`` for the agent to speak and fall
silent, ``Play`` a clip (talking over the agent once it has been talking ``barge_after_s``), key ``Dtmf``
digits, ``Pause``, ``Hangup``. The symbolic caller of the abuse simulation
(:mod:`voiceivr.sim.callers.simcaller`) is not one of them: it says words with a confidence rather than
audio, and times its acts on the session's timeline (a time into a read-back, just before a prompt ends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Wait:
    """Wait until the agent has spoken and then been silent ``silence_s`` (``limit_s`` at most)."""

    limit_s: float = 10.0
    silence_s: float = 0.8


@dataclass(frozen=True)
class Play:
    label: str
    pcm: np.ndarray[Any, np.dtype[np.int16]]
    barge_after_s: float | None = None  # talk over the agent once it has been talking this long


@dataclass(frozen=True)
class Dtmf:
    """Key ``digits``, ``gap_s`` apart. A function is called when the step runs (e.g. a code read from an SMS).
    The SIP caller also reads ``,`` (pause 0.5 s) and ``w`` (wait for the agent's next prompt to end)."""

    digits: str | Callable[[], str]
    label: str = ""
    gap_s: float = 0.25  # 160 ms tone + gap


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hangup:
    pass


Step = Wait | Play | Dtmf | Pause | Hangup
