"""Writing usage rows and reading the report, on sync and async engines alike."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, func, insert, inspect, select

import convkit.store
from convkit_usage._schema import TABLE_NAME, ensure_on, usage_table

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from convkit_usage import CallRecord, UsageRow

__all__ = ["WRITE_OPTIONS", "query_report", "report_statement", "write_async", "write_sync"]

_NANO = Decimal(1_000_000_000)

#: The execution options of a convkit write transaction (on SQLite: ``BEGIN IMMEDIATE``, so a
#: writer waits its turn instead of failing half-way). ``convkit.store`` has the value but does
#: not list it among its public names yet; without it a plain transaction is used.
WRITE_OPTIONS: dict[str, Any] = dict(getattr(convkit.store, "WRITE", {}))


def _insert(conn: Connection, record: CallRecord) -> None:
    ensure_on(conn)
    conn.execute(insert(usage_table), record.as_row())


def write_sync(engine: Engine, record: CallRecord) -> None:
    """Insert one row in its own write transaction (the table is created on first use)."""
    with engine.execution_options(**WRITE_OPTIONS).begin() as conn:
        _insert(conn, record)


async def write_async(engine: AsyncEngine, record: CallRecord) -> None:
    """Async :func:`write_sync`."""
    async with engine.execution_options(**WRITE_OPTIONS).begin() as conn:
        await conn.run_sync(_insert, record)


def report_statement(
    *, thread: str | None = None, since: str | None = None, model: str | None = None
) -> Any:
    """The one ``SELECT ... GROUP BY day, thread, model`` the report runs."""
    t = usage_table.c
    unpriced = func.sum(case((t.cost_nanousd.is_(None), 1), else_=0))
    stmt = select(
        t.day,
        t.thread_id,
        t.model,
        func.count().label("calls"),
        func.coalesce(func.sum(t.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(t.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(t.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(t.total_tokens), 0).label("total_tokens"),
        func.sum(t.cost_nanousd).label("cost_nanousd"),
        unpriced.label("unpriced_calls"),
    )
    if thread is not None:
        stmt = stmt.where(t.thread_id == thread)
    if since is not None:
        stmt = stmt.where(t.day >= since)
    if model is not None:
        stmt = stmt.where(t.model == model)
    return stmt.group_by(t.day, t.thread_id, t.model).order_by(t.day, t.thread_id, t.model)


def query_report(
    engine: Engine, *, thread: str | None, since: str | None, model: str | None
) -> list[UsageRow]:
    """Run the report on ``engine`` (an empty list when nothing was ever recorded)."""
    from convkit_usage import UsageRow

    with engine.connect() as conn:
        if not inspect(conn).has_table(TABLE_NAME):
            return []
        rows = conn.execute(report_statement(thread=thread, since=since, model=model)).all()
    return [
        UsageRow(
            day=r.day,
            thread_id=r.thread_id,
            model=r.model,
            calls=int(r.calls),
            prompt_tokens=int(r.prompt_tokens),
            cached_tokens=int(r.cached_tokens),
            completion_tokens=int(r.completion_tokens),
            total_tokens=int(r.total_tokens),
            cost_usd=None if r.cost_nanousd is None else Decimal(int(r.cost_nanousd)) / _NANO,
            unpriced_calls=int(r.unpriced_calls),
        )
        for r in rows
    ]
