"""The audit trail: append-only, hash-chained, verifiable; tampering of every kind is detected."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from voiceivr.audit.chain import (
    AuditRecord,
    AuditTrail,
    Checkpoint,
    canonical_json,
    compute_hash,
    verify_rows,
)
from voiceivr.cli import cli
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.db.roles import create_app_role

SECRET_TRANSCRIPT = "my pin is 4 8 1 5 and transfer 900 dollars"


def _fill(trail: AuditTrail, n: int) -> list[AuditRecord]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        out.append(
            trail.append(
                rng.choice(["utterance", "policy.decision", "action.intent", "action.result"]),
                {"i": i, "transcript": f"{SECRET_TRANSCRIPT} #{i}", "confidence": rng.random(), "ü": "ünïcode"},
                actor=rng.choice(["caller", "system"]),
                call_id=f"call-{i % 5}",
            )
        )
    return out


def test_append_and_verify(migrated_engine: sa.Engine) -> None:
    trail = AuditTrail(migrated_engine)
    assert trail.verify().ok and trail.verify().rows == 0
    records = _fill(trail, 25)
    assert [r.seq for r in records] == list(range(1, 26))
    assert records[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    stored = list(trail.rows(batch=7))  # several batches
    assert stored == records
    report = trail.verify(Checkpoint(25, records[-1].hash))
    assert report.ok, report.summary()
    assert report.rows == 25 and report.head == trail.head() == Checkpoint(25, records[-1].hash)


def test_payloads_never_reach_the_logs(migrated_engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _fill(AuditTrail(migrated_engine), 3)
    assert caplog.records, "appends are logged (by sequence number)"
    text = caplog.text + " ".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "pin is" not in text and "4 8 1 5" not in text


# ------------------------------------------------------------------------------------- random tampering


def _make_records(n: int) -> list[AuditRecord]:
    prev = "0" * 64
    out = []
    t0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    for seq in range(1, n + 1):
        created = t0 + dt.timedelta(milliseconds=137 * seq)
        payload = canonical_json({"n": seq, "text": f"utterance {seq}", "amount_cents": seq * 100})
        digest = compute_hash(seq, created, f"c{seq % 3}", "kind", "caller", payload, prev)
        out.append(AuditRecord(seq, created, f"c{seq % 3}", "kind", "caller", payload, prev, digest))
        prev = digest
    return out


def _rehash_from(rows: list[AuditRecord], start: int) -> list[AuditRecord]:
    """What an attacker who knows the algorithm does: recompute every hash from ``start`` on."""
    rows = list(rows)
    for i in range(start, len(rows)):
        prev = rows[i - 1].hash if i else "0" * 64
        r = dataclasses.replace(rows[i], prev_hash=prev)
        rows[i] = dataclasses.replace(
            r, hash=compute_hash(r.seq, r.created_at, r.call_id, r.kind, r.actor, r.payload, r.prev_hash)
        )
    return rows


def _mutate(rows: list[AuditRecord], rng: random.Random) -> tuple[str, list[AuditRecord], set[int]]:
    """Returns (what was done, the tampered rows, the sequence numbers verify may name)."""
    n = len(rows)
    i = rng.randrange(n)
    seq = rows[i].seq
    kind = rng.choice(["edit", "edit", "edit", "delete", "swap", "insert", "duplicate", "truncate", "rewrite"])
    out = list(rows)
    if kind == "edit":
        field = rng.choice(["created_at", "call_id", "kind", "actor", "payload", "prev_hash", "hash"])
        r = rows[i]
        new: object
        if field == "created_at":
            new = r.created_at + dt.timedelta(microseconds=rng.choice([-1, 1, 1000, 3_600_000_000]))
        elif field == "payload":
            obj = json.loads(r.payload)
            obj["amount_cents"] += rng.choice([-1, 1, 100_000])
            new = canonical_json(obj)
        elif field in ("prev_hash", "hash"):
            new = f"{rng.getrandbits(256):064x}"
        else:
            new = getattr(r, field) + rng.choice(["x", " ", "0"])
        out[i] = dataclasses.replace(r, **{field: new})
        return f"edit {field} of {seq}", out, {seq}
    if kind == "delete":
        del out[i]
        return f"delete {seq}", out, {seq}
    if kind == "swap":
        j = rng.choice([k for k in range(n) if k != i])
        lo, hi = sorted((i, j))
        # contents trade places; each keeps the other's slot (sequence number)
        a, b = rows[lo], rows[hi]
        out[lo] = dataclasses.replace(b, seq=a.seq)
        out[hi] = dataclasses.replace(a, seq=b.seq)
        return f"swap {a.seq}<->{b.seq}", out, {a.seq}
    if kind == "insert":
        # a forged row with a valid hash of its own, the rest renumbered but not rehashed
        prev = rows[i - 1].hash if i else "0" * 64
        payload = canonical_json({"forged": True})
        forged = AuditRecord(seq, rows[i].created_at, None, "kind", "caller", payload, prev,
                             compute_hash(seq, rows[i].created_at, None, "kind", "caller", payload, prev))
        shifted = [dataclasses.replace(r, seq=r.seq + 1) for r in rows[i:]]
        return f"insert before {seq}", [*rows[:i], forged, *shifted], {seq, seq + 1}
    if kind == "duplicate":
        out.insert(i + 1, rows[i])
        return f"duplicate {seq}", out, {seq, seq + 1}
    if kind == "truncate":
        k = rng.randrange(1, n - i + 1)
        return f"truncate last {k}", rows[: n - k], {n - k + 1}
    # rewrite: change a row, then recompute the whole tail so the chain itself is consistent again;
    # only the checkpoint (kept elsewhere) can tell.
    r = rows[i]
    out[i] = dataclasses.replace(r, payload=canonical_json({**json.loads(r.payload), "amount_cents": 1}))
    return f"rewrite tail from {seq}", _rehash_from(out, i), {n}


def test_a_thousand_random_mutations_are_all_detected() -> None:
    rows = _make_records(40)
    checkpoint = Checkpoint(rows[-1].seq, rows[-1].hash)
    assert verify_rows(rows, checkpoint).ok
    rng = random.Random(20261125)
    kinds: dict[str, int] = {}
    for _ in range(1000):
        what, tampered, allowed = _mutate(rows, rng)
        kinds[what.split()[0]] = kinds.get(what.split()[0], 0) + 1
        report = verify_rows(tampered, checkpoint)
        assert not report.ok, f"undetected: {what}"
        assert report.first_bad_seq in allowed, f"{what}: named {report.first_bad_seq}, expected {allowed}"
    assert set(kinds) == {"edit", "delete", "swap", "insert", "duplicate", "truncate", "rewrite"}


def test_without_checkpoint_only_the_tail_is_invisible() -> None:
    rows = _make_records(10)
    assert verify_rows(rows[:7]).ok  # a shortened chain is still a chain: that is what checkpoints are for
    report = verify_rows(rows[:7], Checkpoint(10, rows[-1].hash))
    assert not report.ok and report.first_bad_seq == 8 and "checkpoint" in report.reason


# ------------------------------------------------------------------------ tampering with the real database


def _cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"VOICEIVR_DATABASE_URL": url})
    return result.exit_code, result.output


def _superuser_sql(url: str, statements: list[str]) -> None:
    """Tamper the way a database superuser could: with the append-only triggers out of the way."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        con = sqlite3.connect(make_url(url).database or "")
        con.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        con.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for s in statements:
            con.execute(s)
        con.commit()
        con.close()
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET session_replication_role = replica")  # superuser: triggers off
        for s in statements:
            conn.exec_driver_sql(s)
    engine.dispose()


@pytest.mark.parametrize(
    ("statements", "bad_seq"),
    [
        (["UPDATE audit_events SET payload = replace(payload, '#4', '#5') WHERE seq = 5"], 5),
        (["UPDATE audit_events SET actor = CASE actor WHEN 'caller' THEN 'system' ELSE 'caller' END "
          "WHERE seq = 2"], 2),
        (["DELETE FROM audit_events WHERE seq = 7"], 7),
        (["UPDATE audit_events SET seq = seq + 100 WHERE seq = 3",
          "UPDATE audit_events SET seq = 3 WHERE seq = 4",
          "UPDATE audit_events SET seq = 4 WHERE seq = 103"], 3),
        (["UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 6",
          "INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash) "
          "SELECT 6, created_at, call_id, kind, actor, payload, prev_hash, "
          "CASE WHEN substr(hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END || substr(hash, 2) "
          "FROM audit_events WHERE seq = 5",
          "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1006"], 6),
    ],
    ids=["edit-payload", "edit-actor", "delete", "reorder", "insert"],
)
def test_superuser_tampering_is_named_by_cli(db_url: str, statements: list[str], bad_seq: int) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    _fill(AuditTrail(engine), 10)
    engine.dispose()
    code, out = _cli(db_url, "audit", "verify")
    assert code == 0, out
    _superuser_sql(db_url, statements)
    code, out = _cli(db_url, "audit", "verify")
    assert code == 1
    assert f"BROKEN at seq {bad_seq}:" in out


def test_checkpoint_catches_truncated_tail(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    _fill(AuditTrail(engine), 8)
    engine.dispose()
    cp = tmp_path / "head.json"
    code, out = _cli(db_url, "audit", "checkpoint", "-o", str(cp))
    assert code == 0 and "seq 8 hash" in out
    assert Checkpoint.load(cp).seq == 8
    _superuser_sql(db_url, ["DELETE FROM audit_events WHERE seq >= 7"])
    code, out = _cli(db_url, "audit", "verify")
    assert code == 0, "without a checkpoint a cut tail looks like a shorter trail"
    code, out = _cli(db_url, "audit", "verify", "--checkpoint", str(cp))
    assert code == 1 and "BROKEN at seq 7:" in out and "checkpoint names seq 8" in out


def test_bad_checkpoint_file_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    bad = tmp_path / "cp.json"
    bad.write_text("hello")
    code, out = _cli(sqlite_url, "audit", "verify", "--checkpoint", str(bad))
    assert code == 1 and "not a checkpoint file" in out and "Traceback" not in out


def test_tail_and_export(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    records = _fill(AuditTrail(engine), 6)
    engine.dispose()
    code, out = _cli(db_url, "audit", "tail", "-n", "2")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["5", "6"]
    code, out = _cli(db_url, "audit", "export", "--format", "jsonl", "--since-seq", "2")
    assert code == 0
    exported = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in exported] == [3, 4, 5, 6]
    assert exported[-1]["hash"] == records[-1].hash
    assert exported[0]["payload"]["i"] == 2


# ------------------------------------------------------------------------------------ many writers at once


def _append_worker(url: str, worker: int, count: int) -> None:
    engine = make_engine(url)
    trail = AuditTrail(engine)
    for i in range(count):
        trail.append("load", {"worker": worker, "i": i}, call_id=f"w{worker}")
    engine.dispose()


def _run_writers(url: str, processes: int, each: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(url, w, each)) for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"


@pytest.mark.postgres
@pytest.mark.slow
def test_eight_processes_append_one_unbroken_chain_postgres(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    _run_writers(pg_url, 8, 200)
    trail = AuditTrail(engine)
    report = trail.verify()
    assert report.ok, report.summary()
    assert report.rows == 1600 and report.head.seq == 1600
    per_worker: dict[int, list[int]] = {}
    for r in trail.rows():
        p = r.payload_obj()
        per_worker.setdefault(p["worker"], []).append(p["i"])
    assert all(v == list(range(200)) for v in per_worker.values()) and len(per_worker) == 8
    engine.dispose()
    assert _cli(pg_url, "audit", "verify")[0] == 0


@pytest.mark.slow
def test_several_processes_append_one_unbroken_chain_sqlite(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    _run_writers(sqlite_url, 4, 50)
    report = AuditTrail(engine).verify()
    assert report.ok and report.rows == 200, report.summary()
    engine.dispose()


# --------------------------------------------------------------------------- the least-privilege app role


@pytest.mark.postgres
def test_app_role_may_only_insert_and_select_audit_rows(pg_url: str) -> None:
    owner = make_engine(pg_url)
    migrate.upgrade(owner)
    role = "voiceivr_app_test"
    assert create_app_role(owner, role) is True
    assert create_app_role(owner, role) is False  # idempotent
    try:
        app_url = make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
        app = make_engine(app_url)
        trail = AuditTrail(app)
        trail.append("login", {"ok": True})  # INSERT + SELECT work, and the advisory lock
        assert trail.verify().ok
        for statement in (
            "UPDATE audit_events SET kind = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "DROP TABLE audit_events",
            "SET session_replication_role = replica",
        ):
            with pytest.raises(DBAPIError), app.begin() as conn:
                conn.exec_driver_sql(statement)
        with app.begin() as conn:  # the operational tables stay writable
            conn.exec_driver_sql("INSERT INTO calls (id, started_at, node, source, resolved_tasks, "
                                 "engine_seconds, stats_json) VALUES ('c1', now(), '', 'test', 0, 0, '{}')")
            conn.exec_driver_sql("UPDATE calls SET outcome = 'resolved' WHERE id = 'c1'")
        app.dispose()
        assert AuditTrail(owner).verify().rows == 1
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()
