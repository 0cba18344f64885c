"""Wiring: everything the calls of one process share, and how one call's session is put together.

It sits on the top floor with ``cli/`` and ``replay.py`` and imports down (call, dialplan, policy, actions,
speech, db); nothing below imports it. ``voiceivr.live`` (the default ``sip.handler``, wiring too) builds one per
SIP worker.

A :class:`CallRuntime` is built once per process (a SIP worker, ``voiceivr replay``, a benchmark): the
speech engines (one model each, shared), the action registry, the dialplan (the live published version, or
a file), the safe-path services (policy, runner, code book, SMS sender) and the call store. For each call,
:meth:`CallRuntime.new_session` builds the call's own gate (bound to its SIP dialog and media address), its
conversation, and the :class:`~voiceivr.call.session.CallSession` that runs them.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from voiceivr.actions.catalog import plugin_registry
from voiceivr.actions.registry import ActionRegistry
from voiceivr.call.budget import StageStats
from voiceivr.call.dialplan_brain import DialplanBrain, TimedGate
from voiceivr.call.handler import CallControl
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.call.store import CallStore
from voiceivr.dialplan.engine import Conversation
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter, make_router
from voiceivr.dialplan.store import LiveDialplans, NoLiveDialplan
from voiceivr.policy.gate import CallGate, SessionBinding
from voiceivr.settings import Settings
from voiceivr.speech.base import SttEngine, TtsEngine, VadEngine
from voiceivr.speech.denoise import build_denoiser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanChoice:
    plan: Dialplan
    router: IntentRouter
    version_id: int | None  # the published version handling the call (None: a file, e.g. in a replay)
    label: str


class CallRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        db: Engine | None,
        vad: VadEngine,
        stt: SttEngine,
        tts: TtsEngine,
        prompt_cache: Any | None,
        registry: ActionRegistry,
        dialplan_file: Path | None = None,
        services: Any | None = None,
        store: CallStore | None = None,
        stats: StageStats | None = None,
        flag_text: Callable[[str], tuple[str, ...]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.vad, self.stt, self.tts, self.prompt_cache = vad, stt, tts, prompt_cache
        self.denoiser = build_denoiser(settings.speech.noise_suppression)  # per process; a stream per call
        self.registry = registry
        self.services = services
        self.store = store
        self.stats = stats
        self.flag_text = flag_text
        self._dialplan_file = dialplan_file
        self._file_choice: PlanChoice | None = None
        self._live = LiveDialplans(db, settings.dialplan.live_name, registry, self._router) if db else None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- build

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        db: Engine | None,
        dialplan_file: Path | None = None,
        stt_workers: int | None = None,
        store_calls: bool = True,
        stats: StageStats | None = None,
        sms: Any | None = None,
        clock: Any | None = None,
    ) -> CallRuntime:
        """Engines from the ``speech`` settings; the safe path when there is a database (without one,
        high-risk actions are refused, never faked)."""
        from voiceivr.injection import scan
        from voiceivr.speech.registry import build_prompt_cache, build_stt, build_tts, build_vad

        registry = plugin_registry(settings)
        node = settings.policy.runner_node or socket.gethostname()
        services = None
        if db is not None:
            from voiceivr.actions.effects import RunnerRegistry
            from voiceivr.policy.identity import enabled_identity
            from voiceivr.policy.services import SafePathServices

            kwargs: dict[str, Any] = {"sms": sms}
            if clock is not None:
                kwargs["clock"] = clock
            services = SafePathServices.from_settings(
                settings, db, RunnerRegistry.from_actions(registry, db, clock, settings.policy),
                enabled_identity(settings, db), **kwargs
            )
        return cls(
            settings,
            db=db,
            vad=build_vad(settings),
            stt=build_stt(settings, workers=stt_workers),
            tts=build_tts(settings),
            prompt_cache=build_prompt_cache(settings),
            registry=registry,
            dialplan_file=dialplan_file,
            services=services,
            store=CallStore(db, node=node) if (db is not None and store_calls) else None,
            stats=stats,
            flag_text=lambda text: scan(text).categories,
        )

    def _router(self, plan: Dialplan) -> IntentRouter:
        s = self.settings.dialplan
        return make_router(plan, list(s.tiers), embedding_model=s.embedding_model,
                           embedding_threads=s.embedding_threads, llm_url=s.llm_url, llm_model=s.llm_model,
                           llm_api_key=s.llm_api_key, llm_timeout_s=s.llm_timeout_s)

    # ---------------------------------------------------------------------------------------- dialplan

    def default_dialplan_file(self) -> Path:
        return self.settings.dialplan.dir / f"{self.settings.dialplan.live_name}.yaml"

    def plan_for_new_call(self, key: str | None = None) -> PlanChoice:
        """The dialplan a new call gets: the file given, else the live published version (or, while an A/B
        split stands, the split's version for the callers ``key``, their number or the call id, hashes to)."""
        if self._dialplan_file is None and self._live is not None:
            live = self._live.for_new_call(key)
            return PlanChoice(live.plan, live.router, live.version_id, f"{live.plan.name} v{live.version}")
        with self._lock:
            if self._file_choice is None:
                path = self._dialplan_file or self.default_dialplan_file()
                plan = load_file(path, self.registry)
                self._file_choice = PlanChoice(plan, self._router(plan), None, str(path))
            return self._file_choice

    def has_live_dialplan(self) -> bool:
        if self._live is None:
            return False
        try:
            self._live.for_new_call()
        except NoLiveDialplan:
            return False
        return True

    # ---------------------------------------------------------------------------------------- one call

    def gate_for(self, binding: SessionBinding) -> CallGate:
        if self.services is not None:
            gate: CallGate = self.services.gate(binding)
            return gate
        from voiceivr.policy.lowrisk import LowRiskOnlyGate

        return LowRiskOnlyGate(self.registry, None, binding)

    def new_session(
        self,
        call_id: str,
        media: MediaChannel,
        binding: SessionBinding,
        *,
        control: CallControl | None = None,
        now: dt.datetime | None = None,
        caller: str = "",
    ) -> tuple[CallSession, DialplanBrain, PlanChoice]:
        """``now``: when the call started (aware); a dialplan's schedule: nodes read their hours at it.
        ``caller``: the caller's number (the SIP From user), which picks the side of an A/B split; without one,
        the call id does."""
        choice = self.plan_for_new_call(caller or call_id)
        gate = TimedGate(self.gate_for(binding))
        conv = Conversation(choice.plan, gate, choice.router, call_id=call_id, registry=self.registry, now=now)
        brain = DialplanBrain(conv, gate, flag_text=self.flag_text)
        session = CallSession(
            call_id=call_id,
            media=media,
            brain=brain,
            vad=self.vad,
            denoiser=self.denoiser,
            stt=self.stt,
            tts=self.tts,
            settings=self.settings.call,
            budgets=self.settings.budget,
            control=control,
            prompt_cache=self.prompt_cache,
            stats=self.stats,
        )
        return session, brain, choice

    def close(self) -> None:
        if self.services is not None:
            self.services.stop()
        close = getattr(self.stt, "close", None)
        if callable(close):
            close()
