"""Wrong secrets (PINs) lock an account for a while, never for good.

A lockout for good is a denial of service: anyone who knows an account number could lock its owner out with a
few calls. So wrong PINs are counted per principal across calls (``login_lockouts``), and the
``policy.login_max_failures``-th in a row locks the account for the next back-off in
``policy.login_lockout_s`` (60 s, 5 min, 15 min, then an hour each time by default). While it is locked no
PIN is compared at all, so the lockout also bounds guessing: at most ``login_max_failures`` guesses per
back-off. A right PIN resets the count (not a lockout in force, nor the back-off level); after
``policy.login_lockout_forget_s`` with no wrong PIN and no lockout both start over.

Every lockout and every unlock is an audit row (``policy.login_locked``, ``policy.login_unlocked``; no PIN in
them). A lockout queues a text to the phone on file -- the identity provider's, never the calling number --
through the SMS outbox, at most one per ``policy.lockout_notice_interval_s``, so an attacker cannot use
lockouts to spam the owner.

The checks run inside the login action's own transaction (e.g. the demo plugin's ``login``): :meth:`begin`
locks the principal's row before the PIN is compared, and :meth:`failed` / :meth:`succeeded` update it in
the same transaction, so concurrent calls cannot race past the count.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from voiceivr.audit.chain import append_in_transaction
from voiceivr.db.models import LoginLockout, SmsOutbox
from voiceivr.errors import ConfigError
from voiceivr.settings import PolicySettings

log = logging.getLogger(__name__)

lockouts: sa.Table = LoginLockout.__table__  # type: ignore[assignment]
outbox: sa.Table = SmsOutbox.__table__  # type: ignore[assignment]


def _utc(ts: dt.datetime | None) -> dt.datetime | None:
    """Databases hand back naive (SQLite) or aware (PostgreSQL) times; both are UTC."""
    if ts is None:
        return None
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def describe_duration(seconds: float) -> str:
    """What a person hears: "1 minute", "15 minutes", "1 hour", "45 seconds" (rounded up)."""
    s = max(1, int(-(-seconds // 1)))
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    if s % 3600 == 0:
        h = s // 3600
        return f"{h} hour{'s' if h != 1 else ''}"
    m = -(-s // 60)
    return f"{m} minute{'s' if m != 1 else ''}"


@dataclass(frozen=True)
class LockoutRules:
    max_failures: int = 5
    backoff_s: tuple[int, ...] = (60, 300, 900, 3600)
    forget_s: int = 86400
    notice_interval_s: int = 3600

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ConfigError(f"policy.login_max_failures must be at least 1, not {self.max_failures}")
        if not self.backoff_s or any(s < 1 for s in self.backoff_s):
            raise ConfigError(
                f"policy.login_lockout_s must list one or more lockout lengths of at least 1 second, not "
                f"{list(self.backoff_s)}",
                hint="e.g. VOICEIVR_POLICY_LOGIN_LOCKOUT_S=60,300,900,3600 (the last one repeats)",
            )
        if self.forget_s < 1:
            raise ConfigError(f"policy.login_lockout_forget_s must be at least 1, not {self.forget_s}")
        if self.notice_interval_s < 0:
            raise ConfigError(f"policy.lockout_notice_interval_s must be 0 or more, not {self.notice_interval_s}")

    @classmethod
    def from_settings(cls, ps: PolicySettings) -> LockoutRules:
        return cls(ps.login_max_failures, tuple(ps.login_lockout_s), ps.login_lockout_forget_s,
                   ps.lockout_notice_interval_s)

    def backoff(self, level: int) -> int:
        """Seconds of the ``level``-th lockout in a row (1-based); the last length repeats."""
        return self.backoff_s[min(level, len(self.backoff_s)) - 1]


@dataclass(frozen=True)
class LoginState:
    """One principal's row, as read (and locked) for this attempt."""

    principal: str
    failures: int
    level: int
    locked_until: dt.datetime | None  # the end of the last lockout, past or not
    notice_at: dt.datetime | None

    def locked_for(self, now: dt.datetime) -> float:
        """Seconds the lockout still runs (0: not locked)."""
        if self.locked_until is None:
            return 0.0
        return max(0.0, (self.locked_until - now).total_seconds())


@dataclass(frozen=True)
class Lockout:
    """A lockout that a wrong secret just caused."""

    seconds: int
    level: int
    locked_until: dt.datetime
    notice: str  # queued | suppressed (one was sent within the interval) | no_phone


class LockoutPolicy:
    """The lockout policy, applied inside the identity provider's transaction (begun IMMEDIATE on SQLite)."""

    def __init__(self, rules: LockoutRules | None = None) -> None:
        self.rules = rules or LockoutRules()

    @classmethod
    def from_settings(cls, ps: PolicySettings | None) -> LockoutPolicy:
        return cls(LockoutRules.from_settings(ps) if ps is not None else None)

    def begin(self, conn: Connection, principal: str, now: dt.datetime, *, call_id: str | None) -> LoginState:
        """Lock and read the principal's row before any secret is compared. A lockout that has run out is
        lifted here (and audited); a count gone quiet for ``forget_s`` starts over."""
        self._ensure_row(conn, principal)
        q = sa.select(lockouts).where(lockouts.c.principal == principal)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).one()
        failures, level = int(row.failures), int(row.level)
        until, unlocked = _utc(row.locked_until), _utc(row.unlocked_at)  # until: the end of the last lockout
        changes: dict[str, object] = {}
        if until is not None and now >= until and (unlocked is None or unlocked < until):
            append_in_transaction(conn, "policy.login_unlocked",
                                  {"principal": principal, "reason": "expired", "level": level,
                                   "locked_until": until.isoformat()},
                                  actor="policy", call_id=call_id)
            changes["unlocked_at"] = now
        # Quiet since the last wrong secret or the end of the last lockout, whichever is later.
        marks = [t for t in (_utc(row.last_failure_at), until) if t is not None]
        quiet_s = (now - max(marks)).total_seconds() if marks else 0.0
        if (failures or level) and quiet_s >= self.rules.forget_s:
            changes.update(failures=0, level=0)
            failures, level = 0, 0
        if changes:
            conn.execute(lockouts.update().where(lockouts.c.principal == principal).values(**changes))
        return LoginState(principal, failures, level, until, _utc(row.notice_at))

    def failed(self, conn: Connection, state: LoginState, now: dt.datetime, *, call_id: str | None,
               phone_on_file: str | None) -> Lockout | None:
        """Count a wrong secret; the one that reaches ``max_failures`` locks the principal (returned)."""
        failures = state.failures + 1
        if failures < self.rules.max_failures:
            conn.execute(lockouts.update().where(lockouts.c.principal == state.principal)
                         .values(failures=failures, last_failure_at=now))
            return None
        level = state.level + 1
        seconds = self.rules.backoff(level)
        until = now + dt.timedelta(seconds=seconds)
        notice_at = state.notice_at
        if not phone_on_file:
            notice = "no_phone"
        elif notice_at is not None and (now - notice_at).total_seconds() < self.rules.notice_interval_s:
            notice = "suppressed"
        else:
            notice, notice_at = "queued", now
            self._queue_notice(conn, phone_on_file, seconds, now)
        conn.execute(lockouts.update().where(lockouts.c.principal == state.principal).values(
            failures=0, level=level, locked_until=until, last_failure_at=now,
            notice_at=notice_at))
        append_in_transaction(conn, "policy.login_locked",
                              {"principal": state.principal, "failures": failures, "level": level,
                               "seconds": seconds, "locked_until": until.isoformat(), "notice": notice},
                              actor="policy", call_id=call_id)
        log.warning("account locked after wrong secrets",
                    extra={"call_id": call_id, "level": level, "seconds": seconds, "notice": notice})
        return Lockout(seconds, level, until, notice)

    def succeeded(self, conn: Connection, state: LoginState) -> None:
        """A right secret: the count of wrong ones starts over (the back-off level is kept until it is
        forgotten, so an attacker between the owner's logins still waits longer each time)."""
        if state.failures:
            conn.execute(lockouts.update().where(lockouts.c.principal == state.principal).values(failures=0))

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _ensure_row(conn: Connection, principal: str) -> None:
        """The row every attempt locks. A concurrent first attempt waits on the other's insert, then finds it."""
        values = {"principal": principal, "failures": 0, "level": 0}
        if conn.dialect.name == "postgresql":
            conn.execute(postgresql.insert(lockouts).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(sqlite.insert(lockouts).values(**values).on_conflict_do_nothing())

    @staticmethod
    def _queue_notice(conn: Connection, to_number: str, seconds: int, now: dt.datetime) -> None:
        reference = secrets.token_hex(3).upper()  # lets the sender find this very message after an ambiguous send
        body = (f"voiceivr: after several wrong PINs on a phone call your account is locked for "
                f"{describe_duration(seconds)}. If that was not you, call us on the number on your card. "
                f"Ref {reference}.")
        conn.execute(outbox.insert().values(
            confirmation_id=None, purpose="lockout", to_number=to_number, body=body, status="queued", attempts=0,
            created_at=now, reference=reference, next_attempt_at=None,
        ))
