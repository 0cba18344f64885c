"""safe path: outbox send reconciliation, action run ownership and leases, single-use TOTP steps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

sms_outbox gains a non-secret reference printed in each message (so an ambiguous send can be looked up at the
provider before a retry), a retry time, a claim lease and an in-doubt flag. action_runs gains where its side
effect lives, which process owns it and until when. totp_used_steps keeps each (principal, 30 s step) that a
TOTP code was accepted for, so a code works once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pending_confirmations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), server_default="", nullable=False))

    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=16), server_default="", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("in_doubt", sa.Boolean(), server_default="0", nullable=False))

    with op.batch_alter_table("action_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("effect", sa.String(length=16), server_default="db", nullable=False))
        batch_op.add_column(sa.Column("owner", sa.String(length=128), server_default="", nullable=False))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "totp_used_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_used_steps")),
        sa.UniqueConstraint("principal", "step", name="uq_totp_used_steps_principal_step"),
    )


def downgrade() -> None:
    op.drop_table("totp_used_steps")
    with op.batch_alter_table("action_runs", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("owner")
        batch_op.drop_column("effect")
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_column("in_doubt")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("reference")
    with op.batch_alter_table("pending_confirmations", schema=None) as batch_op:
        batch_op.drop_column("request_id")
