"""Messages record the counting rules their token count was made with.

``convkit_messages.counted_with`` holds ``convkit.context.counting_key`` of the counter that
made ``tokens``: the encoding *and* the per-message overheads (two models can share an encoding
and frame messages differently). NULL for rows written before this revision, whose rules are
unknown: a window recounts them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("convkit_messages") as batch:
        batch.add_column(sa.Column("counted_with", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("convkit_messages") as batch:
        batch.drop_column("counted_with")
