"""An identity provider held in memory, for tests and for plugin authors' own tests."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voiceivr.policy.identity import Contact, totp_step


@dataclass
class Person:
    phone: str | None = None
    totp_secret: str | None = None


class InMemoryIdentity:
    """:class:`~voiceivr.policy.identity.IdentityProvider` over a dict. Thread-safe; records every question."""

    def __init__(self, people: dict[str, Person] | None = None) -> None:
        self._people = dict(people or {})
        self._lock = threading.Lock()
        self.logins: list[tuple[str, dict[str, Any]]] = []  # (principal, login result) as the gate passed them

    def add(self, principal: str, phone: str | None = None, totp_secret: str | None = None) -> Person:
        with self._lock:
            person = self._people[principal] = Person(phone, totp_secret)
            return person

    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        with self._lock:
            self.logins.append((principal, dict(login)))
            p = self._people.get(principal)
        return Contact(principal, p.phone, p.totp_secret is not None) if p else None

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        p = self._people.get(principal)
        return totp_step(p.totp_secret, code, at, window) if p and p.totp_secret else None
