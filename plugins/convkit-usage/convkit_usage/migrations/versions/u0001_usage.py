"""The usage table: one row per completions call.

Revision ID: u0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "u0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Frozen column types as of this revision (never import the live table here).
    op.create_table(
        "convkit_usage",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("thread_id", sa.String(64)),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("response_model", sa.String(200)),
        sa.Column("response_id", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("prompt_tokens", sa.Integer()),
        sa.Column("cached_tokens", sa.Integer()),
        sa.Column("completion_tokens", sa.Integer()),
        sa.Column("reasoning_tokens", sa.Integer()),
        sa.Column("total_tokens", sa.Integer()),
        sa.Column("cost_nanousd", sa.BigInteger()),
    )
    op.create_index("ix_convkit_usage_thread_day", "convkit_usage", ["thread_id", "day"])
    op.create_index("ix_convkit_usage_day_model", "convkit_usage", ["day", "model"])


def downgrade() -> None:
    op.drop_index("ix_convkit_usage_day_model", table_name="convkit_usage")
    op.drop_index("ix_convkit_usage_thread_day", table_name="convkit_usage")
    op.drop_table("convkit_usage")
