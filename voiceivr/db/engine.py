"""Connecting to the database, and turning connection trouble into one clear error.

SQLite (the default) needs nothing started: the file lives under ``paths.var_dir``. We take manual control of
its transactions so that a writer that must serialise (the audit trail) can ask for ``BEGIN IMMEDIATE``
with the execution option ``sqlite_begin="IMMEDIATE"``; other transactions begin DEFERRED as usual.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from voiceivr.errors import ConfigError, DatabaseUnavailable
from voiceivr.settings import Settings, mask_secret, redact_urls

SQLITE_BUSY_TIMEOUT_MS = 30_000  # many call workers may append to the audit trail at once


def redacted(url: str) -> str:
    return mask_secret(url)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"sqlite_begin must be DEFERRED, IMMEDIATE or EXCLUSIVE, not {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, connect_timeout_s: float = 5.0, echo: bool = False) -> Engine:
    """An engine for ``url``; a malformed URL or a missing driver is a :class:`ConfigError`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database URL {redacted(url)!r} is not a valid SQLAlchemy URL",
            hint="set VOICEIVR_DATABASE_URL (or [database] url) to e.g. "
            "postgresql+psycopg://USER@HOST:5432/DB or sqlite:///var/voiceivr.sqlite3",
        ) from None
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, round(connect_timeout_s))
    else:
        raise ConfigError(
            f"database URL {redacted(url)!r}: backend {parsed.get_backend_name()!r} is not supported",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        )
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args, echo=echo, future=True)
    except NoSuchModuleError:
        raise ConfigError(
            f"database URL {redacted(url)!r}: no driver {parsed.drivername!r} installed",
            hint="for PostgreSQL use the postgresql+psycopg:// scheme",
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine)
    return engine


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(
        settings.database_url(),
        connect_timeout_s=settings.database.connect_timeout_s,
        echo=settings.database.echo,
    )


def describe_operational_error(url: str, exc: DBAPIError) -> DatabaseUnavailable:
    """One line an operator can act on, instead of a driver traceback."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = redact_urls(re.sub(r"\s+", " ", first))  # a driver may quote its connection string
    backend = make_url(url).get_backend_name()
    if not isinstance(exc, OperationalError):
        hint = "check the options in the URL's query: the driver refused one (libpq names them in lower case)"
    elif backend == "postgresql":
        hint = (
            "is PostgreSQL running and does the URL name the right host, port, user and database? "
            "(start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
        )
    else:
        hint = "check that the directory of the SQLite file exists and is writable"
    return DatabaseUnavailable(f"cannot use database {redacted(url)}: {first}", hint=hint)


def check_connection(engine: Engine) -> None:
    """Connect once, so trouble is reported before any work starts."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except OperationalError as exc:
        raise describe_operational_error(engine.url.render_as_string(hide_password=False), exc) from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def scratch_postgres(admin: Engine, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``admin``'s server (an AUTOCOMMIT engine the caller owns), for a test or
    a benchmark: yields its URL and drops it on the way out, whoever is still connected."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
