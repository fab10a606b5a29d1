"""Summaries record the counting rules their token count was made with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: summaries stored before this revision have no key, so a policy recounts them.
    with op.batch_alter_table("convkit_summaries") as batch:
        batch.add_column(sa.Column("counted_with", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("convkit_summaries") as batch:
        batch.drop_column("counted_with")
