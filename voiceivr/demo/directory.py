"""The demo bank's customers as the safe path's :class:`~voiceivr.policy.directory.Directory`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class BankDirectory:
    """The demo bank's customers (voiceivr.demo.actions) as a :class:`Directory`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def phone_on_file(self, principal: str) -> str | None:
        from voiceivr.demo.actions import contact_for

        contact = contact_for(self.engine, principal)
        return contact.phone_on_file if contact and contact.phone_on_file else None

    def totp_secret(self, principal: str) -> str | None:
        from voiceivr.demo.actions import contact_for

        contact = contact_for(self.engine, principal)
        return contact.totp_secret if contact else None

    def is_flagged(self, principal: str) -> bool:
        from voiceivr.demo.actions import customers_t

        with self.engine.connect() as conn:
            row = conn.execute(sa.select(customers_t.c.flagged, customers_t.c.locked)
                               .where(customers_t.c.id == principal)).first()
        return bool(row and (row.flagged or row.locked))

    def flag_account(self, principal: str, reason: str) -> None:
        from voiceivr.demo.actions import flag_customer

        flag_customer(self.engine, principal)
