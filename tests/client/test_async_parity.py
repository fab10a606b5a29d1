"""ChatClient and AsyncChatClient expose the same API and give the same answers."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from convkit.client import AsyncChatClient, AsyncChatStream, ChatClient, ChatStream
from convkit.testing import FakeChatServer, Reply

from .conftest import MESSAGES, Driver

# Sync name -> async name, where the protocols differ.
RENAMED = {
    "close": "aclose",
    "__enter__": "__aenter__",
    "__exit__": "__aexit__",
    "__iter__": "__aiter__",
    "__next__": "__anext__",
}
# Methods that stay plain functions on the async side (they do no I/O).
SYNC_ON_BOTH = {"stream", "stream_request", "__aiter__"}


def public_api(cls: type) -> dict[str, Any]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    names |= {n for n in RENAMED.values() if hasattr(cls, n)} | {
        n for n in RENAMED if hasattr(cls, n)
    }
    return {n: inspect.getattr_static(cls, n) for n in names}


def params(fn: Any) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"), [(ChatClient, AsyncChatClient), (ChatStream, AsyncChatStream)]
)
def test_same_names_signatures_and_kinds(sync_cls: type, async_cls: type) -> None:
    sync_api = public_api(sync_cls)
    async_api = public_api(async_cls)
    expected = {RENAMED.get(n, n) for n in sync_api}
    assert set(async_api) == expected
    for name, sync_obj in sync_api.items():
        async_name = RENAMED.get(name, name)
        async_obj = async_api[async_name]
        if isinstance(sync_obj, property) or isinstance(async_obj, property):
            assert isinstance(sync_obj, property) and isinstance(async_obj, property), name
            continue
        if not callable(sync_obj):
            continue
        assert params(sync_obj) == params(async_obj), name
        if async_name in SYNC_ON_BOTH or not inspect.iscoroutinefunction(async_obj):
            assert async_name in SYNC_ON_BOTH, f"{async_cls.__name__}.{async_name} is not async"
        else:
            assert not inspect.iscoroutinefunction(sync_obj)
        assert (sync_obj.__doc__ or "").strip() or name.startswith("__"), name


def test_constructors_match() -> None:
    sync_params = params(ChatClient.__init__)
    async_params = params(AsyncChatClient.__init__)
    assert [p[:2] for p in sync_params] == [p[:2] for p in async_params]
    assert [p[2] for p in sync_params] == [p[2] for p in async_params]
    assert "http_client" in {p[0] for p in sync_params}


def test_same_scripted_replies_give_equal_results(chat_server: FakeChatServer) -> None:
    replies = [
        Reply.text("plain answer", chunk_size=3),
        Reply.tool_calls([{"name": "f", "arguments": {"a": [1, 2]}, "id": "call_1"}]),
        Reply.refusal("no"),
    ]
    results: dict[str, list[Any]] = {}
    for kind in ("sync", "async"):
        d = Driver(kind, chat_server)
        out: list[Any] = []
        for r in replies:
            chat_server.enqueue(r, r)
            out.append(d.complete())
            res = d.stream()
            out.append((res.response, [c.raw for c in res.chunks]))
        results[kind] = out
    # ids differ per request (the server numbers them); compare everything else
    for s, a in zip(results["sync"], results["async"], strict=True):
        if isinstance(s, tuple):
            s_resp, s_raw = s
            a_resp, a_raw = a
            assert s_resp.message == a_resp.message and s_resp.usage == a_resp.usage
            assert [_strip(x) for x in s_raw] == [_strip(x) for x in a_raw]
        else:
            assert s.message == a.message and s.usage == a.usage
            assert s.finish_reason == a.finish_reason


def _strip(raw: Any) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("id", "created")}


@pytest.mark.anyio
async def test_async_fixture_and_native_anyio_usage(
    chat_server: FakeChatServer, async_chat_client: AsyncChatClient
) -> None:
    chat_server.enqueue(Reply.text("from the fixture"), Reply.text("streamed", chunk_size=2))
    reply = await async_chat_client.complete(model="m", messages=MESSAGES)
    assert reply.text == "from the fixture"
    stream = async_chat_client.stream(model="m", messages=MESSAGES)
    texts = [c.text async for c in stream]  # no ``async with``: closes itself at the end
    assert "".join(texts) == "streamed" and stream.response.text == "streamed"
    chat_server.enqueue(Reply.text("read me"))
    async with async_chat_client.stream(model="m", messages=MESSAGES) as s:
        assert (await s.read()).text == "read me"


@pytest.mark.anyio
async def test_async_stream_closed_early(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("0123456789", chunk_size=1), Reply.text("after"))
    async with AsyncChatClient(base_url=chat_server.base_url, timeout=5) as client:
        async with client.stream(model="m", messages=MESSAGES) as s:
            async for chunk in s:
                if chunk.text == "2":
                    break
        assert s.partial.text.startswith("012")
        assert (await client.complete(model="m", messages=MESSAGES)).text == "after"


def test_sync_fixture(chat_server: FakeChatServer, chat_client: ChatClient) -> None:
    chat_server.enqueue(Reply.text("from the sync fixture"))
    assert chat_client.complete(model="m", messages=MESSAGES).text == "from the sync fixture"
