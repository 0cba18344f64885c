"""The demo plugin's schema as registered under entry point ``voiceivr.schema = demo``: its tables
(:mod:`voiceivr.demo.tables`), their Alembic branch (``voiceivr/demo/migrations``, branch label ``demo``) and
the sample customers that seed a scratch database (:func:`voiceivr.demo.actions.seed`).

The tables live apart from this registration so that the demo's actions, which seed them, and the registration,
which names the seed, import one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Engine

from voiceivr.db.plugins import PluginSchema
from voiceivr.demo.tables import DemoBase


def _seed(engine: Engine) -> Sequence[str]:
    from voiceivr.demo.actions import seed

    return seed(engine)


SCHEMA = PluginSchema(branch="demo", metadata=DemoBase.metadata, migrations=Path(__file__).parent / "migrations",
                      seed=_seed)
