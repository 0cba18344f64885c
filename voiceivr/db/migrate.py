"""Running the Alembic migrations from code and from the CLI: the core's (``migrations/``) and those of the
enabled plugins (each its own branch, :mod:`voiceivr.db.plugins`).

Every function that looks at or changes the schema takes ``plugins``, the names of the enabled plugins
(None: ``plugins.enabled`` from the settings). The revisions of every *installed* plugin with tables are
visible to Alembic, so a database holding a branch of a plugin that is no longer enabled can still be read
and downgraded; only the enabled ones are upgraded, expected to be current, and compared with the models.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from voiceivr.db.engine import describe_operational_error, redacted
from voiceivr.db.models import Base
from voiceivr.db.plugins import PluginSchema, enabled_schemas, installed_schemas
from voiceivr.errors import SchemaOutOfDate, VoiceivrError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
CORE_VERSIONS = MIGRATIONS_DIR / "versions"


def _locations(plugins: Sequence[str] | None) -> tuple[str, ...]:
    return (str(CORE_VERSIONS), *(str(s.migrations) for _, s in installed_schemas(plugins)))


def alembic_config(plugins: Sequence[str] | None = None) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise VoiceivrError(
            f"migrations not found at {MIGRATIONS_DIR}",
            hint="install voiceivr from its source tree (pip install -e .) so migrations/ is present",
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(_locations(plugins)))
    cfg.attributes["target_metadata"] = target_metadata(plugins)
    return cfg


def target_metadata(plugins: Sequence[str] | None = None) -> MetaData:
    """The core's tables and those of the enabled plugins, in one MetaData (what the database should hold)."""
    schemas = enabled_schemas(plugins)
    if not schemas:
        return Base.metadata
    combined = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(combined)
    for name, schema in schemas:
        for table in schema.metadata.tables.values():
            if table.name in combined.tables:
                raise VoiceivrError(f"plugin {name!r}: its table {table.name!r} is already voiceivr's or another "
                                    "enabled plugin's")
            table.to_metadata(combined)
    return combined


@contextmanager
def _connected(engine: Engine, plugins: Sequence[str] | None) -> Iterator[Config]:
    cfg = alembic_config(plugins)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            yield cfg
            conn.commit()
    except OperationalError as exc:
        raise describe_operational_error(engine.url.render_as_string(hide_password=False), exc) from None


def _script(plugins: Sequence[str] | None = None) -> ScriptDirectory:
    return _script_at(_locations(plugins))


@functools.lru_cache(maxsize=8)
def _script_at(locations: tuple[str, ...]) -> ScriptDirectory:
    """The revisions in ``locations``, read once per process (each read imports every revision file)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    return ScriptDirectory.from_config(cfg)


def _is_core(script: ScriptDirectory, revision: str) -> bool:
    rev = script.get_revision(revision)
    return rev is not None and Path(rev.path).resolve().parent == CORE_VERSIONS.resolve()


def head_revision() -> str:
    """The newest revision of the core's chain."""
    script = _script([])
    heads = [h for h in script.get_heads() if _is_core(script, h)]
    if len(heads) != 1:
        raise VoiceivrError(f"the core's migrations have {len(heads)} heads, not one: {', '.join(heads) or 'none'}")
    return heads[0]


def head_revisions(plugins: Sequence[str] | None = None) -> list[str]:
    """What a current database is at: the core's head and the head of each enabled plugin's branch."""
    script = _script(plugins)
    return [head_revision(), *(_branch_head(script, name, s) for name, s in enabled_schemas(plugins))]


def _branch_head(script: ScriptDirectory, name: str, schema: PluginSchema) -> str:
    try:
        head = script.get_revision(f"{schema.branch}@head")
    except CommandError as exc:
        raise VoiceivrError(f"plugin {name!r}: no Alembic branch labelled {schema.branch!r} in {schema.migrations} "
                            f"({exc})") from None
    if head is None:
        raise VoiceivrError(f"plugin {name!r}: its branch {schema.branch!r} has no revision")
    return str(head.revision)


def current_revisions(engine: Engine) -> list[str]:
    """The revisions the database's version table holds, sorted: one per branch, except that a plugin revision
    that depends on a core one stands for it too (Alembic keeps only the revisions nothing applied descends
    from). :func:`applied_revisions` spells everything out."""
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    except OperationalError as exc:
        raise describe_operational_error(engine.url.render_as_string(hide_password=False), exc) from None


def applied_revisions(engine: Engine, plugins: Sequence[str] | None = None) -> set[str]:
    """Every revision applied to the database: those its version table holds and all they descend from or
    depend on. A revision no installed code knows is included as it is."""
    script = _script(plugins)
    out: set[str] = set()
    for head in current_revisions(engine):
        if _known(script, head):
            out |= {r.revision for r in script.iterate_revisions(head, "base")}
        else:
            out.add(head)
    return out


def describe_current(engine: Engine) -> str:
    """The database's revision of each branch it has, for people: "0007, demo_0002" ("empty": none)."""
    revisions = set(current_revisions(engine))
    core = current_revision(engine)
    return ", ".join(sorted(revisions | ({core} if core else set()))) or "empty"


def current_revision(engine: Engine) -> str | None:
    """The database's revision of the core's chain (None: no voiceivr schema; a revision this code does not
    know, e.g. of a newer voiceivr, as it is)."""
    heads = current_revisions(engine)
    script = _script([])  # every installed plugin's revisions too, without needing the settings
    unknown = [r for r in heads if not _known(script, r)]
    applied = applied_revisions(engine, [])
    for rev in script.iterate_revisions(head_revision(), "base"):
        if rev.revision in applied:
            return unknown[0] if unknown else str(rev.revision)
    return unknown[0] if unknown else None


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def upgrade(engine: Engine, revision: str = "heads", plugins: Sequence[str] | None = None) -> None:
    """``heads`` (or ``head``): the core's head and every enabled plugin's; any other revision: that one."""
    targets = ([head_revision(), *(f"{s.branch}@head" for _, s in enabled_schemas(plugins))]
               if revision in ("head", "heads") else [revision])
    with _connected(engine, plugins) as cfg:
        for target in targets:
            try:
                command.upgrade(cfg, target)
            except CommandError as exc:
                raise VoiceivrError(f"cannot upgrade to {target!r}: {exc}") from None


def downgrade(engine: Engine, revision: str, plugins: Sequence[str] | None = None) -> None:
    """``base`` removes every voiceivr table, plugins' included; ``BRANCH@base`` one plugin's."""
    with _connected(engine, plugins) as cfg:
        try:
            command.downgrade(cfg, revision)
        except CommandError as exc:
            raise VoiceivrError(
                f"cannot downgrade to {revision!r}: {exc}",
                hint="name a revision from `voiceivr db history`, a plugin's BRANCH@base, or `base` to remove "
                     "everything",
            ) from None


def history(plugins: Sequence[str] | None = None) -> list[tuple[str, str | None, str]]:
    """(revision, down_revision, message), each branch from oldest to newest, the core's first."""
    script = _script(plugins)
    revs = list(script.walk_revisions())
    revs.sort(key=lambda r: not _is_core(script, r.revision))  # stable: keeps each branch's order
    out = []
    for rev in reversed(revs):
        down = rev.down_revision if isinstance(rev.down_revision, str) or rev.down_revision is None else ",".join(
            rev.down_revision
        )
        out.append((rev.revision, down, rev.doc or ""))
    core = [r for r in out if _is_core(script, r[0])]
    return core + [r for r in out if not _is_core(script, r[0])]


def require_current(engine: Engine, plugins: Sequence[str] | None = None) -> None:
    """Refuse to run against a database whose schema is not the one this code and its enabled plugins expect.
    A branch of an installed plugin that is not enabled may sit there: its tables are simply not used."""
    current = applied_revisions(engine, plugins)
    wanted = head_revisions(plugins)
    if set(wanted) <= current:
        script = _script(plugins)
        unknown = [r for r in current if not _known(script, r)]
        if unknown:
            raise SchemaOutOfDate(f"database has revision(s) {', '.join(sorted(unknown))}, which neither this code "
                                  "nor an installed plugin knows",
                                  hint="install the voiceivr version (or the plugin) that matches the database")
        return
    if not current:
        raise SchemaOutOfDate(
            f"database {redacted(engine.url.render_as_string(hide_password=False))} has no voiceivr schema",
            hint="run `voiceivr db upgrade`",
        )
    missing = [w for w in wanted if w not in current]
    names = [n for n, _ in enabled_schemas(plugins)]
    who = f"this code and the enabled plugins ({', '.join(names)}) need" if names else "this code needs"
    raise SchemaOutOfDate(
        f"database schema is at revision {', '.join(current_revisions(engine))}, {who} {', '.join(wanted)}"
        + (f" (missing {', '.join(missing)})" if len(wanted) > 1 else ""),
        hint="run `voiceivr db upgrade` (or install the voiceivr version that matches the database)",
    )


def schema_diff(engine: Engine, plugins: Sequence[str] | None = None) -> list[Any]:
    """What alembic's autogenerate would change to make the database match the core's models and the enabled
    plugins' (empty = in sync). Tables of an installed plugin that is not enabled are not compared."""
    metadata = target_metadata(plugins)
    enabled = {t for _, s in enabled_schemas(plugins) for t in s.metadata.tables}
    others = {t for _, s in installed_schemas(plugins) for t in s.metadata.tables} - enabled

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name not in others
        return getattr(getattr(obj, "table", None), "name", None) not in others

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
        return list(compare_metadata(ctx, metadata))
