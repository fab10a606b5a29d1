"""The cache table and its statements, written once for the sync and the async store.

The table lives in the conversation's own database, beside convkit's tables, and is created
on first use with ``CREATE TABLE IF NOT EXISTS`` (SQLAlchemy Core, no migration). Each
operation is a generator that yields statements and receives their results; :func:`run` and
:func:`arun` perform it on a sync :class:`~sqlalchemy.engine.Engine` or an
:class:`~sqlalchemy.ext.asyncio.AsyncEngine`, in one transaction. A write transaction's first
statement is a write, so on SQLite it takes the write lock at once (waiting out another
process's writer with the store's busy timeout) and never has to upgrade a read lock:
several processes can share one file.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["TABLE", "arun", "entries", "lookup", "put", "run"]

#: The table's name.
TABLE = "convkit_cache_entries"

metadata = MetaData()

#: One cached answer per key: the SHA-256 of what the request would have sent.
entries = Table(
    TABLE,
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Index("ix_convkit_cache_entries_created_at", "created_at"),
)

T = TypeVar("T")
Op = Generator[Any, Any, T]


def lookup(key: str, since: float | None) -> Op[tuple[str, float] | None]:
    """``key``'s cached response JSON and when it was stored (epoch seconds), if stored at or
    after ``since`` (None: any age)."""
    query = select(entries.c.response, entries.c.created_at).where(entries.c.key == key)
    if since is not None:
        query = query.where(entries.c.created_at >= since)
    rows = yield query
    return (str(rows[0][0]), float(rows[0][1])) if rows else None


def _upsert(dialect: str, row: dict[str, Any]) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ins = sqlite_insert(entries).values(**row)
        return ins.on_conflict_do_update(
            index_elements=[entries.c.key],
            set_={k: ins.excluded[k] for k in ("model", "created_at", "size", "response")},
        )
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pins = pg_insert(entries).values(**row)
        return pins.on_conflict_do_update(
            index_elements=[entries.c.key],
            set_={k: pins.excluded[k] for k in ("model", "created_at", "size", "response")},
        )
    return None


def put(
    dialect: str,
    row: dict[str, Any],
    *,
    expired_before: float | None,
    max_entries: int | None,
    max_bytes: int | None,
) -> Op[int]:
    """Store one entry (replacing an older one of the same key), then enforce the limits.

    Expired entries go first; then, oldest first, whatever is over ``max_entries`` or
    ``max_bytes``. Returns how many entries were evicted.
    """
    upsert = _upsert(dialect, row)
    if upsert is None:  # another database: replace by hand inside the transaction
        yield delete(entries).where(entries.c.key == row["key"])
        yield entries.insert().values(**row)
    else:
        yield upsert
    evicted = 0
    if expired_before is not None:
        evicted += yield delete(entries).where(entries.c.created_at < expired_before)
    if max_entries is None and max_bytes is None:
        return evicted
    [(count, total)] = yield select(func.count(), func.coalesce(func.sum(entries.c.size), 0))
    over_count = max_entries is not None and count > max_entries
    over_bytes = max_bytes is not None and total > max_bytes
    if not over_count and not over_bytes:
        return evicted
    # Walk from the newest down, keeping what fits; everything older goes.
    rows = yield select(entries.c.key, entries.c.size).order_by(
        entries.c.created_at.desc(), entries.c.key.desc()
    )
    kept, size, doomed = 0, 0, []
    for key, entry_size in rows:
        if (max_entries is not None and kept + 1 > max_entries) or (
            max_bytes is not None and size + entry_size > max_bytes
        ):
            doomed.append(key)
            continue
        kept += 1
        size += entry_size
    for start in range(0, len(doomed), 500):
        evicted += yield delete(entries).where(entries.c.key.in_(doomed[start : start + 500]))
    return evicted


# --------------------------------------------------------------------------- drivers

_ready: weakref.WeakSet[Any] = weakref.WeakSet()


def _result(res: Any) -> Any:
    return res.fetchall() if res.returns_rows else res.rowcount


def _ensure(engine: Any) -> None:
    if engine in _ready:
        return
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)
            break
        except SQLAlchemyError:
            # Two processes creating the table at once: the loser sees it exist next time.
            if attempt == 1:
                raise
    _ready.add(engine)


async def _aensure(engine: Any) -> None:
    if engine in _ready:
        return
    for attempt in range(2):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all, checkfirst=True)
            break
        except SQLAlchemyError:
            if attempt == 1:
                raise
    _ready.add(engine)


def run(engine: Any, op: Op[T]) -> T:
    """Perform ``op`` on a sync engine, in one transaction."""
    _ensure(engine)
    with engine.begin() as conn:
        try:
            stmt = next(op)
            while True:
                stmt = op.send(_result(conn.execute(stmt)))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def arun(engine: Any, op: Op[T]) -> T:
    """Perform ``op`` on an async engine, in one transaction."""
    await _aensure(engine)
    async with engine.begin() as conn:
        try:
            stmt = next(op)
            while True:
                stmt = op.send(_result(await conn.execute(stmt)))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
