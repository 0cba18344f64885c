"""Delivering SMS codes from the outbox through the real ``twilio`` client: one message per confirmation.

The gate only queues (``sms_outbox``, in the transaction that creates the confirmation). The sender drains
the outbox: it claims a due row (a compare-and-set with a lease, so several senders on several nodes never
send the same row at once), sends it, and records the outcome. Retries back off exponentially.

Twilio has no idempotency key for messages, so a send whose outcome is unknown -- a timeout, a dropped
connection, a 5xx, or a sender that died mid-send and whose lease ran out -- is marked *in doubt*. Before
sending an in-doubt row again, the sender lists recent messages to that number and looks for the row's
reference (a short non-secret tag printed in every message); if it is there, the row is sent and nothing
is resent. The remaining window: a provider that accepts a request only after our lookup found nothing
(the lookup waits one backoff first, which makes that rare; it cannot make it impossible).

The same outbox carries notices that are not codes (``purpose`` lockout: an account locked after wrong PINs,
``voiceivr.policy.lockout``); they have no confirmation and are delivered the same way.

Outcomes: 2xx sent; 429 retried later (not in doubt: nothing was sent); other 4xx failed for good (bad
number, bad credentials); after ``policy.sms_max_attempts`` attempts, failed. The code text is erased from
the row as soon as it is sent or failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from voiceivr.audit.chain import AuditTrail
from voiceivr.db.models import SmsOutbox
from voiceivr.errors import ConfigError
from voiceivr.settings import PolicySettings

log = logging.getLogger(__name__)

outbox: sa.Table = SmsOutbox.__table__  # type: ignore[assignment]

# The twilio client narrates every request at INFO, with phone numbers in query strings: keep it to warnings.
_twilio_log = logging.getLogger("voiceivr.policy.sms.twilio_http")
_twilio_log.setLevel(logging.WARNING)

CLAIM_LEASE_S = 60.0
MAX_BACKOFF_S = 30.0


def twilio_client(policy: PolicySettings) -> Client:
    """The real client, pointed at ``policy.twilio_base_url`` when set (the local fake in tests and demos)."""
    if not policy.twilio_account_sid or not policy.twilio_auth_token:
        raise ConfigError(
            "SMS codes need policy.twilio_account_sid and policy.twilio_auth_token",
            hint="set VOICEIVR_POLICY_TWILIO_ACCOUNT_SID and VOICEIVR_POLICY_TWILIO_AUTH_TOKEN, or point "
            "policy.twilio_base_url at the local fake (`voiceivr sms fake-server`)",
        )
    if not policy.sms_from:
        raise ConfigError("SMS codes need policy.sms_from (the sender number, E.164)")
    client = Client(
        policy.twilio_account_sid, policy.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=policy.sms_timeout_s, logger=_twilio_log),
    )
    if policy.twilio_base_url:
        client.api.base_url = policy.twilio_base_url.rstrip("/")
    return client


@dataclass
class DrainReport:
    sent: int = 0
    reconciled: int = 0
    retry_later: int = 0
    failed: int = 0


class SmsSender:
    """Drains the outbox. ``kick()`` after queueing: it wakes the background thread if one runs (``start``),
    otherwise it drains right away in the caller's thread (tests, simulations)."""

    def __init__(
        self,
        engine: Engine,
        client: Client,
        from_number: str,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engine, self.client, self.from_number = engine, client, from_number
        self.max_attempts, self.backoff_s = max_attempts, backoff_s
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.audit = AuditTrail(engine)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ driving

    def kick(self) -> None:
        if self._thread is not None:
            self._wake.set()
        else:
            self.drain_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sms-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:  # one bad row or a database hiccup must not end delivery for every call
                log.exception("sms sender pass failed")
            wait = self._next_due_in()
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def _next_due_in(self) -> float:
        with self.engine.connect() as conn:
            nxt = conn.execute(
                sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.status == "queued")
            ).scalar_one()
        if nxt is None:
            return 5.0
        nxt = nxt if nxt.tzinfo else nxt.replace(tzinfo=dt.UTC)
        return max(0.05, min(5.0, (nxt - self.clock()).total_seconds()))

    def drain_until_settled(self, timeout_s: float = 30.0, sleep: Callable[[float], None] | None = None) -> None:
        """Drain, waiting out backoffs, until no row is queued (or ``timeout_s``)."""
        import time

        deadline = time.monotonic() + timeout_s
        sleeper = sleep or time.sleep
        while time.monotonic() < deadline:
            self.drain_once()
            with self.engine.connect() as conn:
                left = conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                    .where(outbox.c.status.in_(("queued", "sending")))).scalar_one()
            if not left:
                return
            sleeper(min(self._next_due_in(), 0.5))

    # ------------------------------------------------------------------------------------------ one pass

    def drain_once(self) -> DrainReport:
        report = DrainReport()
        now = self.clock()
        with self.engine.connect() as conn:
            due = [r.id for r in conn.execute(
                sa.select(outbox.c.id).where(
                    sa.or_(
                        sa.and_(outbox.c.status == "queued",
                                sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now)),
                        sa.and_(outbox.c.status == "sending", outbox.c.claimed_until < now),
                    )
                ).order_by(outbox.c.id)
            )]
        for row_id in due:
            self._one(row_id, report)
        return report

    def _claim(self, row_id: int) -> Any:
        now = self.clock()
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            row = conn.execute(sa.select(outbox).where(outbox.c.id == row_id)).first()
            if row is None:
                return None
            lease_over = row.status == "sending" and row.claimed_until is not None and (
                (row.claimed_until if row.claimed_until.tzinfo else row.claimed_until.replace(tzinfo=dt.UTC)) < now)
            claimed = conn.execute(
                outbox.update().where(
                    outbox.c.id == row_id,
                    sa.or_(outbox.c.status == "queued", sa.and_(outbox.c.status == "sending",
                                                                outbox.c.claimed_until < now)),
                ).values(
                    status="sending", claimed_until=now + dt.timedelta(seconds=CLAIM_LEASE_S),
                    # A sender that died mid-send may have sent it: look before sending again.
                    in_doubt=sa.true() if lease_over else outbox.c.in_doubt,
                )
            )
            if claimed.rowcount != 1:
                return None
            return conn.execute(sa.select(outbox).where(outbox.c.id == row_id)).first()

    def _finish(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == row_id, outbox.c.status == "sending").values(**values))

    def _retry(self, row: Any, report: DrainReport, error: str, *, in_doubt: bool) -> None:
        attempts = row.attempts + 1
        if attempts >= self.max_attempts and not in_doubt:
            self._fail(row, report, error, attempts)
            return
        if attempts >= self.max_attempts + 3:  # in doubt and still unanswerable: stop, say so
            self._fail(row, report, error, attempts)
            return
        delay = min(MAX_BACKOFF_S, self.backoff_s * (2 ** (attempts - 1))) * random.uniform(0.8, 1.2)
        self._finish(row.id, status="queued", attempts=attempts, in_doubt=in_doubt, last_error=error[:500],
                     next_attempt_at=self.clock() + dt.timedelta(seconds=delay), claimed_until=None)
        report.retry_later += 1
        log.info("sms send will be retried",
                 extra={"outbox_id": row.id, "attempts": attempts, "in_doubt": in_doubt, "error": error[:80]})

    def _fail(self, row: Any, report: DrainReport, error: str, attempts: int) -> None:
        self._finish(row.id, status="failed", attempts=attempts, body="", last_error=error[:500], claimed_until=None)
        self.audit.append("sms.failed", {"confirmation_id": row.confirmation_id, "purpose": row.purpose,
                                         "attempts": attempts, "error": error[:200]}, actor="sms")
        report.failed += 1
        log.warning("sms send failed for good", extra={"outbox_id": row.id, "attempts": attempts})

    def _sent(self, row: Any, report: DrainReport, sid: str, attempts: int, *, reconciled: bool) -> None:
        self._finish(row.id, status="sent", attempts=attempts, body="", provider_sid=sid, in_doubt=False,
                     sent_at=self.clock(), claimed_until=None, last_error=None)
        self.audit.append("sms.sent", {"confirmation_id": row.confirmation_id, "purpose": row.purpose,
                                       "provider_sid": sid, "attempts": attempts, "found_after_doubt": reconciled},
                          actor="sms")
        if reconciled:
            report.reconciled += 1
        else:
            report.sent += 1

    def _find_sent(self, row: Any) -> str | None:
        """The provider's sid of a message to this number carrying this row's reference, if any."""
        marker = f"Ref {row.reference}."
        for msg in self.client.messages.list(to=row.to_number, limit=50):
            if msg.body and marker in msg.body:
                return str(msg.sid)
        return None

    def _one(self, row_id: int, report: DrainReport) -> None:
        row = self._claim(row_id)
        if row is None:
            return
        if not row.body:
            self._fail(row, report, "nothing to send (code erased)", row.attempts)
            return
        if row.in_doubt:
            try:
                sid = self._find_sent(row)
            except (TwilioRestException, requests.RequestException) as exc:
                self._retry(row, report, f"lookup failed: {type(exc).__name__}", in_doubt=True)
                return
            if sid is not None:
                self._sent(row, report, sid, row.attempts, reconciled=True)
                return
        attempts = row.attempts + 1
        try:
            msg = self.client.messages.create(to=row.to_number, from_=self.from_number, body=row.body)
        except TwilioRestException as exc:
            if exc.status == 429:
                self._retry(row, report, "429 rate limited", in_doubt=bool(row.in_doubt))
            elif exc.status >= 500:
                self._retry(row, report, f"{exc.status} from provider", in_doubt=True)
            else:
                self._fail(row, report, f"{exc.status} code {exc.code}: {exc.msg}", attempts)
            return
        except requests.RequestException as exc:
            self._retry(row, report, type(exc).__name__, in_doubt=True)
            return
        self._sent(row, report, str(msg.sid), attempts, reconciled=False)
