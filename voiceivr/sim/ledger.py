"""A tiny ledger of accounts in the database, for the crash test and the gate's unit tests (the abuse
simulation calls the demo plugin's actions, ``voiceivr/demo/``, through the whole call path).

A ledger with real rows, so "did the transfer happen, and how often" is a question the database answers, not
a flag in memory. Its tables live in their own metadata (prefixed ``sim_``), created on demand and never part
of the migrations: point the crash test at a scratch database.

The ledger has deliberately no unique constraint on the idempotency key: the runner alone must keep a
transfer from running twice, and the crash test counts ledger rows per key to prove it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voiceivr.actions.effects import ActionFailed, DbAction, RunContext, RunnerRegistry

sim_metadata = sa.MetaData()

accounts = sa.Table(
    "sim_accounts",
    sim_metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("balance_cents", sa.BigInteger, nullable=False),
    sa.Column("pin_hash", sa.String(64), nullable=False),
    sa.Column("address", sa.Text, nullable=False, default=""),
)

entries = sa.Table(
    "sim_ledger",
    sim_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("from_account", sa.String(32), nullable=False, default=""),
    sa.Column("to_account", sa.String(64), nullable=False, default=""),
    sa.Column("amount_cents", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def pin_hash(account: str, pin: str) -> str:
    return hmac.new(account.encode(), pin.encode(), hashlib.sha256).hexdigest()


def create_tables(engine: Engine) -> None:
    sim_metadata.create_all(engine)


def open_account(engine: Engine, account: str, principal: str, pin: str, balance_cents: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(accounts).where(accounts.c.account == account))
        conn.execute(
            accounts.insert().values(
                account=account, principal=principal, balance_cents=balance_cents,
                pin_hash=pin_hash(account, pin), address="",
            )
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def identify(conn: Connection, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
    """Account number + PIN -> the principal. The gate's ``login`` accepts only a principal this returned."""
    # "authenticated" is for the reader of the trail; the gate trusts the registration (authenticates=True).
    account, pin = str(params.get("account", "")), str(params.get("pin", ""))
    row = conn.execute(sa.select(accounts).where(accounts.c.account == account)).first()
    if row is None or not hmac.compare_digest(row.pin_hash, pin_hash(account, pin)):
        raise ActionFailed("bad_credentials")
    return {"authenticated": True, "principal": row.principal}


def balance(conn: Connection, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
    if not ctx.principal:
        raise ActionFailed("not_authenticated")
    rows = conn.execute(
        sa.select(accounts.c.account, accounts.c.balance_cents).where(accounts.c.principal == ctx.principal)
    ).fetchall()
    return {"balances": {r.account: int(r.balance_cents) for r in rows}}


def transfer(conn: Connection, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
    if not ctx.principal:
        raise ActionFailed("not_authenticated")
    amount = params.get("amount_cents")
    if not isinstance(amount, int) or amount <= 0:
        raise ActionFailed("bad_amount")
    src = conn.execute(
        sa.select(accounts).where(accounts.c.account == str(params.get("from_account", "")))
    ).first()
    if src is None or src.principal != ctx.principal:
        raise ActionFailed("not_your_account")
    if src.balance_cents < amount:
        raise ActionFailed("insufficient_funds")
    conn.execute(
        accounts.update().where(accounts.c.account == src.account)
        .values(balance_cents=accounts.c.balance_cents - amount)
    )
    payee = str(params.get("payee", ""))
    conn.execute(accounts.update().where(accounts.c.account == payee)
                 .values(balance_cents=accounts.c.balance_cents + amount))
    conn.execute(
        entries.insert().values(
            idempotency_key=ctx.idempotency_key, principal=ctx.principal, action="transfer",
            from_account=src.account, to_account=payee, amount_cents=amount, created_at=_now(),
        )
    )
    return {"transferred_cents": amount, "payee": payee}


def change_address(conn: Connection, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
    if not ctx.principal:
        raise ActionFailed("not_authenticated")
    address = str(params.get("address", ""))
    conn.execute(accounts.update().where(accounts.c.principal == ctx.principal).values(address=address))
    conn.execute(
        entries.insert().values(idempotency_key=ctx.idempotency_key, principal=ctx.principal,
                               action="change_address", to_account=address[:64], created_at=_now())
    )
    return {"address_changed": True}


def registry() -> RunnerRegistry:
    reg = RunnerRegistry()
    reg.register(DbAction("identify", identify, secret_params=frozenset({"pin"}), authenticates=True))
    reg.register(DbAction("balance", balance, requires_login=True))
    reg.register(DbAction("transfer", transfer, risk="high", requires_login=True))
    reg.register(DbAction("change_address", change_address, risk="high", requires_login=True))
    return reg


def executions(engine: Engine, principal: str | None = None) -> list[dict[str, Any]]:
    """Every side effect the ledger recorded (transfers, address changes), oldest first."""
    q = sa.select(entries).order_by(entries.c.id)
    if principal is not None:
        q = q.where(entries.c.principal == principal)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
