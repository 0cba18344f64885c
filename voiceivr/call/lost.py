"""Calls lost with the process that carried them, counted as such.

A call's row is completed by the process that carries it (:mod:`voiceivr.call.store`). When that process dies
without a word (``kill -9`` of a node or of one worker, a machine that loses power) nobody completes it, and
the call would stay "in progress" for ever. So each serving process holds a **lease** in the shared database
(``call_owner_leases``: its owner name ``node:pid:random``, renewed every ``heartbeat_s``, valid for ``lease_s``)
and stamps its calls with that owner (``calls.owner``). At every renewal each live process also marks the
open calls of owners that are gone as outcome ``lost``:

* an owner whose lease ran out (another node died, or this node's process died and the lease lapsed);
* sooner, an owner of this same node whose process no longer exists (a worker restarted by its supervisor,
  or a node started again after a crash: the new processes see the old pids gone at once).

The lost call's end is the owner's last heartbeat (the last moment it was known to carry the call), never
before the call's start. Marking is idempotent (``ended_at IS NULL`` in the UPDATE), so two processes marking
at once count each call once: the one whose UPDATE changed the row reports it. ``voiceivr stats`` also reads an
open call of a gone owner as lost when no process is left to mark it (:func:`owner_gone`).

A process that was only stalled longer than its lease (not dead) finishes its call later and its real
outcome overwrites ``lost``: keep ``lease_s`` well above any stall (the default 15 s; a frame stall over
40 ms already fails the media goals).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from voiceivr.db.models import Call, CallOwnerLease

log = logging.getLogger(__name__)

LOST = "lost"
leases: sa.Table = CallOwnerLease.__table__  # type: ignore[assignment]
calls: sa.Table = Call.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class LeaseOptions:
    heartbeat_s: float = 3.0  # how often a process renews its lease and looks for lost calls
    lease_s: float = 15.0  # a process not heard of for this long is gone: its open calls are lost
    forget_after_s: float = 86400.0  # a lapsed lease row (its calls already marked) is deleted after this

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0 or self.lease_s <= 2 * self.heartbeat_s:
            raise ValueError(f"a call owner's lease ({self.lease_s} s) must outlast two heartbeats "
                             f"({self.heartbeat_s} s each), or a live process can be taken for dead")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds the pid now: not ours to judge, wait for the lease
    return True


def owner_gone(lease_until: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether an owner with this lease (None: no lease row left) carries no call any more."""
    return lease_until is None or _aware(lease_until) < now


def mark_lost(engine: Engine, now: dt.datetime, node: str = "", me: str = "") -> list[str]:
    """Mark the open calls of gone owners ``lost``; the ids this call changed (another process's concurrent
    marking of the same call counts there, not here). ``node``: this process's node, whose dead pids count as
    gone at once; ``me``: this process's own owner, never gone.

    The candidates are read first and the updates written in a transaction of their own that starts with a write:
    on SQLite two processes that each read and then wrote in one transaction could both fail ("database is
    locked": neither can upgrade its read lock while the other holds one)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(calls.c.id, calls.c.started_at, leases.c.node, leases.c.pid, leases.c.heartbeat_at,
                      leases.c.lease_until)
            .select_from(calls.outerjoin(leases, leases.c.owner == calls.c.owner))
            .where(calls.c.ended_at.is_(None), calls.c.owner.is_not(None), calls.c.owner != me)
        ).all()
    gone: list[tuple[str, dt.datetime]] = []
    for call_id, started_at, lease_node, pid, heartbeat_at, lease_until in rows:
        dead_here = bool(node) and lease_node == node and pid is not None and pid != os.getpid() and not pid_alive(pid)
        if dead_here or owner_gone(lease_until, now):
            started = _aware(started_at)
            gone.append((call_id, max(started, _aware(heartbeat_at)) if heartbeat_at is not None else started))
    marked: list[str] = []
    if not gone:
        return marked
    with engine.begin() as conn:
        for call_id, ended in gone:
            changed = conn.execute(
                calls.update().where(calls.c.id == call_id, calls.c.ended_at.is_(None)).values(ended_at=ended,
                                                                                                outcome=LOST)
            ).rowcount
            if changed:
                marked.append(call_id)
    return marked


class CallOwner:
    """This process's lease on its calls: renewed by a thread, which also marks gone owners' calls lost.

    ``on_lost(n)`` is told how many calls this process marked (for ``voiceivr_calls_total{outcome="lost"}``).
    Database errors are logged and retried at the next beat; they never reach a call.
    """

    def __init__(self, engine: Engine, node: str, options: LeaseOptions | None = None,
                 on_lost: Callable[[int], None] | None = None, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.node = node
        self.options = options or LeaseOptions()
        self.owner = f"{node}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[-128:]
        self.on_lost = on_lost
        self.clock = clock
        self.started_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take the lease (before this process's first call) and start renewing it."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="call-owner-lease", daemon=True)
        self._thread.start()

    def beat(self) -> int:
        """Renew the lease, mark gone owners' calls lost, forget long-lapsed leases; the calls marked here."""
        now = self.clock()
        until = now + dt.timedelta(seconds=self.options.lease_s)
        try:
            with self.engine.begin() as conn:
                renewed = conn.execute(leases.update().where(leases.c.owner == self.owner)
                                       .values(heartbeat_at=now, lease_until=until)).rowcount
                if not renewed:
                    conn.execute(leases.insert().values(owner=self.owner, node=self.node, pid=os.getpid(),
                                                        started_at=self.started_at, heartbeat_at=now,
                                                        lease_until=until))
            marked = mark_lost(self.engine, now, self.node, self.owner)
            forget = now - dt.timedelta(seconds=self.options.forget_after_s)
            with self.engine.begin() as conn:
                conn.execute(leases.delete().where(leases.c.lease_until < forget))
        except SQLAlchemyError as exc:
            log.error("cannot renew the call owner's lease", extra={"owner": self.owner, "error": type(exc).__name__})
            return 0
        if marked:
            log.warning("calls lost with their process", extra={"calls": len(marked), "call_ids": ",".join(marked)})
            if self.on_lost is not None:
                self.on_lost(len(marked))
        return len(marked)

    def _run(self) -> None:
        while not self._stop.wait(self.options.heartbeat_s):
            self.beat()

    def stop(self) -> None:
        """Give the lease up (after this process's calls have ended: an open one of ours then counts as lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.heartbeat_s + 5)
        try:
            with self.engine.begin() as conn:
                conn.execute(leases.delete().where(leases.c.owner == self.owner))
        except SQLAlchemyError as exc:
            log.error("cannot give up the call owner's lease", extra={"owner": self.owner,
                                                                       "error": type(exc).__name__})
