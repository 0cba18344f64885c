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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Engine

from voiceivr.actions.address import address_problem
from voiceivr.errors import VoiceivrError
from voiceivr.settings import PolicySettings

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
    """An expected failure of an action; the message is safe to say to the caller."""


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
            raise UnknownAction(
                f"unknown action {name!r}", hint=f"known actions: {', '.join(sorted(self._actions)) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def names(self) -> list[str]:
        return sorted(self._actions)


def builtin_registry() -> ActionRegistry:
    """Every action that ships with voiceivr (today: the demo bank)."""
    from voiceivr.demo import actions as bank

    registry = ActionRegistry()
    for action in bank.ACTIONS:
        registry.register(action)
    return registry
