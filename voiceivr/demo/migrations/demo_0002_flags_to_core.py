"""the demo's customer flags move to the core's principal_flags; bank_customers.flagged is no longer used

Revision ID: demo_0002
Revises: demo_0001
Depends on: 0007 (principal_flags)
Create Date: 2026-12-05

Flags for review are the core's now, whoever provides identities (core revision 0007). A customer flagged in
the demo's own column stays flagged: the flag is copied to principal_flags and the column cleared. The column
itself stays, unused, like failed_logins since 0006: dropping it would make SQLite rebuild a table other tables
refer to, inside a migration's transaction, where foreign keys cannot be switched off. Downgrading sets it
again for every principal with a flag in force.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "demo_0002"
down_revision: str | None = "demo_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0007"

customers = sa.table("bank_customers", sa.column("id", sa.String), sa.column("flagged", sa.Boolean))
flags = sa.table("principal_flags", sa.column("principal", sa.String), sa.column("reason", sa.String),
                 sa.column("flagged_at", sa.DateTime(timezone=True)),
                 sa.column("cleared_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    conn = op.get_bind()
    flagged = [r.id for r in conn.execute(sa.select(customers.c.id).where(customers.c.flagged == sa.true()))]
    if flagged:
        # When they were flagged was never kept; the reason says where the flag came from.
        now = dt.datetime.now(dt.UTC)
        conn.execute(flags.insert(), [{"principal": p, "reason": "demo:customers.flagged", "flagged_at": now}
                                      for p in flagged])
        conn.execute(customers.update().where(customers.c.id.in_(flagged)).values(flagged=False))


def downgrade() -> None:
    active = sa.select(flags.c.principal).where(flags.c.cleared_at.is_(None))
    op.get_bind().execute(customers.update().where(customers.c.id.in_(active)).values(flagged=True))
