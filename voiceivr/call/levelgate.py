"""Is the caller louder than the line's background? A turn-taking gate for lines with other voices on them.

Silero hears any voice as speech, so with people talking behind the caller (babble) its speech state never
ends: a turn opened on the babble ran to ``call.max_utterance_s`` and swallowed the caller's request. What
tells the caller from the babble is level: the caller is near the phone, the others are not (the evaluation's
babble is 10 dB under the caller). The gate keeps the line's background level, the ``percentile`` of the last
``window_s`` of 100 ms levels, and answers one question for the session: is the line ``loud`` now, ``open_db``
over the background? A VAD start is the caller's only while it is; a turn during which it has not been for a
while is over, whatever the VAD says. (Quiet by a margin over the background does not work for the end: babble's
100 ms level wanders several dB about its mean, so a run of "quiet" frames keeps being broken.) The background
includes the caller's own words; a low percentile over a few seconds stays on the pauses between them. For the
first ``warmup_s`` of a call the background is not known yet and everything is loud: the VAD decides alone, as
it did before the gate (a caller may answer a short greeting within a second).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

SHORT_FRAMES = 5  # 100 ms of 20 ms frames: one loud frame of babble is not the caller starting to speak
UPDATE_EVERY = 5  # frames between recomputing the percentile (its cost is most of the gate's)


def level_dbfs(pcm: npt.NDArray[np.int16]) -> float:
    """A frame's mean power in dBFS (floored at -90: digital silence)."""
    x = pcm.astype(np.float64)
    return 10 * math.log10(max(float(np.mean(x * x)) if len(x) else 0.0, 1.0) / 32768.0**2)


class LevelGate:
    def __init__(self, open_db: float, window_s: float = 3.0, percentile: float = 20.0, warmup_s: float = 1.0,
                 frame_s: float = 0.02) -> None:
        self.open_db = open_db
        self.percentile = percentile
        self._warmup = round(warmup_s / frame_s)
        self._powers: deque[float] = deque(maxlen=SHORT_FRAMES)
        self._history: deque[float] = deque(maxlen=max(SHORT_FRAMES, round(window_s / frame_s)))
        self._n = 0
        self.level = -96.0  # dBFS, mean power of the last 100 ms
        self.background = -96.0  # dBFS

    def feed(self, level_db: float) -> None:
        """One 20 ms frame's level (dBFS)."""
        self._powers.append(10 ** (level_db / 10))
        self.level = 10 * math.log10(max(sum(self._powers) / len(self._powers), 1e-10))
        self._history.append(self.level)
        self._n += 1
        if self._n % UPDATE_EVERY == 1 or len(self._history) < self._history.maxlen:  # type: ignore[operator]
            self.background = float(np.percentile(np.fromiter(self._history, float), self.percentile))

    @property
    def loud(self) -> bool:
        return self._n < self._warmup or self.level >= self.background + self.open_db
