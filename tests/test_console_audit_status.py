"""The console's audit page verifies without walking the whole trail on every load: a resumed walk (rows after a
head found intact) agrees with a whole walk and catches a forged row after it; a whole walk still runs every
`full_every_s`, and whenever the head it trusted has changed (SQLite: the tampering is the same on PostgreSQL,
tests/test_audit.py)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from tests.support.tamper import superuser_sql
from voiceivr.audit.chain import AuditTrail
from voiceivr.console.views import AuditStatus, audit_view
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine


def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine


def _fill(trail: AuditTrail, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        trail.append("console.test", {"n": i}, actor="admin:pat")


def test_a_resumed_walk_agrees_with_a_whole_one(sqlite_url: str) -> None:
    trail = AuditTrail(_engine(sqlite_url))
    _fill(trail, 6)
    middle = trail.verify().head
    _fill(trail, 5, 6)
    whole, resumed = trail.verify(), trail.verify(after=middle)
    assert whole.ok and resumed.ok and (resumed.rows, resumed.head) == (whole.rows, whole.head)
    assert trail.verify(after=whole.head).head == whole.head  # nothing new: still intact


def test_the_page_walks_only_new_rows_between_whole_walks_and_catches_a_forgery(sqlite_url: str) -> None:
    engine = _engine(sqlite_url)
    trail = AuditTrail(engine)
    _fill(trail, 5)
    now = [1000.0]
    status = AuditStatus(full_every_s=300, clock=lambda: now[0])
    report, how = status.report(trail)
    assert report.ok and report.rows == 5 and how == "the whole trail walked now"
    _fill(trail, 3, 5)
    now[0] += 10
    report, how = status.report(trail)
    assert report.ok and report.rows == 8 and how.startswith("rows after seq 5 walked now; the whole trail 10 s ago")
    now[0] += 300
    assert status.report(trail)[1] == "the whole trail walked now"  # every full_every_s

    # A row forged after the trusted head (a superuser INSERT with a made-up link) is caught by the resumed walk.
    superuser_sql(sqlite_url, ["INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, "
                               "prev_hash, hash, key_id) SELECT seq + 1, created_at, call_id, kind, actor, "
                               "'{\"n\":99}', hash, 'f' || substr(hash, 2), key_id FROM audit_events WHERE seq = 8"])
    now[0] += 1
    report, how = status.report(trail)
    assert not report.ok and report.first_bad_seq == 9 and how.startswith("rows after seq 8")
    assert status.report(trail)[1] == "the whole trail walked now"  # a failure forgets what it trusted


def test_an_edited_trusted_head_means_a_whole_walk(sqlite_url: str) -> None:
    engine = _engine(sqlite_url)
    trail = AuditTrail(engine)
    _fill(trail, 4)
    status = AuditStatus(full_every_s=3600)
    assert status.report(trail)[0].ok
    superuser_sql(sqlite_url, ["UPDATE audit_events SET payload = '{\"n\":7}' WHERE seq = 4",
                               "UPDATE audit_events SET hash = CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END"
                                   " || substr(hash, 2) WHERE seq = 4"])
    report, how = status.report(trail)
    assert how == "the whole trail walked now" and not report.ok and report.first_bad_seq == 4
    shown, rows, shown_how = audit_view(engine, 10)  # no status: a whole walk, as before
    assert not isinstance(shown, str) and not shown.ok and len(rows) == 4 and shown_how == "the whole trail walked now"
