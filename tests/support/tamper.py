"""Tampering with the audit trail the way a database superuser could (the append-only triggers out of the way),
for the audit, key and checkpoint tests."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def superuser_sql(url: str, statements: list[str]) -> None:
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
