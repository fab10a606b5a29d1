"""Threads carry an incarnation: a random id given when the thread row is created.

``convkit_threads.incarnation`` is set when a thread is created, forked or imported, and never
changes. Messages are append-only, so the rows of one incarnation never change either: a
store may keep the newest rows it read and, on the next read, fetch only what was appended
since. A thread deleted and created again under the same id (or imported) has another
incarnation, and nothing kept from before is used. Existing threads get one here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("convkit_threads") as batch:
        batch.add_column(sa.Column("incarnation", sa.String(32)))
    if op.get_bind().dialect.name == "postgresql":
        fill = "md5(random()::text || clock_timestamp()::text || id)"
    else:
        fill = "lower(hex(randomblob(16)))"
    op.execute(f"UPDATE convkit_threads SET incarnation = {fill}")


def downgrade() -> None:
    with op.batch_alter_table("convkit_threads") as batch:
        batch.drop_column("incarnation")
