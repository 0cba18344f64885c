"""Alembic environment: runs against the connection voiceivr hands over (see voiceivr.db.migrate)."""

from __future__ import annotations

from alembic import context

from voiceivr.db.models import Base

config = context.config
# The core's tables and the enabled plugins' (voiceivr.db.migrate.target_metadata hands them over).
target_metadata = config.attributes.get("target_metadata", Base.metadata)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `voiceivr db upgrade`, which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use `voiceivr db upgrade`")
run_migrations_online()
