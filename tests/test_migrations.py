"""Every migration runs up and down on SQLite and PostgreSQL, the core's and the demo plugin's branch, and the
models of both match the migrations."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from voiceivr.actions.registry import ActionContext
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.demo import actions as bank
from voiceivr.demo.identity import DemoIdentity
from voiceivr.errors import SchemaOutOfDate
from voiceivr.policy.flags import PrincipalFlags
from voiceivr.policy.identity import Contact

ROOT = Path(__file__).resolve().parents[1]

DEMO_TABLES = {"bank_customers", "bank_accounts", "bank_addresses", "bank_cards", "bank_payees", "bank_transfers"}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_every_migration_up_and_down(db_url: str) -> None:
    """The core's chain, then each plugin branch (the demo's), one revision at a time: up, down to the one
    before, up again; then everything down to nothing and up to the heads."""
    engine = make_engine(db_url)
    history = migrate.history(["demo"])
    core = [rev for rev, _, _ in history if not rev.startswith("demo_")]
    demo = [rev for rev, _, _ in history if rev.startswith("demo_")]
    assert core[0] == "0001" and core[-1] == migrate.head_revision() and demo == ["demo_0001", "demo_0002"]
    previous = "base"
    for rev in core:
        migrate.upgrade(engine, rev, plugins=[])
        assert migrate.current_revisions(engine) == [rev]
        migrate.downgrade(engine, previous, plugins=[])
        assert migrate.current_revision(engine) == (None if previous == "base" else previous)
        migrate.upgrade(engine, rev, plugins=[])
        previous = rev
    assert not _tables(engine) & DEMO_TABLES  # the core's chain makes none of the demo's tables
    previous = "demo@base"
    for i, rev in enumerate(demo):
        migrate.upgrade(engine, rev, plugins=["demo"])
        assert migrate.applied_revisions(engine) == {*core, *demo[:i + 1]}
        migrate.downgrade(engine, previous, plugins=["demo"])
        assert migrate.applied_revisions(engine) == {*core, *demo[:i]}
        migrate.upgrade(engine, rev, plugins=["demo"])
        previous = rev
    assert _tables(engine) >= DEMO_TABLES
    migrate.downgrade(engine, "base", plugins=["demo"])
    assert _tables(engine) == set()
    migrate.upgrade(engine, plugins=["demo"])
    assert set(migrate.head_revisions(["demo"])) <= migrate.applied_revisions(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_models_and_migrations_agree(migrated_engine: sa.Engine) -> None:
    """The core's models and the demo plugin's, against a database migrated with the demo enabled (the suite's
    settings)."""
    assert _tables(migrated_engine) >= DEMO_TABLES
    diff = migrate.schema_diff(migrated_engine, ["demo"])
    assert diff == [], f"models differ from migrations (write a migration): {diff}"


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_node_without_plugins_has_only_the_cores_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine, plugins=[])
    assert migrate.current_revisions(engine) == [migrate.head_revision()]
    assert not _tables(engine) & DEMO_TABLES
    assert migrate.schema_diff(engine, []) == []
    migrate.require_current(engine, [])
    need = rf"enabled plugins \(demo\) need {migrate.head_revision()}, demo_0002 \(missing demo_0002\)"
    with pytest.raises(SchemaOutOfDate, match=need):
        migrate.require_current(engine, ["demo"])  # enabling the demo needs `voiceivr db upgrade` first
    migrate.upgrade(engine, plugins=["demo"])
    migrate.require_current(engine, ["demo"])
    migrate.require_current(engine, [])  # disabled again: its tables are left alone, and not in the way
    assert migrate.schema_diff(engine, []) == []
    engine.dispose()


def _insert_row(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, hash, key_id) "
            "VALUES (1, :t, NULL, 'k', 'system', '{}', :p, :h, 'k000000000000')"
        ),
        {"t": "2026-01-01 00:00:00+00:00", "p": "0" * 64, "h": "1" * 64},
    )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET kind = 'x'", "DELETE FROM audit_events", "DELETE FROM audit_events WHERE seq = 1"],
)
def test_database_refuses_changes_to_audit_rows(migrated_engine: sa.Engine, statement: str) -> None:
    with migrated_engine.begin() as conn:
        _insert_row(conn)
    with pytest.raises(DBAPIError, match="append-only"), migrated_engine.begin() as conn:
        conn.execute(sa.text(statement))
    with migrated_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT kind FROM audit_events")).scalar_one() == "k"


@pytest.mark.parametrize("key_id", ["''", None])
def test_database_refuses_new_rows_without_a_key_id(migrated_engine: sa.Engine, key_id: str | None) -> None:
    """Since 0005 only keyed rows may be appended: a row with the plain SHA-256 link of old (an empty key id,
    or the column left out) is refused by the database, whoever inserts it."""
    columns = "seq, created_at, call_id, kind, actor, payload, prev_hash, hash" + (", key_id" if key_id else "")
    values = "1, :t, NULL, 'k', 'system', '{}', :p, :h" + (f", {key_id}" if key_id else "")
    with pytest.raises(DBAPIError, match="need a key id"), migrated_engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO audit_events ({columns}) VALUES ({values})"),
                     {"t": "2026-01-01 00:00:00+00:00", "p": "0" * 64, "h": "1" * 64})


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        _insert_row(conn)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE"), engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE audit_events"))
    engine.dispose()


# ------------------------------------------------------------------- a database made before the demo was a plugin

# Core revision 0003 as it was: it made the demo's tables in the core's chain. Its DDL now lives, unchanged, in
# the demo branch's first revision (demo_0001._create), which this stand-in calls.
OLD_0003 = '''
"""the demo bank behind dialplans/bank.yaml (core revision 0003 before the demo had a branch of its own)"""
import importlib.util

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_spec = importlib.util.spec_from_file_location("old_demo_tables", {path!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)


def upgrade():
    _module._create()


def downgrade():
    _module._drop()
'''


def _database_at_todays_head(engine: sa.Engine, tmp: Path) -> None:
    """Migrate ``engine`` with the core chain as it was before this change (0001-0006, the old 0003 making the
    demo's tables): what every existing database looks like."""
    from alembic import command
    from alembic.config import Config

    versions = tmp / "old-versions"
    versions.mkdir()
    for path in migrate.CORE_VERSIONS.glob("000[1-6]_*.py"):
        if not path.name.startswith("0003_"):
            shutil.copy(path, versions / path.name)
    demo_0001 = next((ROOT / "voiceivr" / "demo" / "migrations").glob("demo_0001_*.py"))
    (versions / "0003_bank_demo.py").write_text(OLD_0003.format(path=str(demo_0001)))
    cfg = Config()
    cfg.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(versions))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.commit()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_database_from_before_the_plugin_keeps_its_bank_and_its_flags(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    _database_at_todays_head(engine, tmp_path)
    assert migrate.current_revisions(engine) == ["0006"] and _tables(engine) >= DEMO_TABLES
    meta = sa.MetaData()
    customers, accounts, transfers = (sa.Table(n, meta, autoload_with=engine)
                                      for n in ("bank_customers", "bank_accounts", "bank_transfers"))
    salt = "00" * 16
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for cid, name, flagged in (("c-1001", "Alice Martin", True), ("c-1002", "Bob Chen", False)):
            conn.execute(customers.insert().values(
                id=cid, name=name, phone_on_file="+1555555010" + cid[-1], totp_secret=None, pin_salt=salt,
                pin_hash=bank.hash_pin("1234", salt), failed_logins=0, locked=False, flagged=flagged,
                created_at=now))
        conn.execute(accounts.insert().values(number="10000001", customer_id="c-1001", kind="checking",
                                              balance_cents=250_000))
        conn.execute(accounts.insert().values(number="20000001", customer_id="c-1002", kind="checking",
                                              balance_cents=15_025))
        conn.execute(transfers.insert().values(reference="T0000AAAA", idempotency_key="call-1:r1",
                                               customer_id="c-1001", from_account="10000001",
                                               to_account="20000001", amount_cents=5000, created_at=now))

    migrate.upgrade(engine, plugins=["demo"])  # what `voiceivr db upgrade` does on a node with the demo enabled

    assert {"0007", "demo_0001", "demo_0002"} <= migrate.applied_revisions(engine)
    assert migrate.schema_diff(engine, ["demo"]) == []
    migrate.require_current(engine, ["demo"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bank_transfers")).scalar_one() == 1
        balances = dict(conn.execute(sa.text("SELECT number, balance_cents FROM bank_accounts")).all())
    assert balances == {"10000001": 250_000, "20000001": 15_025}
    with engine.connect() as conn:
        assert not any(conn.execute(sa.text("SELECT flagged FROM bank_customers")).scalars())  # no longer used
    (flag,) = PrincipalFlags(engine).list()
    assert (flag.principal, flag.reason) == ("c-1001", "demo:customers.flagged")  # still flagged, now in the core
    # The demo plugin runs on the data it adopted.
    ctx = ActionContext("call-2", None, engine, dt.datetime.now(dt.UTC))
    assert bank.login({"account_number": "20000001", "pin": "1234"}, ctx)["principal"] == "c-1002"
    bob = ActionContext("call-2", "c-1002", engine, now)
    assert bank.get_balance({"account": "checking"}, bob)["balance"] == 15_025
    assert DemoIdentity(engine).contact("c-1002", {}) == Contact("c-1002", "+15555550102", False)
    # And back: the flag returns to the demo's column.
    migrate.downgrade(engine, "demo_0001", plugins=["demo"])
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT id, flagged FROM bank_customers")).all()) == {"c-1001": True,
                                                                                           "c-1002": False}
    engine.dispose()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_database_from_before_the_plugin_on_a_node_without_it(db_url: str, tmp_path: Path) -> None:
    """Upgraded with the demo not enabled: the core moves on, the demo's tables stay as they were (nothing is
    dropped), are not compared, and are adopted when the demo is enabled later."""
    engine = make_engine(db_url)
    _database_at_todays_head(engine, tmp_path)
    migrate.upgrade(engine, plugins=[])
    assert migrate.current_revisions(engine) == [migrate.head_revision()] and _tables(engine) >= DEMO_TABLES
    assert migrate.schema_diff(engine, []) == []
    migrate.require_current(engine, [])
    migrate.upgrade(engine, plugins=["demo"])
    assert migrate.schema_diff(engine, ["demo"]) == []
    engine.dispose()
