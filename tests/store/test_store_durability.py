"""SQLite durability: synchronous=FULL unless the URL opts into NORMAL; PgBouncer pooling."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from convkit import Message
from convkit.store import AsyncStore, Store, StoreValueError, upgrade

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def _pragmas(store: Store) -> tuple[int, str]:
    with store.engine.connect() as conn:
        sync = conn.execute(text("PRAGMA synchronous")).scalar()
        journal = conn.execute(text("PRAGMA journal_mode")).scalar()
    assert isinstance(sync, int) and isinstance(journal, str)
    return sync, journal


def test_sqlite_commits_are_durable_by_default(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'a.db'}", create_tables=True) as store:
        assert _pragmas(store) == (FULL, "wal")


def test_sqlite_normal_mode_is_an_explicit_choice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}?synchronous=normal"
    upgrade(url)  # the parameter is accepted wherever a URL is
    with Store(url) as store:
        assert _pragmas(store) == (NORMAL, "wal")
        thread = store.create_thread()
        store.append(thread.id, Message.user("hi"))
    with Store(f"sqlite:///{tmp_path / 'b.db'}?synchronous=FULL") as store:
        assert _pragmas(store)[0] == FULL
        assert [m.message.text for m in store.messages(thread.id)] == ["hi"]


def test_sqlite_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreValueError, match="synchronous='off'") as info:
        Store(f"sqlite:///{tmp_path / 'c.db'}?synchronous=off", create_tables=True)
    assert info.value.field == "url"
    assert not (tmp_path / "c.db").exists()


@pytest.mark.anyio
async def test_async_store_is_durable_by_default_too(tmp_path: Path) -> None:
    async with AsyncStore(f"sqlite:///{tmp_path / 'd.db'}", create_tables=True) as store:
        thread = await store.create_thread()
        await store.append(thread.id, Message.user("hi"))
        assert store.thread_engine is not None  # SQLite files: operations on worker threads
        with store.thread_engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == FULL
        async with store.engine.connect() as aconn:  # the engine the schema is checked on
            assert (await aconn.execute(text("PRAGMA synchronous"))).scalar() == FULL
    async with AsyncStore(f"sqlite:///{tmp_path / 'd.db'}?synchronous=normal") as store:
        assert store.thread_engine is not None
        with store.thread_engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == NORMAL
        assert [m.seq for m in await store.messages(thread.id)] == [1]


def test_postgres_connections_never_prepare_statements(store_url: URL, backend: str) -> None:
    if backend == "sqlite":
        with Store(store_url) as store:
            assert store.engine.dialect.name == "sqlite"  # nothing to prepare server-side
        return
    with Store(store_url) as store, store.engine.connect() as conn:
        assert conn.connection.dbapi_connection.prepare_threshold is None  # type: ignore[union-attr]
