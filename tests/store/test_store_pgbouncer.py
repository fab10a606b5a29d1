"""Through PgBouncer in transaction pooling mode: many stores, one pool of server connections.

In transaction mode consecutive transactions of one client connection may run on different
server connections, so anything kept in a server session between transactions (a prepared
statement above all: psycopg prepares a statement run five times) breaks. The store connects
with ``prepare_threshold=None``; these tests run many identical statements through interleaved
stores and check the pooler really is in transaction mode.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.engine import URL

from convkit import Message
from convkit.store import AsyncStore, Store

from .conftest import PGBOUNCER_PORT


def _pool_mode(url: URL) -> str:
    conn = psycopg.connect(
        host=url.host, port=PGBOUNCER_PORT, user=url.username, dbname="pgbouncer", autocommit=True
    )
    try:
        result = conn.pgconn.exec_(b"SHOW CONFIG")  # the admin console speaks simple queries only
        config = {result.get_value(i, 0): result.get_value(i, 1) for i in range(result.ntuples)}
    finally:
        conn.close()
    return (config.get(b"pool_mode") or b"").decode()


def test_interleaved_stores_through_transaction_pooling(pgbouncer_url: URL) -> None:
    assert pgbouncer_url.port == PGBOUNCER_PORT
    assert _pool_mode(pgbouncer_url) == "transaction"
    stores = [Store(pgbouncer_url, engine_options={"pool_size": 2}) for _ in range(3)]
    try:
        threads = [s.create_thread() for s in stores]
        for i in range(30):  # far past psycopg's prepare threshold, on every store
            for s, t in zip(stores, threads, strict=True):
                s.append(t.id, Message.user(f"m{i}"))
                assert [m.seq for m in s.messages(t.id, last=2)][-1] == i + 1
                assert s.window(t.id, 100)
        other = stores[1].messages(threads[0].id)  # any store reads any thread
        assert [m.message.text for m in other] == [f"m{i}" for i in range(30)]
    finally:
        for s in stores:
            s.close()


@pytest.mark.anyio
async def test_async_stores_through_transaction_pooling(pgbouncer_url: URL) -> None:
    stores = [AsyncStore(pgbouncer_url) for _ in range(3)]
    try:
        threads = [await s.create_thread() for s in stores]

        async def chat(s: AsyncStore, thread_id: str) -> None:
            for i in range(20):
                await s.append(thread_id, Message.user(f"m{i}"))
                assert (await s.messages(thread_id, last=1))[0].seq == i + 1

        await asyncio.gather(*(chat(s, t.id) for s, t in zip(stores, threads, strict=True)))
        assert [m.seq for m in await stores[2].messages(threads[0].id)] == list(range(1, 21))
    finally:
        for s in stores:
            await s.aclose()
