"""The audit trail: append-only, chained by a keyed MAC, verifiable; tampering of every kind is detected,
including rows appended by someone who may INSERT but has no key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.support.tamper import superuser_sql
from voiceivr.audit.chain import (
    AuditRecord,
    AuditTrail,
    Checkpoint,
    canonical_json,
    compute_hash,
    compute_mac,
    verify_rows,
)
from voiceivr.audit.keys import Keyring
from voiceivr.cli import cli
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.db.roles import create_app_role
from voiceivr.demo import actions as bank

SECRET_TRANSCRIPT = "my pin is 4 8 1 5 and transfer 900 dollars"
KEYRING = Keyring.from_secrets(["unit-test-audit-key-" + "u" * 32])
KEY = KEYRING.current


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
        digest = compute_mac(KEY, seq, created, f"c{seq % 3}", "kind", "caller", payload, prev)
        out.append(AuditRecord(seq, created, f"c{seq % 3}", "kind", "caller", payload, prev, digest, KEY.key_id))
        prev = digest
    return out


def _link(r: AuditRecord, how: str) -> str:
    fields = (r.seq, r.created_at, r.call_id, r.kind, r.actor, r.payload, r.prev_hash)
    if how == "key":  # an insider holding the key
        return compute_mac(KEY, *fields)
    if how == "sha256":  # the algorithm of the old chain, which anyone can run
        return compute_hash(*fields)
    return compute_mac(Keyring.from_secrets(["a-guessed-key-" + "g" * 40]).current, *fields)  # with a guess


def _rehash_from(rows: list[AuditRecord], start: int, how: str = "key") -> list[AuditRecord]:
    """What an attacker who knows the algorithm does: recompute every link from ``start`` on."""
    rows = list(rows)
    for i in range(start, len(rows)):
        prev = rows[i - 1].hash if i else "0" * 64
        r = dataclasses.replace(rows[i], prev_hash=prev)
        rows[i] = dataclasses.replace(r, hash=_link(r, how))
    return rows


def _mutate(rows: list[AuditRecord], rng: random.Random) -> tuple[str, list[AuditRecord], set[int]]:
    """Returns (what was done, the tampered rows, the sequence numbers verify may name)."""
    n = len(rows)
    i = rng.randrange(n)
    seq = rows[i].seq
    kind = rng.choice(["edit", "edit", "edit", "delete", "swap", "insert", "duplicate", "truncate", "rewrite",
                       "forge", "append"])
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
        # a row made with the key (an insider), the rest renumbered but not rehashed
        prev = rows[i - 1].hash if i else "0" * 64
        payload = canonical_json({"forged": True})
        forged = AuditRecord(seq, rows[i].created_at, None, "kind", "caller", payload, prev,
                             compute_mac(KEY, seq, rows[i].created_at, None, "kind", "caller", payload, prev),
                             KEY.key_id)
        shifted = [dataclasses.replace(r, seq=r.seq + 1) for r in rows[i:]]
        return f"insert before {seq}", [*rows[:i], forged, *shifted], {seq, seq + 1}
    if kind in ("forge", "append"):
        # without the key: change a row (forge) or add rows after the head (append), and make every link
        # from there on consistent the only ways one can -- the old SHA-256, or a guessed key
        how = rng.choice(["sha256", "guess"])
        key_id = rng.choice([KEY.key_id, "", "k000000000000"])
        if kind == "forge":
            r = rows[i]
            out[i] = dataclasses.replace(r, payload=canonical_json({**json.loads(r.payload), "amount_cents": 1}),
                                         key_id=key_id)
            # a first row passed off as a legacy one fits as far as it goes: the keyed row after it, whose MAC
            # vouches for it, is where the chain breaks
            allowed = {seq, seq + 1} if key_id == "" and seq == 1 else {seq}
            return f"forge {seq} ({how}, key id {key_id!r})", _rehash_from(out, i, how), allowed
        extra = rng.randrange(1, 4)
        last = rows[-1]
        out += [dataclasses.replace(last, seq=n + k, payload=canonical_json({"forged": k}), key_id=key_id)
                for k in range(1, extra + 1)]
        return f"append {extra} ({how}, key id {key_id!r})", _rehash_from(out, n, how), {n + 1}
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


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_thousand_random_mutations_are_all_detected() -> None:
    rows = _make_records(40)
    checkpoint = Checkpoint(rows[-1].seq, rows[-1].hash)
    assert verify_rows(rows, KEYRING, [checkpoint]).ok
    rng = random.Random(20261125)
    kinds: dict[str, int] = {}
    for _ in range(1000):
        what, tampered, allowed = _mutate(rows, rng)
        kinds[what.split()[0]] = kinds.get(what.split()[0], 0) + 1
        report = verify_rows(tampered, KEYRING, [checkpoint])
        assert not report.ok, f"undetected: {what}"
        assert report.first_bad_seq in allowed, f"{what}: named {report.first_bad_seq}, expected {allowed}"
        if what.startswith(("forge", "append")):
            assert "forged or altered" in report.reason, what
    assert set(kinds) == {"edit", "delete", "swap", "insert", "duplicate", "truncate", "rewrite", "forge",
                          "append"}


def test_rows_forged_without_the_key_fail_even_with_no_checkpoint() -> None:
    """The keyed chain alone catches a forged append: no checkpoint needed, the first forged row is named."""
    rows = _make_records(10)
    for how in ("sha256", "guess"):
        forged = _rehash_from([*rows, dataclasses.replace(rows[-1], seq=11), dataclasses.replace(rows[-1], seq=12)],
                              10, how)
        report = verify_rows(forged, KEYRING)
        assert not report.ok and report.first_bad_seq == 11, report.summary()
        assert "forged or altered" in report.reason and KEY.key_id in report.reason


def test_without_checkpoint_only_the_tail_is_invisible() -> None:
    rows = _make_records(10)
    assert verify_rows(rows[:7], KEYRING).ok  # a shortened chain is still a chain: that is what checkpoints are for
    report = verify_rows(rows[:7], KEYRING, [Checkpoint(10, rows[-1].hash)])
    assert not report.ok and report.first_bad_seq == 8 and "checkpoint" in report.reason


# ------------------------------------------------------------------------ tampering with the real database


def _cli(url: str, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"VOICEIVR_DATABASE_URL": url, **env})
    return result.exit_code, result.output


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
          "INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash, key_id) "
          "SELECT 6, created_at, call_id, kind, actor, payload, prev_hash, "
          "CASE WHEN substr(hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END || substr(hash, 2), key_id "
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
    superuser_sql(db_url, statements)
    code, out = _cli(db_url, "audit", "verify")
    assert code == 1
    assert f"BROKEN at seq {bad_seq}:" in out


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_checkpoint_catches_truncated_tail(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    _fill(AuditTrail(engine), 8)
    engine.dispose()
    cp = tmp_path / "head.jsonl"
    code, out = _cli(db_url, "audit", "checkpoint", "-o", str(cp))
    assert code == 0 and "seq 8 hash" in out and "signed with key" in out
    (line,) = cp.read_text().splitlines()
    assert json.loads(line)["seq"] == 8 and len(json.loads(line)["sig"]) == 128
    unsigned = tmp_path / "kept-by-hand.json"  # what `audit checkpoint -o` wrote before checkpoints were signed
    unsigned.write_text(canonical_json({"seq": 8, "hash": json.loads(line)["head"]}) + "\n")
    superuser_sql(db_url, ["DELETE FROM audit_events WHERE seq >= 7"])
    code, out = _cli(db_url, "audit", "verify")  # the signed checkpoint went to audit.checkpoint_file too
    assert code == 1 and "BROKEN at seq 7:" in out and "names seq 8" in out and "rows were removed" in out
    elsewhere = {"VOICEIVR_AUDIT_CHECKPOINT_FILE": str(tmp_path / "none-yet.jsonl")}
    code, out = _cli(db_url, "audit", "verify", **elsewhere)
    assert code == 0 and "a cut tail would go unnoticed" in out, "with no checkpoint a cut tail looks shorter"
    for kept in (cp, unsigned):
        code, out = _cli(db_url, "audit", "verify", "--checkpoint", str(kept), **elsewhere)
        assert code == 1 and "BROKEN at seq 7:" in out and f"{kept}:1" in out and "names seq 8" in out


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_bad_checkpoint_file_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    bad = tmp_path / "cp.json"
    bad.write_text("hello")
    code, out = _cli(sqlite_url, "audit", "verify", "--checkpoint", str(bad))
    assert code == 1 and "not a checkpoint file" in out and "Traceback" not in out


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
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


def _append_worker(url: str, worker: int, count: int, checkpoints: str) -> None:
    """One writer process (spawned, not forked), bound the way a worker is: the run's key from the environment,
    automatic checkpoints into the shared file."""
    from voiceivr.audit.config import AuditConfig, bind
    from voiceivr.settings import load_settings

    engine = make_engine(url)
    config = AuditConfig.from_settings(load_settings()[0])
    config.checkpoint_file, config.every_rows, config.every_s = Path(checkpoints), 25, 0.05
    bind(engine, config)
    trail = AuditTrail(engine)
    for i in range(count):
        trail.append("load", {"worker": worker, "i": i}, call_id=f"w{worker}")
    trail.flush_checkpoints()  # a clean stop leaves no unsigned tail (spawned children skip atexit)
    engine.dispose()


def _run_writers(url: str, processes: int, each: int, checkpoints: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(url, w, each, str(checkpoints))) for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"


def _check_checkpoints(trail: AuditTrail, path: Path, rows: int) -> None:
    """Every line whole and signed, every checkpoint on the chain, the newest at the head."""
    lines = trail.checkpoint_lines(path)
    assert lines.problems == []
    assert len(lines.anchors) >= rows // 25, "a checkpoint at least every 25 rows of the trail"
    assert lines.newest is not None and lines.newest.seq == rows
    by_seq = {r.seq: r.hash for r in trail.rows()}
    assert all(by_seq[a.seq] == a.hash for a in lines.anchors)
    report = trail.verify(checkpoint_files=[path])
    assert report.ok and report.checkpoints == len(lines.anchors), report.summary()


@pytest.mark.postgres
@pytest.mark.slow
def test_eight_processes_append_one_unbroken_chain_postgres(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    _run_writers(pg_url, 8, 200, tmp_path / "checkpoints.jsonl")
    trail = AuditTrail(engine)
    report = trail.verify()
    assert report.ok, report.summary()
    assert report.rows == 1600 and report.head.seq == 1600
    per_worker: dict[int, list[int]] = {}
    for r in trail.rows():
        p = r.payload_obj()
        per_worker.setdefault(p["worker"], []).append(p["i"])
    assert all(v == list(range(200)) for v in per_worker.values()) and len(per_worker) == 8
    _check_checkpoints(trail, tmp_path / "checkpoints.jsonl", 1600)
    engine.dispose()
    assert _cli(pg_url, "audit", "verify", VOICEIVR_AUDIT_CHECKPOINT_FILE=str(tmp_path / "checkpoints.jsonl"))[0] == 0


@pytest.mark.slow
def test_several_processes_append_one_unbroken_chain_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    _run_writers(sqlite_url, 4, 50, tmp_path / "checkpoints.jsonl")
    trail = AuditTrail(engine)
    report = trail.verify()
    assert report.ok and report.rows == 200, report.summary()
    _check_checkpoints(trail, tmp_path / "checkpoints.jsonl", 200)
    engine.dispose()


# --------------------------------------------------------------------------- the least-privilege app role


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
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


# ------------------------------------------------------------- the attacks of issue 13 that used to verify


def _forge_rows_as_app_role(conn: sa.Connection, count: int) -> int:
    """The original attack, in plain SQL as the application role: read the head, append rows whose links are
    computed with the chain's published algorithm (SHA-256 of the canonical fields). Returns the first forged
    sequence number."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_events")}
    head = conn.execute(sa.text("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1")).mappings().one()
    seq, prev = int(head["seq"]), str(head["hash"])
    first = seq + 1
    now = dt.datetime.now(dt.UTC)
    for kind, payload in [("action.intent", {"action": "transfer_funds", "params": {"amount": 90000, "to": "bob"}}),
                          ("policy.code", {"ok": True, "channel": "sms"}),
                          ("action.result", {"status": "succeeded", "action": "transfer_funds"})][:count]:
        seq += 1
        text = canonical_json(payload)
        link = compute_hash(seq, now, "c-forged", kind, "runner", text, prev)
        values = {"seq": seq, "t": now, "kind": kind, "payload": text, "prev": prev, "hash": link}
        extra_col, extra_val = "", ""
        if "key_id" in columns:  # rows must name a key now: the attacker copies the head's key id
            extra_col, extra_val, values["key_id"] = ", key_id", ", :key_id", head["key_id"]
        conn.execute(sa.text(
            f"INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash{extra_col}) "
            f"VALUES (:seq, :t, 'c-forged', :kind, 'runner', :payload, :prev, :hash{extra_val})"), values)
        prev = link
    return first


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.postgres
def test_money_moved_and_rows_forged_by_the_app_role_are_named(pg_url: str, tmp_path: Path) -> None:
    """Issue 13 item 2: as the application role (INSERT/SELECT on audit_events), move money with plain SQL and
    append three rows computed with plain SHA-256. `audit verify` passed, with and without --checkpoint; now it
    names the first forged row."""
    owner = make_engine(pg_url)
    migrate.upgrade(owner)
    bank.seed(owner)
    role = "voiceivr_app_attack"
    create_app_role(owner, role)
    app_url = make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
    try:
        app = make_engine(app_url)
        _fill(AuditTrail(app), 5)  # what the application itself appended
        kept = tmp_path / "kept.jsonl"
        assert _cli(app_url, "audit", "checkpoint", "-o", str(kept))[0] == 0
        assert _cli(app_url, "audit", "verify")[0] == 0
        with app.begin() as conn:
            conn.execute(sa.text("UPDATE bank_accounts SET balance_cents = balance_cents - 90000 "
                                 "WHERE number = '10000001'"))
            conn.execute(sa.text("UPDATE bank_accounts SET balance_cents = balance_cents + 90000 "
                                 "WHERE number = '20000001'"))
            first = _forge_rows_as_app_role(conn, 3)
        app.dispose()
        assert first == 6
        for args in ([], ["--checkpoint", str(kept)]):
            code, out = _cli(app_url, "audit", "verify", *args)
            assert code == 1, out
            assert "BROKEN at seq 6:" in out and "forged or altered" in out, out
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.postgres
def test_app_role_cannot_append_an_unkeyed_row(pg_url: str) -> None:
    """The old link had no key id; since 0005 the database refuses such a row from anyone, so legacy rows can
    only be those from before the upgrade."""
    owner = make_engine(pg_url)
    migrate.upgrade(owner)
    role = "voiceivr_app_unkeyed"
    create_app_role(owner, role)
    app_url = make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
    try:
        app = make_engine(app_url)
        AuditTrail(app).append("login", {"ok": True})
        with pytest.raises(DBAPIError, match="need a key id"), app.begin() as conn:
            conn.execute(sa.text("INSERT INTO audit_events (seq, created_at, kind, actor, payload, prev_hash, hash) "
                                 "SELECT seq + 1, created_at, kind, actor, payload, hash, md5(hash) || md5(hash) "
                                 "FROM audit_events"))
        app.dispose()
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()


WORKER = """
import sys
from voiceivr.app import AppContext
from voiceivr.audit.chain import AuditTrail
trail = AuditTrail(AppContext().ready_engine())
for i in range(int(sys.argv[1])):
    trail.append("policy.decide", {"i": i, "text": "transfer nine hundred dollars"}, call_id="c-1")
"""


def _cut_tail(url: str, from_seq: int) -> None:
    """The database's owner (or anyone holding the SQLite file) deletes the newest rows, triggers or not."""
    if make_url(url).get_backend_name() == "sqlite":
        superuser_sql(url, [f"DELETE FROM audit_events WHERE seq >= {from_seq}"])
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the owner may disable its own table's triggers
        conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"DELETE FROM audit_events WHERE seq >= {from_seq}")
        conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER USER")
    engine.dispose()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("cut_from", [24, 1])
def test_a_cut_tail_is_caught_by_the_automatic_checkpoints(db_url: str, tmp_path: Path, cut_from: int) -> None:
    """Issue 13 item 3: a process appends as a worker does and exits; the owner deletes the newest rows (or
    all of them). `audit verify` passed; now the checkpoints the appending process wrote on its own name the
    cut."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    engine.dispose()
    checkpoints = tmp_path / "outside-the-database" / "audit-checkpoints.jsonl"
    env = {**os.environ, "VOICEIVR_DATABASE_URL": db_url, "VOICEIVR_AUDIT_CHECKPOINT_FILE": str(checkpoints),
           "VOICEIVR_AUDIT_CHECKPOINT_EVERY_ROWS": "10", "VOICEIVR_AUDIT_CHECKPOINT_EVERY_S": "0.2",
           "VOICEIVR_PATHS_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run([sys.executable, "-c", WORKER, "25"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _cli(db_url, "audit", "verify", VOICEIVR_AUDIT_CHECKPOINT_FILE=str(checkpoints))[0] == 0
    _cut_tail(db_url, cut_from)
    code, out = _cli(db_url, "audit", "verify", VOICEIVR_AUDIT_CHECKPOINT_FILE=str(checkpoints))
    assert code == 1, out
    assert f"BROKEN at seq {cut_from}:" in out and "names seq 25" in out and "rows were removed" in out
