"""The call session as the SIP edge's call handler: what ``voiceivr serve`` answers calls with.

``sip.handler = "voiceivr.live:handler_factory"`` (the default). Each worker process builds one
:class:`SessionHandler`: the shared :class:`~voiceivr.runtime.CallRuntime` (speech engines, the live
dialplan, the safe path, the call store), with the recogniser in separate processes so its GIL never stalls
the media of the worker's calls (docs/speech.md). For each answered call the edge calls :meth:`start` on its
SIP thread; it builds the call's session, bound to the call's SIP dialog and media address, starts the call's
own worker thread and returns at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from typing import Any

from voiceivr import metrics
from voiceivr.call import events as ev
from voiceivr.call.handler import CallControl, CallEvents, CallInfo
from voiceivr.call.lost import LOST, CallOwner, LeaseOptions
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.call.worker import CallWorker
from voiceivr.dialplan.split import caller_number
from voiceivr.policy.gate import SessionBinding
from voiceivr.runtime import CallRuntime
from voiceivr.settings import Settings

log = logging.getLogger(__name__)


class LiveCall(CallWorker):
    """One answered call: the session's worker thread, plus what the edge tells us about the call."""

    def __init__(self, session: CallSession, handler: SessionHandler, started_at: dt.datetime) -> None:
        super().__init__(session)
        self.handler = handler
        self.started_at = started_at

    def on_transfer_result(self, ok: bool, status: int) -> None:
        if not ok:
            # The agent line refused the REFER: the session has already said goodbye to this caller, so end
            # the call rather than leave them in silence.
            log.warning("transfer failed; hanging up", extra={"call_id": self.session.call_id, "status": status})
            if self.session.control is not None:
                self.session.control.hangup("transfer failed")

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.handler.call_finished(self)


class SessionHandler:
    def __init__(self, settings: Settings, runtime: CallRuntime | None = None) -> None:
        self.settings = settings
        if runtime is None:
            from voiceivr.audit.config import bind
            from voiceivr.db.engine import engine_from_settings
            from voiceivr.db.migrate import require_current

            db = engine_from_settings(settings)
            require_current(db, settings.plugins.enabled)
            bind(db, settings)  # this node's audit keys, and its automatic checkpoints
            workers = max(1, settings.speech.stt_workers)
            runtime = CallRuntime.build(settings, db=db, stt_workers=workers)
        self.runtime = runtime
        self.owner: CallOwner | None = None
        if runtime.store is not None:
            # This process's lease on its calls: if it dies they are marked lost (by any live process), and it
            # marks the calls of processes that died before it (voiceivr/call/lost.py).
            lease = settings.sip.call_lease_s
            self.owner = CallOwner(runtime.store.engine, runtime.store.node, LeaseOptions(lease / 5, lease),
                                   on_lost=lambda n: metrics.CALLS.labels(LOST).inc(n))
            self.owner.start()
            runtime.store.owner = self.owner.owner
        if runtime.services is not None:
            report = runtime.services.start()
            log.info("safe path ready", extra={"recovered": str(report)})
        if settings.metrics.port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # a worker of `voiceivr serve` writes its figures for the supervisor's /metrics instead
            metrics.serve(settings.metrics.port, settings.metrics.host)
        self._calls: dict[str, LiveCall] = {}
        self._lock = threading.Lock()
        self.runtime.plan_for_new_call()  # fail at start, not on the first call, if there is no dialplan

    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        media_address = f"{info.remote_media.host}:{info.remote_media.port}" if info.remote_media else ""
        binding = SessionBinding(info.call_id, info.sip_call_id, info.local_tag, info.remote_tag, media_address)
        started = dt.datetime.now(dt.UTC)
        session, _brain, choice = self.runtime.new_session(info.call_id, media, binding, control=control,
                                                           now=started, caller=caller_number(info.from_uri))
        if self.runtime.store is not None:
            self.runtime.store.call_started(info.call_id, source="sip", sip_call_id=info.sip_call_id,
                                            caller_uri=info.from_uri[:255] or None,
                                            dialplan_version_id=choice.version_id, started_at=started)
        call = LiveCall(session, self, started)
        with self._lock:
            self._calls[info.call_id] = call
        metrics.ACTIVE_CALLS.inc()
        call.start()
        return call

    def call_finished(self, call: LiveCall) -> None:
        session = call.session
        with self._lock:
            self._calls.pop(session.call_id, None)
        metrics.ACTIVE_CALLS.dec()
        summary = session.summary()
        if call.error is not None:
            summary["outcome"] = "error"
            metrics.ERRORS.labels("call_worker").inc()
        barge = [e.t - e.onset for e in session.timeline if isinstance(e, ev.BargeIn)]
        metrics.observe_call(summary, barge)
        if self.runtime.store is not None:
            self.runtime.store.call_ended(session.call_id, session.timeline, summary, call.started_at)

    def active_calls(self) -> int:
        with self._lock:
            return len(self._calls)

    def close(self) -> None:
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.join(timeout=5)
        if self.owner is not None:
            self.owner.stop()
        self.runtime.close()
        if self.runtime.db is not None:
            from voiceivr.audit.chain import AuditTrail

            AuditTrail(self.runtime.db).flush_checkpoints()  # a clean stop leaves no unsigned tail


def handler_factory(settings: Settings) -> Any:
    return SessionHandler(settings)


def preflight(settings: Settings) -> None:
    """Before `voiceivr serve` starts workers: the database is reachable and migrated, and a dialplan is
    published (each a one-line error saying what to do)."""
    from voiceivr.db.engine import engine_from_settings
    from voiceivr.db.migrate import require_current
    from voiceivr.dialplan.store import get_version

    db = engine_from_settings(settings)
    try:
        require_current(db, settings.plugins.enabled)
        get_version(db, settings.dialplan.live_name)
    finally:
        db.dispose()


handler_factory.preflight = preflight  # type: ignore[attr-defined]
