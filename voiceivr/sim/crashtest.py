"""Kill -9 the action runner at random points, restart it, and check that nothing ran twice or unaudited.

    python -m voiceivr.sim.crashtest --db URL [--kills 260] [--seed N] [--json]

One parent process sets up a scratch schema (migrations + the simulation ledger), then forks worker processes
one after another. Each worker starts like a restarted node (``recover()`` first) and then runs actions
(transfers in the database, calls to an external service that deduplicates on the idempotency key, and calls
to one that does not) until it is killed with SIGKILL:

* at a chosen **point of the state machine** (the runner's crash hook: after the intent commit, inside the
  claim transaction, after the side effect but before the commit, after an external call returned, during
  recovery, ...), the n-th time that point is reached; or
* by the parent, after a **random delay** (wherever it happens to be, including connecting and recovering).

After the last kill, a final recovery runs, and the checks are made from the database alone:

* no transfer, no external side effect of an ``external_once`` action, more than once per key;
* every side effect (ledger row, remote call) has its ``action.intent`` audit row committed, and every
  ledger row its ``action.result`` row;
* no run left ``pending`` or ``running``; money is conserved across all accounts; the audit chain verifies.

Forking (rather than starting an interpreter per kill) keeps 200+ kills within seconds. The "external
services" are tables written on their own autocommit connections, i.e. outside the runner's transactions,
exactly like a remote system.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.actions.effects import ActionFailed, ExternalAction, RunContext
from voiceivr.actions.runner import ActionRunner
from voiceivr.audit.chain import AuditTrail
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.db.models import ActionRun, AuditEvent
from voiceivr.sim import ledger

POINTS = (
    "intent_committed",
    "claim_open",
    "effect_applied",
    "result_uncommitted",
    "result_committed",
    "running_committed",
    "external_returned",
    "recovery_committed",
)
ACCOUNTS = [f"90{i:02d}" for i in range(8)]
OPENING_CENTS = 1_000_000

remote_meta = sa.MetaData()
remote_calls = sa.Table(
    "sim_remote_calls", remote_meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
)
remote_effects = sa.Table(
    "sim_remote_effects", remote_meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
)


class Remote:
    """A remote service: its own connections, its own commits; deduplicates on the key only if told to."""

    def __init__(self, engine: Engine, dedupes: bool, crash: Any) -> None:
        self.engine, self.dedupes, self.crash = engine, dedupes, crash

    def __call__(self, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
        name = "notify" if self.dedupes else "fax"
        with self.engine.begin() as conn:
            conn.execute(remote_calls.insert().values(idempotency_key=ctx.idempotency_key, action=name))
        self.crash("remote_received")
        with self.engine.begin() as conn:
            if self.dedupes:
                seen = conn.execute(
                    sa.select(remote_effects.c.id).where(remote_effects.c.idempotency_key == ctx.idempotency_key)
                ).first()
                if seen is not None:
                    return {"remote_id": int(seen.id), "replayed": True}
            if params.get("refuse"):
                raise ActionFailed("remote_refused")
            rid = conn.execute(
                remote_effects.insert().values(idempotency_key=ctx.idempotency_key, action=name)
            ).inserted_primary_key
        return {"remote_id": int(rid[0]) if rid else 0}


class Killer:
    """The crash hook: SIGKILL ourselves the n-th time the chosen point is reached."""

    def __init__(self, point: str | None, nth: int) -> None:
        self.point, self.left = point, nth

    def __call__(self, point: str) -> None:
        if point == self.point:
            self.left -= 1
            if self.left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)


def _registry(engine: Engine, killer: Killer) -> Any:
    reg = ledger.registry()
    reg.register(ExternalAction("notify", Remote(engine, True, killer), remote_dedupes=True))
    reg.register(ExternalAction("fax", Remote(engine, False, killer), remote_dedupes=False))
    return reg


def _worker(url: str, worker_id: int, point: str | None, nth: int, seed: int) -> None:
    """A restarted node: recover, then run actions until killed (or 40 actions, then exit cleanly)."""
    rng = random.Random(seed)
    killer = Killer(point, nth)
    engine = make_engine(url)
    runner = ActionRunner(engine, _registry(engine, killer), node="crash", crash=killer)
    runner.recover()
    for i in range(40):
        key = f"w{worker_id}-{i}"
        kind = rng.random()
        principal = "p" + ACCOUNTS[0]
        if kind < 0.6:
            src, dst = rng.sample(ACCOUNTS, 2)
            ctx = RunContext(key, f"call-{worker_id}", "p" + src, "s")
            params: dict[str, Any] = {"from_account": src, "payee": dst, "amount_cents": rng.randint(1, 5000)}
            runner.run(key=key, action="transfer", params=params, risk="high", context=ctx,
                       audit={"transcript": "transfer"})
        else:
            action = "notify" if kind < 0.8 else "fax"
            ctx = RunContext(key, f"call-{worker_id}", principal, "s")
            runner.run(key=key, action=action, params={"n": i, "refuse": rng.random() < 0.1}, risk="low",
                       context=ctx, audit={"transcript": action})
        if rng.random() < 0.15:  # a retried request (same key) must come back as a duplicate
            runner.run(key=key, action="transfer", params={}, risk="high", context=ctx)
    engine.dispose()


@dataclass
class CrashReport:
    backend: str
    workers: int = 0
    point_kills: int = 0
    timed_kills: int = 0
    clean_exits: int = 0
    kills_by_point: dict[str, int] = field(default_factory=dict)
    transfers: int = 0
    remote_effects: int = 0
    runs_by_status: dict[str, int] = field(default_factory=dict)
    double_executions: int = 0
    executions_without_intent_row: int = 0
    executions_without_result_row: int = 0
    unresolved_runs: int = 0
    money_conserved: bool = False
    audit_ok: bool = False
    audit_rows: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.double_executions == 0
            and self.executions_without_intent_row == 0
            and self.executions_without_result_row == 0
            and self.unresolved_runs == 0
            and self.money_conserved
            and self.audit_ok
        )


def setup(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, plugins=[])  # the runner's tables and the ledger: no plugin
    ledger.create_tables(engine)
    remote_meta.create_all(engine)
    for acct in ACCOUNTS:
        ledger.open_account(engine, acct, "p" + acct, "0000", OPENING_CENTS)
    engine.dispose()


def check(url: str, report: CrashReport) -> None:
    engine = make_engine(url)
    killer = Killer(None, 0)
    ActionRunner(engine, _registry(engine, killer), node="crash").recover()
    audit = sa.Table(AuditEvent.__tablename__, sa.MetaData(), autoload_with=engine)
    runs = sa.Table(ActionRun.__tablename__, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        intents: dict[str, int] = {}
        results: set[str] = set()
        for row in conn.execute(sa.select(audit.c.seq, audit.c.kind, audit.c.payload)):
            if row.kind == "action.intent":
                intents[json.loads(row.payload)["idempotency_key"]] = row.seq
            elif row.kind in ("action.result", "action.recovered"):
                p = json.loads(row.payload)
                if p.get("status") == "succeeded":
                    results.add(p["idempotency_key"])
        run_rows = {r.idempotency_key: r for r in conn.execute(sa.select(runs))}
        ledger_keys = [r.idempotency_key for r in conn.execute(sa.select(ledger.entries.c.idempotency_key))]
        effect_rows = conn.execute(sa.select(remote_effects)).fetchall()
        call_keys = {r.idempotency_key for r in conn.execute(sa.select(remote_calls.c.idempotency_key))}
        total = conn.execute(sa.select(sa.func.sum(ledger.accounts.c.balance_cents))).scalar_one()
    report.transfers = len(ledger_keys)
    report.remote_effects = len(effect_rows)
    counts: dict[str, int] = {}
    for k in ledger_keys + [r.idempotency_key for r in effect_rows]:
        counts[k] = counts.get(k, 0) + 1
    report.double_executions = sum(n - 1 for n in counts.values() if n > 1)
    executed = set(ledger_keys) | call_keys
    report.executions_without_intent_row = sum(
        1 for k in executed if k not in intents or k not in run_rows or run_rows[k].intent_audit_seq != intents[k]
    )
    report.executions_without_result_row = sum(
        1 for k in ledger_keys if k not in results or run_rows[k].status != "succeeded"
    )
    for r in run_rows.values():
        report.runs_by_status[r.status] = report.runs_by_status.get(r.status, 0) + 1
    report.unresolved_runs = sum(1 for r in run_rows.values() if r.status in ("pending", "running"))
    report.money_conserved = int(total) == OPENING_CENTS * len(ACCOUNTS)
    verify = AuditTrail(engine).verify()
    report.audit_ok, report.audit_rows = verify.ok, verify.rows
    engine.dispose()


def run(url: str, kills: int, seed: int, timed_share: float = 0.25) -> CrashReport:
    """``kills`` workers; ``timed_share`` of them killed after a random delay, the rest at a chosen point."""
    started = time.monotonic()
    rng = random.Random(seed)
    setup(url)
    report = CrashReport(backend=sa.engine.make_url(url).get_backend_name())
    worker_id = -1
    while report.point_kills + report.timed_kills < kills:
        worker_id += 1
        if worker_id > 4 * kills:
            raise RuntimeError("workers keep exiting before their kill point: the crash points are not reached")
        timed = rng.random() < timed_share
        point = None if timed else rng.choice((*POINTS, "remote_received"))
        nth = 1 if point == "recovery_committed" else rng.randint(1, 6)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never return into the parent's code
            code = 0
            try:
                _worker(url, worker_id, point, nth, rng.randint(0, 2**31))
            except BaseException:
                code = 3
            os._exit(code)
        if timed:
            time.sleep(rng.uniform(0.0, 0.25))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        report.workers += 1
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            if timed:
                report.timed_kills += 1
            else:
                report.point_kills += 1
                assert point is not None
                report.kills_by_point[point] = report.kills_by_point.get(point, 0) + 1
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            report.clean_exits += 1  # the chosen point was not reached n times in 40 actions
        else:
            raise RuntimeError(f"worker {worker_id} failed (status {status}); run it alone to see why")
    check(url, report)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of a scratch database (it gets sim_ tables)")
    ap.add_argument("--kills", type=int, default=260)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # each restart's "recovered action runs" is expected here
    report = run(args.db, args.kills, args.seed)
    data = {**asdict(report), "ok": report.ok, "seed": args.seed}
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        for k, v in data.items():
            print(f"{k:32} {v}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
