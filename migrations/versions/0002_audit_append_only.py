"""audit_events is append-only: the database refuses UPDATE, DELETE and TRUNCATE

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The hash chain detects any change after the fact (even one made with these triggers disabled); the triggers
make the database refuse the change in the first place. On PostgreSQL the application also connects as a
role that holds only INSERT and SELECT on the table (see `voiceivr db create-app-role`), and that role does
not own the table, so it cannot disable the triggers.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_UP = [
    """
    CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()
    """,
    """
    CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()
    """,
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_refuse_change()",
]

# SQLite has no TRUNCATE; its DELETE-without-WHERE shortcut is disabled when a DELETE trigger exists.
SQLITE_UP = [
    """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END
    """,
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
    "DROP TRIGGER IF EXISTS audit_events_no_update",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _run(PG_UP)
    elif dialect == "sqlite":
        _run(SQLITE_UP)
    else:
        raise NotImplementedError(f"no append-only triggers for {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _run(PG_DOWN)
    elif dialect == "sqlite":
        _run(SQLITE_DOWN)

