"""What every command shares: settings and the database engine, built on first use.

Wiring, like ``voiceivr/cli/`` and ``runtime.py``, but a module of its own: the CLI's commands and the plugins' and
harnesses' command groups (the demo's, the abuse simulation's) all take it, and the CLI names the harnesses, so
it cannot live inside ``voiceivr/cli/`` without a circle. It imports down into ``voiceivr.db`` (the engine, the
schema check) and ``voiceivr.audit`` (this process's audit keys), and only when a command first asks for the engine.
The bottom floor (settings, errors, logs, metrics, bounds) never imports it; each area's commands
(``voiceivr/cli/<area>.py``, registered by ``voiceivr/cli/__init__.py``) and plugins' commands do.
"""

from __future__ import annotations

from functools import cached_property

import click
from sqlalchemy.engine import Engine

from voiceivr.settings import SettingInfo, Settings, load_settings


class AppContext:
    """What every command may need, built on first use so ``--help`` never touches config or database."""

    def __init__(self) -> None:
        self._engine: Engine | None = None

    @cached_property
    def loaded(self) -> tuple[Settings, list[SettingInfo]]:
        return load_settings()

    @property
    def settings(self) -> Settings:
        return self.loaded[0]

    def engine(self) -> Engine:
        if self._engine is None:
            from voiceivr.audit.config import bind
            from voiceivr.db.engine import engine_from_settings

            self._engine = engine_from_settings(self.settings)
            bind(self._engine, self.settings)  # this process's audit keys and checkpoint file
        return self._engine

    def ready_engine(self) -> Engine:
        """An engine whose schema matches this code (else a clear error telling to upgrade)."""
        from voiceivr.db.migrate import require_current

        engine = self.engine()
        require_current(engine, self.settings.plugins.enabled)
        return engine


pass_app = click.make_pass_decorator(AppContext, ensure=True)
