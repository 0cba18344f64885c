"""The low-risk-only gate: the :class:`~voiceivr.policy.gate.CallGate` of a build or node without the safe path.

It runs low-risk actions and *refuses every high-risk one* with a reason saying why: a simulation must never
pretend that a money transfer was authorised. :func:`voiceivr.policy.make_gate` returns it when there is no
database (no audit trail, so no safe path); ``voiceivr.dialplan.gates.gate_for`` when ``make_gate`` is missing.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

from sqlalchemy.engine import Engine

from voiceivr.actions.registry import ActionContext, ActionError, ActionRegistry
from voiceivr.policy.confirm import ConfirmRules
from voiceivr.policy.gate import (
    ActionRequest,
    ActionResult,
    Challenge,
    Channel,
    Decision,
    Evidence,
    GateRefused,
    SessionBinding,
    StepResult,
)

NO_SAFE_PATH = (
    "the safe path is not available in this build (voiceivr.policy.make_gate is missing), so high-risk actions "
    "are refused"
)


class LowRiskOnlyGate:
    """Fast path only: low actions run at once, high ones are refused. No audit trail: not for live calls."""

    def __init__(self, registry: ActionRegistry, db: Engine | None, binding: SessionBinding,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.binding = binding
        self.confirmation = ConfirmRules.default()
        self.registry = registry
        self.db = db
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._principal: str | None = None
        self._requests: dict[str, ActionRequest] = {}
        self._ids = itertools.count(1)

    def principal(self) -> str | None:
        return self._principal

    def login(self, principal: str, evidence: Evidence) -> StepResult:
        self._principal = principal or None
        return StepResult(ok=bool(principal))

    def binding_changed(self, new_binding: SessionBinding | None, reason: str) -> None:
        self._principal = None

    def decide(self, request: ActionRequest) -> tuple[ActionRequest, Decision]:
        rid = f"{self.binding.call_id}-r{next(self._ids)}"
        request = ActionRequest(request.action, request.params, request.risk, request.evidence, rid)
        self._requests[rid] = request
        if request.action not in self.registry:
            return request, Decision("fast", (f"unknown action {request.action}",), allowed=False)
        action = self.registry.get(request.action)
        if request.risk == "high" or action.risk == "high":
            return request, Decision("safe", (NO_SAFE_PATH,), allowed=False)
        if action.requires_login and self._principal is None:
            return request, Decision("fast", ("not identified",), allowed=False)
        problems = action.check_params(request.params)
        if problems:
            return request, Decision("fast", tuple(problems), allowed=False)
        return request, Decision("fast")

    def readback_played(self, request_id: str, finished_at: float) -> None:
        pass

    def confirm(self, request_id: str, evidence: Evidence) -> StepResult:
        return StepResult(False, NO_SAFE_PATH)

    def send_challenge(self, request_id: str, channel: Channel) -> Challenge:
        raise GateRefused("no_safe_path", NO_SAFE_PATH)

    def verify_code(self, request_id: str, code: str, evidence: Evidence) -> StepResult:
        return StepResult(False, NO_SAFE_PATH)

    def execute(self, request_id: str) -> ActionResult:
        request = self._requests.pop(request_id, None)
        if request is None:
            return ActionResult(False, reason="unknown request")
        action = self.registry.get(request.action)
        if action.risk == "high" or request.risk == "high":
            return ActionResult(False, reason=NO_SAFE_PATH)
        ctx = ActionContext(call_id=self.binding.call_id, principal=self._principal, db=self.db, now=self._now(),
                            idempotency_key=request_id)
        try:
            return ActionResult(True, dict(action.run(request.params, ctx)))
        except ActionError as exc:
            return ActionResult(False, reason=str(exc))

    def abandon(self, request_id: str, reason: str) -> None:
        self._requests.pop(request_id, None)

    def note_input(self, evidence: Evidence, reason: str, request_id: str | None = None) -> None:
        pass  # no audit trail here (and no high action can run)
