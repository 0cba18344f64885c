"""What the unit tests of call logic add to the fake engines of voiceivr/testing/speech.py: the test voice's
timing (:class:`WordTts`, :func:`prompt_seconds`), caller audio made of tone bursts (:func:`caller_audio`) and a
scripted brain.

Caller "speech" in these tests is a tone burst: :class:`~voiceivr.testing.speech.ToneStt` hears its frequency
and looks up the words it stands for, so a test can say "the caller says 'yes' from 2.0 s to 2.6 s" with one
line, and the session's timing, echo handling and barge-in run on real sample streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from voiceivr.audio.frames import Pcm
from voiceivr.call import brain as b
from voiceivr.testing.speech import WordToneTts, tone

RATE = 8000


def caller_audio(segments: Sequence[tuple[float, float, float]], total_s: float, rate: int = RATE,
                 noise_dbfs: float = -65.0) -> Pcm:
    """segments: (start_s, end_s, freq). A faint noise floor keeps it from being digital silence."""
    rng = np.random.default_rng(3)
    out = rng.normal(0, 32768 * 10 ** (noise_dbfs / 20), int(total_s * rate))
    for start, end, freq in segments:
        a, z = int(start * rate), int(end * rate)
        out[a:z] += tone(freq, (z - a) / rate, rate)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------------- TTS

WORD_S = 0.15
GAP_S = 0.03


class WordTts(WordToneTts):
    """The test voice: each word a 150 ms tone and a 30 ms gap."""

    def __init__(self) -> None:
        super().__init__(WORD_S, GAP_S)


def prompt_seconds(text: str) -> float:
    return len(text.split()) * (WORD_S + GAP_S)


# ------------------------------------------------------------------------------------------------- brain


@dataclass
class ScriptedBrain:
    """Answers each input with the next scripted reply; records everything it was told."""

    greeting: list[b.BrainOutput]
    replies: list[list[b.BrainOutput]] = field(default_factory=list)
    seen: list[b.BrainInput] = field(default_factory=list)
    answer_prompt_events: bool = False
    tasks: int = 0

    def start(self) -> list[b.BrainOutput]:
        return list(self.greeting)

    def handle(self, event: b.BrainInput) -> list[b.BrainOutput]:
        self.seen.append(event)
        if isinstance(event, b.PromptFinished) and not self.answer_prompt_events:
            return []
        if isinstance(event, b.SessionChanged | b.HungUp | b.Overheard):
            return []
        return list(self.replies.pop(0)) if self.replies else []

    def resolved_tasks(self) -> int:
        return self.tasks

    def outcome(self) -> str:
        return "completed"

    def inputs(self, kind: type) -> list[b.BrainInput]:
        return [e for e in self.seen if isinstance(e, kind)]
