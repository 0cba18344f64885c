"""The actions a dialplan may call: name, risk, typed parameters, and the function that does the work.

A dialplan names actions; loading it checks every name, parameter and type against a registry, so an
unknown action is a validation error, never a mid-call surprise. The dialplan engine never calls
:attr:`Action.run`: it builds an :class:`~voiceivr.policy.gate.ActionRequest` and the call's gate runs the
action (after the safe path, for high risk), with write-ahead audit and one run per idempotency key.

Parameters and results are *canonical* JSON-safe values, so they can be audited and hashed as they are:

=========  ======================================  ============================
type       Python value                            slot type that can fill it
=========  ======================================  ============================
money      ``int`` cents                           money
digits     ``str`` of 0-9                          digits
date       ``str`` ISO date, ``YYYY-MM-DD``        date
bool       ``bool``                                yesno
str        ``str``                                 choice, text, address, or a literal
address    ``str``, a postal address               address
=========  ======================================  ============================

An ``address`` is checked for being one (:mod:`voiceivr.actions.address`) wherever parameters are checked,
so the gate refuses an instruction dressed as an address whatever filled it.

An action signals a failure the caller may hear ("insufficient funds") by raising :class:`ActionError`;
anything else it raises is a bug, reported as a generic failure.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Engine

from voiceivr.actions.address import address_problem
from voiceivr.errors import VoiceivrError
from voiceivr.settings import PolicySettings, Settings

Risk = Literal["low", "high"]
ParamType = Literal["money", "digits", "date", "bool", "str", "address"]
PARAM_TYPES: tuple[str, ...] = ("money", "digits", "date", "bool", "str", "address")

# Which slot types can fill a parameter of each type.
SLOT_TYPES_FOR_PARAM: Mapping[str, frozenset[str]] = {
    "money": frozenset({"money"}),
    "digits": frozenset({"digits"}),
    "date": frozenset({"date"}),
    "bool": frozenset({"yesno"}),
    "str": frozenset({"choice", "text", "digits", "address"}),
    "address": frozenset({"address"}),  # never a text slot: an address must be checked as one when it is heard
}


class ActionError(VoiceivrError):
    """An expected failure of an action; the message is safe to say to the caller. ``details`` (JSON values,
    never a secret) go to the audit trail's result row: what went wrong, for an operator."""

    def __init__(self, message: str, hint: str | None = None, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint)
        self.details = dict(details or {})


class ActionOutcomeUnknown(ActionError):
    """The action may or may not have happened (a remote timed out after the request left): the run is recorded
    ``unknown``, and settled later by calling again with the same idempotency key if the action ``dedupes``.
    The message is still what the caller hears."""


class UnknownAction(VoiceivrError):
    pass


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    required: bool = True
    secret: bool = False  # never audited in clear or logged (a PIN): the runner stores a digest
    description: str = ""


@dataclass(frozen=True)
class ActionContext:
    """What an action may know about the call that asked for it."""

    call_id: str
    principal: str | None  # the authenticated customer, if any
    db: Engine | None
    now: dt.datetime
    idempotency_key: str = ""
    # The policy an identifying action applies to wrong secrets (lockout limits); None: the defaults.
    policy: PolicySettings | None = None
    # The audit sequence number of this run's write-ahead "action.intent" row, committed before the action
    # was called (a backend can quote it; the trail's row names the same idempotency key).
    intent_seq: int | None = None


ActionFn = Callable[[Mapping[str, Any], ActionContext], Mapping[str, Any]]


@dataclass(frozen=True)
class Action:
    name: str
    risk: Risk
    params: tuple[Param, ...]
    run: ActionFn
    returns: Mapping[str, ParamType] = field(default_factory=dict)
    requires_login: bool = False  # refuse unless the call has an authenticated principal
    authenticates: bool = False  # a success returns {"principal": ...} for gate.login()
    description: str = ""
    readback: str = ""  # default read-back if policy escalates a low action to the safe path
    # True: called again with the same ctx.idempotency_key it changes nothing and returns the first result, so a
    # run a crash left unresolved is settled by calling it again. False: never called twice for one key; such a
    # run is left "unknown" for an operator (voiceivr.actions.runner).
    dedupes: bool = False

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def check_params(self, params: Mapping[str, Any]) -> list[str]:
        """Problems with canonical parameter values (empty when they are fine)."""
        problems = []
        for p in self.params:
            if p.name not in params:
                if p.required:
                    problems.append(f"{self.name}: missing parameter {p.name!r}")
                continue
            if p.type == "address":  # the reason only: the value may be an attack, and reasons are logged
                why = address_problem(params[p.name]) if isinstance(params[p.name], str) else "not text"
                if why:
                    problems.append(f"{self.name}: parameter {p.name!r} must be a postal address ({why})")
            elif not value_has_type(params[p.name], p.type):
                problems.append(f"{self.name}: parameter {p.name!r} must be {p.type}, got {params[p.name]!r}")
        for name in params:
            if self.param(name) is None:
                problems.append(f"{self.name}: unknown parameter {name!r}")
        return problems


def value_has_type(value: Any, ptype: str) -> bool:
    if ptype == "money":
        return isinstance(value, int) and not isinstance(value, bool)
    if ptype == "digits":
        return isinstance(value, str) and value.isdigit()
    if ptype == "date":
        return isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None
    if ptype == "bool":
        return isinstance(value, bool)
    if ptype == "address":
        return isinstance(value, str) and address_problem(value) is None
    return isinstance(value, str)


class ActionRegistry:
    def __init__(self, actions: Mapping[str, Action] | None = None) -> None:
        self._actions: dict[str, Action] = dict(actions or {})
        self.origin = ""  # where the actions came from, for the hint of an unknown one

    def register(self, action: Action) -> Action:
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} is already registered")
        for p in action.params:
            if p.type not in PARAM_TYPES:
                raise ValueError(f"action {action.name!r}: parameter {p.name!r} has unknown type {p.type!r}")
        self._actions[action.name] = action
        return action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            origin = f"; actions come from {self.origin}" if self.origin else ""
            raise UnknownAction(
                f"unknown action {name!r}",
                hint=f"known actions: {', '.join(sorted(self._actions)) or 'none'}{origin}",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def names(self) -> list[str]:
        return sorted(self._actions)


# What a plugin registers under the entry point group ``voiceivr.actions``: called once per registry with the
# node's settings, it returns the plugin's actions.
ActionProvider = Callable[[Settings], Iterable[Action]]


def plugin_actions(settings: Settings | None = None, names: Sequence[str] | None = None) -> dict[str, list[Action]]:
    """The actions of each enabled plugin (``plugins.enabled``, or ``names``), by plugin name, in that order.

    A provider that is not callable, raises, or yields something other than an :class:`Action` is a
    :class:`~voiceivr.plugins.PluginError` naming the plugin."""
    from voiceivr import plugins
    from voiceivr.settings import load_settings

    settings = settings or load_settings()[0]
    out: dict[str, list[Action]] = {}
    for name, provider in plugins.enabled(plugins.ACTIONS, settings.plugins.enabled if names is None else names):
        if not callable(provider):
            raise plugins.describe_error(name, plugins.ACTIONS, "is not callable; it must be a function "
                                         "(settings) -> iterable of voiceivr.actions.registry.Action")
        try:
            actions = list(provider(settings))
        except VoiceivrError:
            raise
        except Exception as exc:
            raise plugins.describe_error(name, plugins.ACTIONS,
                                         f"raised {type(exc).__name__}: {exc}") from None
        wrong = [a for a in actions if not isinstance(a, Action)]
        if wrong:
            raise plugins.describe_error(name, plugins.ACTIONS,
                                         f"returned {type(wrong[0]).__name__}, not voiceivr.actions.registry.Action")
        out[name] = actions
    return out
