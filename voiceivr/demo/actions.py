"""A small retail bank in the database, so the demo dialplan does real things.

Customers have a phone number on file (where out-of-band codes go), an optional TOTP secret, a PIN kept only
as a salted hash, checking and savings accounts with balances in integer cents, saved payees, cards and
addresses. A transfer moves money between rows in one transaction; its idempotency key is unique, so a
retry returns the first transfer instead of moving money twice.

Actions here trust their parameters' types (the registry checked them) but not their meaning: every
account, payee and card is looked up *for the authenticated principal*, never by what the caller said alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voiceivr.actions.address import address_problem, canonical_address
from voiceivr.actions.registry import Action, ActionContext, ActionError, ActionRegistry, Param
from voiceivr.demo.tables import (
    BankAccount,
    BankAddress,
    BankCard,
    BankCustomer,
    BankPayee,
    BankTransfer,
)
from voiceivr.policy.lockout import LockoutPolicy, describe_duration
from voiceivr.settings import Settings

PIN_ITERATIONS = 100_000
OPENING_HOURS = "Monday to Friday, 8 AM to 8 PM, and Saturday, 9 AM to 1 PM"
_OPEN = {0: (8, 20), 1: (8, 20), 2: (8, 20), 3: (8, 20), 4: (8, 20), 5: (9, 13)}  # weekday -> [open, close)

accounts_t: sa.Table = BankAccount.__table__  # type: ignore[assignment]
customers_t: sa.Table = BankCustomer.__table__  # type: ignore[assignment]
payees_t: sa.Table = BankPayee.__table__  # type: ignore[assignment]
cards_t: sa.Table = BankCard.__table__  # type: ignore[assignment]
addresses_t: sa.Table = BankAddress.__table__  # type: ignore[assignment]
transfers_t: sa.Table = BankTransfer.__table__  # type: ignore[assignment]


def hash_pin(pin: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), PIN_ITERATIONS).hex()


def _db(ctx: ActionContext) -> Engine:
    if ctx.db is None:
        raise ActionError("the bank records are not available right now")
    return ctx.db


def _write(engine: Engine) -> Any:
    """A transaction that takes the write lock at once on SQLite (so read-then-write cannot race)."""
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def _principal(ctx: ActionContext) -> str:
    if not ctx.principal:
        raise ActionError("I need to identify you first.")
    return ctx.principal


def _account(conn: Connection, customer: str, kind: str, *, lock: bool = False) -> Mapping[str, Any]:
    q = sa.select(accounts_t).where(accounts_t.c.customer_id == customer, accounts_t.c.kind == kind)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        raise ActionError(f"You don't have a {kind} account with us.")
    return dict(row)


# --- actions --------------------------------------------------------------------------------------------


def opening_hours(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    hours = _OPEN.get(ctx.now.weekday())
    is_open = hours is not None and hours[0] <= ctx.now.hour < hours[1]
    return {"hours": OPENING_HOURS, "open_now": "open" if is_open else "closed"}


def login(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    """Account number + PIN. Wrong PINs lock the customer out for a while (``voiceivr.policy.lockout``: growing
    back-off, a text to the phone on file), never for good; only a person sets ``locked``."""
    engine = _db(ctx)
    lockout = LockoutPolicy.from_settings(ctx.policy)
    failure: str | None = None
    with _write(engine) as conn, conn.begin():
        row = conn.execute(
            sa.select(customers_t)
            .join(accounts_t, accounts_t.c.customer_id == customers_t.c.id)
            .where(accounts_t.c.number == params["account_number"])
        ).mappings().first()
        if row is None:
            hash_pin(params["pin"], "00" * 16)  # same cost either way: no account-existence oracle by timing
            failure = "I couldn't verify those details."
        elif row["locked"]:
            failure = "This account is locked. Please speak to an agent."
        else:
            # Locks the customer's lockout row before the PIN is compared: concurrent calls wait their turn.
            state = lockout.begin(conn, row["id"], ctx.now, call_id=ctx.call_id)
            if state.locked_for(ctx.now):
                failure = ("This account is locked after too many wrong PINs. Please try again in "
                           f"{describe_duration(state.locked_for(ctx.now))}.")
            elif not hmac.compare_digest(hash_pin(params["pin"], row["pin_salt"]), row["pin_hash"]):
                locked = lockout.failed(conn, state, ctx.now, call_id=ctx.call_id,
                                        phone_on_file=row["phone_on_file"])
                failure = "I couldn't verify those details." if locked is None else (
                    "I couldn't verify those details, and that was too many tries: this account is locked for "
                    f"the next {describe_duration(locked.seconds)}.")
            else:
                lockout.succeeded(conn, state)
    # Raised after the commit, so a wrong PIN is counted.
    if failure is not None or row is None:
        raise ActionError(failure or "I couldn't verify those details.")
    return {"principal": row["id"], "name": row["name"].split()[0]}


def get_balance(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    with _db(ctx).connect() as conn:
        acct = _account(conn, _principal(ctx), params["account"])
    return {"balance": int(acct["balance_cents"]), "account": params["account"]}


def transfer_funds(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    """Move ``amount`` cents from one of the caller's accounts to another or to a saved payee."""
    customer = _principal(ctx)
    amount = int(params["amount"])
    source, dest = params.get("from", "checking"), params["to"]
    if amount <= 0:
        raise ActionError("The amount must be more than zero.")
    if source == dest:
        raise ActionError("The two accounts are the same.")
    key = ctx.idempotency_key or f"{ctx.call_id}:{secrets.token_hex(8)}"
    with _write(_db(ctx)) as conn, conn.begin():
        earlier = conn.execute(sa.select(transfers_t).where(transfers_t.c.idempotency_key == key)).mappings().first()
        if earlier is not None:
            src = conn.execute(sa.select(accounts_t.c.balance_cents).where(
                accounts_t.c.number == earlier["from_account"])).scalar_one()
            return {"reference": earlier["reference"], "balance": int(src), "duplicate": True}
        src_acct = _account(conn, customer, source, lock=True)
        to_account: str | None = None
        payee_id: int | None = None
        if dest in ("checking", "savings"):
            to_account = _account(conn, customer, dest, lock=True)["number"]
        else:
            payee = conn.execute(
                sa.select(payees_t).where(payees_t.c.customer_id == customer, payees_t.c.nickname == dest)
            ).mappings().first()
            if payee is None:
                raise ActionError(f"You don't have a saved payee called {dest}.")
            payee_id = payee["id"]
        if src_acct["balance_cents"] < amount:
            raise ActionError(f"There isn't enough money in your {source} account.")
        conn.execute(accounts_t.update().where(accounts_t.c.number == src_acct["number"])
                     .values(balance_cents=accounts_t.c.balance_cents - amount))
        if to_account:
            conn.execute(accounts_t.update().where(accounts_t.c.number == to_account)
                         .values(balance_cents=accounts_t.c.balance_cents + amount))
        reference = "T" + secrets.token_hex(4).upper()
        conn.execute(transfers_t.insert().values(
            reference=reference, idempotency_key=key, customer_id=customer, from_account=src_acct["number"],
            to_account=to_account, payee_id=payee_id, amount_cents=amount, created_at=ctx.now,
        ))
        balance = conn.execute(sa.select(accounts_t.c.balance_cents).where(
            accounts_t.c.number == src_acct["number"])).scalar_one()
    return {"reference": reference, "balance": int(balance)}


def change_address(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    customer = _principal(ctx)
    address = canonical_address(str(params["address"]))
    # The registry checked the type before the gate let it run; checked again here because what is stored is
    # this function's responsibility, whoever calls it.
    if address_problem(address) is not None:
        raise ActionError("That doesn't look like a postal address, so I haven't changed it.")
    key = ctx.idempotency_key or None
    with _write(_db(ctx)) as conn, conn.begin():
        if key and conn.execute(sa.select(addresses_t.c.id).where(addresses_t.c.idempotency_key == key)).first():
            return {"address": address, "duplicate": True}
        conn.execute(addresses_t.update().where(addresses_t.c.customer_id == customer, addresses_t.c.current)
                     .values(current=False))
        conn.execute(addresses_t.insert().values(customer_id=customer, address=address, current=True,
                                                 created_at=ctx.now, idempotency_key=key))
    return {"address": address}


def block_card(params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
    customer = _principal(ctx)
    with _write(_db(ctx)) as conn, conn.begin():
        card = conn.execute(
            sa.select(cards_t).where(cards_t.c.customer_id == customer, cards_t.c.last4 == params["card_last4"])
        ).mappings().first()
        if card is None:
            raise ActionError("I couldn't find a card of yours ending in those digits.")
        if card["status"] != "blocked":
            conn.execute(cards_t.update().where(cards_t.c.id == card["id"])
                         .values(status="blocked", blocked_at=ctx.now, blocked_reason=params.get("reason", "lost")))
    return {"card": card["last4"], "already_blocked": card["status"] == "blocked"}


# Every one dedupes on its idempotency key: transfers and address changes keep it in a unique column, a blocked
# card stays blocked, the rest only read. (A login is never called twice anyway: the runner keeps no PIN to
# call it again with.)
ACTIONS: tuple[Action, ...] = (
    Action("opening_hours", "low", (), opening_hours, returns={"hours": "str", "open_now": "str"},
           description="When the bank's phone line and branches are open.", dedupes=True),
    Action("login", "low",
           (Param("account_number", "digits"), Param("pin", "digits", secret=True)),
           login, returns={"principal": "str", "name": "str"}, authenticates=True,
           description="Identify the caller by account number and PIN.", dedupes=True),
    Action("get_balance", "low", (Param("account", "str"),), get_balance,
           returns={"balance": "money", "account": "str"}, requires_login=True,
           description="The balance of the caller's checking or savings account.",
           readback="the balance of your {account} account", dedupes=True),
    Action("transfer_funds", "high",
           (Param("amount", "money"), Param("to", "str"), Param("from", "str", required=False)),
           transfer_funds, returns={"reference": "str", "balance": "money"}, requires_login=True,
           description="Move money between the caller's accounts or to a saved payee.",
           readback="transfer {amount} from {from} to {to}", dedupes=True),
    Action("change_address", "high", (Param("address", "address"),), change_address,
           returns={"address": "str"}, requires_login=True,
           description="Change the caller's postal address.", readback="change your address to {address}",
           dedupes=True),
    Action("block_card", "high", (Param("card_last4", "digits"), Param("reason", "str", required=False)),
           block_card, returns={"card": "str"}, requires_login=True,
           description="Block a lost or stolen card.", readback="block the card ending in {card_last4}",
           dedupes=True),
)


def provide(settings: Settings) -> tuple[Action, ...]:
    """The entry point ``voiceivr.actions = demo``: the demo bank's actions (they need no settings of their
    own: the database and the lockout policy reach them in their context)."""
    return ACTIONS


def registry() -> ActionRegistry:
    """The demo's actions alone, for harnesses and tests that exercise the demo without the plugin loader."""
    reg = ActionRegistry()
    for action in ACTIONS:
        reg.register(action)
    reg.origin = "the demo plugin"
    return reg


# --- for the safe path and the operator -----------------------------------------------------------------


@dataclass(frozen=True)
class DemoCustomer:
    id: str
    name: str
    phone: str
    pin: str
    totp: bool
    accounts: tuple[tuple[str, str, int], ...]  # (number, kind, balance cents)
    payees: tuple[tuple[str, str, str], ...]  # (nickname, name, account number)
    cards: tuple[str, ...]
    address: str


DEMO_CUSTOMERS: tuple[DemoCustomer, ...] = (
    DemoCustomer("c-1001", "Alice Martin", "+15555550101", "1234", True,
                 (("10000001", "checking", 250_000), ("10000002", "savings", 1_000_000)),
                 (("mom", "Carol Martin", "99990001"), ("landlord", "Oak Street Lettings", "99990002")),
                 ("4242", "5151"), "12 Oak Street, Springfield"),
    DemoCustomer("c-1002", "Bob Chen", "+15555550102", "4321", False,
                 (("20000001", "checking", 15_025), ("20000002", "savings", 0)),
                 (("landlord", "Elm Court Homes", "99990003"),),
                 ("1881",), "7 Elm Court, Shelbyville"),
)


def seed(engine: Engine, customers: tuple[DemoCustomer, ...] = DEMO_CUSTOMERS) -> list[str]:
    """Load the demo customers (idempotent: existing ones are left as they are). Returns the ids added."""
    added = []
    with _write(engine) as conn, conn.begin():
        for c in customers:
            if conn.execute(sa.select(customers_t.c.id).where(customers_t.c.id == c.id)).first():
                continue
            salt = os.urandom(16).hex()
            totp = base64.b32encode(os.urandom(20)).decode() if c.totp else None
            conn.execute(customers_t.insert().values(
                id=c.id, name=c.name, phone_on_file=c.phone, totp_secret=totp, pin_salt=salt,
                pin_hash=hash_pin(c.pin, salt), failed_logins=0, locked=False, flagged=False,
                created_at=dt.datetime.now(dt.UTC)))
            for number, kind, balance in c.accounts:
                conn.execute(accounts_t.insert().values(number=number, customer_id=c.id, kind=kind,
                                                        balance_cents=balance))
            for nickname, name, acct in c.payees:
                conn.execute(payees_t.insert().values(customer_id=c.id, nickname=nickname, name=name,
                                                      account_number=acct))
            for last4 in c.cards:
                conn.execute(cards_t.insert().values(customer_id=c.id, last4=last4, status="active"))
            conn.execute(addresses_t.insert().values(customer_id=c.id, address=c.address, current=True,
                                                     created_at=dt.datetime.now(dt.UTC)))
            added.append(c.id)
    return added


def balances(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(customers_t.c.id, customers_t.c.name, accounts_t.c.number, accounts_t.c.kind,
                      accounts_t.c.balance_cents)
            .join(accounts_t, accounts_t.c.customer_id == customers_t.c.id)
            .order_by(customers_t.c.id, accounts_t.c.number)
        ).mappings().all()
    return [dict(r) for r in rows]
