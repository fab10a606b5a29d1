"""Database errors surface as StoreError on every backend, sync and async, without secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from convkit import Message, StoreError, StoreValueError
from convkit.store import AsyncStore, Store
from convkit.store._base import database_errors

SECRET_TEXT = "confidential-message-body"


def _drop_messages_table(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE convkit_messages"))
    finally:
        engine.dispose()


def _check(error: StoreError) -> None:
    assert type(error) is StoreError  # not a StoreValueError: nothing was wrong with the input
    assert isinstance(error.__cause__, DBAPIError)
    assert str(error).startswith("database error on ")
    assert "[SQL:" not in str(error) and "[parameters:" not in str(error)
    assert SECRET_TEXT not in str(error)


def test_errors_inside_an_operation_become_store_errors(empty_url: URL) -> None:
    with Store(empty_url, create_tables=True) as store:
        thread = store.create_thread()
        store.append(thread.id, Message.user("stored before"))  # so that reads have rows to read
        _drop_messages_table(empty_url)
        calls: list[Callable[[], object]] = [
            lambda: store.append(thread.id, Message.user(SECRET_TEXT)),
            lambda: store.append_many(thread.id, [Message.user(SECRET_TEXT)] * 2),
            lambda: store.messages(thread.id),
            lambda: store.window(thread.id, 100),
            lambda: store.delete_thread(thread.id),
        ]
        for call in calls:
            with pytest.raises(StoreError) as info:
                call()
            _check(info.value)
        # the store still works for what does not need the missing table
        assert store.get_thread(thread.id).last_seq == 1  # the failed appends wrote nothing
        # errors an operation translates itself keep their own type
        with pytest.raises(StoreValueError, match="already exists"):
            store.create_thread(thread_id=thread.id)


@pytest.mark.anyio
async def test_async_errors_inside_an_operation_become_store_errors(empty_url: URL) -> None:
    async with AsyncStore(empty_url, create_tables=True) as store:
        thread = await store.create_thread()
        await store.append(thread.id, Message.user("stored before"))
        _drop_messages_table(empty_url)
        with pytest.raises(StoreError) as info:
            await store.append(thread.id, Message.user(SECRET_TEXT))
        _check(info.value)
        with pytest.raises(StoreError) as info:
            await store.window(thread.id, 100)
        _check(info.value)
        assert (await store.get_thread(thread.id)).last_seq == 1


def _unopenable(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> URL:
    if backend == "sqlite":
        (tmp_path / "a-directory").mkdir()
        return make_url(f"sqlite:///{tmp_path / 'a-directory'}")
    postgres_url: URL = request.getfixturevalue("postgres_url")
    return postgres_url.set(database="convkit_no_such_database", password="hunter2-secret")


def test_a_database_that_cannot_be_opened_raises_store_error(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _unopenable(backend, tmp_path, request)
    with pytest.raises(StoreError) as info:
        Store(url, create_tables=True)
    assert isinstance(info.value.__cause__, OperationalError)
    assert "hunter2" not in str(info.value)


@pytest.mark.anyio
async def test_async_database_that_cannot_be_opened_raises_store_error(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _unopenable(backend, tmp_path, request)
    store = AsyncStore(url, create_tables=True)
    try:
        with pytest.raises(StoreError) as info:
            await store.create_thread()
        assert isinstance(info.value.__cause__, OperationalError)
        assert "hunter2" not in str(info.value)
        with pytest.raises(StoreError):
            async with store:
                pass
    finally:
        await store.aclose()
        await _aiosqlite_workers_finished()


async def _aiosqlite_workers_finished() -> None:
    """Wait (bounded) for aiosqlite's worker threads to exit while the event loop is open.

    After a failed connect, aiosqlite queues the close of its worker thread with a future it
    never awaits; if the loop closes first, the worker's late callback raises "Event loop is
    closed" in its thread, and pytest reports that on whichever test runs next.
    """
    import threading

    import anyio

    for _ in range(500):
        if not any(t.name.endswith("(_connection_worker_thread)") for t in threading.enumerate()):
            return
        await anyio.sleep(0.01)


class _DriverError(Exception):
    pass


def test_the_message_never_holds_the_password() -> None:
    url = make_url("postgresql+psycopg://app:s3cr3t-pw@db.example/chat")
    orig = _DriverError("could not log in with 'app:s3cr3t-pw'\nDETAIL: row (42, 'x')")
    with pytest.raises(StoreError) as info, database_errors(url):
        raise DBAPIError("INSERT ...", {"content": SECRET_TEXT}, orig)
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert message == (
        "database error on postgresql+psycopg://app:***@db.example/chat: "
        "_DriverError: could not log in with 'app:***'"
    )
    assert info.value.__cause__ is not None
    assert info.value.__cause__.__class__ is DBAPIError


def test_other_exceptions_pass_through_unchanged() -> None:
    url = make_url("sqlite:///x.db")
    with pytest.raises(KeyError), database_errors(url):
        raise KeyError("not a database error")
    seen: list[Any] = []
    with database_errors(url):
        seen.append(1)
    assert seen == [1]
