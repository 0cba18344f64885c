"""limits that calls cannot race or reset: wrong codes per principal, temporary login lockouts, notices

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

code_failures keeps one row per wrong out-of-band code that was compared (never the code), so the limits count
per principal and per request across calls, re-INVITEs and requests, under a per-principal lock.
login_lockouts keeps each principal's wrong PINs and its temporary lockout with growing back-off (it replaces
the demo bank's lock for good). sms_outbox may now carry a notice that is not a code: confirmation_id becomes
nullable and a purpose says which (code | lockout).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_failures")),
    )
    op.create_index("ix_code_failures_principal_at", "code_failures", ["principal", "at"], unique=False)

    op.create_table(
        "login_lockouts",
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unlocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("principal", name=op.f("pk_login_lockouts")),
    )

    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=16), server_default="code", nullable=False))
        batch_op.alter_column("confirmation_id", existing_type=sa.String(length=36), nullable=True)


def downgrade() -> None:
    # Notices have no confirmation; the older schema cannot hold them (they are sent or erased text by now).
    op.execute("DELETE FROM sms_outbox WHERE confirmation_id IS NULL")
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.alter_column("confirmation_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_column("purpose")
    op.drop_table("login_lockouts")
    op.drop_index("ix_code_failures_principal_at", table_name="code_failures")
    op.drop_table("code_failures")
