"""Migration 0003 (safe path) matches the models and can be undone."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from voiceivr.db import migrate


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_models_match_the_migrated_schema(migrated_engine: Engine) -> None:
    assert migrate.schema_diff(migrated_engine) == []


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_safepath_migration_downgrades_and_upgrades(migrated_engine: Engine) -> None:
    migrate.downgrade(migrated_engine, "0003")
    assert migrate.current_revision(migrated_engine) == "0003"
    migrate.upgrade(migrated_engine)
    assert migrate.schema_diff(migrated_engine) == []
