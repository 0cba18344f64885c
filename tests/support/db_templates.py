"""Migrated databases made once per test run and copied for each test that needs one at the head revision.

Migrating an empty database costs 0.3-2 s (SQLite, under load) for each of the ~200 tests that start from a
migrated one; a copy costs milliseconds. A template is keyed by the backend and the plugins enabled when it is
asked for (they choose the tables), and holds no rows but alembic's (checked when it is made), so a copy is what
migrating from scratch would have made. SQLite copies go through sqlite3's backup API (the WAL included);
PostgreSQL copies are ``CREATE DATABASE ... TEMPLATE``. The migrations themselves, from an empty database up and
down, are tested on both backends by tests/test_migrations.py.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.support.postgres import pg_admin_engine


def _plugins() -> tuple[str, ...]:
    from voiceivr.settings import load_settings

    return tuple(load_settings()[0].plugins.enabled)


def _migrate_empty(url: str) -> None:
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                if table != "alembic_version":
                    rows = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                    assert rows == 0, f"migrating an empty database left {rows} row(s) in {table}: not a template"
    finally:
        engine.dispose()


class MigratedTemplates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sqlite: dict[tuple[str, ...], Path] = {}
        self._postgres: dict[tuple[str, ...], str] = {}
        self._admin: Engine | None = None

    def fill(self, url: str) -> None:
        """Make the empty database at ``url`` (a new SQLite file or an empty PostgreSQL database) a migrated one."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            self._fill_sqlite(Path(str(parsed.database)))
        elif parsed.get_backend_name() == "postgresql":
            self._fill_postgres(url)
        else:
            raise ValueError(f"no template for {parsed.get_backend_name()}")

    def _fill_sqlite(self, path: Path) -> None:
        assert not path.exists() or path.stat().st_size == 0, f"{path} is not empty"
        key = _plugins()
        template = self._sqlite.get(key)
        if template is None:
            template = self.directory / f"migrated-{len(self._sqlite)}.sqlite3"
            _migrate_empty(f"sqlite:///{template}")
            self._sqlite[key] = template
        src, dst = sqlite3.connect(template), sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()

    def _fill_postgres(self, url: str) -> None:
        """Swap the empty database for a copy of the template under the same name."""
        key = _plugins()
        admin = self._admin = self._admin or pg_admin_engine()
        template = self._postgres.get(key)
        if template is None:
            template = f"voiceivr_tpl_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{template}"')
            self._postgres[key] = template
            _migrate_empty(admin.url.set(database=template).render_as_string(hide_password=False))
        name = make_url(url).database
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def close(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for template in self._postgres.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        self._admin.dispose()
