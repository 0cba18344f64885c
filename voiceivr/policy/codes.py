"""Out-of-band codes bound to one exact action: SMS codes (HMAC) and TOTP (RFC 6238), single use.

An SMS code is bound to the action by its stored MAC::

    digest   = HMAC(secret, canonical{action, amount, destination, every parameter, session id, nonce})
    code_mac = HMAC(secret, digest | nonce | code)

Only ``code_mac`` and ``digest`` are stored, never the code (the outbox row that carries the text to the
provider is emptied once sent). Verification recomputes the digest from the parameters the gate is about to
run, so a code issued for 50 dollars to savings does not verify 500 dollars, or another payee, or another
session. A code verifies once; it expires (``policy.code_ttl_s``).

Wrong codes are counted in ``code_failures``, per principal, never per dialog: a re-INVITE (a new session
epoch), a new call or a new request starts no count afresh. A code is compared only while the request has had
fewer than ``policy.code_max_attempts`` wrong ones, the principal fewer than that within
``policy.code_window_s``, and fewer than ``policy.code_daily_max`` in 24 hours; the wrong code that uses the
last try locks the request (the gate then flags the account). The count is taken under a per-principal lock
(a PostgreSQL advisory lock; SQLite's write lock) *before* the code is compared and the failure is recorded in
the same transaction, so concurrent calls cannot race past a limit.

A TOTP code cannot carry the action (the app does not know it); it is bound by the server: it is checked
against the pending confirmation of this request, in this session, and its (principal, time step) is stored
so it is accepted once, for one request, ever. Whether the code is the principal's is the identity provider's
answer (:meth:`voiceivr.policy.identity.IdentityProvider.verify_totp`: it may keep the secret where it is);
the counting, the limits and single use stay here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from voiceivr.audit.chain import append_in_transaction, canonical_json
from voiceivr.db.models import CodeFailure, PendingConfirmation, SmsOutbox, TotpUsedStep
from voiceivr.policy.identity import TOTP_STEP_S, IdentityUnavailable

confirmations: sa.Table = PendingConfirmation.__table__  # type: ignore[assignment]
failures: sa.Table = CodeFailure.__table__  # type: ignore[assignment]
outbox: sa.Table = SmsOutbox.__table__  # type: ignore[assignment]
used_steps: sa.Table = TotpUsedStep.__table__  # type: ignore[assignment]

MAX_CHALLENGES_PER_REQUEST = 3
DAY = dt.timedelta(days=1)
# The class half of the two-key advisory lock that serialises one principal's code checks on PostgreSQL (the
# two-key space never meets the audit trail's one-key lock); the other half is a hash of the principal.
PG_CODE_LOCK_CLASS = 0x636F6465  # "code"


# (code, at, window) -> the TOTP time step the code matched, or None.
TotpCheck = Callable[[str, dt.datetime, int], int | None]


def principal_lock_key(principal: str) -> int:
    """A signed 32-bit key for ``principal``. Two principals sharing one only wait for each other."""
    return int.from_bytes(hashlib.sha256(principal.encode()).digest()[:4], "big", signed=True)


@dataclass(frozen=True)
class BoundAction:
    """What a code is bound to."""

    action: str
    params: Mapping[str, Any]
    session_id: str
    amount_params: tuple[str, ...] = ("amount_cents",)
    destination_params: tuple[str, ...] = ()

    def canonical(self, nonce: str) -> str:
        return canonical_json({
            "action": self.action,
            "amount": {k: self.params[k] for k in self.amount_params if k in self.params},
            "destination": {k: self.params[k] for k in self.destination_params if k in self.params},
            "params": dict(self.params),
            "session": self.session_id,
            "nonce": nonce,
        })


def action_digest(secret: bytes, bound: BoundAction, nonce: str) -> str:
    return hmac.new(secret, b"action:" + bound.canonical(nonce).encode(), hashlib.sha256).hexdigest()


def code_mac(secret: bytes, digest: str, nonce: str, code: str) -> str:
    return hmac.new(secret, f"code:{digest}:{nonce}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code(digits: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(digits))


def normalise_code(text: str) -> str:
    """What the caller read back, as digits: "1 2 3-4 5 6" -> "123456"."""
    return "".join(ch for ch in text if ch.isdigit())


def mask_number(number: str) -> str:
    digits = normalise_code(number)
    return "***-***-" + digits[-4:] if len(digits) >= 4 else "***"


@dataclass(frozen=True)
class Issued:
    confirmation_id: str
    channel: str
    expires_at: dt.datetime
    destination_masked: str
    audit_seq: int


@dataclass(frozen=True)
class Checked:
    ok: bool
    reason: str = ""
    attempts_left: int | None = None
    locked: bool = False
    audit_seq: int | None = None
    confirmation_id: str = ""


class CodeBook:
    """Issues and verifies codes; every change is one transaction with its audit row."""

    def __init__(
        self,
        engine: Engine,
        secret: bytes,
        *,
        clock: Callable[[], dt.datetime],
        ttl_s: int = 300,
        max_attempts: int = 5,
        digits: int = 6,
        totp_window: int = 1,
        window_s: int = 3600,
        daily_max: int = 15,
    ) -> None:
        self.engine, self.secret, self.clock = engine, secret, clock
        self.ttl = dt.timedelta(seconds=ttl_s)
        self.max_attempts, self.digits, self.totp_window = max_attempts, digits, totp_window
        self.window, self.daily_max = dt.timedelta(seconds=window_s), daily_max
        self._pg = engine.dialect.name == "postgresql"

    def _tx(self) -> Any:
        return self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")

    # ------------------------------------------------------------------------------------------ issuing

    def issue(
        self,
        *,
        request_id: str,
        call_id: str,
        principal: str,
        bound: BoundAction,
        channel: str,
        to_number: str | None = None,
        describe: str = "",
        audit: Mapping[str, Any] | None = None,
    ) -> Issued | Checked:
        """A new confirmation for this request (earlier pending ones of the request are voided). For SMS the
        message is queued in the outbox in the same transaction; the sender delivers it."""
        now = self.clock()
        nonce = secrets.token_hex(16)
        digest = action_digest(self.secret, bound, nonce)
        cid = str(uuid.uuid4())
        masked = mask_number(to_number) if to_number else "authenticator app"
        with self._tx() as conn, conn.begin():
            issued_before = conn.execute(
                sa.select(sa.func.count()).select_from(confirmations)
                .where(confirmations.c.request_id == request_id)
            ).scalar_one()
            if issued_before >= MAX_CHALLENGES_PER_REQUEST:
                rec = append_in_transaction(conn, "policy.challenge_refused",
                                            {"request_id": request_id, "reason": "too_many_codes",
                                             "channel": channel, **(audit or {})},
                                            actor="policy", call_id=call_id)
                return Checked(False, "too_many_codes", audit_seq=rec.seq)
            conn.execute(
                confirmations.update()
                .where(confirmations.c.request_id == request_id, confirmations.c.status == "pending")
                .values(status="void")
            )
            code = new_code(self.digits) if channel == "sms" else ""
            conn.execute(
                confirmations.insert().values(
                    id=cid, call_id=call_id, session_id=bound.session_id, principal=principal,
                    action_type=bound.action, action_digest=digest, channel=channel,
                    destination_masked=masked[:32],
                    code_mac=code_mac(self.secret, digest, nonce, code) if code else "",
                    nonce=nonce, created_at=now, expires_at=now + self.ttl, attempts=0,
                    max_attempts=self.max_attempts, status="pending", request_id=request_id,
                )
            )
            if channel == "sms":
                assert to_number
                reference = secrets.token_hex(3).upper()
                body = (f"voiceivr code {code} to confirm {describe}. Ref {reference}. "
                        "Expires in 5 minutes. We never ask for this code except on this call.")
                conn.execute(outbox.insert().values(
                    confirmation_id=cid, to_number=to_number, body=body, status="queued", attempts=0,
                    created_at=now, reference=reference, next_attempt_at=None,  # due at once, whatever the clock
                ))
            rec = append_in_transaction(
                conn, "policy.challenge",
                {"request_id": request_id, "confirmation_id": cid, "channel": channel,
                 "destination": masked, "expires_at": (now + self.ttl).isoformat(), "action_digest": digest,
                 **(audit or {})},
                actor="policy", call_id=call_id,
            )
        return Issued(cid, channel, now + self.ttl, masked, rec.seq)

    # ------------------------------------------------------------------------------------------ verifying

    def _tries_left(self, conn: Connection, principal: str, request_id: str, now: dt.datetime) -> int:
        """Wrong codes this request may still have compared. Takes the principal's lock first: until this
        transaction ends, no other check of the principal's codes counts or compares."""
        if self._pg:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:c, :k)"),
                         {"c": PG_CODE_LOCK_CLASS, "k": principal_lock_key(principal)})
        conn.execute(failures.delete().where(failures.c.principal == principal, failures.c.at <= now - DAY))

        def count(*where: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*where), 1), else_=0)), 0)

        in_request, in_window, in_day = conn.execute(
            sa.select(count(failures.c.request_id == request_id), count(failures.c.at > now - self.window),
                      sa.func.count())
            .where(failures.c.principal == principal, failures.c.at > now - DAY)
        ).one()
        return min(self.max_attempts - int(in_request), self.max_attempts - int(in_window),
                   self.daily_max - int(in_day))

    def verify(
        self,
        *,
        request_id: str,
        call_id: str,
        principal: str,
        bound: BoundAction,
        code_text: str,
        totp: TotpCheck | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> Checked:
        """Check the code read back against this request's pending confirmation. ``totp(code, at, window)``
        answers for a TOTP confirmation: the time step the code matched, or None (the identity provider's
        :meth:`~voiceivr.policy.identity.IdentityProvider.verify_totp` for the principal)."""
        now = self.clock()
        code = normalise_code(code_text)
        base = {"request_id": request_id, **(audit or {})}
        with self._tx() as conn, conn.begin():
            q = (sa.select(confirmations)
                 .where(confirmations.c.request_id == request_id)
                 .order_by(confirmations.c.created_at.desc()).limit(1))
            if self._pg:
                q = q.with_for_update()
            row = conn.execute(q).first()

            def done(ok: bool, reason: str, *, left: int | None = None, locked: bool = False) -> Checked:
                rec = append_in_transaction(
                    conn, "policy.code",
                    {**base, "ok": ok, "reason": reason, "attempts_left": left, "locked": locked,
                     "confirmation_id": row.id if row is not None else None,
                     "channel": row.channel if row is not None else None},
                    actor="policy", call_id=call_id,
                )
                return Checked(ok, reason, left, locked, rec.seq, row.id if row is not None else "")

            if row is None:
                return done(False, "no_code_issued")
            if row.status != "pending":
                return done(False, {"verified": "code_already_used", "locked": "locked"}.get(row.status, row.status),
                            locked=row.status == "locked")
            if row.principal != principal or row.session_id != bound.session_id:
                return done(False, "wrong_session")
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
            if now >= expires:
                conn.execute(confirmations.update().where(confirmations.c.id == row.id).values(status="expired"))
                self._clear_outbox(conn, row.id)
                return done(False, "expired")
            if not hmac.compare_digest(action_digest(self.secret, bound, row.nonce), row.action_digest):
                # The amount, payee or anything else changed since the code was issued: the code is void.
                conn.execute(confirmations.update().where(confirmations.c.id == row.id).values(status="void"))
                self._clear_outbox(conn, row.id)
                return done(False, "action_changed")
            tries_left = self._tries_left(conn, principal, request_id, now)
            if tries_left <= 0:
                conn.execute(confirmations.update().where(confirmations.c.id == row.id).values(status="locked"))
                self._clear_outbox(conn, row.id)
                return done(False, "locked", left=0, locked=True)

            if row.channel == "sms":
                good = bool(code) and hmac.compare_digest(code_mac(self.secret, row.action_digest, row.nonce, code),
                                                          row.code_mac)
                replay = False
            else:
                try:
                    step = self._totp_step(totp, code, now)
                except IdentityUnavailable:
                    # The provider could not answer: not the caller's wrong code, so nothing is counted.
                    return done(False, "identity_unavailable", left=tries_left)
                good, replay = step is not None, False
                if step is not None:
                    try:
                        with conn.begin_nested():
                            conn.execute(used_steps.insert().values(principal=principal, step=step, used_at=now))
                    except IntegrityError:
                        good, replay = False, True
            if good:
                conn.execute(confirmations.update().where(confirmations.c.id == row.id)
                             .values(status="verified", verified_at=now))
                self._clear_outbox(conn, row.id)
                return done(True, "verified")
            conn.execute(failures.insert().values(principal=principal, request_id=request_id, call_id=call_id,
                                                  at=now))
            wrong = row.attempts + 1
            left = max(0, tries_left - 1)
            locked = left == 0
            conn.execute(confirmations.update().where(confirmations.c.id == row.id)
                         .values(attempts=wrong, status="locked" if locked else "pending"))
            if locked:
                self._clear_outbox(conn, row.id)
            return done(False, "code_already_used" if replay else "wrong_code", left=left, locked=locked)

    def _totp_step(self, totp: TotpCheck | None, code: str, now: dt.datetime) -> int | None:
        if totp is None or len(code) != 6:  # authenticator codes are 6 digits: nothing else reaches the provider
            return None
        step = totp(code, now, self.totp_window)
        if step is not None and abs(step - int(now.timestamp()) // TOTP_STEP_S) > self.totp_window:
            return None  # a provider's step outside the window the policy allows is no match
        return step

    def _clear_outbox(self, conn: Connection, confirmation_id: str) -> None:
        """A code that can no longer be used must not sit in clear in the outbox either."""
        conn.execute(outbox.update().where(outbox.c.confirmation_id == confirmation_id, outbox.c.status == "queued")
                     .values(body="", status="failed", last_error="confirmation closed before sending"))
        conn.execute(outbox.update().where(outbox.c.confirmation_id == confirmation_id).values(body=""))

    def void(self, request_id: str, call_id: str, reason: str) -> int:
        """Abandoned request: its codes are void (and their outbox text is erased). Returns how many."""
        with self._tx() as conn, conn.begin():
            ids = [r.id for r in conn.execute(sa.select(confirmations.c.id).where(
                confirmations.c.request_id == request_id, confirmations.c.status == "pending"))]
            if ids:
                conn.execute(confirmations.update().where(confirmations.c.id.in_(ids)).values(status="void"))
                for cid in ids:
                    self._clear_outbox(conn, cid)
        return len(ids)

    def outbox_status(self, confirmation_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(outbox.c.status).where(outbox.c.confirmation_id == confirmation_id)).first()
        return None if row is None else str(row.status)
