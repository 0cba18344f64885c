"""What the safe path needs to know about a customer, from whoever keeps customers (the bank).

The gate asks only these questions. In particular it never asks "who is calling from this number": the
calling number (From, P-Asserted-Identity) is never an authenticator, and codes go to the number **on file**.
The dialplan's demo bank (``voiceivr/demo/actions.py``) implements this protocol for the demo;
:class:`InMemoryDirectory` serves tests and the abuse simulation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


class Directory(Protocol):
    def phone_on_file(self, principal: str) -> str | None:
        """E.164 number registered for out-of-band codes, or None (then SMS is not offered)."""

    def totp_secret(self, principal: str) -> str | None:
        """Base32 secret of the principal's authenticator app, or None if not enrolled."""

    def is_flagged(self, principal: str) -> bool:
        """True once the account is flagged (e.g. too many wrong codes): high actions are refused."""

    def flag_account(self, principal: str, reason: str) -> None:
        """Flag the account for review. Must be durable before it returns."""


@dataclass
class Customer:
    phone: str | None = None
    totp_secret: str | None = None
    flagged_reasons: list[str] = field(default_factory=list)


class InMemoryDirectory:
    """A directory held in memory (tests, simulations). Thread-safe."""

    def __init__(self, customers: dict[str, Customer] | None = None) -> None:
        self._customers = dict(customers or {})
        self._lock = threading.Lock()

    def add(self, principal: str, phone: str | None = None, totp_secret: str | None = None) -> Customer:
        with self._lock:
            customer = self._customers[principal] = Customer(phone, totp_secret)
            return customer

    def phone_on_file(self, principal: str) -> str | None:
        c = self._customers.get(principal)
        return c.phone if c else None

    def totp_secret(self, principal: str) -> str | None:
        c = self._customers.get(principal)
        return c.totp_secret if c else None

    def is_flagged(self, principal: str) -> bool:
        c = self._customers.get(principal)
        return bool(c and c.flagged_reasons)

    def flag_account(self, principal: str, reason: str) -> None:
        with self._lock:
            self._customers.setdefault(principal, Customer()).flagged_reasons.append(reason)

    def flags(self, principal: str) -> list[str]:
        c = self._customers.get(principal)
        return list(c.flagged_reasons) if c else []
