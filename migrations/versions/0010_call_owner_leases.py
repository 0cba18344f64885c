"""call_owner_leases: which process carries each call, and whether it is still alive

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

A call's row is completed by the process that carries it. When that process dies (kill -9 of a node or of one
worker) the row would stay "in progress" for ever. Each serving process now keeps a lease row
(call_owner_leases: owner, node, pid, heartbeat_at, lease_until) and stamps its calls with the same owner
(calls.owner). Any other live process marks the open calls of an owner whose lease ran out as outcome "lost"
(voiceivr/call/lost.py), and `voiceivr stats` counts them so even with no process left to mark them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_owner_leases",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_call_owner_leases")),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
    # Only open calls: every live process looks for gone owners' open calls every few seconds.
    op.create_index("ix_calls_open_owner", "calls", ["owner"], unique=False,
                    sqlite_where=sa.text("ended_at IS NULL"), postgresql_where=sa.text("ended_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_calls_open_owner", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("owner")
    op.drop_table("call_owner_leases")
