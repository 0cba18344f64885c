"""Signed checkpoints: their format and signatures, what an auditor can check with the public key alone, when
the appending process writes them, and where they go (a file, syslog)."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.support.tamper import superuser_sql
from voiceivr.audit.chain import AuditTrail, HeadNotAuthentic, append_in_transaction, compute_hash
from voiceivr.audit.checkpoints import (
    NotACheckpointFile,
    SignedCheckpoint,
    keyring_public_keys,
    public_keys_from_hex,
    read_checkpoints,
)
from voiceivr.audit.config import AuditConfig, bind, binding_for
from voiceivr.audit.keys import Keyring
from voiceivr.cli import cli
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.errors import ConfigError

RING = Keyring.from_secrets(["checkpoint-test-key-" + "c" * 40])
OTHER = Keyring.from_secrets(["another-test-key-" + "o" * 40])


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """The checkpoint thread works on its own time; wait for what it must do, boundedly."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _seqs(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------ format and signatures


def test_signed_lines_verify_and_any_change_is_a_problem(tmp_path: Path) -> None:
    good = SignedCheckpoint.sign(RING.current, 41, "ab" * 32)
    path = tmp_path / "cp.jsonl"
    forged_seq = json.loads(good.line()) | {"seq": 40}
    forged_head = json.loads(good.line()) | {"head": "cd" * 32}
    foreign = SignedCheckpoint.sign(OTHER.current, 50, "ef" * 32)
    path.write_text(good.line() + json.dumps(forged_seq) + "\n" + json.dumps(forged_head) + "\n" + foreign.line()
                    + '{"seq": 60, "hash": "' + "0" * 64 + '"}\n' + "garbage\n")
    lines = read_checkpoints(path, keyring_public_keys(RING), allow_unsigned=False)
    assert [(a.seq, a.hash) for a in lines.anchors] == [(41, "ab" * 32)]
    assert lines.anchors[0].source.startswith(f"{path}:1 (")
    problems = "\n".join(lines.problems)
    assert f"{path}:2: its signature does not verify" in problems and f"{path}:3: its signature" in problems
    assert f"{path}:4: signed with key {OTHER.current.key_id}, which is not in the keyring" in problems
    assert f"{path}:5: an unsigned checkpoint" in problems and f"{path}:6: not a checkpoint" in problems
    unsigned_ok = read_checkpoints(path, keyring_public_keys(RING), allow_unsigned=True)
    assert [a.seq for a in unsigned_ok.anchors] == [41, 60]
    (tmp_path / "hello").write_text("hello\n")
    with pytest.raises(NotACheckpointFile, match="not a checkpoint file"):
        read_checkpoints(tmp_path / "hello", keyring_public_keys(RING), allow_unsigned=True)
    assert read_checkpoints(tmp_path / "none", keyring_public_keys(RING), allow_unsigned=False).anchors == []


def test_an_auditor_checks_checkpoints_with_the_public_key_only(sqlite_url: str, tmp_path: Path) -> None:
    env = {"VOICEIVR_DATABASE_URL": sqlite_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    engine = make_engine(sqlite_url)
    AuditTrail(engine).append("login", {"ok": True})
    engine.dispose()
    kept = tmp_path / "kept.jsonl"
    assert runner.invoke(cli, ["audit", "checkpoint", "-o", str(kept)], env=env).exit_code == 0
    keys = runner.invoke(cli, ["audit", "keys"], env=env)
    assert keys.exit_code == 0 and "(current)" in keys.output
    public = keys.output.split("ed25519:")[1].split()[0]
    # The auditor's machine: no audit key at all, no database.
    auditor = {"VOICEIVR_AUDIT_KEY": "", "VOICEIVR_PATHS_VAR_DIR": str(tmp_path / "auditor"),
               "VOICEIVR_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = runner.invoke(cli, ["audit", "checkpoints", str(kept), "--public-key", f"ed25519:{public}"], env=auditor)
    assert result.exit_code == 0, result.output
    assert "1 checkpoint(s) with good signatures, 0 bad; newest seq 1" in result.output
    wrong = OTHER.current.public_hex()
    result = runner.invoke(cli, ["audit", "checkpoints", str(kept), "--public-key", wrong], env=auditor)
    assert result.exit_code == 1 and "signature does not verify" in result.output
    result = runner.invoke(cli, ["audit", "checkpoints", str(kept), "--public-key", "zz"], env=auditor)
    assert result.exit_code == 2 and "not an Ed25519 public key" in result.output
    assert not (tmp_path / "auditor").exists()


def test_public_keys_from_hex_accepts_any_listed_key() -> None:
    cp = SignedCheckpoint.sign(RING.current, 3, "aa" * 32)
    lookup = public_keys_from_hex([OTHER.current.public_hex(), RING.current.public_hex()])
    assert any(cp.signature_ok(k) for k in lookup(cp.key_id))
    assert not any(cp.signature_ok(k) for k in public_keys_from_hex([OTHER.current.public_hex()])(cp.key_id))


# ---------------------------------------------------------------------------------- written automatically


def _bound(engine: sa.Engine, path: Path, every_rows: int, every_s: float, syslog: str = "") -> AuditTrail:
    bind(engine, AuditConfig(keyring=RING, checkpoint_file=path, every_rows=every_rows, every_s=every_s,
                             syslog=syslog))
    return AuditTrail(engine)


def test_every_n_rows_of_the_trail(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    trail = _bound(migrated_engine, path, every_rows=5, every_s=0)
    for i in range(12):
        trail.append("row", {"i": i})
    assert _wait_for(lambda: bool(_seqs(path)) and max(_seqs(path)) >= 10)
    assert all(s >= 5 for s in _seqs(path)), "nothing before the first multiple of 5"
    trail.flush_checkpoints()
    assert max(_seqs(path)) == 12
    assert trail.flush_checkpoints() is None, "nothing new: nothing written"
    report = trail.verify()
    assert report.ok and report.newest is not None and report.newest.seq == 12


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_every_m_seconds_while_appending_and_nothing_when_idle(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    trail = _bound(migrated_engine, path, every_rows=0, every_s=0.1)
    for i in range(3):
        trail.append("row", {"i": i})
    assert _wait_for(lambda: 3 in _seqs(path))
    checkpointer = binding_for(migrated_engine).checkpointer
    assert checkpointer is not None
    assert _wait_for(lambda: checkpointer._thread is None), "the thread stops once nothing is waiting"
    written = len(_seqs(path))
    time.sleep(0.3)
    assert len(_seqs(path)) == written, "an idle trail writes no checkpoints"
    trail.append("row", {"i": 3})  # and the next append starts it again
    assert _wait_for(lambda: 4 in _seqs(path))


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_rolled_back_row_is_let_go_and_its_number_checkpointed_once_reused(migrated_engine: sa.Engine,
                                                                             tmp_path: Path) -> None:
    """An append inside a transaction that then fails (a duplicate idempotency key, say) is noted but never
    committed: the thread must neither sign it nor chase it for ever."""
    path = tmp_path / "cp.jsonl"
    trail = _bound(migrated_engine, path, every_rows=1, every_s=0.05)
    trail.append("row", {"i": 0})
    assert _wait_for(lambda: _seqs(path) == [1])
    conn = migrated_engine.connect().execution_options(sqlite_begin="IMMEDIATE")
    with pytest.raises(RuntimeError), conn, conn.begin():
        append_in_transaction(conn, "row", {"i": 1})
        raise RuntimeError("the rest of the transaction failed")
    checkpointer = binding_for(migrated_engine).checkpointer
    assert checkpointer is not None
    assert _wait_for(lambda: checkpointer._thread is None), "gave up on the rolled-back row"
    assert _seqs(path) == [1]
    record = trail.append("row", {"i": 2})
    assert record.seq == 2 and _wait_for(lambda: _seqs(path) == [1, 2])


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_forged_head_is_never_signed(db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    path = tmp_path / "cp.jsonl"
    trail = _bound(engine, path, every_rows=0, every_s=0.05)
    trail.append("row", {"i": 0})
    assert _wait_for(lambda: _seqs(path) == [1])
    head = trail.head()
    forged = compute_hash(2, head_time := trail.tail(1)[0].created_at, None, "row", "system", "{}", head.hash)
    superuser_sql(db_url, ["INSERT INTO audit_events (seq, created_at, call_id, kind, actor, payload, prev_hash, "
                            f"hash, key_id) VALUES (2, '{head_time.isoformat()}', NULL, 'row', 'system', '{{}}', "
                            f"'{head.hash}', '{forged}', '{RING.current.key_id}')"])
    with pytest.raises(HeadNotAuthentic, match="seq 2"):
        trail.checkpoint()
    caplog.set_level(logging.ERROR)
    checkpointer = binding_for(engine).checkpointer
    assert checkpointer is not None
    checkpointer.noted(2)  # as if this process had appended it: the thread reads the head back and refuses it
    assert _wait_for(lambda: checkpointer.errors > 0)
    assert _seqs(path) == [1] and "could not write an audit checkpoint" in caplog.text
    env = {"VOICEIVR_DATABASE_URL": db_url}
    result = CliRunner().invoke(cli, ["audit", "checkpoint"], env=env)
    assert result.exit_code == 1 and "fails its MAC, so it is not signed" in result.output
    assert "Traceback" not in result.output
    engine.dispose()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_unwritable_checkpoint_file_is_one_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = {"VOICEIVR_DATABASE_URL": sqlite_url,
           "VOICEIVR_AUDIT_CHECKPOINT_FILE": str(tmp_path / "a-file" / "checkpoints.jsonl")}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(cli, ["audit", "checkpoint"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot append the audit checkpoint" in result.output and "audit.checkpoint_file" in result.output


# ------------------------------------------------------------------------------------------------ syslog


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_syslog_gets_every_checkpoint_and_its_lines_verify(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        trail = _bound(migrated_engine, tmp_path / "cp.jsonl", every_rows=0, every_s=0, syslog=f"127.0.0.1:{port}")
        trail.append("row", {"i": 0})
        cp = trail.checkpoint()
        message = server.recv(4096).decode()
    assert message.startswith("<14>voiceivr-audit[") and cp.line().strip() in message
    copied = tmp_path / "from-syslog.log"  # what an auditor greps out of the log host's file
    copied.write_text(f"Dec  5 12:00:00 node1 {message[4:]}\n")
    report = trail.verify(checkpoint_files=[copied], use_checkpoint_file=False)
    assert report.ok and report.checkpoints == 1, report.summary()


def test_a_syslog_outage_does_not_stop_checkpoints(migrated_engine: sa.Engine, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    trail = _bound(migrated_engine, tmp_path / "cp.jsonl", every_rows=0, every_s=0,
                   syslog=str(tmp_path / "no-such-socket"))
    trail.append("row", {})
    trail.checkpoint()
    assert _seqs(tmp_path / "cp.jsonl") == [1] and "could not send the audit checkpoint to syslog" in caplog.text


@pytest.mark.parametrize("address", ["loghost", "loghost:", "loghost:99999", ":514"])
def test_a_bad_syslog_address_is_a_config_error(address: str) -> None:
    from voiceivr.audit.checkpoints import parse_syslog_address

    with pytest.raises(ConfigError, match="neither a socket path nor host:port"):
        parse_syslog_address(address)
