"""Initial schema: threads, messages, summaries.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as of this revision (never import the live models here:
# a later change to the models must not rewrite history).
_METADATA_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "convkit_threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text()),
        sa.Column("metadata", _METADATA_JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column(
            "parent_id",
            sa.String(64),
            sa.ForeignKey("convkit_threads.id", name="fk_convkit_threads_parent"),
        ),
        sa.Column("fork_seq", sa.Integer()),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_seq >= 0", name="ck_convkit_threads_last_seq"),
    )
    op.create_index("ix_convkit_threads_created", "convkit_threads", ["created_at", "id"])
    op.create_index("ix_convkit_threads_parent", "convkit_threads", ["parent_id"])
    op.create_table(
        "convkit_messages",
        sa.Column(
            "thread_id",
            sa.String(64),
            sa.ForeignKey(
                "convkit_threads.id", ondelete="CASCADE", name="fk_convkit_messages_thread"
            ),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("usage", sa.JSON()),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("metadata", sa.JSON()),
        sa.CheckConstraint(
            "status IN ('complete', 'incomplete')", name="ck_convkit_messages_status"
        ),
        sa.CheckConstraint("seq >= 1", name="ck_convkit_messages_seq"),
    )
    op.create_table(
        "convkit_summaries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "thread_id",
            sa.String(64),
            sa.ForeignKey(
                "convkit_threads.id", ondelete="CASCADE", name="fk_convkit_summaries_thread"
            ),
            nullable=False,
        ),
        sa.Column("covers_through_seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("created_at", _utc(), nullable=False),
    )
    op.create_index(
        "ix_convkit_summaries_thread",
        "convkit_summaries",
        ["thread_id", "covers_through_seq", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_convkit_summaries_thread", table_name="convkit_summaries")
    op.drop_table("convkit_summaries")
    op.drop_table("convkit_messages")
    op.drop_index("ix_convkit_threads_parent", table_name="convkit_threads")
    op.drop_index("ix_convkit_threads_created", table_name="convkit_threads")
    op.drop_table("convkit_threads")
