"""Bounded waits on a condition, for tests that wait for another process or thread to get somewhere.

A fixed ``time.sleep(N)`` waits N seconds even when the thing waited for happened at once, and tells the reader
nothing about what it waits for; :func:`wait_until` names the condition and returns as soon as it holds, never
later than the same ``N`` would have. Sleeps that are part of what a test does (RTP pacing, a caller staying
silent, a clock window) stay sleeps, with a comment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy or ``timeout`` seconds
    have passed; return its last value (falsy on a timeout: the caller asserts, or goes on as the fixed sleep
    it replaces did)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
