"""The tamper-evident audit trail: append-only rows, each hash-chained to the one before.

Every row stores the previous row's hash and its own SHA-256 over a canonical encoding of all its fields
(sequence number, time, call, kind, actor, payload, previous hash). Any change to a stored row — an edited
field, a deleted, inserted or reordered row — breaks the chain at that row, and :func:`verify_rows` names
the first bad sequence number. A checkpoint (sequence and hash of the head, kept somewhere else) also
catches a truncated or rewritten tail, which a chain alone cannot.

Appends from many processes form one chain: the writer takes a lock (a PostgreSQL advisory lock, SQLite's
write lock) before it reads the head, so there are no forks and no gaps.

Payloads may hold transcripts and digits. They go into the trail (which exists for them) and never into log
messages; this module logs only sequence numbers and kinds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from voiceivr.db.engine import describe_operational_error
from voiceivr.db.models import AuditEvent
from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that serialises appends.
PG_ADVISORY_LOCK_KEY = 0x766F_6963_6569_7672 & 0x7FFF_FFFF_FFFF_FFFF  # "voiceivr"

audit_table: sa.Table = AuditEvent.__table__  # type: ignore[assignment]


def canonical_json(value: Any) -> str:
    """One spelling for one value: sorted keys, no spaces, UTF-8 kept, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_time(ts: dt.datetime) -> str:
    """UTC, microseconds, 'Z': databases hand back naive or aware times; both hash alike."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    created_at: dt.datetime
    call_id: str | None
    kind: str
    actor: str
    payload: str  # canonical JSON text, byte-exact as stored
    prev_hash: str
    hash: str

    def payload_obj(self) -> Any:
        return json.loads(self.payload)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "created_at": canonical_time(self.created_at),
            "call_id": self.call_id,
            "kind": self.kind,
            "actor": self.actor,
            "payload": self.payload_obj(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def compute_hash(
    seq: int, created_at: dt.datetime, call_id: str | None, kind: str, actor: str, payload: str, prev_hash: str
) -> str:
    envelope = canonical_json(
        {
            "seq": seq,
            "created_at": canonical_time(created_at),
            "call_id": call_id,
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(envelope.encode("utf-8")).hexdigest()


def _row_to_record(row: Any) -> AuditRecord:
    m = row._mapping
    created_at = m["created_at"]
    if created_at.tzinfo is None:  # SQLite hands back naive times; they were written as UTC
        created_at = created_at.replace(tzinfo=dt.UTC)
    return AuditRecord(
        seq=m["seq"],
        created_at=created_at,
        call_id=m["call_id"],
        kind=m["kind"],
        actor=m["actor"],
        payload=m["payload"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


# ---------------------------------------------------------------------------------------------- appending


def _lock_and_read_head(conn: Connection) -> tuple[int, str]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_ADVISORY_LOCK_KEY})
    row = conn.execute(
        sa.select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
    ).first()
    if row is None:
        return 0, GENESIS_HASH
    return int(row.seq), str(row.hash)


def append_in_transaction(
    conn: Connection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    actor: str = "system",
    call_id: str | None = None,
    now: dt.datetime | None = None,
) -> AuditRecord:
    """Append one row inside the caller's transaction (which must have begun IMMEDIATE on SQLite).

    Use this when the audit row must commit atomically with other writes; otherwise use
    :meth:`AuditTrail.append`.
    """
    if not kind or len(kind) > 64:
        raise ValueError("audit kind must be 1-64 characters")
    head_seq, head_hash = _lock_and_read_head(conn)
    created_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    payload_text = canonical_json(dict(payload))
    seq = head_seq + 1
    digest = compute_hash(seq, created_at, call_id, kind, actor, payload_text, head_hash)
    conn.execute(
        audit_table.insert().values(
            seq=seq,
            created_at=created_at,
            call_id=call_id,
            kind=kind,
            actor=actor,
            payload=payload_text,
            prev_hash=head_hash,
            hash=digest,
        )
    )
    return AuditRecord(seq, created_at, call_id, kind, actor, payload_text, head_hash, digest)


class AuditTrail:
    """Appends and reads the trail of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._url = engine.url.render_as_string(hide_password=False)

    def append(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        actor: str = "system",
        call_id: str | None = None,
    ) -> AuditRecord:
        """Append one row and return it once it is **committed** (write-ahead callers rely on this)."""
        try:
            with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
                record = append_in_transaction(conn, kind, payload, actor=actor, call_id=call_id)
        except OperationalError as exc:
            raise describe_operational_error(self._url, exc) from None
        log.debug("audit row committed", extra={"audit_seq": record.seq, "audit_kind": kind})
        return record

    def rows(self, *, since_seq: int = 0, batch: int = 1000) -> Iterator[AuditRecord]:
        """All rows in sequence order, read in batches (the trail may be long)."""
        last = since_seq
        while True:
            with self.engine.connect() as conn:
                result = conn.execute(
                    sa.select(audit_table)
                    .where(audit_table.c.seq > last)
                    .order_by(audit_table.c.seq)
                    .limit(batch)
                ).fetchall()
            if not result:
                return
            for row in result:
                record = _row_to_record(row)
                last = record.seq
                yield record

    def tail(self, n: int) -> list[AuditRecord]:
        with self.engine.connect() as conn:
            result = conn.execute(
                sa.select(audit_table).order_by(audit_table.c.seq.desc()).limit(n)
            ).fetchall()
        return [_row_to_record(r) for r in reversed(result)]

    def head(self) -> Checkpoint:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
        if row is None:
            return Checkpoint(seq=0, hash=GENESIS_HASH)
        return Checkpoint(seq=int(row.seq), hash=str(row.hash))

    def verify(self, checkpoint: Checkpoint | None = None) -> VerifyReport:
        return verify_rows(self.rows(), checkpoint=checkpoint)


# -------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str

    def to_json(self) -> str:
        return canonical_json({"seq": self.seq, "hash": self.hash}) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            seq, digest = int(data["seq"]), str(data["hash"])
        except OSError as exc:
            raise VoiceivrError(f"{path}: cannot read checkpoint: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise VoiceivrError(
                f"{path}: not a checkpoint file",
                hint='expected {"seq": N, "hash": "..."} as written by `voiceivr audit checkpoint -o FILE`',
            ) from None
        if seq < 0 or len(digest) != 64:
            raise VoiceivrError(f"{path}: checkpoint has an impossible sequence number or hash")
        return cls(seq=seq, hash=digest)


# ------------------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    head: Checkpoint
    first_bad_seq: int | None = None
    reason: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.rows} rows, head seq {self.head.seq} hash {self.head.hash}"
        return f"audit trail BROKEN at seq {self.first_bad_seq}: {self.reason}"


def verify_rows(rows: Iterable[AuditRecord], checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Walk the chain from the first row; stop at the first row that does not fit.

    Sequence numbers must run 1, 2, 3, ... without gaps; each row's ``prev_hash`` must equal the hash of the
    row before; each row's hash must equal the hash of its own fields. With a checkpoint, the row at the
    checkpoint's sequence number must exist and carry the checkpoint's hash.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    checkpoint_seen = checkpoint is None or checkpoint.seq == 0

    def broken(seq: int, reason: str) -> VerifyReport:
        return VerifyReport(False, count, Checkpoint(expected_seq - 1, prev_hash), seq, reason)

    for r in rows:
        if r.seq != expected_seq:
            if r.seq > expected_seq:
                return broken(expected_seq, f"row {expected_seq} is missing (next row found is {r.seq})")
            return broken(r.seq, f"row {r.seq} appears again or out of order after row {expected_seq - 1}")
        if r.prev_hash != prev_hash:
            return broken(r.seq, "its prev_hash does not match the hash of the row before")
        try:
            recomputed = compute_hash(r.seq, r.created_at, r.call_id, r.kind, r.actor, r.payload, r.prev_hash)
        except (TypeError, ValueError, AttributeError) as exc:
            return broken(r.seq, f"its fields cannot be encoded ({exc})")
        if recomputed != r.hash:
            return broken(r.seq, "its contents do not match its hash (the row was altered)")
        if checkpoint is not None and r.seq == checkpoint.seq:
            if r.hash != checkpoint.hash:
                return broken(r.seq, "its hash differs from the checkpoint: the trail was rewritten")
            checkpoint_seen = True
        prev_hash = r.hash
        expected_seq += 1
        count += 1

    if not checkpoint_seen:
        assert checkpoint is not None
        return broken(
            expected_seq,
            f"the trail ends at seq {expected_seq - 1} but the checkpoint names seq {checkpoint.seq}: "
            "rows were removed from the tail",
        )
    return VerifyReport(True, count, Checkpoint(expected_seq - 1, prev_hash))
