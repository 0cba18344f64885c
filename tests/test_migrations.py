"""Every migration runs up and down on SQLite and PostgreSQL, and the models match the migrations."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from voiceivr.db import migrate
from voiceivr.db.engine import make_engine


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_every_migration_up_and_down(db_url: str) -> None:
    engine = make_engine(db_url)
    revisions = [rev for rev, _, _ in migrate.history()]
    assert revisions, "no migrations found"
    previous = "base"
    for rev in revisions:
        migrate.upgrade(engine, rev)
        assert migrate.current_revision(engine) == rev
        migrate.downgrade(engine, previous)
        assert migrate.current_revision(engine) in (None if previous == "base" else previous,)
        migrate.upgrade(engine, rev)
        previous = rev
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "base")
    assert _tables(engine) == set()
    migrate.upgrade(engine)
    engine.dispose()


def test_models_and_migrations_agree(migrated_engine: sa.Engine) -> None:
    diff = migrate.schema_diff(migrated_engine)
    assert diff == [], f"models differ from migrations (write a migration): {diff}"


def _insert_row(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash, key_id) "
            "VALUES (1, :t, NULL, 'k', 'system', '{}', :p, :h, 'k000000000000')"
        ),
        {"t": "2026-01-01 00:00:00+00:00", "p": "0" * 64, "h": "1" * 64},
    )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET kind = 'x'", "DELETE FROM audit_events", "DELETE FROM audit_events WHERE seq = 1"],
)
def test_database_refuses_changes_to_audit_rows(migrated_engine: sa.Engine, statement: str) -> None:
    with migrated_engine.begin() as conn:
        _insert_row(conn)
    with pytest.raises(DBAPIError, match="append-only"), migrated_engine.begin() as conn:
        conn.execute(sa.text(statement))
    with migrated_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT kind FROM audit_events")).scalar_one() == "k"


@pytest.mark.parametrize("key_id", ["''", None])
def test_database_refuses_new_rows_without_a_key_id(migrated_engine: sa.Engine, key_id: str | None) -> None:
    """Since 0005 only keyed rows may be appended: a row with the plain SHA-256 link of old (an empty key id,
    or the column left out) is refused by the database, whoever inserts it."""
    columns = "seq, created_at, call_id, kind, actor, payload, prev_hash, hash" + (", key_id" if key_id else "")
    values = "1, :t, NULL, 'k', 'system', '{}', :p, :h" + (f", {key_id}" if key_id else "")
    with pytest.raises(DBAPIError, match="need a key id"), migrated_engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO audit_events ({columns}) VALUES ({values})"),
                     {"t": "2026-01-01 00:00:00+00:00", "p": "0" * 64, "h": "1" * 64})


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        _insert_row(conn)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE"), engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE audit_events"))
    engine.dispose()
