"""``voiceivr stats``: what the calls of a time range did, from the database.

The same figures the Prometheus endpoint exports live: per-stage latency p50/p95, calls by outcome, barge-ins,
budget breaches, errors, and engine-seconds per call and per resolved task.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.call.budget import STAGES, percentile
from voiceivr.db.models import Call
from voiceivr.errors import VoiceivrError

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """'2026-11-25', '2026-11-25T10:00', or relative: '15m', '2h', '7d' (ago)."""
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(text.strip())
    if m:
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise VoiceivrError(
            f"cannot read the time {text!r}", hint="use ISO 8601 (2026-11-25T10:00) or a span ago: 30m, 2h, 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def compute_stats(engine: Engine, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Call.outcome, Call.resolved_tasks, Call.engine_seconds, Call.stats_json, Call.ended_at)
            .where(Call.started_at >= since, Call.started_at < until)
        ).all()
    outcomes: Counter[str] = Counter()
    samples: dict[str, list[float]] = defaultdict(list)
    breaches: Counter[str] = Counter()
    engine_by: dict[str, float] = defaultdict(float)
    barge_ins = 0
    barge_decisions: list[float] = []
    resolved = 0
    seconds = 0.0
    for outcome, tasks, eng_s, stats_json, ended_at in rows:
        outcomes[outcome or ("in progress" if ended_at is None else "unknown")] += 1
        resolved += tasks or 0
        seconds += eng_s or 0.0
        stats = json.loads(stats_json or "{}")
        for stage, values in stats.get("latency_samples", {}).items():
            samples[stage].extend(values)
        for b in stats.get("budget_breaches", []):
            breaches[b["stage"]] += 1
        for name, s in stats.get("engine_seconds", {}).items():
            engine_by[name] += s
        barge_ins += stats.get("barge_ins", 0)
        barge_decisions.extend(stats.get("barge_in_decision_ms", []))
    calls = len(rows)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "calls": calls,
        "outcomes": dict(outcomes),
        "errors": outcomes.get("error", 0),
        "resolved_tasks": resolved,
        "barge_ins": barge_ins,
        "barge_in_decision_ms": {"p50": percentile(barge_decisions, 50), "p95": percentile(barge_decisions, 95)},
        "stages": {
            stage: {
                "count": len(samples[stage]),
                "p50": percentile(samples[stage], 50),
                "p95": percentile(samples[stage], 95),
                "breaches": breaches.get(stage, 0),
            }
            for stage in STAGES
        },
        "engine_seconds": {
            "total": round(seconds, 3),
            "per_call": round(seconds / calls, 4) if calls else None,
            "per_resolved_task": round(seconds / resolved, 4) if resolved else None,
            "by_engine": {k: round(v, 4) for k, v in sorted(engine_by.items())},
        },
    }
