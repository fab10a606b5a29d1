"""Thread metadata kept verbatim and indexed for list_threads filters, message row format.

- ``convkit_threads.metadata`` becomes ``text`` on PostgreSQL (it was ``jsonb``, which rewrites
  numbers such as ``1e16`` or ``-0.0``), with a GIN index on ``(metadata::jsonb)`` serving the
  ``list_threads`` metadata filters. SQLite already stored the text convkit wrote.
- ``convkit_messages.format``: the row format a message was validated under; NULL for rows
  written before this revision, which are checked again when read.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Existing values are what jsonb kept; new ones are stored exactly as given.
        op.execute(
            "ALTER TABLE convkit_threads ALTER COLUMN metadata TYPE text USING metadata::text"
        )
        op.execute(
            "CREATE INDEX ix_convkit_threads_metadata ON convkit_threads "
            "USING gin ((metadata::jsonb) jsonb_path_ops)"
        )
    with op.batch_alter_table("convkit_messages") as batch:
        batch.add_column(sa.Column("format", sa.SmallInteger()))


def downgrade() -> None:
    with op.batch_alter_table("convkit_messages") as batch:
        batch.drop_column("format")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_convkit_threads_metadata")
        op.execute(
            "ALTER TABLE convkit_threads ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb"
        )
