"""The least-privilege PostgreSQL role the application connects as.

The role may read and write the operational tables, but on ``audit_events`` it holds only INSERT and
SELECT, and it owns nothing, so it cannot disable the append-only triggers either. Migrations run as the
owner; ``voiceivr db upgrade`` re-applies these grants so tables added later are covered.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voiceivr.errors import ConfigError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check_name(role: str) -> str:
    if not _ROLE_NAME.match(role):
        raise ConfigError(f"role name {role!r} must be lower-case letters, digits and _ (max 63)")
    return role


def role_exists(conn: Connection, role: str) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is not None


def apply_grants(conn: Connection, role: str) -> None:
    role = _check_name(role)
    db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    q = conn.dialect.identifier_preparer.quote
    statements = [
        f"GRANT CONNECT ON DATABASE {q(db)} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {role}",
    ]
    for statement in statements:
        conn.exec_driver_sql(statement)


def create_app_role(engine: Engine, role: str, password: str | None = None) -> bool:
    """Create (if needed) and grant the application role. Returns True if the role was created."""
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            "application roles exist only on PostgreSQL",
            hint="SQLite has no roles; its append-only triggers still refuse UPDATE and DELETE",
        )
    role = _check_name(role)
    with engine.begin() as conn:
        created = not role_exists(conn, role)
        if created:
            conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
        else:
            conn.exec_driver_sql(f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
        if password is not None:
            conn.execute(sa.text(f"ALTER ROLE {role} PASSWORD :p"), {"p": password})
        apply_grants(conn, role)
    return created


def refresh_grants_if_role_exists(engine: Engine, role: str) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.begin() as conn:
        if not role_exists(conn, _check_name(role)):
            return False
        apply_grants(conn, role)
    return True
