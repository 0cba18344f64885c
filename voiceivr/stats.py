"""``voiceivr stats``: what the calls of a time range did, from the database.

The same figures the Prometheus endpoint exports live: per-stage latency p50/p95, calls by outcome, barge-ins,
budget breaches, errors, and engine-seconds per call and per resolved task; and, side by side, the outcomes of
each dialplan version the calls ran (an A/B split's two versions, or the versions before and after a publish).
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
from voiceivr.call.lost import LOST, owner_gone
from voiceivr.db.models import Call, CallOwnerLease, DialplanVersion
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


def compute_stats(engine: Engine, since: dt.datetime, until: dt.datetime,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """The figures of the calls started in [since, until). A call still open whose serving process is gone (its
    lease ran out: voiceivr/call/lost.py) counts as ``lost`` even before a live process has marked it."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Call.outcome, Call.resolved_tasks, Call.engine_seconds, Call.stats_json, Call.ended_at,
                      Call.started_at, DialplanVersion.name, DialplanVersion.version, Call.owner,
                      CallOwnerLease.lease_until)
            .outerjoin(DialplanVersion, DialplanVersion.id == Call.dialplan_version_id)
            .outerjoin(CallOwnerLease, CallOwnerLease.owner == Call.owner)
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
    versions: dict[tuple[str, int], _Version] = {}
    for outcome, tasks, eng_s, stats_json, ended_at, started_at, plan, version, owner, lease_until in rows:
        if outcome:
            said = outcome
        elif ended_at is not None:
            said = "unknown"
        else:
            said = LOST if owner is not None and owner_gone(lease_until, now) else "in progress"
        outcomes[said] += 1
        resolved += tasks or 0
        seconds += eng_s or 0.0
        stats = json.loads(stats_json or "{}")
        key = (plan or "", version or 0)  # ("", 0): a call that ran no published version (a file, a replay)
        versions.setdefault(key, _Version()).add(said, tasks or 0, stats.get("barge_ins", 0), started_at, ended_at)
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
        "lost": outcomes.get(LOST, 0),
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
        "by_version": [versions[k].report(*k) for k in sorted(versions)],
    }


class _Version:
    """The outcomes of the calls that ran one dialplan version."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.resolved = 0
        self.barge_ins = 0
        self.durations: list[float] = []

    def add(self, outcome: str, resolved: int, barge_ins: int, started: dt.datetime | None,
            ended: dt.datetime | None) -> None:
        self.outcomes[outcome] += 1
        self.resolved += resolved
        self.barge_ins += barge_ins if isinstance(barge_ins, int) else 0
        if started is not None and ended is not None:
            self.durations.append((ended - started).total_seconds())

    def report(self, name: str, version: int) -> dict[str, Any]:
        calls = sum(self.outcomes.values())
        return {
            "dialplan": name or None,
            "version": version or None,
            "label": f"{name} v{version}" if name else "no published version",
            "calls": calls,
            "outcomes": dict(self.outcomes),
            "outcome_share": {k: round(n / calls, 4) for k, n in self.outcomes.items()},
            "resolved_tasks": self.resolved,
            "resolved_per_call": round(self.resolved / calls, 4),
            "barge_ins": self.barge_ins,
            "duration_s": {"p50": percentile(self.durations, 50), "p95": percentile(self.durations, 95)},
        }
