"""The usage table, its migrations (Alembic, with a version table of its own) and its writes.

The table lives in the conversation's own database, beside convkit's tables. Its schema is
versioned by Alembic in ``convkit_usage_alembic_version`` — separate from convkit's version
table, so ``convkit db upgrade`` and this plugin's upgrades never step on each other. The
plugin upgrades the table the first time it writes to a database in a process (one cheap
``SELECT`` of the version row afterwards: none), and ``convkit usage migrate`` does it ahead of
time. Concurrent upgraders are serialized as convkit's own are: a SQLite write transaction
(``BEGIN IMMEDIATE``) or a PostgreSQL transaction-scoped advisory lock, the revision read after
the lock.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

__all__ = [
    "HEAD_REVISION",
    "TABLE_NAME",
    "VERSION_TABLE",
    "current_revision",
    "metadata",
    "upgrade_on",
    "usage_table",
]

#: The table one row per completions call goes to.
TABLE_NAME = "convkit_usage"
#: Alembic's version table for this plugin's schema (convkit's own is ``alembic_version``).
VERSION_TABLE = "convkit_usage_alembic_version"
#: The newest migration of the usage table.
HEAD_REVISION = "u0001"

# Any constant works; it only has to be the same in every process (and differ from convkit's).
_PG_LOCK = 0x636B5F7573616765  # "ck_usage"

metadata = MetaData()

usage_table = Table(
    TABLE_NAME,
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),  # UTC calendar day, YYYY-MM-DD
    Column("thread_id", String(64)),
    Column("purpose", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("response_model", String(200)),
    Column("response_id", String(200)),
    Column("status", String(16), nullable=False),
    Column("prompt_tokens", Integer()),
    Column("cached_tokens", Integer()),
    Column("completion_tokens", Integer()),
    Column("reasoning_tokens", Integer()),
    Column("total_tokens", Integer()),
    Column("cost_nanousd", BigInteger()),
    Index("ix_convkit_usage_thread_day", "thread_id", "day"),
    Index("ix_convkit_usage_day_model", "day", "model"),
)

# Connection pools of databases known to be at HEAD_REVISION.
_ready: weakref.WeakSet[Any] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "convkit_usage:migrations")
    config.attributes["connection"] = conn
    return config


def current_revision(conn: Connection) -> str | None:
    """The usage table's revision in the database on ``conn`` (None: not created yet)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade_on(conn: Connection) -> tuple[str | None, str | None]:
    """Bring the usage table to :data:`HEAD_REVISION` inside ``conn``'s transaction.

    Returns (revision before, revision after). Call it in a write transaction: on SQLite that
    holds the only write lock; on PostgreSQL an advisory lock is taken first. The revision is
    read after the lock, so only one of several concurrent processes migrates.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    before = current_revision(conn)
    if before != HEAD_REVISION:
        from alembic import command

        command.upgrade(_alembic_config(conn), "head")
    return before, current_revision(conn)


def ensure_on(conn: Connection) -> None:
    """Upgrade if this process has not yet seen the database at the newest revision.

    Known databases are remembered by connection pool (an engine and the engines derived from
    it with ``execution_options`` share one), so the check costs nothing after the first write.
    """
    pool = conn.engine.pool
    if pool in _ready:
        return
    if current_revision(conn) != HEAD_REVISION:
        upgrade_on(conn)
    with _ready_lock:
        _ready.add(pool)
