"""audit_events: a key id on every row (the chain is an HMAC now), and the database refuses rows without one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Until now a row's link was a plain SHA-256, which whoever may INSERT can compute: the application role could
append rows that verified. From here each link is an HMAC under a key the database never holds, and the row says
which key (so keys can rotate). Rows already in the table keep an empty key id and their SHA-256 links; they
verify only before the first keyed row (`voiceivr db upgrade` appends one right after this migration), and the
new trigger makes the database refuse any new row without a key id, so nobody can add more of them later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_UP = [
    """
    CREATE OR REPLACE FUNCTION audit_events_refuse_unkeyed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.key_id = '' THEN
            RAISE EXCEPTION 'audit_events rows need a key id (the chain is keyed since revision 0005)'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_events_keyed_only
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_unkeyed()
    """,
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS audit_events_keyed_only ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_refuse_unkeyed()",
]
SQLITE_UP = [
    """
    CREATE TRIGGER audit_events_keyed_only BEFORE INSERT ON audit_events WHEN NEW.key_id = ''
    BEGIN SELECT RAISE(ABORT, 'audit_events rows need a key id (the chain is keyed since revision 0005)'); END
    """,
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS audit_events_keyed_only"]


def upgrade() -> None:
    # Not batch mode: on SQLite that copies the table, and the copy would lose the append-only triggers of 0002.
    op.add_column("audit_events", sa.Column("key_id", sa.String(length=16), server_default="", nullable=False))
    dialect = op.get_bind().dialect.name
    for statement in PG_UP if dialect == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    # Keyed rows stay, but code before 0005 cannot verify them (it recomputes plain SHA-256 links).
    dialect = op.get_bind().dialect.name
    for statement in PG_DOWN if dialect == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_column("audit_events", "key_id")
