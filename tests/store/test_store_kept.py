"""SQLite: a thread keeps its connection between operations (``HeldConnections``)."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import NullPool

from convkit import StoreError, ThreadNotFoundError
from convkit.store import AsyncStore, Store, StoreValueError, _raw
from convkit.store._sql import Q

MSG = {"role": "user", "content": "hello"}


class Seen:
    """The driver connections an engine opened, and how often its pool handed one out.

    Given a store, closes it first: what it opened until then (its schema check) is gone.
    """

    def __init__(self, engine: Any) -> None:
        if isinstance(engine, Store):
            engine.close()
            engine = engine.engine
        self.opened: list[sqlite3.Connection] = []
        self.checkouts = 0
        event.listen(engine, "connect", self._connect)
        event.listen(engine, "checkout", self._checkout)

    def _connect(self, dbapi: Any, _record: Any) -> None:
        self.opened.append(dbapi)

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1


def _is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return False
    return True


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'kept.db'}", create_tables=True) as s:
        yield s


def _kept(store: Store) -> _raw.HeldConnections:
    raw = store._runner._raw
    assert raw is not None and raw.held is not None
    return raw.held


def test_a_thread_runs_its_operations_on_the_connection_it_keeps(store: Store) -> None:
    seen = Seen(store)
    tid = store.create_thread().id
    for _ in range(20):
        store.append(tid, MSG)
        store.window(tid, 1000)
        store.messages(tid, last=5)
    assert len(seen.opened) == 1  # the first operation's, kept
    assert seen.checkouts == 1  # taken from the pool once, then detached from it
    assert store.engine.pool.checkedout() == 0  # the pool does not count it
    assert len(_kept(store)) == 1
    assert len(store.messages(tid)) == 20


def test_threads_past_the_pool_size_run_on_the_pool(store: Store) -> None:
    tid = store.create_thread().id
    seen = Seen(store)  # closed: the main thread keeps nothing now
    size = store.engine.pool.size()  # 5, SQLAlchemy's default
    workers = size + 2
    # No thread ends before all are done (an ended thread's place would go to another).
    started, finished = threading.Barrier(workers + 1), threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            store.append(tid, MSG)
            started.wait(10)  # every thread has run one operation
            for _ in range(5):
                store.append(tid, MSG)
            finished.wait(10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    started.wait(10)
    kept = len(_kept(store))
    finished.wait(10)
    for t in threads:
        t.join(10)
    assert not errors
    assert kept == size  # as many threads as the pool's size keep one...
    assert seen.checkouts == size * 1 + 2 * 6  # ...the other two take one every operation
    assert len(store.messages(tid)) == workers * 6


def test_a_thread_that_ends_closes_the_connection_it_kept(store: Store) -> None:
    seen = Seen(store)
    tid = store.create_thread().id
    t = threading.Thread(target=store.append, args=(tid, MSG))
    t.start()
    t.join()
    del t
    gc.collect()
    assert len(seen.opened) == 2  # the main thread's and the other thread's
    mine, theirs = seen.opened
    assert not _is_open(theirs)
    assert _is_open(mine)
    assert len(_kept(store)) == 1


def test_close_closes_what_is_kept_and_the_store_opens_again(store: Store) -> None:
    seen = Seen(store)
    tid = store.create_thread().id
    store.close()
    assert not _is_open(seen.opened[0])
    assert len(_kept(store)) == 0
    store.append(tid, MSG)  # opens (and keeps) a new one
    assert len(seen.opened) == 2 and _is_open(seen.opened[1])


def test_close_during_an_operation_closes_its_connection_when_it_ends(store: Store) -> None:
    raw = store._runner._raw
    assert raw is not None
    seen = Seen(store)
    store.create_thread(thread_id="t")

    def op() -> Any:
        first = (yield Q(text("SELECT count(*) FROM convkit_threads"))).scalar()
        raw.close()  # another thread closing the store, in the middle of this operation
        second = (yield Q(text("SELECT count(*) FROM convkit_threads"))).scalar()
        return first, second

    assert raw.run(op(), write=False) == (1, 1)  # the connection lasted the operation
    assert not _is_open(seen.opened[0])  # and was closed after it
    assert store.get_thread("t").id == "t"
    assert len(seen.opened) == 2


def test_a_refused_row_keeps_the_connection_and_a_driver_error_gives_it_up(
    store: Store,
) -> None:
    def mine() -> Any:
        held = getattr(_kept(store)._local, "held", None)
        return None if held is None else held.conn

    store.create_thread(thread_id="t")
    first = mine()
    with pytest.raises(StoreValueError, match="already exists"):
        store.create_thread(thread_id="t")  # an IntegrityError underneath
    with pytest.raises(ThreadNotFoundError):
        store.window("missing", 100)  # the operation's own error
    assert mine() is first and _is_open(first)
    with store.engine.begin() as conn:  # on the pool: not the kept connection
        conn.exec_driver_sql("DROP TABLE convkit_summaries")
    with pytest.raises(StoreError, match="no such table"):
        store.delete_thread("t")  # an OperationalError from the driver
    assert mine() is None and not _is_open(first)  # given up
    assert store.get_thread("t").id == "t"  # rolled back; the next operation opens anew
    assert mine() is not None and mine() is not first and _is_open(mine())


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("sqlite://", {}),
        ("sqlite:///{tmp}/n.db", {"poolclass": NullPool}),
        ("sqlite:///{tmp}/n.db", {"pool_size": 1, "max_overflow": 0}),
    ],
)
def test_an_in_memory_database_or_a_pool_the_caller_set_up_keeps_nothing(
    tmp_path: Path, url: str, options: dict[str, Any]
) -> None:
    with Store(url.format(tmp=tmp_path), create_tables=True, engine_options=options) as store:
        raw = store._runner._raw
        assert raw is not None and raw.held is None
        tid = store.create_thread().id
        store.append(tid, MSG)
        assert [m.message.text for m in store.messages(tid)] == ["hello"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_leaves_the_parents_connections_alone(store: Store) -> None:
    seen = Seen(store)
    tid = store.create_thread().id
    ready, finish = threading.Event(), threading.Event()

    def keep_one() -> None:  # a thread of the parent's, with a kept connection, alive at fork
        store.append(tid, MSG)
        ready.set()
        finish.wait(30)

    other = threading.Thread(target=keep_one)
    other.start()
    assert ready.wait(10)
    mine, theirs = seen.opened
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            gc.collect()
            inherited = [c for c in _raw._inherited if c is mine or c is theirs]
            store.append(tid, {"role": "user", "content": "from the child"})
            fresh = seen.opened[2:]
            if (
                len(inherited) == 2
                and _is_open(mine)
                and _is_open(theirs)
                and len(fresh) == 1
                and all(_is_open(c) for c in fresh)
            ):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    finish.set()
    other.join(10)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(seen.opened) == 2  # the parent opened nothing more
    assert [m.message.text for m in store.messages(tid)] == ["hello", "from the child"]


def test_async_store_workers_keep_their_connections(tmp_path: Path) -> None:
    import asyncio

    async def main() -> tuple[int, int, list[sqlite3.Connection]]:
        async with AsyncStore(f"sqlite:///{tmp_path / 'a.db'}", create_tables=True) as store:
            assert store.thread_engine is not None
            seen = Seen(store.thread_engine)
            tid = (await store.create_thread()).id
            for _ in range(10):
                await store.append(tid, MSG)
                await store.window(tid, 1000)
            checkouts = seen.checkouts
            count = len(await store.messages(tid))
        return checkouts, count, seen.opened

    checkouts, count, opened = asyncio.run(main())
    assert count == 10
    assert checkouts == len(opened) <= 4  # one a worker thread, never again
    assert opened and not any(_is_open(c) for c in opened)  # aclose() closed them
