"""The cache around real turns: a second identical turn makes no request (sync and async,
streamed and not, SQLite and PostgreSQL); TTL, size limits, opt-outs; errors, broken streams
and refusals are not cached; two processes share entries."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
from convkit import AsyncConversation, Conversation, TransportError, hookimpl
from convkit.plugins import with_text
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, Reply
from sqlalchemy import create_engine, func, select

import convkit_cache
from convkit_cache import Cache, cache_key
from convkit_cache.db import entries

MODEL = "gpt-4o"
FAKE_KEY = "fake-key-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def conversation(
    server: FakeChatServer, store: Store, plugin: Any = convkit_cache, **kw: Any
) -> Conversation:
    return Conversation(
        MODEL, store=store, base_url=server.base_url, api_key=FAKE_KEY, plugins=[plugin], **kw
    )


def ask(
    server: FakeChatServer,
    store: Store,
    text: str,
    streaming: bool = False,
    plugin: Any = convkit_cache,
    **kw: Any,
) -> tuple[str, Any]:
    params = kw.pop("params", {})
    with conversation(server, store, plugin, **kw) as conv:
        if not streaming:
            reply = conv.send(text, **params)
            return reply.text, reply
        stream = conv.stream(text, **params)
        return "".join(stream), stream.reply


def count(url: str) -> int:
    engine = create_engine(url)
    try:
        entries.metadata.create_all(engine)  # the plugin creates it on first use
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(entries)).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture(params=[False, True], ids=["send", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_the_second_identical_turn_makes_no_request(
    server: FakeChatServer, db_url: str, streaming: bool
) -> None:
    server.enqueue(Reply.text("Paris is the capital.", chunk_size=3))
    with Store(db_url) as store:
        first, fresh = ask(server, store, "capital of France?", streaming)
        assert len(server.requests) == 1
        second, reply = ask(server, store, "capital of France?", streaming)
        assert len(server.requests) == 1  # answered from the cache
        assert first == second == "Paris is the capital."
        assert reply.usage is None and reply.window.answered_by_plugin
        stored = store.messages(reply.thread_id)
        assert [m.message.text for m in stored] == ["capital of France?", "Paris is the capital."]
        assert stored[-1].metadata["answered_by_plugin"] is True
        marker = stored[-1].metadata["cache"]  # marked as cached, with the entry it came from
        assert marker["hit"] is True and len(marker["entry"]) == 16
        assert datetime.fromisoformat(marker["cached_at"]).tzinfo is not None
        # The fresh answer carries no marker.
        assert all("cache" not in m.metadata for m in store.messages(fresh.thread_id))
        ask(server, store, "capital of Spain?", streaming)  # another question: another call
        assert len(server.requests) == 2


@pytest.mark.anyio
async def test_async_send_and_stream(server: FakeChatServer, db_url: str) -> None:
    async with AsyncStore(db_url) as store:
        for turn, streaming in enumerate((False, True, False, True)):
            async with AsyncConversation(
                MODEL, store=store, base_url=server.base_url, api_key=FAKE_KEY, plugins=[Cache()]
            ) as conv:
                if streaming:
                    stream = conv.stream("hello async")
                    text = "".join([d async for d in stream])
                    reply = stream.reply
                else:
                    reply = await conv.send("hello async")
                    text = reply.text
            assert text == "hello async"
            [*_, answer] = await store.messages(reply.thread_id)
            assert ("cache" in answer.metadata) is (turn > 0)  # every turn after the first hits
        assert len(server.requests) == 1


def test_the_key_is_what_is_sent(server: FakeChatServer, db_url: str) -> None:
    with Store(db_url) as store:
        ask(server, store, "hi", system="Be brief.")
        ask(server, store, "hi", system="Be verbose.")  # another system prompt: a miss
        ask(server, store, "hi", params={"temperature": 0.5})  # another parameter: a miss
        assert len(server.requests) == 3
        ask(server, store, "hi", True, system="Be brief.")  # streamed or not: the same key
        ask(server, store, "hi", params={"temperature": 0.5, "user": "u1", "metadata": {"a": "b"}})
        assert len(server.requests) == 3
    assert cache_key(
        "m", [], None, {"stream": True, "stream_options": {"include_usage": True}}
    ) == cache_key("m", [], None, {})


def test_entries_expire_after_the_ttl(server: FakeChatServer, db_url: str) -> None:
    clock = Clock()
    plugin = Cache(ttl=60, clock=clock)
    with Store(db_url) as store:
        ask(server, store, "q", plugin=plugin)
        clock.now += 59
        ask(server, store, "q", plugin=plugin)
        assert len(server.requests) == 1
        clock.now += 2
        ask(server, store, "q", plugin=plugin)  # expired: asked again, and stored anew
        assert len(server.requests) == 2
        ask(server, store, "q", plugin=plugin)
        assert len(server.requests) == 2
        # a conversation with a shorter ttl in its settings does not take the older entry
        clock.now += 30
        ask(server, store, "q", plugin=plugin, plugin_settings={"cache": {"ttl": 10}})
        assert len(server.requests) == 3


def test_the_oldest_entries_are_evicted_over_the_limits(
    server: FakeChatServer, db_url: str
) -> None:
    clock = Clock()
    plugin = Cache(max_entries=3, clock=clock)
    with Store(db_url) as store:
        for i in range(5):
            clock.now += 1
            ask(server, store, f"question {i}", plugin=plugin)
        assert count(db_url) == 3
        before = len(server.requests)
        ask(server, store, "question 4", plugin=plugin)
        ask(server, store, "question 2", plugin=plugin)
        assert len(server.requests) == before  # the newest three are kept
        ask(server, store, "question 0", plugin=plugin)
        assert len(server.requests) == before + 1  # the oldest went
        # bytes: each entry is a few hundred bytes; a 1,000-byte budget keeps the newest few
        small = Cache(max_bytes=1_000, max_entries=None, clock=clock)
        for i in range(10):
            clock.now += 1
            ask(server, store, f"long question {i} " + "x" * 50, plugin=small)
        assert 1 <= count(db_url) < 6


def test_opt_out_per_conversation_and_per_call(server: FakeChatServer, db_url: str) -> None:
    with Store(db_url) as store:
        off = {"cache": {"enabled": False}}
        ask(server, store, "q", plugin_settings=off)
        ask(server, store, "q", plugin_settings=off)
        assert len(server.requests) == 2 and count(db_url) == 0
        ask(server, store, "q", params={"cache": False})
        assert len(server.requests) == 3 and count(db_url) == 0
        assert "cache" not in server.requests[-1].body  # the parameter is never sent
        ask(server, store, "q")
        ask(server, store, "q")
        assert len(server.requests) == 4
        server.enqueue(Reply.text("a fresher answer"))
        text, _ = ask(server, store, "q", params={"cache": "refresh"})
        assert text == "a fresher answer" and len(server.requests) == 5
        assert ask(server, store, "q")[0] == "a fresher answer" and len(server.requests) == 5
        with pytest.raises(Exception, match="True, False or 'refresh'"):
            ask(server, store, "q", params={"cache": "sometimes"})


def test_errors_broken_streams_and_refusals_are_not_cached(
    server: FakeChatServer, db_url: str
) -> None:
    with Store(db_url) as store:
        server.enqueue(Reply.error(400))
        with pytest.raises(TransportError):
            ask(server, store, "q")
        server.enqueue(Reply.text("half an answer that breaks", chunk_size=3, drop_after_chunks=3))
        with pytest.raises(TransportError):
            ask(server, store, "q", True)
        assert count(db_url) == 0
        server.enqueue(Reply.text("an abandoned answer", chunk_size=2))
        with conversation(server, store) as conv:
            stream = conv.stream("q")
            next(iter(stream))
            stream.close()  # the caller left: stored as incomplete, never cached
            assert store.messages(conv.thread_id)[-1].status == "incomplete"
        server.enqueue(Reply.refusal("I can't help with that."))
        ask(server, store, "q")
        assert count(db_url) == 0
        ask(server, store, "q")  # nothing cached: the echo answers
        assert len(server.requests) == 5 and count(db_url) == 1
        server.enqueue(Reply.refusal("No."))
        ask(server, store, "r", plugin=Cache(cache_refusals=True))
        _, reply = ask(server, store, "r", plugin=Cache(cache_refusals=True))
        assert len(server.requests) == 6 and reply.message.refusal == "No."


def test_tool_calls_are_cached_and_followups_too(server: FakeChatServer, db_url: str) -> None:
    tools = [{"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}]
    handlers = {"clock": lambda args: "12:00"}
    with Store(db_url) as store:
        for _ in range(2):
            server.enqueue(
                Reply.tool_calls([{"name": "clock", "arguments": {}, "id": "call_1"}]),
                Reply.text("It is noon."),
            )
            text, reply = ask(server, store, "time?", tools=tools, tool_handlers=handlers)
            assert text == "It is noon." and reply.tool_rounds == 1
        assert len(server.requests) == 2  # both calls of the second turn came from the cache
        server.reset()


def test_two_processes_share_entries(server: FakeChatServer, db_url: str) -> None:
    script = (
        "import sys\n"
        "from convkit import Conversation\n"
        "with Conversation(sys.argv[1], store=sys.argv[2], base_url=sys.argv[3],"
        " api_key='k') as conv:\n"
        "    print(conv.send(sys.argv[4]).text)\n"
    )

    def child(text: str) -> str:
        env = {**os.environ, "CONVKIT_PLUGINS": "cache"}
        done = subprocess.run(
            [sys.executable, "-c", script, MODEL, db_url, server.base_url, text],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    assert child("from the child") == "from the child"
    assert len(server.requests) == 1
    with Store(db_url) as store:
        assert ask(server, store, "from the child")[0] == "from the child"
        assert len(server.requests) == 1  # the child's entry answered the parent
        ask(server, store, "from the parent")
        assert len(server.requests) == 2
    assert child("from the parent") == "from the parent"
    assert len(server.requests) == 2  # and the parent's answered the child


class Upper:
    """A throwaway middleware plugin: upper-cases what the caller sees."""

    @hookimpl(tryfirst=True)
    def wrap_stream(self, request: Any, context: Any) -> Any:
        return UpperMiddleware()


class UpperMiddleware:
    def feed(self, chunk: Any) -> list[Any]:
        return [with_text(chunk, chunk.text.upper())] if chunk.text else [chunk]

    def close(self) -> list[Any]:
        return []


def test_the_answer_is_cached_as_the_api_sent_it(server: FakeChatServer, db_url: str) -> None:
    with Store(db_url) as store:
        with Conversation(
            MODEL,
            store=store,
            base_url=server.base_url,
            api_key=FAKE_KEY,
            plugins=[convkit_cache, Upper()],
        ) as conv:
            assert conv.send("quiet words").text == "QUIET WORDS"
        # the cache kept the raw answer (its recorder is first in the pipeline) ...
        assert ask(server, store, "quiet words")[0] == "quiet words"
        # ... and a hit still goes through the other middleware
        with Conversation(
            MODEL,
            store=store,
            base_url=server.base_url,
            api_key=FAKE_KEY,
            plugins=[convkit_cache, Upper()],
        ) as conv:
            assert "".join(conv.stream("quiet words")) == "QUIET WORDS"
        assert len(server.requests) == 1
