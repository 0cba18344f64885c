"""the demo bank's tables: moved to the demo plugin's own branch (voiceivr/demo/migrations, demo_0001)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

This revision used to create the demo bank behind dialplans/bank.yaml (customers, accounts, payees, cards,
addresses, transfers). The demo is a plugin now, with its own Alembic branch, so the core's chain makes no
table of it: this revision stays, empty, because databases are stamped with it. A database upgraded through
the old 0003 keeps its tables and data; the demo branch's first revision adopts them.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
