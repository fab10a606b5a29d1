"""AsyncStore: the same API as Store, awaited, on both backends."""

from __future__ import annotations

import inspect
import io
from typing import Any

import pytest
from sqlalchemy.engine import URL

from convkit import Message, ThreadNotFoundError, ToolCall
from convkit.context import Summary
from convkit.store import AsyncStore, NewMessage, Store, StoreValueError

pytestmark = pytest.mark.anyio


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


def test_same_methods_and_signatures() -> None:
    sync, async_ = _public(Store), _public(AsyncStore)
    sync.pop("close")
    async_.pop("aclose")
    assert sync.keys() == async_.keys()
    for name, sig in sync.items():
        assert str(sig) == str(async_[name]), name
        assert inspect.iscoroutinefunction(getattr(AsyncStore, name)), name
        assert inspect.getdoc(getattr(AsyncStore, name)), name


async def test_async_flow(store_url: URL, counter: Any) -> None:
    # a sync-style URL is mapped to the async driver
    async with AsyncStore(store_url, counter=counter) as store:
        assert store.engine.url.drivername in ("sqlite+aiosqlite", "postgresql+psycopg")
        thread = await store.create_thread(title="a", metadata={"k": 1})
        assert (await store.get_thread(thread.id)).title == "a"
        first = await store.append(thread.id, Message.user("hi"))
        assert first.seq == 1 and first.tokens == counter.count_message(Message.user("hi"))
        batch = await store.append_many(
            thread.id,
            [
                Message.assistant(tool_calls=[ToolCall(id="c", name="f", arguments="{}")]),
                NewMessage(message=Message.tool("1", tool_call_id="c")),
                Message.assistant("done"),
            ],
        )
        assert [m.seq for m in batch] == [2, 3, 4]
        assert [m.seq for m in await store.messages(thread.id, last=2)] == [3, 4]
        assert [m.seq for m in await store.window(thread.id, 10_000)] == [1, 2, 3, 4]
        fork = await store.fork(thread.id, at_seq=1)
        await store.append(fork.id, Message.assistant("other"))
        assert [m.message.text for m in await store.messages(fork.id)] == ["hi", "other"]
        await store.put_summary(thread.id, Summary(covers_through_seq=4, text="s"))
        summary = await store.get_summary(thread.id)
        assert summary is not None and summary.text == "s"
        assert len(await store.list_summaries(fork.id)) == 0
        page = await store.list_threads(metadata={"k": 1})
        assert {t.id for t in page} == {thread.id, fork.id}
        assert (await store.update_thread(thread.id, title="b")).title == "b"
        out = io.StringIO()
        await store.export_thread(thread.id, out)
        copy = await store.import_thread(out.getvalue())
        assert [m.message for m in await store.messages(copy.id)] == [
            m.message for m in await store.messages(thread.id)
        ]
        await store.delete_thread(thread.id)
        with pytest.raises(ThreadNotFoundError):
            await store.get_thread(thread.id)
        assert [m.message.text for m in await store.messages(fork.id)] == ["hi", "other"]
        with pytest.raises(StoreValueError):
            await store.append(fork.id, Message.user("x"), metadata={"authorization": "x"})
        assert (await store.get_thread(fork.id)).last_seq == 2


async def test_async_and_sync_see_the_same_data(store_url: URL) -> None:
    with Store(store_url) as sync_store:
        thread = sync_store.create_thread()
        sync_store.append(thread.id, Message.user("from sync"))
    async with AsyncStore(store_url) as store:
        (m,) = await store.messages(thread.id)
        assert m.message.text == "from sync"
        await store.append(thread.id, Message.assistant("from async"))
    with Store(store_url) as sync_store:
        assert [m.message.text for m in sync_store.messages(thread.id)] == [
            "from sync",
            "from async",
        ]


async def test_async_window_keeps_the_newest_turn(store_url: URL, counter: Any) -> None:
    async with AsyncStore(store_url, counter=counter) as store:
        thread = await store.create_thread()
        await store.append_many(
            thread.id,
            [
                NewMessage(message=Message.user("old"), tokens=10),
                NewMessage(message=Message.assistant("old answer"), tokens=10),
                NewMessage(message=Message.user("new"), tokens=10),
            ]
            + [NewMessage(message=Message.assistant(f"step {i}"), tokens=10) for i in range(80)],
        )
        window = await store.window(thread.id, 50)
        assert [m.seq for m in window] == list(range(3, 84))
        assert window[0].message.text == "new"
        empty = await store.create_thread()
        await store.append(empty.id, Message.assistant("no user here"), tokens=10)
        assert await store.window(empty.id, 5) == []
