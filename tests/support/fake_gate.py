"""A scripted CallGate for unit tests of the dialplan engine (the real one is voiceivr.policy's).

It keeps the safe-path order strictly (decide -> readback_played -> confirm -> send_challenge ->
verify_code -> execute) and records every call, so tests can assert what the engine asked, in what order.
Actions really run (through the registry, against the test's database) when ``execute`` is allowed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

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
    SessionBinding,
    StepResult,
)


@dataclass
class _Req:
    request: ActionRequest
    path: str
    readback_at: float | None = None
    confirmed: bool = False
    challenged: bool = False
    verified: bool = False
    attempts: int = 0
    done: bool = False
    void: bool = False


@dataclass
class FakeGate:
    registry: ActionRegistry
    db: Engine | None = None
    code: str = "246810"
    channels: tuple[Channel, ...] = ("sms",)
    max_attempts: int = 3
    refuse: set[str] = field(default_factory=set)  # action names decide() refuses
    binding: SessionBinding = field(default_factory=lambda: SessionBinding("test-call"))
    confirmation: ConfirmRules = field(default_factory=ConfirmRules.default)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    executed: list[ActionRequest] = field(default_factory=list)
    _principal: str | None = None
    _reqs: dict[str, _Req] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def names(self) -> list[str]:
        return [c for c, _ in self.calls]

    def principal(self) -> str | None:
        return self._principal

    def login(self, principal: str, evidence: Evidence) -> StepResult:
        self.calls.append(("login", principal))
        self._principal = principal
        return StepResult(True)

    def binding_changed(self, new_binding: SessionBinding | None, reason: str) -> None:
        self.calls.append(("binding_changed", reason))
        self._principal = None

    def decide(self, request: ActionRequest) -> tuple[ActionRequest, Decision]:
        rid = f"r{next(self._ids)}"
        request = ActionRequest(request.action, dict(request.params), request.risk, request.evidence, rid)
        self.calls.append(("decide", request))
        action = self.registry.get(request.action)
        if request.action in self.refuse or (action.requires_login and not self._principal):
            return request, Decision("fast", ("refused by test",), allowed=False)
        path = "safe" if request.risk == "high" else "fast"
        self._reqs[rid] = _Req(request, path)
        return request, Decision(path, channels=self.channels if path == "safe" else ())  # type: ignore[arg-type]

    def readback_played(self, request_id: str, finished_at: float) -> None:
        self.calls.append(("readback_played", request_id))
        self._reqs[request_id].readback_at = finished_at

    def confirm(self, request_id: str, evidence: Evidence) -> StepResult:
        self.calls.append(("confirm", request_id))
        r = self._reqs[request_id]
        if r.readback_at is None or (evidence.started_at is not None and evidence.started_at < r.readback_at):
            return StepResult(False, "yes overlapped the read-back")
        r.confirmed = True
        return StepResult(True)

    def send_challenge(self, request_id: str, channel: Channel) -> Challenge:
        self.calls.append(("send_challenge", channel))
        r = self._reqs[request_id]
        assert r.confirmed, "challenge before confirmation"
        r.challenged = True
        return Challenge(request_id, channel, "***-***-0101", dt.datetime(2030, 1, 1, tzinfo=dt.UTC))

    def verify_code(self, request_id: str, code: str, evidence: Evidence) -> StepResult:
        self.calls.append(("verify_code", code))
        r = self._reqs[request_id]
        assert r.challenged, "code before challenge"
        if r.void:
            return StepResult(False, "void")
        if code == self.code:
            r.verified = True
            return StepResult(True)
        r.attempts += 1
        left = self.max_attempts - r.attempts
        if left <= 0:
            r.void = True
            return StepResult(False, "too many tries", attempts_left=0, locked=True)
        return StepResult(False, "wrong code", attempts_left=left)

    def execute(self, request_id: str) -> ActionResult:
        self.calls.append(("execute", request_id))
        r = self._reqs[request_id]
        if r.void:
            return ActionResult(False, reason="void")
        if r.path == "safe":
            assert r.readback_at is not None and r.confirmed and r.verified, "safe path skipped a step"
        if r.done:
            return ActionResult(False, reason="already run")
        r.done = True
        action = self.registry.get(r.request.action)
        ctx = ActionContext(call_id=self.binding.call_id, principal=self._principal, db=self.db,
                            now=dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC), idempotency_key=request_id)
        try:
            result = dict(action.run(r.request.params, ctx))
        except ActionError as exc:
            return ActionResult(False, reason=str(exc))
        self.executed.append(r.request)
        return ActionResult(True, result, audit_seq=len(self.executed))

    def abandon(self, request_id: str, reason: str) -> None:
        self.calls.append(("abandon", reason))
        if request_id in self._reqs:
            self._reqs[request_id].void = True

    def note_input(self, evidence: Evidence, reason: str, request_id: str | None = None) -> None:
        self.calls.append(("note_input", reason))
