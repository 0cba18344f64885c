"""The database schema, as SQLAlchemy 2 typed models.

The migrations in ``migrations/`` must produce exactly this schema; a test runs alembic's autogenerate
comparison against a migrated database and fails on any difference.

Times are stored timezone-aware (UTC). Free text that may hold what a caller said or keyed (transcripts,
digits) lives only in the audit trail and in ``turns.transcript``; it never goes into log messages.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations and models agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


UtcDateTime = DateTime(timezone=True)


class DialplanVersion(Base):
    """A published dialplan. The newest version of a name is the live one for new calls."""

    __tablename__ = "dialplan_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_dialplan_versions_name_version"),
        UniqueConstraint("name", "sha256", name="uq_dialplan_versions_name_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)  # the YAML exactly as published
    published_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(128), default="")
    # Why it was published (the console asks for it; a rollback says which version it brings back).
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class DialplanSplit(Base):
    """An A/B split of a dialplan's new calls: ``percent`` of them run ``version_id``, the rest the live version.

    At most one per dialplan name; the choice per call is a stable hash of the caller's number
    (``voiceivr.dialplan.split``). No row: every new call runs the live version.
    """

    __tablename__ = "dialplan_splits"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dialplan_versions.id"))
    percent: Mapped[int] = mapped_column(Integer)
    set_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    set_by: Mapped[str] = mapped_column(String(128), default="")


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    node: Mapped[str] = mapped_column(String(128), default="")  # which worker/box handled it
    source: Mapped[str] = mapped_column(String(16), default="sip")  # sip | replay | simulate | test
    sip_call_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    caller_uri: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dialplan_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dialplan_versions.id"), nullable=True
    )
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)  # resolved | transferred | ...
    resolved_tasks: Mapped[int] = mapped_column(Integer, default=0)
    engine_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    stats_json: Mapped[str] = mapped_column(Text, default="{}")  # per-stage latencies, barge-ins, costs
    # The serving process that carries the call (a CallOwnerLease's owner); None outside `voiceivr serve`.
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)


# Every live serving process looks for the open calls of gone owners every few seconds: only open calls are
# indexed, so the look stays cheap however many calls the table holds.
Index("ix_calls_open_owner", Call.owner, sqlite_where=Call.ended_at.is_(None), postgresql_where=Call.ended_at.is_(None))


class CallOwnerLease(Base):
    """A serving process that carries calls, alive while ``lease_until`` lies ahead (voiceivr/call/lost.py).

    The open calls of an owner whose lease ran out are marked ``lost`` by any live process."""

    __tablename__ = "call_owner_leases"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)  # node:pid:random
    node: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "idx", name="uq_turns_call_id_idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    node: Mapped[str] = mapped_column(String(128), default="")  # dialplan node
    input_kind: Mapped[str] = mapped_column(String(16), default="none")  # speech | dtmf | none
    transcript: Mapped[str | None] = mapped_column(Text, nullable=True)
    intent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tier: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_played_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    barged_in: Mapped[bool] = mapped_column(Boolean, default=False)
    latencies_json: Mapped[str] = mapped_column(Text, default="{}")


class AuditEvent(Base):
    """One row of the keyed, hash-chained, append-only audit trail (see ``voiceivr.audit.chain``).

    The database refuses UPDATE, DELETE and TRUNCATE here (triggers); on PostgreSQL the application role
    may only INSERT and SELECT. ``payload`` is canonical JSON text, kept byte-exact so the hash can be
    recomputed.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    call_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Which key made ``hash`` (an HMAC since revision 0005); "" only on legacy SHA-256 rows from before it, and
    # the database refuses new rows without one.
    key_id: Mapped[str] = mapped_column(String(16), server_default="")


class PendingConfirmation(Base):
    """An out-of-band code sent (SMS) or expected (TOTP) for one exact action."""

    __tablename__ = "pending_confirmations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(36), index=True)
    session_id: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(128))  # the authenticated customer
    action_type: Mapped[str] = mapped_column(String(64))
    action_digest: Mapped[str] = mapped_column(String(64))  # HMAC over the action's exact parameters
    channel: Mapped[str] = mapped_column(String(16))  # sms | totp
    destination_masked: Mapped[str] = mapped_column(String(32), default="")
    code_mac: Mapped[str] = mapped_column(String(64), default="")  # HMAC(code, digest, nonce); never the code
    nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|verified|expired|locked|void
    verified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The gate's request this code belongs to (one confirmation per request and channel).
    request_id: Mapped[str] = mapped_column(String(64), default="", server_default="")


class SmsOutbox(Base):
    """Messages to send; one row per confirmation, so a retry never sends a second SMS. A notice (an account
    locked after wrong PINs) has no confirmation."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    confirmation_id: Mapped[str | None] = mapped_column(
        ForeignKey("pending_confirmations.id"), unique=True, nullable=True
    )
    to_number: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)  # cleared once the provider accepted it
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Not secret; printed in the message so that after an ambiguous send (timeout, 5xx) the sender can ask
    # the provider whether this very message went out before it tries again.
    reference: Mapped[str] = mapped_column(String(16), default="", server_default="")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    in_doubt: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    purpose: Mapped[str] = mapped_column(String(16), default="code", server_default="code")  # code | lockout


class ActionRun(Base):
    """One execution of a dialplan action, at most once per idempotency key."""

    __tablename__ = "action_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    call_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    action_type: Mapped[str] = mapped_column(String(64))
    params_json: Mapped[str] = mapped_column(Text)
    risk: Mapped[str] = mapped_column(String(8))  # low | high
    intent_audit_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|succeeded|failed
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Where the side effect lives: db (same transaction as the claim) | external (the remote dedupes on the
    # idempotency key) | external_once (no dedupe: never retried once started). See voiceivr.actions.runner.
    effect: Mapped[str] = mapped_column(String(16), default="db", server_default="db")
    owner: Mapped[str] = mapped_column(String(128), default="", server_default="")  # node:pid:boot
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


Index("ix_action_runs_status", ActionRun.status)


class TotpUsedStep(Base):
    """A TOTP code is accepted once: the (principal, time step) it matched is kept here."""

    __tablename__ = "totp_used_steps"
    __table_args__ = (UniqueConstraint("principal", "step", name="uq_totp_used_steps_principal_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class CodeFailure(Base):
    """One wrong out-of-band code that was compared (never the code itself). The limits count these rows per
    principal (and per request), so a new call, a re-INVITE or a new request starts no count afresh; rows
    older than a day are pruned as new ones come."""

    __tablename__ = "code_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


Index("ix_code_failures_principal_at", CodeFailure.principal, CodeFailure.at)


class LoginLockout(Base):
    """Wrong secrets (PINs) keyed for one principal across calls, and its temporary lockout
    (``voiceivr.policy.lockout``). The row is locked while a login is checked, so concurrent calls cannot
    race past the count."""

    __tablename__ = "login_lockouts"

    principal: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # wrong since the last success or lockout
    level: Mapped[int] = mapped_column(Integer, default=0)  # lockouts in a row: picks the next back-off
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # end of the last lockout
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    unlocked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # its end was audited
    notice_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # last text to the owner


class PrincipalFlag(Base):
    """A principal flagged for review (``voiceivr.policy.flags``): while a flag is not cleared, high-risk actions
    are refused for them, whoever answers for their identity. Cleared flags are kept, with who cleared them."""

    __tablename__ = "principal_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(64))  # e.g. too_many_wrong_codes
    flagged_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    call_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    cleared_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ConsoleUser(Base):
    """An admin of the web console (``voiceivr.console``). Only an argon2 hash of the password is kept."""

    __tablename__ = "console_users"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | editor | publisher
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a copy of this table
    opens no session."""

    __tablename__ = "console_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("console_users.name", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    address: Mapped[str] = mapped_column(String(64), default="")


class ConsoleLoginThrottle(Base):
    """Wrong console passwords per account (``user:NAME``) and per address (``addr:IP``), and the growing delay
    before the next attempt is even checked."""

    __tablename__ = "console_login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
