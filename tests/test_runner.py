"""The action runner: write-ahead audit row, once per idempotency key, recovery of crashed runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.actions.effects import ActionFailed, DbAction, ExternalAction, RunContext, RunnerRegistry
from voiceivr.actions.registry import UnknownAction
from voiceivr.actions.runner import ActionRunner
from voiceivr.audit.chain import AuditTrail
from voiceivr.db.models import ActionRun
from voiceivr.sim import ledger


@pytest.fixture
def bank(migrated_engine: Engine) -> Engine:
    ledger.create_tables(migrated_engine)
    ledger.open_account(migrated_engine, "111", "alice", "1234", 10_000)
    ledger.open_account(migrated_engine, "222", "bob", "0000", 0)
    return migrated_engine


def _transfer(runner: ActionRunner, key: str, cents: int = 500) -> Any:
    return runner.run(
        key=key, action="transfer", params={"from_account": "111", "payee": "222", "amount_cents": cents},
        risk="high", context=RunContext(key, "call-1", "alice", "s1"), audit={"transcript": "send it"},
    )


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_intent_row_is_committed_before_the_effect_and_result_after(bank: Engine) -> None:
    seen: list[tuple[str, int]] = []
    trail = AuditTrail(bank)

    def spy(point: str) -> None:
        seen.append((point, trail.head().seq))

    runner = ActionRunner(bank, ledger.registry(), node="t", crash=spy)
    out = _transfer(runner, "k1")
    assert out.status == "succeeded" and out.result == {"transferred_cents": 500, "payee": "222"}
    # When the effect is applied, the intent row is already committed (visible to another connection).
    points = dict(seen)
    assert points["intent_committed"] == out.intent_seq
    assert points["effect_applied"] == out.intent_seq
    assert points["result_committed"] == out.result_seq
    rows = {r.seq: r for r in trail.rows()}
    intent = rows[out.intent_seq].payload_obj()
    assert rows[out.intent_seq].kind == "action.intent" and intent["transcript"] == "send it"
    assert intent["params"]["amount_cents"] == 500 and intent["principal"] == "alice"
    assert rows[out.result_seq].kind == "action.result"
    assert trail.verify().ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_same_key_never_runs_twice_and_returns_the_first_result(bank: Engine) -> None:
    runner = ActionRunner(bank, ledger.registry(), node="t")
    first = _transfer(runner, "k1")
    again = _transfer(runner, "k1", cents=900)  # a retry must not become a second, different transfer
    assert again.status == "duplicate" and again.result == first.result and again.ok
    assert len(ledger.executions(bank)) == 1
    # A second runner (another process after a restart) sees the same.
    other = ActionRunner(bank, ledger.registry(), node="t2")
    assert _transfer(other, "k1").status == "duplicate"
    assert len(ledger.executions(bank)) == 1


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_refusal_is_recorded_and_rolls_back_the_effect(bank: Engine) -> None:
    runner = ActionRunner(bank, ledger.registry(), node="t")
    out = _transfer(runner, "k1", cents=1_000_000)
    assert out.status == "failed" and out.reason == "insufficient_funds" and not out.ok
    assert ledger.executions(bank) == []
    assert runner.status("k1") == "failed"


def test_secret_params_never_reach_the_trail_or_the_runs_table(bank: Engine) -> None:
    runner = ActionRunner(bank, ledger.registry(), node="t", secret=b"k" * 32)
    out = runner.run(key="id1", action="identify", params={"account": "111", "pin": "1234"}, risk="low")
    assert out.result == {"authenticated": True, "principal": "alice"}
    with bank.connect() as conn:
        stored = conn.execute(sa.select(ActionRun.params_json)).scalar_one()
    assert "1234" not in stored
    assert all("1234" not in r.payload for r in AuditTrail(bank).rows())


def test_unknown_action_is_a_clear_error(bank: Engine) -> None:
    runner = ActionRunner(bank, ledger.registry(), node="t")
    with pytest.raises(UnknownAction, match="no action named 'teleport'"):
        runner.run(key="k", action="teleport", params={}, risk="low")


class _Boom(Exception):
    pass


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_recovery_aborts_pending_runs_of_a_dead_process(bank: Engine) -> None:
    def die(point: str) -> None:
        if point == "intent_committed":
            raise _Boom  # stands in for the process dying right after the intent commit

    crashed = ActionRunner(bank, ledger.registry(), node="n1", crash=die)
    crashed.owner = "n1:999999999:dead"  # a pid that does not exist: that process is gone
    with pytest.raises(_Boom):
        _transfer(crashed, "k1")
    assert crashed.status("k1") == "pending"
    restarted = ActionRunner(bank, ledger.registry(), node="n1")
    report = restarted.recover()
    assert report.aborted == 1 and report.keys == ["k1"]
    assert restarted.status("k1") == "aborted" and ledger.executions(bank) == []
    # The aborted key stays used: a retry does not run it behind the caller's back.
    assert _transfer(restarted, "k1").status == "duplicate"
    assert ledger.executions(bank) == []
    kinds = [r.kind for r in AuditTrail(bank).rows()]
    assert kinds.count("action.recovered") == 1


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_recovery_leaves_live_runs_of_other_nodes_alone(bank: Engine) -> None:
    def die(point: str) -> None:
        if point == "intent_committed":
            raise _Boom

    other = ActionRunner(bank, ledger.registry(), node="other", crash=die)
    with pytest.raises(_Boom):
        _transfer(other, "k1")
    report = ActionRunner(bank, ledger.registry(), node="mine").recover()
    assert report.skipped == 1 and other.status("k1") == "pending"


def _remote_registry(calls: list[str], *, dedupes: bool, fail_first: bool = False) -> RunnerRegistry:
    effects: dict[str, int] = {}
    failed = {"done": not fail_first}

    def call(params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
        calls.append(ctx.idempotency_key)
        if not failed["done"]:
            failed["done"] = True
            raise TimeoutError("remote did not answer")
        if dedupes and ctx.idempotency_key in effects:
            return {"id": effects[ctx.idempotency_key]}
        if params.get("refuse"):
            raise ActionFailed("refused", {"why": "test"})
        effects[ctx.idempotency_key] = len(effects) + 1
        return {"id": effects[ctx.idempotency_key]}

    reg = RunnerRegistry()
    reg.register(ExternalAction("hook", call, remote_dedupes=dedupes))
    return reg


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_external_action_with_unknown_outcome_is_resumed_with_the_same_key(migrated_engine: Engine) -> None:
    calls: list[str] = []
    runner = ActionRunner(migrated_engine, _remote_registry(calls, dedupes=True, fail_first=True), node="t")
    out = runner.run(key="x1", action="hook", params={}, risk="low")
    assert out.status == "unknown" and runner.status("x1") == "unknown"
    report = runner.recover()
    assert report.resumed == 1 and runner.status("x1") == "succeeded"
    assert calls == ["x1", "x1"]


def test_external_once_action_is_never_called_again(migrated_engine: Engine) -> None:
    calls: list[str] = []
    runner = ActionRunner(migrated_engine, _remote_registry(calls, dedupes=False, fail_first=True), node="t")
    assert runner.run(key="x1", action="hook", params={}, risk="low").status == "unknown"
    runner.recover()
    ActionRunner(migrated_engine, _remote_registry(calls, dedupes=False), node="t").recover()
    assert calls == ["x1"] and runner.status("x1") == "unknown"


def test_external_refusal_is_recorded(migrated_engine: Engine) -> None:
    calls: list[str] = []
    runner = ActionRunner(migrated_engine, _remote_registry(calls, dedupes=True), node="t")
    out = runner.run(key="x1", action="hook", params={"refuse": True}, risk="low")
    assert out.status == "failed" and out.result == {"reason": "refused", "why": "test"}
    last = AuditTrail(migrated_engine).tail(1)[0]
    assert last.kind == "action.result" and json.loads(last.payload)["status"] == "failed"


def test_registry_refuses_duplicate_names() -> None:
    reg = RunnerRegistry()
    reg.register(DbAction("a", lambda conn, p, c: {}))
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(DbAction("a", lambda conn, p, c: {}))
