"""Persistence: threads, messages and summaries in SQLite or PostgreSQL through SQLAlchemy.

:class:`Store` (sync) and :class:`AsyncStore` (asyncio) share every statement; the values they
return (:class:`Thread`, :class:`StoredMessage`, :class:`Summary`, :class:`ThreadPage`) are
frozen attrs classes, separate from the SQLAlchemy row classes in ``convkit.store._rows``.

Importing this module only imports SQLAlchemy: no engine, file or connection is created until
a store is constructed.

Example::

    from convkit.store import Store

    with Store("sqlite:///chat.db", create_tables=True) as store:
        thread = store.create_thread()
        store.append(thread.id, {"role": "user", "content": "Hi"})
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from convkit.store._async import AsyncStore
from convkit.store._base import UNSET, NewMessage, TokenCounterLike, database_errors
from convkit.store._engine import (
    ENV_URL,
    HEAD_REVISION,
    WRITE,
    current_revision,
    ensure_sqlite_dir,
    make_sync_engine,
    parse_url,
    resolve_url,
    run_upgrade,
)
from convkit.store._jsonl import FORMAT as EXPORT_FORMAT
from convkit.store._jsonl import VERSION as EXPORT_VERSION
from convkit.store._sync import Store
from convkit.store._values import (
    MAX_METADATA_BYTES,
    StoredMessage,
    StoreValueError,
    Summary,
    Thread,
    ThreadPage,
)

__all__ = [
    "ENV_URL",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "HEAD_REVISION",
    "MAX_METADATA_BYTES",
    "UNSET",
    "AsyncStore",
    "NewMessage",
    "Store",
    "StoreValueError",
    "StoredMessage",
    "Summary",
    "Thread",
    "ThreadPage",
    "TokenCounterLike",
    "default_url",
    "schema_revision",
    "upgrade",
]


def default_url() -> URL:
    """The URL a ``Store()`` opens: ``$CONVKIT_DATABASE_URL``, else the default SQLite file."""
    return resolve_url(None)[0]


def upgrade(url: str | URL | None = None) -> tuple[str | None, str | None]:
    """Apply convkit's migrations to a database; return (revision before, revision after).

    ``convkit db upgrade --url URL`` calls this. Async URLs are accepted (the sync driver is
    used). Safe to run from several processes at once: only one migrates.
    """
    resolved = parse_url(url) if url is not None else default_url()
    ensure_sqlite_dir(resolved)
    engine = make_sync_engine(resolved)
    try:
        with database_errors(resolved), engine.execution_options(**WRITE).begin() as conn:
            return run_upgrade(conn)
    finally:
        engine.dispose()


def schema_revision(url: str | URL | None = None) -> str | None:
    """The schema revision of a database (None: no convkit tables); compare with HEAD_REVISION."""
    resolved = parse_url(url) if url is not None else default_url()
    database = resolved.database
    if (
        resolved.get_backend_name() == "sqlite"
        and database not in (None, "", ":memory:")
        and not Path(str(database)).expanduser().exists()
    ):
        return None  # do not create an empty file just to look at it
    engine = make_sync_engine(resolved)
    try:
        with database_errors(resolved), engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()
