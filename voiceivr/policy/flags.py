"""Principals flagged for review: the core's, whoever provides identities.

The gate flags a principal when the wrong code that uses the last try locks a request (``policy.code``);
while a flag is not cleared, every high-risk action for that principal is refused (``account_flagged``) on
every call and every node. A person clears a flag (``voiceivr flags clear``); the row stays, with who cleared
it and when, and the clearing is an audit row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.audit.chain import append_in_transaction
from voiceivr.db.models import PrincipalFlag

flags_t: sa.Table = PrincipalFlag.__table__  # type: ignore[assignment]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Flag:
    id: int
    principal: str
    reason: str
    flagged_at: dt.datetime
    call_id: str | None
    cleared_at: dt.datetime | None
    cleared_by: str | None


class PrincipalFlags:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def is_flagged(self, principal: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flags_t.c.id).where(flags_t.c.principal == principal,
                                                             flags_t.c.cleared_at.is_(None)).limit(1)).first()
        return row is not None

    def flag(self, principal: str, reason: str, *, call_id: str | None = None,
             at: dt.datetime | None = None) -> None:
        """Durable before it returns (the gate refuses the next high action at once, on any node)."""
        with self.engine.begin() as conn:
            conn.execute(flags_t.insert().values(principal=principal, reason=reason, call_id=call_id,
                                                 flagged_at=at or _utcnow()))

    def clear(self, principal: str, *, by: str, reason: str = "", at: dt.datetime | None = None) -> int:
        """Clear the principal's flags in force; audited. Returns how many were cleared."""
        now = at or _utcnow()
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            ids = [r.id for r in conn.execute(sa.select(flags_t.c.id).where(
                flags_t.c.principal == principal, flags_t.c.cleared_at.is_(None)))]
            if ids:
                conn.execute(flags_t.update().where(flags_t.c.id.in_(ids)).values(cleared_at=now, cleared_by=by))
                append_in_transaction(conn, "policy.flag_cleared",
                                      {"principal": principal, "flags": ids, "by": by, "reason": reason},
                                      actor="operator")
        return len(ids)

    def list(self, principal: str | None = None, *, include_cleared: bool = False) -> list[Flag]:
        q = sa.select(flags_t).order_by(flags_t.c.id)
        if principal is not None:
            q = q.where(flags_t.c.principal == principal)
        if not include_cleared:
            q = q.where(flags_t.c.cleared_at.is_(None))
        with self.engine.connect() as conn:
            return [Flag(**dict(r._mapping)) for r in conn.execute(q)]
