"""The audit chain's keys: where they come from, rotation, verifying without them, and the switch from the plain
SHA-256 chain of an existing database to the keyed one."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.support.tamper import superuser_sql
from voiceivr.audit.chain import AuditTrail, canonical_json, compute_hash
from voiceivr.audit.config import AuditConfig, bind
from voiceivr.audit.keys import Keyring, key_id_of
from voiceivr.cli import cli
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.errors import ConfigError
from voiceivr.settings import Settings

KEY_A = "first-audit-key-" + "a" * 40
KEY_B = "second-audit-key-" + "b" * 40


def _env(url: str, **extra: str) -> dict[str, str]:
    return {"VOICEIVR_DATABASE_URL": url, **extra}


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def _settings(var_dir: Path, **audit: str) -> Settings:
    s = Settings()
    s.paths.var_dir = var_dir
    for k, v in audit.items():
        setattr(s.audit, k, v)
    return s


# ------------------------------------------------------------------------------------- where keys come from


def _make_key(var_dir: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(AuditConfig.from_settings(_settings(Path(var_dir))).keys(create=True).current.key_id)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_unconfigured_node_makes_one_key_even_when_processes_race(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_make_key, args=(str(tmp_path), out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = {out.get(timeout=5) for _ in procs}
    assert len(ids) == 1, "every process uses the one key that won"
    path = tmp_path / "audit-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert len(keys) == 1 and len(keys[0]) >= 32 and key_id_of(keys[0].encode()) in ids
    assert [p.name for p in tmp_path.iterdir()] == ["audit-key"], "no temporary file left behind"


def test_key_id_is_a_fingerprint_that_reveals_nothing() -> None:
    ring = Keyring.from_secrets([KEY_A, KEY_B, KEY_A])
    assert [k.key_id for k in ring.keys] == [key_id_of(KEY_A.encode()), key_id_of(KEY_B.encode())]
    assert ring.current.key_id == key_id_of(KEY_B.encode()) and len(ring.current.key_id) == 13
    assert KEY_A not in repr(ring) and "aaaa" not in repr(ring)
    assert ring.current.public_hex() != ring.keys[0].public_hex()  # each key signs with its own Ed25519 key


@pytest.mark.parametrize(
    ("audit", "file_text", "message"),
    [
        ({"key": "too-short"}, None, "audit key 1 is 9 characters; each must be at least 32"),
        ({"key": KEY_A + ",short"}, None, "audit key 2 is 5 characters"),
        ({"key_file": "KEYFILE"}, "# nothing but a comment\n\n", "holds no audit key"),
        ({"key_file": "KEYFILE"}, None, "does not exist"),
    ],
)
def test_bad_keys_are_one_clear_error(tmp_path: Path, audit: dict[str, str], file_text: str | None,
                                      message: str) -> None:
    audit = {k: v.replace("KEYFILE", str(tmp_path / "keys")) for k, v in audit.items()}
    if file_text is not None:
        (tmp_path / "keys").write_text(file_text)
    config = AuditConfig.from_settings(_settings(tmp_path, **audit))
    with pytest.raises(ConfigError, match=message) as err:
        config.keys(create=True)  # a key file that was named but is missing is never made up
    assert "a" * 20 not in str(err.value) and "a" * 20 not in str(err.value.hint)
    assert not (tmp_path / "audit-key").exists()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_verify_without_the_key_names_the_settings(sqlite_url: str, tmp_path: Path) -> None:
    env = _env(sqlite_url, VOICEIVR_AUDIT_KEY=KEY_A)
    assert _cli(env, "db", "upgrade")[0] == 0
    engine = make_engine(sqlite_url)
    bind(engine, AuditConfig(keyring=Keyring.from_secrets([KEY_A])))
    AuditTrail(engine).append("login", {"ok": True})
    engine.dispose()
    nokey = _env(sqlite_url, VOICEIVR_AUDIT_KEY="", VOICEIVR_PATHS_VAR_DIR=str(tmp_path / "elsewhere"))
    code, out = _cli(nokey, "audit", "verify")
    assert code == 2 and "Traceback" not in out
    assert "no audit key" in out and "audit.key or audit.key_file" in out
    assert not (tmp_path / "elsewhere" / "audit-key").exists(), "verify never makes a key: it would fail every row"
    code, out = _cli(_env(sqlite_url, VOICEIVR_AUDIT_KEY=KEY_B), "audit", "verify")
    assert code == 1 and "BROKEN at seq 1:" in out and "not in the keyring" in out


# ------------------------------------------------------------------------------------------------ rotation


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_rotation_keeps_old_rows_verifiable(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    """New rows use the last key; the old key stays in the list for verification only. A key file is rotated
    by appending a line."""
    keyfile = tmp_path / "audit-key"
    keyfile.write_text(KEY_A + "\n")
    keyfile.chmod(0o600)
    checkpoints = tmp_path / "checkpoints.jsonl"

    def config() -> AuditConfig:
        return AuditConfig(key_file=keyfile, checkpoint_file=checkpoints)

    bind(migrated_engine, config())
    trail = AuditTrail(migrated_engine)
    old = [trail.append("before.rotation", {"i": i}) for i in range(3)]
    trail.checkpoint()
    with keyfile.open("a") as f:
        f.write(KEY_B + "\n")
    bind(migrated_engine, config())  # what a restart does: read the keys again
    new = [trail.append("after.rotation", {"i": i}) for i in range(3)]
    assert {r.key_id for r in old} == {key_id_of(KEY_A.encode())}
    assert {r.key_id for r in new} == {key_id_of(KEY_B.encode())}
    trail.checkpoint()
    report = trail.verify()
    assert report.ok and report.rows == 6 and report.checkpoints == 2, report.summary()

    bind(migrated_engine, AuditConfig(keyring=Keyring.from_secrets([KEY_B]), checkpoint_file=checkpoints))
    report = trail.verify()
    assert not report.ok and report.first_bad_seq == 1 and "retired key missing" in report.reason
    bind(migrated_engine, AuditConfig(keyring=Keyring.from_secrets([KEY_A]), checkpoint_file=checkpoints))
    report = trail.verify()
    assert not report.ok and report.first_bad_seq == 4 and "not in the keyring" in report.reason


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_new_key_listed_first_is_known_but_not_used(migrated_engine: sa.Engine) -> None:
    """Phase 1 of a rotation across nodes (docs/deploy.md): the new key goes first, so every node knows it
    before any node uses it."""
    bind(migrated_engine, AuditConfig(keyring=Keyring.from_secrets([KEY_B, KEY_A])))
    trail = AuditTrail(migrated_engine)
    assert trail.append("phase.one", {}).key_id == key_id_of(KEY_A.encode())
    bind(migrated_engine, AuditConfig(keyring=Keyring.from_secrets([KEY_A, KEY_B])))  # phase 2
    assert trail.append("phase.two", {}).key_id == key_id_of(KEY_B.encode())
    assert trail.verify().ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_binding_follows_option_engines(migrated_engine: sa.Engine) -> None:
    bind(migrated_engine, AuditConfig(keyring=Keyring.from_secrets([KEY_B])))
    record = AuditTrail(migrated_engine.execution_options(logging_token="x")).append("login", {})
    assert record.key_id == key_id_of(KEY_B.encode())


# ------------------------------------------------------------------------ from the plain SHA-256 chain to keys


def _legacy_rows(engine: sa.Engine, n: int) -> None:
    """What code before revision 0005 appended: plain SHA-256 links, no key id column."""
    prev = "0" * 64
    t0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for seq in range(1, n + 1):
            created = t0 + dt.timedelta(seconds=seq)
            payload = canonical_json({"legacy": seq})
            link = compute_hash(seq, created, "c-old", "utterance", "caller", payload, prev)
            conn.execute(sa.text("INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, "
                                 "prev_hash, hash) VALUES (:s, :t, 'c-old', 'utterance', 'caller', :p, :prev, :h)"),
                         {"s": seq, "t": created, "p": payload, "prev": prev, "h": link})
            prev = link


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_upgrading_a_legacy_trail_seals_it_and_legacy_rows_cannot_follow(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0004")
    _legacy_rows(engine, 4)
    engine.dispose()
    env = _env(db_url)
    code, out = _cli(env, "db", "upgrade")
    assert code == 0 and "4 legacy SHA-256 rows sealed by keyed row 5" in out, out
    code, out = _cli(env, "audit", "verify")
    assert code == 0 and "intact: 5 rows" in out, out
    code, out = _cli(env, "audit", "tail", "-n", "1")
    assert "audit.keyed" in out and '"legacy_rows":4' in out
    assert "sealed" not in _cli(env, "db", "upgrade")[1], "sealed once"
    engine = make_engine(db_url)
    AuditTrail(engine).append("after.upgrade", {"ok": True})
    # Someone who may bypass the triggers appends a legacy-style row after the keyed chain began.
    with engine.connect() as conn:
        head = conn.execute(sa.text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).one()
    now = dt.datetime.now(dt.UTC)
    link = compute_hash(head.seq + 1, now, None, "action.result", "runner", "{}", head.hash)
    drop = ("DROP TRIGGER IF EXISTS audit_events_keyed_only" if "sqlite" in db_url
            else "ALTER TABLE audit_events DISABLE TRIGGER audit_events_keyed_only")
    superuser_sql(db_url, [drop, "INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, "
                                  f"prev_hash, hash, key_id) VALUES ({head.seq + 1}, '{now.isoformat()}', NULL, "
                                  f"'action.result', 'runner', '{{}}', '{head.hash}', '{link}', '')"])
    engine.dispose()
    code, out = _cli(env, "audit", "verify")
    assert code == 1 and f"BROKEN at seq {head.seq + 1}:" in out and "after the keyed chain began at seq 5" in out


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_unsealed_legacy_trail_is_not_vouched_for_until_a_keyed_row_follows(migrated_engine: sa.Engine,
                                                                               db_url: str) -> None:
    engine = make_engine(db_url)
    migrate.downgrade(engine, "0004")
    _legacy_rows(engine, 3)
    migrate.upgrade(engine)  # the library call: no seal (as if alembic had been run by hand)
    trail = AuditTrail(engine)
    report = trail.verify()
    assert not report.ok and report.first_bad_seq == 1 and "voiceivr db upgrade" in report.reason
    record = trail.append("first.keyed", {})  # any keyed row vouches for the legacy rows before it
    assert record.seq == 4 and record.prev_hash == next(r for r in trail.rows() if r.seq == 3).hash
    assert trail.verify().ok
    engine.dispose()


def test_the_key_never_reaches_the_database_or_the_logs(migrated_engine: sa.Engine, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    config = AuditConfig.from_settings(_settings(tmp_path))
    bind(migrated_engine, config)
    trail = AuditTrail(migrated_engine)
    trail.append("login", {"ok": True})
    trail.checkpoint()
    secret = config.keys().current.secret.decode()
    with migrated_engine.connect() as conn:
        dump = json.dumps([list(r) for r in conn.execute(sa.text("SELECT * FROM audit_events"))], default=str)
    assert secret not in dump and secret[:16] not in dump
    assert secret not in caplog.text and secret not in (tmp_path / "audit-checkpoints.jsonl").read_text()
    assert os.environ.get("VOICEIVR_AUDIT_KEY", "") not in dump
