"""Running actions: write-ahead audit, at most once per idempotency key, and recovery after a crash.

Every run goes through a small state machine kept in ``action_runs`` (one row per idempotency key)::

    T1  intent:  audit row "action.intent" + action_runs(status=pending, owner, lease)   -- one transaction
    db effect (the side effect lives in this database):
    T2  claim:   row still pending and ours -> side effect -> status=succeeded|failed
                 + audit row "action.result"                                          -- one transaction
    external effect (a remote system):
    T2  claim:   pending -> running                                                   -- committed first
        call     the remote, passing the idempotency key
    T3  result:  running -> succeeded|failed + audit row "action.result"

Guarantees (tested by killing the process with SIGKILL at random points, ``tests/test_runner_crash.py``):

* **No action without a committed audit row.** The ``action_runs`` row is inserted in the same transaction as
  the intent audit row, and T2 runs only on a committed ``pending`` row; so no side effect can exist unless
  its intent row committed first.
* **Never twice.** The key is unique. A db side effect commits atomically with the status change that
  consumes the ``pending`` row, so it happens once or not at all. An external call is made only after the
  ``pending -> running`` change committed, which happens once per key; after that the runner calls again
  only for ``external`` actions, whose remote deduplicates on the key (``external_once`` actions are never
  called again: their unresolved runs become ``unknown`` for an operator).
* **Recovery on restart** (:meth:`ActionRunner.recover`), for runs owned by a dead process of this node, or by
  any process whose lease ran out: ``pending`` runs are **aborted** (nothing happened, and the caller who
  confirmed them is gone: an action never runs later without its caller); ``running``/``unknown``
  ``external`` runs are resumed with the same key so the remote's answer settles them; ``running``
  ``external_once`` runs become ``unknown``. Each resolution is an audit row.

Parameters named in an action's ``secret_params`` (a PIN) are stored and audited as a keyed hash, never
in clear.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from voiceivr.actions.effects import (
    Action,
    ActionFailed,
    DbAction,
    ExternalAction,
    OutcomeUnknown,
    RunContext,
    RunnerRegistry,
    redact_params,
    utcnow,
)
from voiceivr.audit.chain import append_in_transaction, canonical_json
from voiceivr.db.models import ActionRun

log = logging.getLogger(__name__)

RunStatus = Literal["succeeded", "failed", "duplicate", "in_progress", "aborted", "unknown"]

runs: sa.Table = ActionRun.__table__  # type: ignore[assignment]

KEY_MAX = 128


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    intent_seq: int | None = None
    result_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "duplicate") and not self.reason


@dataclass
class RecoveryReport:
    aborted: int = 0
    resumed: int = 0
    unknown: int = 0
    skipped: int = 0
    keys: list[str] = field(default_factory=list)



def _aware(ts: dt.datetime | None) -> dt.datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


CrashHook = Callable[[str], None]


class ActionRunner:
    """Runs registered actions once per idempotency key, each behind a committed audit row.

    One runner per process; it is safe to share between call threads (every method uses its own connection
    and transactions).
    """

    def __init__(
        self,
        engine: Engine,
        registry: RunnerRegistry,
        *,
        node: str = "",
        lease_s: float = 120.0,
        clock: Callable[[], dt.datetime] = utcnow,
        crash: CrashHook | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.node = (node or socket.gethostname()).replace(":", "_")[:64]
        self.owner = f"{self.node}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.lease = dt.timedelta(seconds=lease_s)
        self.clock = clock
        self._crash = crash
        self._pg = engine.dialect.name == "postgresql"
        # Without the server secret, hashes of secret parameters are comparable only within this process.
        self._param_key = secret or os.urandom(32)

    # ------------------------------------------------------------------------------------------ plumbing

    def _at(self, point: str) -> None:
        """A named point of the state machine; the crash test kills the process here."""
        if self._crash is not None:
            self._crash(point)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            yield conn

    def _select_run(self, conn: Connection, key: str, *, lock: bool) -> Any:
        q = sa.select(runs).where(runs.c.idempotency_key == key)
        if lock and self._pg:
            q = q.with_for_update()
        return conn.execute(q).first()

    def redacted(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` as they may be written down (audit rows of other components): secrets hashed."""
        secret = self.registry.get(action).secret_params if action in self.registry else frozenset()
        return redact_params(params, secret, self._param_key)

    # ------------------------------------------------------------------------------------------ running

    def run(
        self,
        *,
        key: str,
        action: str,
        params: Mapping[str, Any],
        risk: str,
        context: RunContext | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> RunOutcome:
        """Commit the intent row, then run the action once. ``audit`` is what led here (evidence, decision,
        confirmation, code, binding); it goes into the intent row."""
        if not key or len(key) > KEY_MAX:
            raise ValueError(f"idempotency key must be 1-{KEY_MAX} characters")
        spec = self.registry.get(action)
        ctx = context or RunContext(idempotency_key=key)
        if ctx.idempotency_key != key:
            ctx = RunContext(key, ctx.call_id, ctx.principal, ctx.session_id)
        stored_params = redact_params(params, spec.secret_params, self._param_key)
        params_json = canonical_json(stored_params)

        earlier = self._write_intent(key, spec, params_json, stored_params, risk, ctx, audit or {})
        if isinstance(earlier, RunOutcome):
            return earlier
        intent_seq = earlier
        self._at("intent_committed")
        if isinstance(spec, DbAction):
            return self._run_db(key, spec, params, ctx, intent_seq)
        return self._run_external(key, spec, params, ctx, intent_seq)

    def _write_intent(
        self,
        key: str,
        spec: Action,
        params_json: str,
        stored_params: Mapping[str, Any],
        risk: str,
        ctx: RunContext,
        audit: Mapping[str, Any],
    ) -> int | RunOutcome:
        now = self.clock()
        try:
            with self._tx() as conn:
                row = self._select_run(conn, key, lock=True)
                if row is not None:
                    return self._existing(conn, row, ctx)
                payload = {
                    **dict(audit),
                    "idempotency_key": key,
                    "action": spec.name,
                    "params": stored_params,
                    "risk": risk,
                    "effect": spec.effect,
                    "principal": ctx.principal,
                    "session_id": ctx.session_id,
                }
                record = append_in_transaction(
                    conn, "action.intent", payload, actor="runner", call_id=ctx.call_id, now=now
                )
                conn.execute(
                    runs.insert().values(
                        idempotency_key=key,
                        call_id=ctx.call_id,
                        action_type=spec.name,
                        params_json=params_json,
                        risk=risk,
                        intent_audit_seq=record.seq,
                        status="pending",
                        created_at=now,
                        effect=spec.effect,
                        owner=self.owner,
                        lease_until=now + self.lease,
                    )
                )
        except IntegrityError:
            # Another process inserted the same key between our read and our insert (SQLite serialises
            # writers and PostgreSQL's audit lock serialises us, so this is rare): report what it did.
            with self._tx() as conn:
                row = self._select_run(conn, key, lock=False)
                assert row is not None
                return self._existing(conn, row, ctx)
        log.info("action intent committed", extra={"action": spec.name, "audit_seq": record.seq})
        return record.seq

    def _existing(self, conn: Connection, row: Any, ctx: RunContext) -> RunOutcome:
        """The key ran (or is running) already: never again; say what happened the first time."""
        status = row.status
        result = json.loads(row.result_json) if row.result_json else {}
        rec = append_in_transaction(
            conn,
            "action.duplicate",
            {"idempotency_key": row.idempotency_key, "action": row.action_type, "first_status": status,
             "intent_audit_seq": row.intent_audit_seq},
            actor="runner",
            call_id=ctx.call_id,
        )
        if status == "succeeded":
            return RunOutcome("duplicate", result, "", row.intent_audit_seq, rec.seq)
        if status in ("pending", "running"):
            return RunOutcome("in_progress", {}, "already_running", row.intent_audit_seq, rec.seq)
        return RunOutcome("duplicate", result, str(result.get("reason") or status), row.intent_audit_seq, rec.seq)

    def _run_db(
        self, key: str, spec: DbAction, params: Mapping[str, Any], ctx: RunContext, intent_seq: int
    ) -> RunOutcome:
        ctx = replace(ctx, intent_seq=intent_seq)
        with self._tx() as conn:
            row = self._select_run(conn, key, lock=True)
            if row is None or row.status != "pending" or row.owner != self.owner:
                # Recovery elsewhere resolved it (our lease ran out): it must not run now.
                return RunOutcome("aborted", {}, "claimed_elsewhere", intent_seq)
            self._at("claim_open")
            failure: ActionFailed | None = None
            try:
                with conn.begin_nested():
                    result = dict(spec.apply(conn, params, ctx))
            except ActionFailed as exc:
                failure, result = exc, {"reason": exc.reason, **exc.details}
            self._at("effect_applied")
            status: RunStatus = "failed" if failure else "succeeded"
            done = conn.execute(
                runs.update()
                .where(runs.c.idempotency_key == key, runs.c.status == "pending", runs.c.owner == self.owner)
                .values(status=status, result_json=canonical_json(result), finished_at=self.clock())
            )
            if done.rowcount != 1:
                raise RuntimeError(f"action run {key!r} changed under its claim")
            rec = append_in_transaction(
                conn,
                "action.result",
                {"idempotency_key": key, "action": spec.name, "status": status, "result": result,
                 "intent_audit_seq": intent_seq},
                actor="runner",
                call_id=ctx.call_id,
            )
            self._at("result_uncommitted")
        self._at("result_committed")
        log.info("action finished", extra={"action": spec.name, "status": status, "audit_seq": rec.seq})
        return RunOutcome(status, result, failure.reason if failure else "", intent_seq, rec.seq)

    def _run_external(
        self, key: str, spec: ExternalAction, params: Mapping[str, Any], ctx: RunContext, intent_seq: int
    ) -> RunOutcome:
        with self._tx() as conn:
            claimed = conn.execute(
                runs.update()
                .where(runs.c.idempotency_key == key, runs.c.status == "pending", runs.c.owner == self.owner)
                .values(status="running", lease_until=self.clock() + self.lease)
            )
            if claimed.rowcount != 1:
                return RunOutcome("aborted", {}, "claimed_elsewhere", intent_seq)
        self._at("running_committed")
        return self._call_and_record(key, spec, params, ctx, intent_seq, from_status=("running",))

    def _call_and_record(
        self,
        key: str,
        spec: ExternalAction,
        params: Mapping[str, Any],
        ctx: RunContext,
        intent_seq: int | None,
        *,
        from_status: tuple[str, ...],
        kind: str = "action.result",
    ) -> RunOutcome:
        failure: ActionFailed | None = None
        unknown_message = ""
        status: RunStatus
        ctx = replace(ctx, intent_seq=intent_seq)
        try:
            result = dict(spec.call(params, ctx))
            status = "succeeded"
        except ActionFailed as exc:
            failure, result, status = exc, {"reason": exc.reason, **exc.details}, "failed"
        except OutcomeUnknown as exc:  # expected and explained (a remote's timeout): what the caller hears
            unknown_message = exc.message
            result, status = {**exc.details, "reason": "outcome_unknown", "message": exc.message}, "unknown"
        except Exception as exc:  # the remote's outcome is unknown (timeout, connection reset)
            result, status = {"reason": "outcome_unknown", "error": type(exc).__name__}, "unknown"
            log.warning("external action outcome unknown", extra={"action": spec.name, "error": type(exc).__name__})
        self._at("external_returned")
        with self._tx() as conn:
            done = conn.execute(
                runs.update()
                .where(runs.c.idempotency_key == key, runs.c.status.in_(from_status), runs.c.owner == self.owner)
                .values(status=status, result_json=canonical_json(result),
                        finished_at=self.clock() if status != "unknown" else None)
            )
            if done.rowcount != 1:
                return RunOutcome("aborted", {}, "claimed_elsewhere", intent_seq)
            rec = append_in_transaction(
                conn,
                kind,
                {"idempotency_key": key, "action": spec.name, "status": status, "result": result,
                 "intent_audit_seq": intent_seq},
                actor="runner",
                call_id=ctx.call_id,
            )
        self._at("result_committed")
        reason = failure.reason if failure else ((unknown_message or "outcome_unknown") if status == "unknown" else "")
        return RunOutcome(status, result, reason, intent_seq, rec.seq)

    # ------------------------------------------------------------------------------------------ recovery

    def _is_orphan(self, owner: str, lease_until: dt.datetime | None, now: dt.datetime) -> bool:
        if owner == self.owner:
            return False
        lease = _aware(lease_until)
        if lease is not None and lease < now:
            return True
        node, _, rest = owner.partition(":")
        if node != self.node:
            return False  # another node's live run: wait for its lease
        pid_text = rest.partition(":")[0]
        # Same node, another process: recover it unless that process still runs (one runner per node name
        # and host is the rule; a reused pid only delays recovery until the lease runs out).
        return not (pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)))

    def recover(self) -> RecoveryReport:
        """Resolve runs left by crashed processes. Call once at start-up, and now and then on a live node."""
        report = RecoveryReport()
        now = self.clock()
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(runs.c.idempotency_key, runs.c.owner, runs.c.lease_until, runs.c.status)
                .where(runs.c.status.in_(("pending", "running", "unknown")))
                .order_by(runs.c.id)
            ).fetchall()
        for cand in candidates:
            if cand.status == "unknown" and cand.owner == self.owner:
                pass  # our own unknown external run: resumable now
            elif not self._is_orphan(cand.owner, cand.lease_until, now):
                report.skipped += 1
                continue
            outcome = self._recover_one(cand.idempotency_key)
            if outcome:
                report.keys.append(cand.idempotency_key)
                if outcome == "aborted":
                    report.aborted += 1
                elif outcome == "resumed":
                    report.resumed += 1
                elif outcome == "unknown":
                    report.unknown += 1
        if report.keys:
            log.warning("recovered action runs", extra={"aborted": report.aborted, "resumed": report.resumed,
                                                        "unknown": report.unknown})
        return report

    def _recover_one(self, key: str) -> str:
        now = self.clock()
        with self._tx() as conn:
            row = self._select_run(conn, key, lock=True)
            if row is None or row.status not in ("pending", "running", "unknown"):
                return ""
            base = {"idempotency_key": key, "action": row.action_type, "previous_owner": row.owner,
                    "previous_status": row.status, "intent_audit_seq": row.intent_audit_seq}
            if row.status == "pending":
                # Never claimed (a db effect's claim commits with the effect): nothing happened.
                conn.execute(
                    runs.update().where(runs.c.idempotency_key == key, runs.c.status == "pending")
                    .values(status="aborted", owner=self.owner, finished_at=now,
                            result_json=canonical_json({"reason": "aborted_on_recovery"}))
                )
                append_in_transaction(conn, "action.recovered", {**base, "outcome": "aborted"}, actor="runner",
                                      call_id=row.call_id)
                self._at("recovery_committed")
                return "aborted"
            resumable = (
                row.effect == "external"
                and row.action_type in self.registry
                and not getattr(self.registry.get(row.action_type), "secret_params", frozenset())
            )
            if not resumable:
                if row.status == "unknown":
                    return ""  # already waiting for an operator
                conn.execute(
                    runs.update().where(runs.c.idempotency_key == key, runs.c.status == row.status)
                    .values(status="unknown", owner=self.owner,
                            result_json=canonical_json({"reason": "outcome_unknown_after_crash"}))
                )
                append_in_transaction(conn, "action.recovered", {**base, "outcome": "unknown"}, actor="runner",
                                      call_id=row.call_id)
                self._at("recovery_committed")
                return "unknown"
            conn.execute(
                runs.update().where(runs.c.idempotency_key == key, runs.c.status == row.status)
                .values(status="running", owner=self.owner, lease_until=now + self.lease)
            )
            call_id, action_type, params_json = row.call_id, row.action_type, row.params_json
            intent_seq = row.intent_audit_seq
        spec = self.registry.get(action_type)
        assert isinstance(spec, ExternalAction)
        ctx = RunContext(idempotency_key=key, call_id=call_id)
        outcome = self._call_and_record(key, spec, json.loads(params_json), ctx, intent_seq,
                                        from_status=("running",), kind="action.recovered")
        return "resumed" if outcome.status != "aborted" else ""

    # ------------------------------------------------------------------------------------------ reading

    def status(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs.c.status).where(runs.c.idempotency_key == key)).first()
        return None if row is None else str(row.status)
