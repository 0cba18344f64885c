"""Console admins: accounts with argon2 password hashes, roles, server-side sessions and login throttling.

Every change to an account and every refused sign-in is appended to the audit chain with who did it. Nothing here
logs or returns a password, a hash or a session token in clear.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from voiceivr.audit.chain import append_in_transaction
from voiceivr.db.models import ConsoleLoginThrottle, ConsoleSession, ConsoleUser
from voiceivr.errors import VoiceivrError

users_t: sa.Table = ConsoleUser.__table__  # type: ignore[assignment]
sessions_t: sa.Table = ConsoleSession.__table__  # type: ignore[assignment]
throttle_t: sa.Table = ConsoleLoginThrottle.__table__  # type: ignore[assignment]

ROLES = ("viewer", "editor", "publisher")  # each may do what the ones before it may
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes anything; a megabyte "password" would only cost us CPU
_hasher = PasswordHasher()
# Checked when the account does not exist, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(VoiceivrError):
    pass


@dataclass(frozen=True)
class Admin:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t  # SQLite returns naive UTC


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise AccountError(f"{name[:40]!r} is not a valid admin name",
                           hint="1-32 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a console password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def _write(engine: Engine) -> Connection:
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def add_user(engine: Engine, name: str, role: str, password: str, *, by: str) -> Admin:
    """Create an admin, or set an existing one's role and password (audited either way)."""
    check_name(name)
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
    digest = _hasher.hash(check_password(password))
    with _write(engine) as conn, conn.begin():
        exists = conn.execute(sa.select(users_t.c.name).where(users_t.c.name == name)).first() is not None
        if exists:
            conn.execute(users_t.update().where(users_t.c.name == name).values(
                role=role, password_hash=digest, disabled=False))
            conn.execute(sessions_t.delete().where(sessions_t.c.user_name == name))  # a new password ends sessions
        else:
            conn.execute(users_t.insert().values(name=name, role=role, password_hash=digest, created_at=_now()))
        append_in_transaction(conn, "console.user_changed" if exists else "console.user_added",
                              {"user": name, "role": role}, actor=by)
    return Admin(name, role)


def disable_user(engine: Engine, name: str, *, by: str) -> None:
    with _write(engine) as conn, conn.begin():
        done = conn.execute(users_t.update().where(users_t.c.name == name).values(disabled=True)).rowcount
        if not done:
            raise AccountError(f"no console admin named {name[:40]!r}")
        conn.execute(sessions_t.delete().where(sessions_t.c.user_name == name))
        append_in_transaction(conn, "console.user_disabled", {"user": name}, actor=by)


def list_users(engine: Engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users_t.c.name, users_t.c.role, users_t.c.disabled).order_by(users_t.c.name))
        return [(r.name, r.role, bool(r.disabled)) for r in rows]


def has_users(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(users_t.c.name).limit(1)).first() is not None


def ensure_first_admin(engine: Engine) -> str | None:
    """With no admin at all, create ``admin`` (publisher) with a random password and return it (to print once)."""
    if has_users(engine):
        return None
    password = secrets.token_urlsafe(15)
    add_user(engine, "admin", "publisher", password, by="console:first-start")
    return password


# --- signing in -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    free_failures: int = 5
    max_delay_s: float = 900.0

    def delay_after(self, failures: int) -> float:
        """No wait for the first free_failures; then 1 s, doubling with each further one, up to max_delay_s."""
        if failures < self.free_failures:
            return 0.0
        return float(min(self.max_delay_s, 2.0 ** min(failures - self.free_failures, 30)))


class LoginRefused(VoiceivrError):
    """Wrong name or password (the message never says which), or too many of them: ``retry_after_s`` > 0."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _throttle_keys(name: str, address: str) -> list[str]:
    return [f"user:{name[:64]}", f"addr:{address[:64]}"]


def _locked_for(conn: Connection, keys: list[str], now: dt.datetime) -> float:
    rows = conn.execute(sa.select(throttle_t.c.locked_until).where(throttle_t.c.key.in_(keys))
                        .with_for_update()).all()
    waits = [((_aware(r.locked_until) or now) - now).total_seconds() for r in rows]
    return max([0.0, *waits])


# Wrong passwords older than this are forgotten: an office address does not stay suspect forever.
FORGET_AFTER = dt.timedelta(days=1)


def _count_failure(conn: Connection, keys: list[str], now: dt.datetime, throttle: Throttle) -> float:
    longest = 0.0
    for key in keys:
        row = conn.execute(sa.select(throttle_t.c.failures, throttle_t.c.last_failure_at)
                           .where(throttle_t.c.key == key)).first()
        recent = row is not None and (_aware(row.last_failure_at) or now) > now - FORGET_AFTER
        failures = (row.failures if row is not None and recent else 0) + 1
        delay = throttle.delay_after(failures)
        values = {"failures": failures, "last_failure_at": now,
                  "locked_until": now + dt.timedelta(seconds=delay) if delay else None}
        if row:
            conn.execute(throttle_t.update().where(throttle_t.c.key == key).values(**values))
        else:
            conn.execute(throttle_t.insert().values(key=key, **values))
        longest = max(longest, delay)
    return longest


def authenticate(engine: Engine, name: str, password: str, address: str, throttle: Throttle) -> Admin:
    """The admin if name and password match and neither the account nor the address must wait; else
    LoginRefused. Every refusal is audited (the name tried and the address; never the password)."""
    name = name.strip()[:64]
    keys = _throttle_keys(name, address)
    now = _now()
    # The row locks taken here serialise concurrent guesses at one account, so none races past the count.
    with _write(engine) as conn, conn.begin():
        wait = _locked_for(conn, keys, now)
        if wait > 0:
            append_in_transaction(conn, "console.login_throttled",
                                  {"user": name, "address": address, "retry_after_s": round(wait, 1)},
                                  actor="console")
            refused = LoginRefused(f"too many wrong passwords: try again in {wait:.0f} s", wait)
        else:
            user = conn.execute(sa.select(users_t).where(users_t.c.name == name)).mappings().first()
            if _password_matches(user["password_hash"] if user else _DUMMY_HASH, password[:MAX_PASSWORD]) \
                    and user is not None and not user["disabled"]:
                conn.execute(throttle_t.delete().where(throttle_t.c.key == keys[0]))
                append_in_transaction(conn, "console.login", {"user": name, "address": address},
                                      actor=f"admin:{name}")
                return Admin(name, user["role"])
            wait = _count_failure(conn, keys, now, throttle)
            append_in_transaction(conn, "console.login_failed",
                                  {"user": name, "address": address, "known_user": user is not None},
                                  actor="console")
            refused = LoginRefused("wrong name or password", wait)
    raise refused


def _password_matches(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


# --- sessions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    token: str  # only in the cookie; the table holds its SHA-256
    csrf: str
    admin: Admin


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(engine: Engine, admin: Admin, address: str, hours: float) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = _now()
    with _write(engine) as conn, conn.begin():
        conn.execute(sessions_t.delete().where(sessions_t.c.expires_at < now))
        conn.execute(sessions_t.insert().values(token_sha256=_token_digest(token), user_name=admin.name,
                                                csrf_token=csrf, created_at=now, address=address[:64],
                                                expires_at=now + dt.timedelta(hours=hours)))
    return Session(token, csrf, admin)


def session_for(engine: Engine, token: str) -> Session | None:
    if not token or len(token) > 128:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sessions_t.c.csrf_token, sessions_t.c.expires_at, users_t.c.name, users_t.c.role,
                      users_t.c.disabled)
            .join(users_t, users_t.c.name == sessions_t.c.user_name)
            .where(sessions_t.c.token_sha256 == _token_digest(token))
        ).first()
    if row is None or row.disabled or (_aware(row.expires_at) or _now()) <= _now():
        return None
    return Session(token, row.csrf_token, Admin(row.name, row.role))


def close_session(engine: Engine, token: str) -> None:
    with _write(engine) as conn, conn.begin():
        conn.execute(sessions_t.delete().where(sessions_t.c.token_sha256 == _token_digest(token)))
