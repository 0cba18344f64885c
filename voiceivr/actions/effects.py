"""What the runner runs: an action as an effect in this database (:class:`DbAction`, applied inside the
transaction that records its result) or elsewhere (:class:`ExternalAction`, called with the idempotency key),
the context it is given, the two ways it may fail, the :class:`RunnerRegistry` that names them, and the bridge
from the dialplan's declared actions (:mod:`voiceivr.actions.registry`) to these.

The runner itself (write-ahead audit, one run per key, crash recovery) is :mod:`voiceivr.actions.runner`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Connection, Engine

from voiceivr.actions.registry import Action as DialplanAction
from voiceivr.actions.registry import ActionContext as DialplanContext
from voiceivr.actions.registry import ActionError, ActionOutcomeUnknown, ActionRegistry, UnknownAction
from voiceivr.settings import PolicySettings

Effect = Literal["db", "external", "external_once"]


class OutcomeUnknown(Exception):
    """The remote may have acted (it timed out after the request left): recorded ``unknown``, never ``failed``.
    ``message`` is what the caller hears; ``details`` go to the audit trail."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class ActionFailed(Exception):
    """The action ran and said no (insufficient funds, unknown payee). Not a crash: it is recorded as failed.

    ``reason`` is a short machine-readable word; ``details`` go to the audit trail.
    """

    def __init__(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = dict(details or {})


@dataclass(frozen=True)
class RunContext:
    """What an action may know about who asked. ``principal`` is the authenticated customer, if any."""

    idempotency_key: str
    call_id: str | None = None
    principal: str | None = None
    session_id: str = ""
    intent_seq: int | None = None  # the committed action.intent row's sequence number (set by the runner)


DbApply = Callable[[Connection, Mapping[str, Any], RunContext], Mapping[str, Any]]
ExternalCall = Callable[[Mapping[str, Any], RunContext], Mapping[str, Any]]


ParamCheck = Callable[[Mapping[str, Any]], list[str]]


def _no_problems(params: Mapping[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class DbAction:
    """A side effect in this database: ``apply`` runs inside the transaction that records the result.

    ``apply`` must use only the connection it is given (no commits, no other connections) and return a JSON
    mapping; it raises :class:`ActionFailed` to refuse.

    ``risk`` is the action's own floor (the gate takes the higher of it and the dialplan's); ``authenticates``:
    a success returns ``{"principal": ...}`` that ``gate.login`` may then bind; ``requires_login``: refused
    without an authenticated principal; ``check`` lists problems with the parameters (empty when fine).
    """

    name: str
    apply: DbApply
    secret_params: frozenset[str] = frozenset()
    risk: str = "low"
    authenticates: bool = False
    requires_login: bool = False
    check: ParamCheck = _no_problems
    effect: Effect = field(default="db", init=False)


@dataclass(frozen=True)
class ExternalAction:
    """A side effect elsewhere (a webhook, a core system's API). ``call`` receives the idempotency key in the
    context and must pass it on. ``remote_dedupes``: the remote answers a repeated key with the first result
    (then a crash mid-call is settled by calling again); otherwise the action is never called twice."""

    name: str
    call: ExternalCall
    remote_dedupes: bool = True
    secret_params: frozenset[str] = frozenset()
    risk: str = "low"
    authenticates: bool = False
    requires_login: bool = False
    check: ParamCheck = _no_problems

    @property
    def effect(self) -> Effect:
        return "external" if self.remote_dedupes else "external_once"


Action = DbAction | ExternalAction


class RunnerRegistry:
    """The actions a dialplan may name, by name."""

    def __init__(self, actions: Mapping[str, Action] | None = None) -> None:
        self._actions: dict[str, Action] = {}
        for action in (actions or {}).values():
            self.register(action)

    def register(self, action: Action) -> Action:
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} is registered twice")
        self._actions[action.name] = action
        return action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(
                f"no action named {name!r}", hint=f"known actions: {', '.join(sorted(self._actions)) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    @classmethod
    def from_actions(cls, actions: ActionRegistry, engine: Engine | None,
                     clock: Callable[[], dt.datetime] | None = None,
                     policy: PolicySettings | None = None) -> RunnerRegistry:
        """The dialplan's actions (:mod:`voiceivr.actions.registry`) as runner actions.

        They open their own transactions, so to the runner they are *external*. One that declares ``dedupes``
        (the same idempotency key changes nothing twice) is ``external``: a run a crash left unresolved is
        settled by calling it again with the same key; any other is ``external_once``, never called twice.
        An :class:`~voiceivr.actions.registry.ActionError` is a refusal
        the caller may hear; its message becomes the reason. ``policy`` reaches the actions in their context
        (the login's lockout limits); None: the defaults.
        """
        now = clock or utcnow
        reg = cls()
        for action in actions:
            reg.register(ExternalAction(
                action.name, _dialplan_call(action, engine, now, policy), remote_dedupes=action.dedupes,
                secret_params=frozenset(p.name for p in action.params if p.secret), risk=action.risk,
                authenticates=action.authenticates, requires_login=action.requires_login,
                check=action.check_params,
            ))
        return reg


def _dialplan_call(action: DialplanAction, engine: Engine | None, now: Callable[[], dt.datetime],
                   policy: PolicySettings | None) -> ExternalCall:
    def call(params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
        try:
            return action.run(params, DialplanContext(call_id=ctx.call_id or "", principal=ctx.principal, db=engine,
                                                      now=now(), idempotency_key=ctx.idempotency_key, policy=policy,
                                                      intent_seq=ctx.intent_seq))
        except ActionOutcomeUnknown as exc:
            raise OutcomeUnknown(str(exc), exc.details) from None
        except ActionError as exc:
            raise ActionFailed(str(exc), exc.details) from None

    return call



def redact_params(params: Mapping[str, Any], secret: frozenset[str], key: bytes) -> dict[str, Any]:
    """Secret parameters become a keyed hash (a plain hash of a 4-digit PIN is no secret at all)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k in secret:
            out[k] = "hmac:" + hmac.new(key, f"param:{k}:{v}".encode(), hashlib.sha256).hexdigest()[:16]
        else:
            out[k] = v
    return out


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
