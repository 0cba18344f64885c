"""Tables of plugins: each enabled plugin with tables brings its own metadata and its own Alembic branch.

A plugin registers a :class:`PluginSchema` under the entry point group ``voiceivr.schema``. Its revisions live
in a directory of its own; the first has ``down_revision = None`` and ``branch_labels = (branch,)``, so the
branch starts from nothing and never sits in the core's chain (a revision that needs a core table says so with
``depends_on``). ``voiceivr db upgrade`` runs the core's revisions and those of every enabled plugin
(:mod:`voiceivr.db.migrate`); ``voiceivr db check`` compares the database with the core's models and the
enabled plugins' metadata together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from voiceivr import plugins as pl


@dataclass(frozen=True)
class PluginSchema:
    """What a plugin registers under ``voiceivr.schema``."""

    branch: str  # the branch label of its revisions, e.g. "demo"
    metadata: MetaData  # its tables, in a MetaData of its own (not voiceivr.db.models.Base's)
    migrations: Path  # the directory of its Alembic revisions
    # Sample data for scratch databases (`voiceivr replay`, simulations): idempotent; returns what it added.
    seed: Callable[[Engine], Sequence[str]] | None = None


def enabled_schemas(names: Sequence[str] | None = None) -> list[tuple[str, PluginSchema]]:
    """The schemas of the enabled plugins (``names``; None: ``plugins.enabled`` from the settings), checked:
    an object of the wrong kind or a migrations directory that is not there is a PluginError naming the plugin."""
    if names is None:
        from voiceivr.settings import load_settings

        names = load_settings()[0].plugins.enabled
    out = []
    for name, obj in pl.enabled(pl.SCHEMA, names):
        if not isinstance(obj, PluginSchema):
            raise pl.describe_error(name, pl.SCHEMA, f"is a {type(obj).__name__}, not a "
                                    "voiceivr.db.plugins.PluginSchema")
        if not obj.migrations.is_dir():
            raise pl.describe_error(name, pl.SCHEMA, f"its migrations directory {obj.migrations} does not exist")
        out.append((name, obj))
    return out


def installed_schemas(names: Sequence[str] | None = None) -> list[tuple[str, PluginSchema]]:
    """The enabled plugins' schemas (as :func:`enabled_schemas`), then those of every other installed plugin,
    so that Alembic can read a database holding the branch of a plugin no longer enabled. Another plugin's that
    cannot be loaded is left out: it is not enabled, so it must not stop this node."""
    out = enabled_schemas(names)
    have = {n for n, _ in out}
    for declared in pl.declared(pl.SCHEMA):
        if declared.name in have:
            continue
        try:
            obj = pl.load(pl.SCHEMA, declared.name)
        except pl.PluginError:
            continue
        if isinstance(obj, PluginSchema) and obj.migrations.is_dir():
            out.append((declared.name, obj))
            have.add(declared.name)
    return out
