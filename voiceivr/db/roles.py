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


# What the application role must (not) be, as pg_roles column -> the clause that sets it right.
_ATTRIBUTES = {"rolcanlogin": (True, "LOGIN"), "rolsuper": (False, "NOSUPERUSER"),
               "rolcreatedb": (False, "NOCREATEDB"), "rolcreaterole": (False, "NOCREATEROLE"),
               "rolbypassrls": (False, "NOBYPASSRLS")}
_OWNER_HINT = ("run it as the database owner (the role that ran `voiceivr db upgrade`) with CREATEROLE, or as a "
               "superuser")


def _fixes(conn: Connection, role: str) -> list[str]:
    """The clauses an existing role still needs. Only those are run: a database owner without superuser may
    not even restate NOSUPERUSER or NOBYPASSRLS ("must be superuser"), so a second run must not."""
    cols = ", ".join(_ATTRIBUTES)
    row = conn.execute(sa.text(f"SELECT {cols} FROM pg_roles WHERE rolname = :r"), {"r": role}).mappings().one()
    return [clause for col, (wanted, clause) in _ATTRIBUTES.items() if bool(row[col]) != wanted]


def _verifier(conn: Connection, role: str, password: str) -> str:
    """The password as the server's own hashed form (what psql's \\password sends): ALTER ROLE takes no bound
    parameter (``PASSWORD $1`` was a syntax error, with the password in the traceback), and the clear text
    never reaches the server's statement log. The verifier holds only base64, digits, ``$`` and ``:``."""
    pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
    verifier: bytes = pgconn.encrypt_password(password.encode(), role.encode())
    return verifier.decode("ascii")


def create_app_role(engine: Engine, role: str, password: str | None = None) -> bool:
    """Create (if needed) and grant the application role. Returns True if the role was created."""
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            "application roles exist only on PostgreSQL",
            hint="SQLite has no roles; its append-only triggers still refuse UPDATE and DELETE",
        )
    role = _check_name(role)
    try:
        with engine.begin() as conn:
            created = not role_exists(conn, role)
            if created:
                conn.exec_driver_sql(f"CREATE ROLE {role} {' '.join(c for _, c in _ATTRIBUTES.values())}")
            else:
                fixes = _fixes(conn, role)
                if fixes:
                    conn.exec_driver_sql(f"ALTER ROLE {role} {' '.join(fixes)}")
            if password is not None:
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD '{_verifier(conn, role, password)}'")
            apply_grants(conn, role)
    except sa.exc.ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise ConfigError(f"cannot set up role {role}: {text}", hint=_OWNER_HINT) from None
    return created


def refresh_grants_if_role_exists(engine: Engine, role: str) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.begin() as conn:
        if not role_exists(conn, _check_name(role)):
            return False
        apply_grants(conn, role)
    return True
