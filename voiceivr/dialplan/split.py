"""A/B split of a dialplan's new calls between a chosen published version and the live one (table
``dialplan_splits``), like Amazon Connect's "Distribute by percentage", but sticky per caller.

The choice is made once, at the call's start: a stable hash of the caller's number (the user part of the SIP
From URI; a call without a number hashes its call id) and of the split's version falls in ``[0, 10000)``; below
``percent * 100`` the call runs the split's version, else the live one. The same caller therefore gets the same
version on every call for as long as the split stands, and a new split (another version) draws its callers
afresh. Each call records the version it ran (``calls.dialplan_version_id``), which is what ``voiceivr stats``
compares.

Every change (set, changed, cleared) is appended to the audit chain with who made it, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voiceivr.audit.chain import append_in_transaction
from voiceivr.db.models import DialplanSplit, DialplanVersion
from voiceivr.errors import VoiceivrError

splits_t: sa.Table = DialplanSplit.__table__  # type: ignore[assignment]
versions_t: sa.Table = DialplanVersion.__table__  # type: ignore[assignment]

BUCKETS = 10_000
_USER = re.compile(r"(?:sips?|tel):([^@;>?]*)", re.IGNORECASE)
_ANONYMOUS = {"", "anonymous", "unknown", "restricted", "unavailable", "private"}


class SplitRefused(VoiceivrError):
    pass


@dataclass(frozen=True)
class Split:
    name: str
    version_id: int
    version: int
    percent: int
    set_at: dt.datetime
    set_by: str


def caller_number(from_uri: str) -> str:
    """The caller's number from a SIP From URI (``sip:+15550100@host;tag=x`` -> ``+15550100``); "" if there is
    none or it is anonymous. Visual separators (spaces, dots, dashes, parentheses) are dropped, so
    ``tel:+1-555-0100`` and ``sip:+15550100@h`` are the same caller."""
    m = _USER.search(from_uri)
    if m is None:
        return ""
    user = re.sub(r"[\s.\-()]", "", unquote(m.group(1))).lower()
    return "" if user in _ANONYMOUS else user


def bucket(name: str, version_id: int, key: str) -> int:
    """The stable bucket of ``key`` (a caller's number, else a call id) for a split of ``name`` towards
    ``version_id``: an integer in [0, BUCKETS)."""
    digest = hashlib.sha256(f"{name}\x00{version_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def takes_split(split: Split, key: str) -> bool:
    """Whether a new call keyed ``key`` runs the split's version (else the live one)."""
    return bucket(split.name, split.version_id, key) < split.percent * (BUCKETS // 100)


def _split_of(conn: Connection, name: str) -> Split | None:
    m = conn.execute(
        sa.select(splits_t, versions_t.c.version).join(versions_t, versions_t.c.id == splits_t.c.version_id)
        .where(splits_t.c.name == name)
    ).mappings().first()
    if m is None:
        return None
    set_at = m["set_at"] if m["set_at"].tzinfo else m["set_at"].replace(tzinfo=dt.UTC)  # SQLite: naive, UTC
    return Split(m["name"], m["version_id"], m["version"], m["percent"], set_at, m["set_by"])


def get_split(engine: Engine | Connection, name: str) -> Split | None:
    if isinstance(engine, Connection):
        return _split_of(engine, name)
    with engine.connect() as conn:
        return _split_of(conn, name)


def set_split(engine: Engine, name: str, version: int, percent: int, *, actor: str, kind: str = "dialplan.split",
              note: str = "") -> Split:
    """Give ``percent`` (1-99) of ``name``'s new calls to its published ``version``; the rest get the live one.

    Refused (nothing stored) for a version that is not published or is the live one, or a percentage outside
    1-99 (0: clear the split; 100: roll back instead). The change and its audit row commit together."""
    if not 1 <= percent <= 99:
        raise SplitRefused(f"a split gives 1 to 99 % of new calls to the other version, not {percent}",
                           hint="to stop a split, clear it; to give every call an earlier version, roll back to it")
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        rows = conn.execute(sa.select(versions_t.c.id, versions_t.c.version).where(versions_t.c.name == name)
                            .order_by(versions_t.c.version.desc())).all()
        if not rows:
            raise SplitRefused(f"no published dialplan named {name}")
        chosen = next((r for r in rows if r.version == version), None)
        if chosen is None:
            raise SplitRefused(f"{name} has no version {version}",
                               hint=f"published versions: {', '.join(str(r.version) for r in reversed(rows))}")
        if chosen.id == rows[0].id:
            raise SplitRefused(f"{name} version {version} is the live version: a split gives some calls another one",
                               hint="pick an earlier version, or publish the new one first and split towards the "
                                    "one it replaces")
        before = _split_of(conn, name)
        now = dt.datetime.now(dt.UTC)
        values = {"version_id": chosen.id, "percent": percent, "set_at": now, "set_by": actor}
        if before is None:
            conn.execute(splits_t.insert().values(name=name, **values))
        else:
            conn.execute(splits_t.update().where(splits_t.c.name == name).values(**values))
        append_in_transaction(conn, kind, {
            "dialplan": name, "action": "set", "version": version, "version_id": chosen.id, "percent": percent,
            "live_version": rows[0].version, "note": note,
            "before": None if before is None else {"version": before.version, "percent": before.percent},
        }, actor=actor)
        return Split(name, chosen.id, version, percent, now, actor)


def clear_split(engine: Engine, name: str, *, actor: str, kind: str = "dialplan.split", note: str = "") -> bool:
    """Every new call of ``name`` runs the live version again. False (nothing audited) if there was no split."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        before = _split_of(conn, name)
        if before is None:
            return False
        conn.execute(splits_t.delete().where(splits_t.c.name == name))
        append_in_transaction(conn, kind, {
            "dialplan": name, "action": "clear", "note": note,
            "before": {"version": before.version, "percent": before.percent},
        }, actor=actor)
        return True
