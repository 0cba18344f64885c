"""Running the Alembic migrations in ``migrations/`` from code and from the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from voiceivr.db.engine import describe_operational_error, redacted
from voiceivr.db.models import Base
from voiceivr.errors import SchemaOutOfDate, VoiceivrError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise VoiceivrError(
            f"migrations not found at {MIGRATIONS_DIR}",
            hint="install voiceivr from its source tree (pip install -e .) so migrations/ is present",
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@contextmanager
def _connected(engine: Engine) -> Iterator[Config]:
    cfg = alembic_config()
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            yield cfg
            conn.commit()
    except OperationalError as exc:
        raise describe_operational_error(engine.url.render_as_string(hide_password=False), exc) from None


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise VoiceivrError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise describe_operational_error(engine.url.render_as_string(hide_password=False), exc) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _connected(engine) as cfg:
        try:
            command.upgrade(cfg, revision)
        except CommandError as exc:
            raise VoiceivrError(f"cannot upgrade to {revision!r}: {exc}") from None


def downgrade(engine: Engine, revision: str) -> None:
    with _connected(engine) as cfg:
        try:
            command.downgrade(cfg, revision)
        except CommandError as exc:
            raise VoiceivrError(
                f"cannot downgrade to {revision!r}: {exc}",
                hint="name a revision from `voiceivr db history`, or `base` to remove everything",
            ) from None


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down_revision, message) from oldest to newest."""
    script = ScriptDirectory.from_config(alembic_config())
    revs = list(script.walk_revisions())
    out = []
    for rev in reversed(revs):
        down = rev.down_revision if isinstance(rev.down_revision, str) or rev.down_revision is None else ",".join(
            rev.down_revision
        )
        out.append((rev.revision, down, rev.doc or ""))
    return out


def require_current(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not the one this code expects."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate(
            f"database {redacted(engine.url.render_as_string(hide_password=False))} has no voiceivr schema",
            hint="run `voiceivr db upgrade`",
        )
    raise SchemaOutOfDate(
        f"database schema is at revision {current}, this code needs {head}",
        hint="run `voiceivr db upgrade` (or install the voiceivr version that matches the database)",
    )


def schema_diff(engine: Engine) -> list[Any]:
    """What alembic's autogenerate would change to make the database match the models (empty = in sync)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))
