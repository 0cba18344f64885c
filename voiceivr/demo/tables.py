"""The demo bank's tables, in a metadata of their own, made by the demo's own Alembic branch
(``voiceivr/demo/migrations``, branch label ``demo``), and registered with that branch and the demo's seed as
entry point ``voiceivr.schema = demo`` (:data:`voiceivr.demo.models.SCHEMA`).

Databases made before the demo became a plugin have these tables already (core revision 0003 used to make them):
the branch's first revision adopts them as they are.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from voiceivr.db.models import NAMING_CONVENTION, UtcDateTime, utcnow


class DemoBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BankCustomer(DemoBase):
    __tablename__ = "bank_customers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the principal, e.g. "c-1001"
    name: Mapped[str] = mapped_column(String(128))
    phone_on_file: Mapped[str] = mapped_column(String(32))  # where SMS codes go; never the calling number
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # base32, if enrolled
    pin_salt: Mapped[str] = mapped_column(String(32))
    pin_hash: Mapped[str] = mapped_column(String(64))  # PBKDF2-SHA256; the PIN itself is never stored
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # unused since 0006: see login_lockouts
    # Set by a person: the demo's login refuses the customer. Wrong PINs lock only for a while (login_lockouts).
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # unused since demo_0002: see principal_flags
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class BankAccount(DemoBase):
    __tablename__ = "bank_accounts"
    __table_args__ = (UniqueConstraint("customer_id", "kind", name="uq_bank_accounts_customer_id_kind"),)

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("bank_customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # checking | savings
    balance_cents: Mapped[int] = mapped_column(BigInteger)


class BankPayee(DemoBase):
    """A saved payee outside the bank: money sent there leaves the customer's accounts."""

    __tablename__ = "bank_payees"
    __table_args__ = (UniqueConstraint("customer_id", "nickname", name="uq_bank_payees_customer_id_nickname"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("bank_customers.id"), index=True)
    nickname: Mapped[str] = mapped_column(String(32))  # what the caller says: "mom", "landlord"
    name: Mapped[str] = mapped_column(String(128))
    account_number: Mapped[str] = mapped_column(String(34))


class BankCard(DemoBase):
    __tablename__ = "bank_cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("bank_customers.id"), index=True)
    last4: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | blocked
    blocked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    blocked_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class BankAddress(DemoBase):
    """Addresses over time: a change adds a row and retires the old one, so nothing is lost."""

    __tablename__ = "bank_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("bank_customers.id"), index=True)
    address: Mapped[str] = mapped_column(Text)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)


class BankTransfer(DemoBase):
    __tablename__ = "bank_transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)  # a retry never moves money twice
    customer_id: Mapped[str] = mapped_column(ForeignKey("bank_customers.id"), index=True)
    from_account: Mapped[str] = mapped_column(ForeignKey("bank_accounts.number"))
    to_account: Mapped[str | None] = mapped_column(ForeignKey("bank_accounts.number"), nullable=True)
    payee_id: Mapped[int | None] = mapped_column(ForeignKey("bank_payees.id"), nullable=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
