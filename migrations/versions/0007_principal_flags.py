"""principal_flags: flags for review kept by the core, keyed by principal, whoever provides identities

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

Until now a flag (too many wrong codes) lived in the identity provider's own table (the demo bank's
customers.flagged). Identity now comes from plugins and HTTP backends, which should not have to keep the
safe path's state, so flags move to the core like login lockouts (0006) and code failures. The demo plugin's
migration branch copies its customers' flags here (voiceivr/demo/migrations).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "principal_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principal_flags")),
    )
    with op.batch_alter_table("principal_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_principal_flags_principal"), ["principal"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("principal_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_principal_flags_principal"))
    op.drop_table("principal_flags")
