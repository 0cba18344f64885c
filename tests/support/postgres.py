"""The PostgreSQL server the suite tests against: ``VOICEIVR_TEST_POSTGRES_URL`` (a superuser URL), and whether
a missing or unreachable server fails the test (``VOICEIVR_TEST_REQUIRE_POSTGRES=1``, as scripts/test sets) or
skips it."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

PG_ADMIN_URL = os.environ.get("VOICEIVR_TEST_POSTGRES_URL", "")
REQUIRE_PG = os.environ.get("VOICEIVR_TEST_REQUIRE_POSTGRES") == "1"


def pg_admin_engine() -> Engine:
    if not PG_ADMIN_URL:
        if REQUIRE_PG:
            pytest.fail("VOICEIVR_TEST_POSTGRES_URL is not set but PostgreSQL tests are required")
        pytest.skip("PostgreSQL test: set VOICEIVR_TEST_POSTGRES_URL (scripts/test does)")
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc.orig}")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable")
    return engine
