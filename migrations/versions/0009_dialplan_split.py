"""dialplan_split: an A/B split of a dialplan's new calls between a chosen version and the live one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The console (and `voiceivr dialplan split`) can give a percentage of new calls to another published version
of a dialplan, chosen per caller by a stable hash of the caller's number (voiceivr/dialplan/split.py). Each
call already records the version it ran (calls.dialplan_version_id), so `voiceivr stats` compares outcomes
per version.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dialplan_splits",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["dialplan_versions.id"],
                                name=op.f("fk_dialplan_splits_version_id_dialplan_versions")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dialplan_splits")),
    )


def downgrade() -> None:
    op.drop_table("dialplan_splits")
