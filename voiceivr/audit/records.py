"""One audit row, its canonical encoding, and the link that chains it to the row before.

A row's link (the ``hash`` column) is an HMAC-SHA256, under a key the database never holds, of a canonical
encoding of all its fields: sequence number, time, call, kind, actor, payload, the previous row's link and the
key id. Whoever may INSERT rows but lacks the key cannot make a link that verifies.

Rows written before revision 0005 carry an empty key id and a plain SHA-256 of the same fields without the key
id (:func:`compute_hash`); they verify only as the start of the trail, before its first keyed row (see
:mod:`voiceivr.audit.verify`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from voiceivr.audit.keys import AuditKey

GENESIS_HASH = "0" * 64
LEGACY_KEY_ID = ""  # rows of the plain SHA-256 chain, before revision 0005


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
    hash: str  # the link: HMAC-SHA256 (keyed rows) or SHA-256 (legacy rows)
    key_id: str  # which key made the link; "" for a legacy row

    def payload_obj(self) -> Any:
        return json.loads(self.payload)

    @property
    def legacy(self) -> bool:
        return self.key_id == LEGACY_KEY_ID

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
            "key_id": self.key_id,
        }


def _envelope(
    seq: int, created_at: dt.datetime, call_id: str | None, kind: str, actor: str, payload: str, prev_hash: str
) -> dict[str, Any]:
    return {
        "seq": seq,
        "created_at": canonical_time(created_at),
        "call_id": call_id,
        "kind": kind,
        "actor": actor,
        "payload": payload,
        "prev_hash": prev_hash,
    }


def compute_hash(
    seq: int, created_at: dt.datetime, call_id: str | None, kind: str, actor: str, payload: str, prev_hash: str
) -> str:
    """The legacy link (before revision 0005): anyone can compute it, which is why rows are keyed now."""
    envelope = canonical_json(_envelope(seq, created_at, call_id, kind, actor, payload, prev_hash))
    return hashlib.sha256(envelope.encode("utf-8")).hexdigest()


def compute_mac(
    key: AuditKey,
    seq: int,
    created_at: dt.datetime,
    call_id: str | None,
    kind: str,
    actor: str,
    payload: str,
    prev_hash: str,
) -> str:
    """The keyed link. The key id is inside the MAC, so a row cannot be passed off as made by another key."""
    envelope = _envelope(seq, created_at, call_id, kind, actor, payload, prev_hash)
    envelope["key_id"] = key.key_id
    return key.mac(canonical_json(envelope).encode("utf-8"))


def recompute(record: AuditRecord, key: AuditKey | None) -> str:
    """The link ``record`` should carry: keyed with ``key``, or legacy when ``key`` is None."""
    fields = (record.seq, record.created_at, record.call_id, record.kind, record.actor, record.payload,
              record.prev_hash)
    if key is None:
        return compute_hash(*fields)
    return compute_mac(key, *fields)
