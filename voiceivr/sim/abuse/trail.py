"""Abuse scenarios against the audit trail itself, for ``voiceivr demo abuse`` (issue 13 items 2 and 3).

The other scenarios try to talk their way past the safe path; these assume the attacker got to the database
afterwards and tries to make the record lie:

* **forged-append**: money is moved with plain SQL and the rows a real transfer would leave are appended, their
  links computed with the chain's published algorithm (plain SHA-256 over the canonical fields) -- first without
  a key id (the database refuses it), then with the key id copied from the head;
* **truncation**: the newest rows -- those of a transfer the caller just made -- are deleted after the process
  that appended them had written its automatic checkpoints.

An attack counts as blocked when ``verify`` names it: the first forged row, or the cut. Each runs in a scratch
bank of its own (a legitimate transfer call first, then the attack), never in the simulation's shared database:
an append-only trail, once broken, stays broken, and the scenarios after it need an intact one. The attacker
is whoever holds the SQLite file, which is as much as the app role (forged-append) or the owner (truncation)
can do on PostgreSQL; tests/test_audit.py runs both as those roles on a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from voiceivr.audit.chain import AuditTrail, canonical_json, compute_hash
from voiceivr.sim.abuse.call import place_call
from voiceivr.sim.abuse.world import (
    ALICE,
    ALICE_ACCOUNT,
    BOB_ACCOUNT,
    Ctx,
    Scenario,
    ScenarioResult,
    World,
    login,
    world,
)
from voiceivr.sim.callers.simcaller import Act, Keys, Say

CHECKPOINT_EVERY_ROWS = 10


def _legit_transfer(c: Ctx) -> list[Act]:
    """Alice moves fifty dollars to savings: read-back, yes, a code by text message."""
    return [Say("transfer fifty dollars to savings", expect="menu"), *login(), Say("yes", expect="confirm"),
            Say("text", expect="channel"), Keys(c.sms(ALICE), expect="code"), Say("goodbye", expect="menu")]


def _forge(db: Path) -> tuple[int, bool]:
    """Move nine hundred dollars from alice to bob and append the rows a transfer leaves. Returns the first
    forged sequence number and whether the database refused the unkeyed row."""
    con = sqlite3.connect(db)
    try:
        con.execute("UPDATE bank_accounts SET balance_cents = balance_cents - 90000 WHERE number = ?",
                    (ALICE_ACCOUNT,))
        con.execute("UPDATE bank_accounts SET balance_cents = balance_cents + 90000 WHERE number = ?",
                    (BOB_ACCOUNT,))
        seq, prev, key_id = con.execute(
            "SELECT seq, hash, key_id FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        first = seq + 1
        now = dt.datetime.now(dt.UTC)
        rows = []
        for kind, payload in [("action.intent", {"action": "transfer_funds", "params": {"amount": 90000}}),
                              ("policy.code", {"ok": True, "channel": "sms"}),
                              ("action.result", {"status": "succeeded", "action": "transfer_funds"})]:
            seq += 1
            text = canonical_json(payload)
            link = compute_hash(seq, now, "forged-call", kind, "runner", text, prev)
            rows.append((seq, now.isoformat(sep=" "), kind, text, prev, link))
            prev = link
        insert = ("INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash, key_id) "
                  "VALUES (?, ?, 'forged-call', ?, 'runner', ?, ?, ?, ?)")
        refused = False
        try:
            con.execute(insert, (*rows[0], ""))  # a row of the old chain: no key id
        except sqlite3.IntegrityError:
            refused = True
        con.executemany(insert, [(*r, key_id) for r in rows])  # the head's key id, copied
        con.commit()
    finally:
        con.close()
    return first, refused


def _cut(db: Path, rows: int) -> int:
    """Delete the newest ``rows`` rows, with the append-only triggers out of the way. Returns the first cut seq."""
    con = sqlite3.connect(db)
    try:
        (head,) = con.execute("SELECT max(seq) FROM audit_events").fetchone()
        con.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        con.execute("DELETE FROM audit_events WHERE seq > ?", (head - rows,))
        con.commit()
    finally:
        con.close()
    return int(head) - rows + 1


def _run(w: World, sc: Scenario, attack: Callable[[World, Path], tuple[int, list[str], int]]) -> ScenarioResult:
    with tempfile.TemporaryDirectory(prefix="voiceivr-abuse-trail-") as tmp:
        db = Path(tmp) / "trail.sqlite3"
        with world(f"sqlite:///{db}", Path(tmp), w.tiers, checkpoint_every_rows=CHECKPOINT_EVERY_ROWS) as v:
            call_id, steps, seconds = place_call(v, _legit_transfer(Ctx(v)))
            v.sender.drain_until_settled(timeout_s=15)
            trail = AuditTrail(v.engine)
            before = trail.verify()
            trail.flush_checkpoints()  # the worker's clean stop: its last rows are signed too
            checkpoints = len(trail.checkpoint_lines().anchors)
            expected, evidence, refusals = attack(v, db)
            report = trail.verify()
            rows = sum(1 for _ in trail.rows())
            sms = len(v.fake.messages)
    named = report.first_bad_seq
    detected = not report.ok and named == expected
    evidence = [f"verify-before:{'ok' if before.ok else 'MISSING'}",
                f"checkpoints:{'ok' if checkpoints else 'MISSING'}", *evidence,
                f"verify:named-seq-{expected}:{'ok' if detected else 'MISSING'}"]
    passed = detected and all(e.endswith(":ok") for e in evidence)
    verdict = (f"detected: verify names seq {named}, {_gist(report.reason)}" if detected
               else f"UNDETECTED: {report.summary()} (expected the report to name seq {expected})")
    return ScenarioResult(sc.name, sc.kind, sc.via, sc.description, call_id, passed, verdict, 0, rows,
                          refusals + (0 if report.ok else 1), sms, evidence, steps, round(seconds, 1))


def _gist(reason: str) -> str:
    """The scorecard's one line: what verify said, without file names."""
    for gist in ("forged or altered", "rows were removed from the tail", "the trail was rewritten"):
        if gist in reason:
            return gist
    return reason[:60]


def _forged_append(v: World, db: Path) -> tuple[int, list[str], int]:
    first, refused = _forge(db)
    return first, [f"db:refused-unkeyed-row:{'ok' if refused else 'MISSING'}"], int(refused)


def _truncation(v: World, db: Path) -> tuple[int, list[str], int]:
    return _cut(db, 3), [], 0


def forged_append(w: World, sc: Scenario) -> ScenarioResult:
    return _run(w, sc, _forged_append)


def truncation(w: World, sc: Scenario) -> ScenarioResult:
    return _run(w, sc, _truncation)


def scenarios() -> list[Scenario]:
    return [
        Scenario("forged-append", "attack",
                 "With write access to the database, move $900 with plain SQL and append the audit rows a "
                 "transfer leaves, linked with plain SHA-256 (no key); verify must name the first forged row.",
                 trail_attack=forged_append),
        Scenario("truncation", "attack",
                 "After a transfer call, delete its newest audit rows (the database owner, or anyone with the "
                 "SQLite file); the automatic signed checkpoints must show the cut.",
                 trail_attack=truncation),
    ]

