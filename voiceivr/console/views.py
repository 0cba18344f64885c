"""Read-only queries behind the console's pages: dialplan versions, calls and their turns, the audit trail.

Only what an admin needs is read: no page gets a payload of the audit trail other than the console's own rows
(the others may hold what callers said or keyed), and secret inputs are already ``[secret]`` in ``turns``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.audit.chain import AuditTrail
from voiceivr.audit.checkpoints import Checkpoint
from voiceivr.audit.verify import VerifyReport
from voiceivr.db.models import AuditEvent, Call, Turn
from voiceivr.dialplan.store import VersionRow, list_versions, versions_t
from voiceivr.errors import VoiceivrError
from voiceivr.yamlpos import Problem

calls_t: sa.Table = Call.__table__  # type: ignore[assignment]
turns_t: sa.Table = Turn.__table__  # type: ignore[assignment]
audit_t: sa.Table = AuditEvent.__table__  # type: ignore[assignment]


def problem_json(p: Problem) -> dict[str, Any]:
    return {"line": p.line, "col": p.col, "message": p.message, "text": str(p)}


@dataclass(frozen=True)
class DialplanSummary:
    name: str
    versions: int
    live: VersionRow


def dialplan_names(engine: Engine) -> list[DialplanSummary]:
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(sa.select(versions_t.c.name).distinct().order_by(versions_t.c.name))]
    out = []
    for name in names:
        rows = list_versions(engine, name)
        out.append(DialplanSummary(name, len(rows), rows[-1]))
    return out


def versions_of(engine: Engine, name: str) -> list[VersionRow]:
    return list_versions(engine, name[:128])


@dataclass(frozen=True)
class CallRow:
    id: str
    started_at: dt.datetime
    caller: str
    duration_s: float | None
    outcome: str
    intents: list[str]
    source: str
    barge_ins: int
    budget_breaches: int


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _stats(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, list | dict):
        return len(value)
    return 0


def _call_rows(engine: Engine, query: sa.Select[Any]) -> list[CallRow]:
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        ids = [r["id"] for r in rows]
        intents: dict[str, list[str]] = {i: [] for i in ids}
        barge_ins = dict.fromkeys(ids, 0)
        if ids:
            for t in conn.execute(sa.select(turns_t.c.call_id, turns_t.c.intent, turns_t.c.barged_in)
                                  .where(turns_t.c.call_id.in_(ids)).order_by(turns_t.c.idx)):
                if t.intent:
                    intents[t.call_id].append(t.intent)
                barge_ins[t.call_id] += bool(t.barged_in)
    out = []
    for r in rows:
        started, ended = _aware(r["started_at"]), _aware(r["ended_at"])
        stats = _stats(r["stats_json"])
        out.append(CallRow(
            r["id"], started or dt.datetime.now(dt.UTC), r["caller_uri"] or "",
            (ended - started).total_seconds() if started and ended else None, r["outcome"] or "",
            intents[r["id"]], r["source"], barge_ins[r["id"]], _count(stats.get("budget_breaches"))))
    return out


@dataclass(frozen=True)
class CallFilter:
    """What the calls page narrows the list to; empty fields do not filter."""

    outcome: str = ""
    source: str = ""
    caller: str = ""  # part of the caller's URI
    since_hours: float | None = None

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> CallFilter:
        hours = q.get("since_hours", "").strip()
        try:
            since = float(hours) if hours else None
        except ValueError:
            since = None
        if since is not None and not 0 < since <= 24 * 366:
            since = None
        return cls(q.get("outcome", "").strip()[:32], q.get("source", "").strip()[:16],
                   q.get("caller", "").strip()[:64], since)

    def apply(self, query: sa.Select[Any]) -> sa.Select[Any]:
        if self.outcome:
            query = query.where(calls_t.c.outcome == self.outcome)
        if self.source:
            query = query.where(calls_t.c.source == self.source)
        if self.caller:
            query = query.where(calls_t.c.caller_uri.contains(self.caller, autoescape=True))
        if self.since_hours is not None:
            query = query.where(calls_t.c.started_at >= dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.since_hours))
        return query


def recent_calls(engine: Engine, limit: int, where: CallFilter | None = None) -> list[CallRow]:
    query = sa.select(calls_t).order_by(calls_t.c.started_at.desc()).limit(limit)
    return _call_rows(engine, (where or CallFilter()).apply(query))


def call_outcomes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(calls_t.c.outcome).distinct().where(
            calls_t.c.outcome.is_not(None)).order_by(calls_t.c.outcome))]


def call_detail(engine: Engine, call_id: str) -> tuple[CallRow, list[dict[str, Any]]] | None:
    found = _call_rows(engine, sa.select(calls_t).where(calls_t.c.id == call_id[:36]))
    if not found:
        return None
    with engine.connect() as conn:
        turns = [dict(t) for t in conn.execute(sa.select(turns_t).where(turns_t.c.call_id == call_id)
                                               .order_by(turns_t.c.idx)).mappings()]
    return found[0], turns


@dataclass(frozen=True)
class AuditRow:
    seq: int
    created_at: dt.datetime
    kind: str
    actor: str
    call_id: str
    detail: str  # the payload of the console's own rows; others may hold what a caller said or keyed


class AuditStatus:
    """The audit page's verification, without walking the whole trail on every load: a whole walk at most every
    ``full_every_s``; in between, only the rows after the head the last walk found intact (their links, keys and
    any newer checkpoint), once that head's row is seen unchanged. A failure forgets the cache, so the next
    load walks everything again. ``voiceivr audit verify`` always walks everything."""

    def __init__(self, full_every_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every_s = full_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._intact: VerifyReport | None = None
        self._full_at = 0.0

    def report(self, trail: AuditTrail) -> tuple[VerifyReport, str]:
        """The report, and how much of the trail this load walked (for the page)."""
        with self._lock:
            now, last = self._clock(), self._intact
            if last is None or now - self._full_at >= self.full_every_s or not _unchanged(trail, last.head):
                report, how = trail.verify(), "the whole trail walked now"
                self._full_at = now
            else:
                report = trail.verify(after=last.head)
                how = (f"rows after seq {last.head.seq} walked now; the whole trail {now - self._full_at:.0f} s "
                       "ago")
            self._intact = report if report.ok else None
            return report, how


def _unchanged(trail: AuditTrail, head: Checkpoint) -> bool:
    if head.seq == 0:
        return True
    with trail.engine.connect() as conn:
        found = conn.execute(sa.select(audit_t.c.hash).where(audit_t.c.seq == head.seq)).scalar()
    return found == head.hash


def audit_view(engine: Engine, limit: int, status: AuditStatus | None = None
               ) -> tuple[VerifyReport | str, list[AuditRow], str]:
    trail = AuditTrail(engine)
    how = ""
    try:
        report: VerifyReport | str
        report, how = (status or AuditStatus(full_every_s=0)).report(trail)
    except VoiceivrError as exc:
        report = f"cannot verify: {exc}"
    rows = [AuditRow(r.seq, r.created_at, r.kind, r.actor, r.call_id or "",
                     r.payload if r.kind.startswith("console.") else "")
            for r in reversed(trail.tail(limit))]
    return report, rows, how
