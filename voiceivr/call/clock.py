"""The call's clock, injected: wall time on a live call, virtual time in replays and tests.

Everything the session decides by time (end of turn, no-input, inter-digit timeouts, budgets) reads this
clock, so a 30-second conversation replays in milliseconds and twice the same way.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the call started."""
        ...


class WallClock:
    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0


class VirtualClock:
    """Advanced by whoever drives the call (the replay driver moves it one frame at a time)."""

    def __init__(self, t: float = 0.0) -> None:
        self._t = t

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._t += seconds

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a clock does not run backwards ({t} < {self._t})")
        self._t = t
