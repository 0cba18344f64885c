"""Shared fixtures: fresh databases on SQLite and on the real PostgreSQL server.

PostgreSQL tests are marked ``postgres``. They need ``VOICEIVR_TEST_POSTGRES_URL`` (a superuser URL; each
test gets a database of its own, created and dropped here). ``scripts/test`` sets it and also sets
``VOICEIVR_TEST_REQUIRE_POSTGRES=1``, so there a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.support import entrypoints
from tests.support.db_templates import MigratedTemplates
from tests.support.embedder import WordCountEncoder
from tests.support.postgres import pg_admin_engine
from voiceivr import metrics
from voiceivr.db.engine import make_engine, scratch_postgres

# The audit chain is keyed with a secret the database never holds. One key for the whole run, set in the
# environment so that subprocesses (the CLI, serve's workers, spawned writers) use the same one; tests of key
# handling build their own configurations.
TEST_AUDIT_KEY = "voiceivr-test-suite-audit-key-0123456789abcdef"
os.environ.setdefault("VOICEIVR_AUDIT_KEY", TEST_AUDIT_KEY)


@pytest.fixture(autouse=True)
def _audit_checkpoint_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own checkpoint file: checkpoints of one test's database would fail the next one's verify
    (as they should: a checkpoint file belongs to one trail)."""
    path = tmp_path_factory.mktemp("audit") / "audit-checkpoints.jsonl"
    monkeypatch.setenv("VOICEIVR_AUDIT_CHECKPOINT_FILE", str(path))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Every test leaves the logging configuration as it found it. Each ``voiceivr`` command a test invokes in
    process (CliRunner) runs ``logs.configure``, which replaces the root logger's handlers (pytest's own among
    them) with a stderr handler bound to that test's captured stderr, and sets the root and alembic levels; the
    crash simulation disables logging below ERROR. This wraps the whole test rather than being a fixture
    because a fixture runs inside pytest's per-phase log capture and could not tell pytest's handlers of the
    setup phase (gone by teardown) from the test's."""
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    saved = list(root.handlers), root.level, alembic.level, logging.root.manager.disable
    try:
        yield
    finally:
        handlers, root_level, alembic_level, disabled = saved
        root.handlers[:] = handlers
        root.setLevel(root_level)
        alembic.setLevel(alembic_level)
        logging.disable(disabled)


@pytest.fixture
def metrics_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``metrics.serve`` for one test: the /metrics HTTP servers it starts are shut down afterwards (it returns
    only the port, and its server thread would otherwise serve until the end of the run)."""
    started: list[tuple[Any, Any]] = []
    start_http_server = metrics.start_http_server

    def start(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        server, thread = start_http_server(*args, **kwargs)
        started.append((server, thread))
        return server, thread

    monkeypatch.setattr(metrics, "start_http_server", start)
    yield
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


# The plugin loader reads installed entry points; an editable install made before setup.cfg last changed them
# gets this tree's (tests/support/entrypoints.py). Removed at exit.
_STAND_IN = Path(tempfile.mkdtemp(prefix="voiceivr-entrypoints-"))
atexit.register(shutil.rmtree, _STAND_IN, True)
_TEMPLATES = Path(tempfile.mkdtemp(prefix="voiceivr-db-templates-"))
atexit.register(shutil.rmtree, _TEMPLATES, True)
entrypoints.ensure(_STAND_IN)

# Most of the suite exercises the product as scripts/serve runs the demo: the demo plugin enabled and its
# dialplan (dialplans/bank.yaml, named "bank") the live one. Set in the environment so the CLI and serve's
# workers see it too; tests of a node without plugins remove it (tests/test_plugins.py).
os.environ.setdefault("VOICEIVR_PLUGINS_ENABLED", "demo")
os.environ.setdefault("VOICEIVR_DIALPLAN_LIVE_NAME", "bank")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every PostgreSQL test is also ``slow``: each one creates and migrates a database of its own (1 to 4 s
    under load, measured), so ``scripts/test --fast`` runs the SQLite variant of the same logic and the full
    ``scripts/test`` runs both."""
    for item in items:
        if item.get_closest_marker("postgres") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test; dropped afterwards."""
    admin = pg_admin_engine()
    try:
        with scratch_postgres(admin, "voiceivr_t_") as url:
            yield url
    finally:
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/voiceivr.sqlite3"  # type: ignore[str-bytes-safe]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both backends."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def migrated_templates() -> Iterator[MigratedTemplates]:
    """Databases migrated once per run (per backend and set of enabled plugins), copied for each test."""
    templates = MigratedTemplates(_TEMPLATES)
    yield templates
    templates.close()


@pytest.fixture
def migrated_engine(db_url: str, migrated_templates: MigratedTemplates) -> Iterator[Engine]:
    """``db_url``'s database at the head revision: a copy of one migrated once per run (each migration is
    tested from an empty database by tests/test_migrations.py). ``migrate.upgrade`` still runs on the copy,
    a no-op that checks it is at head."""
    from voiceivr.db import migrate

    migrated_templates.fill(db_url)
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cheap_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routers built from the settings (``make_router``: the demo world, the call runtime) get the word-count
    encoder of tests/support/embedder.py for tier 2 instead of loading MiniLM, for tests not about embeddings."""
    from voiceivr.dialplan import embeddings

    cheap = WordCountEncoder()
    monkeypatch.setattr(embeddings, "shared_encoder", lambda *_args, **_kwargs: cheap)


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    """The tier-2 MiniLM encoder, loaded once per test session."""
    from voiceivr.dialplan.embeddings import shared_encoder

    return shared_encoder()
