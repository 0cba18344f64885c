"""Latency budgets per stage, the call's timeline, per-stage p50/p95 across calls, and engine costs.

Stages of one turn (all in milliseconds):

``capture``    end of caller speech -> final transcript (includes the end-of-turn wait)
``intent``     final transcript or digits -> intent decided (all router tiers tried)
``policy``     the safe-path gate's decisions for the turn
``tool``       actions run for the turn
``synthesis``  response decided -> its first audio frame queued
``e2e``        end of caller speech -> first agent audio frame actually sent (voice to voice)

Each stage has a budget (settings section ``budget``); a breach is logged with the call id (never with what
was said) and put on the call's timeline. :class:`StageStats` keeps recent samples of every stage across
all calls of a process, for p50/p95 in ``voiceivr stats``, the Prometheus endpoint and the benchmarks.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from voiceivr import metrics
from voiceivr.settings import BudgetSettings

log = logging.getLogger(__name__)

STAGES = ("capture", "intent", "policy", "tool", "synthesis", "e2e")


Budgets = BudgetSettings  # the settings section is the budget table


def percentile(values: list[float] | deque[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


class StageStats:
    """Recent per-stage samples across calls (thread-safe; one per process)."""

    def __init__(self, keep: int = 5000) -> None:
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))
        self._breaches: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float, breached: bool) -> None:
        with self._lock:
            self._samples[stage].append(ms)
            if breached:
                self._breaches[stage] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            out = {}
            for stage, values in self._samples.items():
                out[stage] = {
                    "count": float(len(values)),
                    "p50": percentile(values, 50),
                    "p95": percentile(values, 95),
                    "max": max(values) if values else float("nan"),
                    "breaches": float(self._breaches.get(stage, 0)),
                }
            return out

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._breaches.clear()


PROCESS_STATS = StageStats()


@dataclass
class CallLatencies:
    """The stage figures of one call, checked against the budgets as they come in."""

    call_id: str
    budgets: Budgets
    stats: StageStats = field(default_factory=lambda: PROCESS_STATS)
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    breaches: list[tuple[str, float]] = field(default_factory=list)

    def record(self, stage: str, ms: float) -> bool:
        """Returns True if the budget was breached."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        budget = self.budgets.of(stage)
        breached = ms > budget
        self.samples[stage].append(ms)
        self.stats.add(stage, ms, breached)
        metrics.observe_stage(stage, ms, breached)
        if breached:
            self.breaches.append((stage, ms))
            log.warning(
                "latency budget breached",
                extra={"call_id": self.call_id, "stage": stage, "ms": round(ms, 1), "budget_ms": budget},
            )
        return breached

    def table(self) -> dict[str, dict[str, float]]:
        return {
            stage: {
                "count": float(len(v)),
                "p50": percentile(v, 50),
                "p95": percentile(v, 95),
                "max": max(v),
                "budget": self.budgets.of(stage),
            }
            for stage, v in self.samples.items()
            if v
        }


@dataclass
class EngineCosts:
    """Engine-seconds spent by one call, by engine and by router tier: the call's running cost."""

    by_engine: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, engine: str, seconds: float) -> None:
        if seconds > 0:
            self.by_engine[engine] += seconds

    @property
    def total(self) -> float:
        return float(sum(self.by_engine.values()))

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in sorted(self.by_engine.items())}


def account(latency: CallLatencies, costs: EngineCosts, stage_seconds: Mapping[str, float]) -> None:
    """The brain's time by stage: intent, policy and tool count towards the latency budgets, the rest (an engine, a
    router tier) are engine costs."""
    for stage, seconds in stage_seconds.items():
        if stage in ("intent", "policy", "tool"):
            latency.record(stage, seconds * 1000)
        else:
            costs.add(stage, seconds)
