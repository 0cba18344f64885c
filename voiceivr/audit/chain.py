"""The tamper-evident audit trail: append-only rows, each chained to the one before by a keyed MAC.

Every row stores the previous row's link and its own: an HMAC-SHA256, under a key the database never holds
(:mod:`voiceivr.audit.keys`), of all its fields (:mod:`voiceivr.audit.records`). Any change to a stored row --
an edited field, a deleted, inserted or reordered row -- breaks the chain at that row, and so does a row
appended by someone who may INSERT but has no key; :func:`verify_rows` names the first bad sequence number.
Signed checkpoints kept outside the database (:mod:`voiceivr.audit.checkpoints`), written automatically as
rows are appended, also catch a cut or rewritten tail, which a chain alone cannot.

Appends from many processes form one chain: the writer takes a lock (a PostgreSQL advisory lock, SQLite's
write lock) before it reads the head, so there are no forks and no gaps.

Payloads may hold transcripts and digits. They go into the trail (which exists for them) and never into log
messages; this module logs only sequence numbers and kinds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from voiceivr.audit.checkpoints import (
    Checkpoint,
    CheckpointLines,
    SignedCheckpoint,
    append_line,
    keyring_public_keys,
    read_checkpoints,
)
from voiceivr.audit.config import AuditConfig, Binding, binding_for, root_engine
from voiceivr.audit.records import (
    GENESIS_HASH,
    LEGACY_KEY_ID,
    AuditRecord,
    canonical_json,
    canonical_time,
    compute_hash,
    compute_mac,
    recompute,
)
from voiceivr.audit.verify import VerifyReport, verify_rows
from voiceivr.db.engine import describe_operational_error
from voiceivr.db.models import AuditEvent
from voiceivr.errors import VoiceivrError

__all__ = [
    "GENESIS_HASH", "AuditRecord", "AuditTrail", "Checkpoint", "VerifyReport", "append_in_transaction",
    "canonical_json", "canonical_time", "compute_hash", "compute_mac", "verify_rows",
]

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that serialises appends.
PG_ADVISORY_LOCK_KEY = 0x766F_6963_6569_7672 & 0x7FFF_FFFF_FFFF_FFFF  # "voiceivr"
SEAL_KIND = "audit.keyed"

audit_table: sa.Table = AuditEvent.__table__  # type: ignore[assignment]


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
        key_id=m["key_id"],
    )


# ---------------------------------------------------------------------------------------------- appending


class HeadNotAuthentic(VoiceivrError):
    """The newest row's link does not verify: it is never signed into a checkpoint."""


def _lock_and_read_head(conn: Connection) -> tuple[int, str, str]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_ADVISORY_LOCK_KEY})
    row = conn.execute(
        sa.select(audit_table.c.seq, audit_table.c.hash, audit_table.c.key_id)
        .order_by(audit_table.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, GENESIS_HASH, LEGACY_KEY_ID
    return int(row.seq), str(row.hash), str(row.key_id)


def _read_verified_head(engine_ref: weakref.ref[Engine], config: AuditConfig) -> tuple[int, str] | None:
    """The committed head, for a checkpoint: read back from the database, its link checked first."""
    engine = engine_ref()
    if engine is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq.desc()).limit(1)).first()
    if row is None:
        return None
    record = _row_to_record(row)
    key = None if record.legacy else config.keys().get(record.key_id)
    if (key is None and not record.legacy) or recompute(record, key) != record.hash:
        raise HeadNotAuthentic(f"the newest audit row (seq {record.seq}) fails its MAC, so it is not signed",
                               hint="run `voiceivr audit verify` to find the first forged or altered row")
    return record.seq, record.hash


def _binding(engine: Engine) -> Binding:
    binding = binding_for(engine)
    if binding.checkpointer is None and binding.config.automatic:
        # a weak reference: the binding lives as long as the engine, and must not keep it alive
        ref = weakref.ref(root_engine(engine))
        binding.ensure_checkpointer(lambda: _read_verified_head(ref, binding.config))
    return binding


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
    binding = _binding(conn.engine)
    key = binding.config.keys(create=True).current  # before the lock: a first use may read or make the key file
    head_seq, head_hash, _ = _lock_and_read_head(conn)
    created_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    payload_text = canonical_json(dict(payload))
    seq = head_seq + 1
    digest = compute_mac(key, seq, created_at, call_id, kind, actor, payload_text, head_hash)
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
            key_id=key.key_id,
        )
    )
    if binding.checkpointer is not None:
        binding.checkpointer.noted(seq)
    return AuditRecord(seq, created_at, call_id, kind, actor, payload_text, head_hash, digest, key.key_id)


def seal_legacy_rows(engine: Engine) -> AuditRecord | None:
    """After the upgrade to the keyed chain: if the newest row is a legacy (plain SHA-256) row, append a keyed
    row whose MAC covers it, so the legacy rows are vouched for before anyone else can append to them."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        head_seq, head_hash, head_key = _lock_and_read_head(conn)
        if head_seq == 0 or head_key != LEGACY_KEY_ID:
            return None
        return append_in_transaction(conn, SEAL_KIND, {"legacy_rows": head_seq, "legacy_head": head_hash})


class AuditTrail:
    """Appends and reads the trail of one database, with the keys and checkpoints bound to its engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._url = engine.url.render_as_string(hide_password=False)

    @property
    def config(self) -> AuditConfig:
        return binding_for(self.engine).config

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

    # ------------------------------------------------------------------------------------------ checkpoints

    def checkpoint(self, *, also_to: Path | None = None) -> SignedCheckpoint:
        """Sign the committed head now and write it to the checkpoint file (and ``also_to``)."""
        config = self.config
        head = _read_verified_head(weakref.ref(self.engine), config) or (0, GENESIS_HASH)
        cp = SignedCheckpoint.sign(config.keys(create=True).current, head[0], head[1])
        sink = config.sink()
        if sink is not None:
            sink.write(cp)
        if also_to is not None:
            append_line(also_to, cp.line())
        return cp

    def flush_checkpoints(self) -> SignedCheckpoint | None:
        """Checkpoint what this process appended since its last automatic checkpoint (before a clean stop)."""
        checkpointer = binding_for(self.engine).checkpointer
        return checkpointer.flush() if checkpointer is not None else None

    def checkpoint_lines(self, path: Path | None = None, *, allow_unsigned: bool = False) -> CheckpointLines:
        """The checkpoints in ``path`` (default: the configured checkpoint file), signatures checked."""
        config = self.config
        path = path or config.checkpoint_file
        if path is None:
            return CheckpointLines([], [])
        return read_checkpoints(path, keyring_public_keys(config.keys()), allow_unsigned=allow_unsigned)

    # ----------------------------------------------------------------------------------------- verification

    def verify(
        self,
        checkpoint: Checkpoint | Sequence[Checkpoint] | None = None,
        *,
        checkpoint_files: Sequence[Path] = (),
        use_checkpoint_file: bool = True,
        after: Checkpoint | None = None,
    ) -> VerifyReport:
        """Walk the whole trail with this engine's keys, and hold it against the configured checkpoint file,
        ``checkpoint_files`` (which may also hold unsigned heads an operator kept) and ``checkpoint``.
        ``after``: walk only the rows after a head an earlier whole walk found intact (see ``verify_rows``)."""
        keyring = self.config.keys()  # verifying without the key is an error naming the setting
        anchors: list[Checkpoint] = [checkpoint] if isinstance(checkpoint, Checkpoint) else list(checkpoint or ())
        problems: list[str] = []
        notes: list[str] = []
        sink_path = self.config.checkpoint_file if use_checkpoint_file else None
        for path, unsigned_ok in [*([(sink_path, False)] if sink_path else []),
                                  *((p, True) for p in checkpoint_files)]:
            lines = self.checkpoint_lines(path, allow_unsigned=unsigned_ok)
            anchors += lines.anchors
            problems += lines.problems
            if path == sink_path and not lines.anchors and not lines.problems:
                notes.append(f"no checkpoints in {path} yet: a cut tail would go unnoticed")
        report = verify_rows(self.rows(since_seq=after.seq if after else 0), keyring, anchors, problems, after=after)
        return dataclasses.replace(report, notes=tuple(notes)) if notes else report
