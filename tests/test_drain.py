"""The worker's drain loop (voiceivr/telephony/worker.py wait_for_stop) with a stand-in edge: it returns when the
last call has ended, at the drain deadline with calls still up, and at once when told to stop."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from voiceivr.telephony.worker import wait_for_stop


class FakeEdge:
    def __init__(self, calls: int) -> None:
        self.calls = calls

    def active_calls(self) -> int:
        return self.calls


def run(edge: FakeEdge, stop: threading.Event, drain: threading.Event, timeout_s: float) -> float:
    t0 = time.monotonic()
    wait_for_stop(cast(Any, edge), stop, drain, timeout_s, "w")
    return time.monotonic() - t0


def test_drain_ends_when_the_last_call_ends() -> None:
    edge, stop, drain = FakeEdge(2), threading.Event(), threading.Event()
    drain.set()
    threading.Timer(0.5, lambda: setattr(edge, "calls", 0)).start()
    took = run(edge, stop, drain, 30.0)
    assert 0.4 <= took < 1.5


def test_drain_gives_up_at_the_deadline() -> None:
    edge, stop, drain = FakeEdge(1), threading.Event(), threading.Event()
    drain.set()
    took = run(edge, stop, drain, 0.6)
    assert 0.5 <= took < 1.5 and edge.calls == 1


def test_stop_ends_at_once_and_no_drain_means_wait() -> None:
    edge, stop, drain = FakeEdge(3), threading.Event(), threading.Event()
    threading.Timer(0.3, stop.set).start()  # never draining: only stop ends the wait
    assert run(edge, stop, drain, 0.0) < 1.0
