"""Reads that stay flat: 100,000-message threads and 100,000 threads, checked by query shape.

No timings: the statements a read issues are recorded, counted and EXPLAINed on the backend.
A page of a thread must be an index range scan on ``(thread_id, seq)`` with no sort, on a table
the planner has never analyzed as on one it has; a page of ``list_threads`` a backwards scan of
its ``(created_at, id)`` index, however deep the cursor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL

from convkit.context import counting_key
from convkit.store import Store
from convkit.tokens import TokenCounter

BIG = 100_000


def _fill_messages(url: URL, thread_id: str, n: int) -> None:
    """Insert ``n`` messages (alternating user/assistant, 10 tokens each) straight in SQL."""
    now = datetime.now(timezone.utc)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                series = (
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
                    "SELECT :tid, i, CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, "
                    "json_object('role', CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, "
                    "'content', 'message ' || i), 10, 'o200k_base', 'complete', :now, 1, :key FROM s"
                )
                params: dict[str, Any] = {"n": n, "tid": thread_id, "now": now.replace(tzinfo=None)}
            else:
                series = (
                    "SELECT :tid, i, CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, "
                    "json_build_object('role', CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, "
                    "'content', 'message ' || i), 10, 'o200k_base', 'complete', :now, 1, :key "
                    "FROM generate_series(1, :n) AS i"
                )
                params = {"n": n, "tid": thread_id, "now": now}
            # The rules the store's counter (gpt-4o) counts under: rows it trusts as counted.
            params["key"] = counting_key(TokenCounter("gpt-4o"))
            conn.execute(
                text(
                    "INSERT INTO convkit_messages (thread_id, seq, role, message, tokens, encoding, "
                    "status, created_at, format, counted_with) " + series
                ),
                params,
            )
            conn.execute(
                text("UPDATE convkit_threads SET last_seq = :n WHERE id = :tid"),
                {"n": n, "tid": thread_id},
            )
    finally:
        engine.dispose()


def _analyze(url: URL) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


@contextmanager
def _recorded(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def _plan(store: Store, statement: str, parameters: Any) -> str:
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return "\n".join(str(r[0]) for r in rows)


def _message_reads(seen: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, p) for s, p in seen if "convkit_messages" in s]


def _sqlite_steps(store: Store, statement: str, parameters: Any) -> int:
    """The virtual-machine instructions SQLite runs for ``statement`` (to within 1,000)."""
    calls = 0

    def count() -> int:
        nonlocal calls
        calls += 1
        return 0  # go on

    fairy = store.engine.raw_connection()
    try:
        dbapi = fairy.driver_connection
        assert dbapi is not None
        dbapi.set_progress_handler(count, 1000)
        try:
            dbapi.execute(statement, parameters).fetchall()
        finally:
            dbapi.set_progress_handler(None, 1000)
    finally:
        fairy.close()
    return calls * 1000


def _assert_index_range_scan(store: Store, statement: str, parameters: Any) -> None:
    plan = _plan(store, statement, parameters)
    if store.engine.dialect.name == "sqlite":
        assert re.search(
            r"SEARCH convkit_messages USING (INDEX sqlite_autoindex_convkit_messages_1|PRIMARY KEY)"
            r" \(thread_id=\? AND seq>\? AND seq<\?\)",
            plan,
        ), plan
        assert "TEMP B-TREE" not in plan, plan
        # Which of its bounds SQLite ranges the index on, the plan does not say: the steps its
        # VM takes do (a walk of 100,000 rows takes millions, a page of 50 a few thousand).
        assert _sqlite_steps(store, statement, parameters) < 50_000, statement
    else:
        assert "Index Scan" in plan and "convkit_messages_pkey" in plan, plan
        assert "Seq Scan on convkit_messages" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_reads_of_a_100k_thread_stay_flat(store: Store, store_url: URL, analyzed: bool) -> None:
    big, small = store.create_thread(), store.create_thread()
    _fill_messages(store_url, big.id, BIG)
    _fill_messages(store_url, small.id, 1000)
    if analyzed:
        _analyze(store_url)
    for thread_id, n in ((small.id, 1000), (big.id, BIG)):
        with _recorded(store) as seen:
            last = store.messages(thread_id, last=50)
        assert [m.seq for m in last] == list(range(n - 49, n + 1))
        (read,) = _message_reads(seen)  # one statement: thread row and the 50 rows
        assert "LIMIT" not in read[0]
        _assert_index_range_scan(store, *read)

        with _recorded(store) as seen:
            window = store.window(thread_id, 500)
        assert [m.seq for m in window] == list(range(n - 49, n + 1))  # 10 tokens each
        reads = _message_reads(seen)
        assert 1 <= len(reads) <= 2
        for statement, parameters in reads:
            _assert_index_range_scan(store, statement, parameters)

        with _recorded(store) as seen:
            after = store.messages(thread_id, after_seq=n - 10, limit=5)
        assert [m.seq for m in after] == list(range(n - 9, n - 4))
        (read,) = _message_reads(seen)
        _assert_index_range_scan(store, *read)


def _fill_threads(url: URL, n: int) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(
                    text(
                        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
                        "INSERT INTO convkit_threads (id, metadata, created_at, updated_at, last_seq) "
                        "SELECT printf('t%06d', i), CASE WHEN i % 10000 = 0 "
                        'THEN \'{"team":"rare"}\' ELSE \'{"team":"common"}\' END, '
                        "datetime('2026-01-01', '+' || i || ' seconds') || '.000000', "
                        "datetime('2026-01-01', '+' || (:n - i) || ' seconds') || '.000000', 0 "
                        "FROM s"
                    ),
                    {"n": n},
                )
            else:
                conn.execute(
                    text(
                        "INSERT INTO convkit_threads (id, metadata, created_at, updated_at, last_seq) "
                        "SELECT 't' || lpad(i::text, 6, '0'), CASE WHEN i % 10000 = 0 "
                        'THEN \'{"team":"rare"}\' ELSE \'{"team":"common"}\' END, '
                        "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second', "
                        "timestamptz '2026-01-01 00:00:00+00' + (:n - i) * interval '1 second', 0 "
                        "FROM generate_series(1, :n) AS i"
                    ),
                    {"n": n},
                )
    finally:
        engine.dispose()


def test_list_threads_pages_by_index_at_100k_threads(store: Store, store_url: URL) -> None:
    """order="created" (the default) pages by its index; "updated" pages correctly too.

    "updated" has no index on purpose (every append would have to maintain it), so only its
    results are checked here, not its plan.
    """
    _fill_threads(store_url, BIG)
    _analyze(store_url)
    for order in ("created", "updated"):
        page = store.list_threads(limit=50, order=order)  # type: ignore[arg-type]
        for _ in range(20):  # deep into the keyset
            page = store.list_threads(limit=50, order=order, cursor=page.next_cursor)  # type: ignore[arg-type]
        assert len(page) == 50 and page.next_cursor
        with _recorded(store) as seen:
            deep = store.list_threads(limit=50, order=order, cursor=page.next_cursor)  # type: ignore[arg-type]
        assert len(deep) == 50
        times = [t.created_at if order == "created" else t.updated_at for t in deep]
        assert times == sorted(times, reverse=True) and times[0] < (
            page.threads[-1].created_at if order == "created" else page.threads[-1].updated_at
        )
        if order != "created":
            continue
        (read,) = [(s, p) for s, p in seen if "convkit_threads" in s]
        plan = _plan(store, *read)
        assert "ix_convkit_threads_created" in plan, plan
        if store.engine.dialect.name == "sqlite":
            assert "SEARCH convkit_threads USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
        else:
            assert "Index Scan Backward" in plan and "Sort" not in plan, plan


def test_list_threads_metadata_filter_uses_the_gin_index(store: Store, store_url: URL) -> None:
    """PostgreSQL serves the filter from its GIN index (SQLite, which has none, still filters)."""
    _fill_threads(store_url, BIG)
    _analyze(store_url)
    with _recorded(store) as seen:
        page = store.list_threads(limit=50, metadata={"team": "rare"})
    assert len(page) == BIG // 10000
    assert all(t.metadata == {"team": "rare"} for t in page)
    if store.engine.dialect.name == "postgresql":
        (read,) = [(s, p) for s, p in seen if "convkit_threads" in s]
        plan = _plan(store, *read)
        assert "Bitmap Index Scan on ix_convkit_threads_metadata" in plan, plan
