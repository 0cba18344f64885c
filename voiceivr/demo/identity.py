"""The demo bank's identity provider (entry point ``voiceivr.identity = demo``): the phone on file and the TOTP
secret of its customers, from its own table.

Its login action (:func:`voiceivr.demo.actions.login`) returns only the principal and a first name, so the
contact details are looked up here; an HTTP backend would return them in its login reply instead. Flags and
lockouts are not the demo's: the core keeps them (``principal_flags``, ``login_lockouts``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.demo.actions import customers_t
from voiceivr.errors import ConfigError
from voiceivr.policy.identity import Contact, totp_step
from voiceivr.settings import Settings


class DemoIdentity:
    """:class:`~voiceivr.policy.identity.IdentityProvider` over the demo's ``bank_customers``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _row(self, principal: str) -> Mapping[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(customers_t.c.phone_on_file, customers_t.c.totp_secret)
                               .where(customers_t.c.id == principal)).mappings().first()
        return dict(row) if row is not None else None

    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        row = self._row(principal)
        if row is None:
            return None
        return Contact(principal, row["phone_on_file"] or None, bool(row["totp_secret"]))

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        row = self._row(principal)
        if row is None or not row["totp_secret"]:
            return None
        return totp_step(row["totp_secret"], code, at, window)


def provider(settings: Settings, engine: Engine | None) -> DemoIdentity:
    """The demo bank's customers (phone on file, TOTP), from its tables."""
    if engine is None:
        raise ConfigError("the demo plugin's identity provider needs the database (database.url)")
    return DemoIdentity(engine)
