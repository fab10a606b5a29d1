"""Failures found by a hostile review, each fixed at its source and kept fixed here."""

from __future__ import annotations

from typing import Any

import pytest

import convkit.models
from convkit import (
    AsyncConversation,
    Conversation,
    InvalidMessageError,
    InvalidRequestError,
    Message,
    PluginError,
    StreamError,
    Summarize,
    TrimOldest,
    hookimpl,
)
from convkit.chat import ChatChunk
from convkit.context import DEFAULT_SUMMARY_PROMPT
from convkit.store import AsyncStore, Store
from convkit.testing import ContextWindowGuard, FakeChatServer, Reply

from .conftest import FAKE_API_KEY

_made: list[Conversation] = []


@pytest.fixture(autouse=True)
def _close() -> Any:
    yield
    while _made:
        _made.pop().close()


def make(server: FakeChatServer, store: Store, **kw: Any) -> Conversation:
    conv = Conversation(
        kw.pop("model", "gpt-4o"), store=store, base_url=server.base_url, api_key=FAKE_API_KEY, **kw
    )
    _made.append(conv)
    return conv


def roles(store: Store, conv: Conversation) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.message.text) for m in store.messages(conv.thread_id)]


# ---- a stream left open is settled before anything else happens


def test_a_stream_left_open_is_stored_before_the_next_turn(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(Reply.text("alpha beta gamma", chunk_size=4), Reply.text("second answer"))
    conv = make(server, store)
    stream = conv.stream("first")
    next(stream)  # the caller reads one delta and walks away
    conv.send("second")
    assert roles(store, conv) == [
        ("user", "complete", "first"),
        ("assistant", "incomplete", "alph"),
        ("user", "complete", "second"),
        ("assistant", "complete", "second answer"),
    ]


def test_a_stream_closed_before_its_first_delta_keeps_the_user_message(
    server: FakeChatServer, store: Store
) -> None:
    conv = make(server, store)
    stream = conv.stream("are you there?")
    stream.close()
    assert roles(store, conv) == [("user", "complete", "are you there?")]
    assert not server.requests
    with pytest.raises(InvalidMessageError):
        conv.stream("")  # refused at once, not at the first delta


@pytest.mark.anyio
async def test_async_break_settles_before_the_next_turn(server: FakeChatServer, db_url: str) -> None:
    server.enqueue(Reply.text("alpha beta gamma", chunk_size=4), Reply.text("second answer"))
    async with AsyncStore(db_url) as store, AsyncConversation(
        "gpt-4o", store=store, base_url=server.base_url, api_key=FAKE_API_KEY
    ) as conv:
        async for _ in conv.stream("first"):
            break
        await conv.send("second")
        history = await store.messages(conv.thread_id)
        assert [(m.role, m.status) for m in history] == [
            ("user", "complete"),
            ("assistant", "incomplete"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        unstarted = conv.stream("never iterated")
        await unstarted.aclose()
        assert (await store.messages(conv.thread_id, last=1))[0].message.text == "never iterated"


# ---- an interrupt is not a tool failure


def test_an_interrupt_in_a_tool_handler_stops_the_turn(server: FakeChatServer, store: Store) -> None:
    calls = 0

    def handler(arguments: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    server.enqueue(Reply.tool_calls([{"id": "c1", "name": "f", "arguments": {}}]))
    conv = make(server, store, tool_handlers={"f": handler})
    with pytest.raises(KeyboardInterrupt):
        conv.send("go")
    assert calls == 1 and len(server.requests) == 1
    assert [r[0] for r in roles(store, conv)] == ["user", "assistant"]  # no invented result


# ---- every request fits, summaries and hook edits included


SMALL = "convkit-test-tiny-window"
convkit.models.register(SMALL, context_window=900, max_output_tokens=150)


def test_summary_requests_fit_a_small_window(store: Store) -> None:
    def answer(request: Any) -> Reply:
        if request.messages[0].get("content") == DEFAULT_SUMMARY_PROMPT:
            return Reply.text("a short summary of lamps")
        return Reply.text("ok " * 20)

    guard = ContextWindowGuard(SMALL, context_window=900, reply=answer)
    with FakeChatServer(default_responder=guard) as server:
        conv = make(server, store, model=SMALL, policy=Summarize(SMALL), max_tokens=100)
        for i in range(30):
            conv.send(f"question {i} " + "lamp " * 25)
        assert guard.rejected == 0, guard.seen
        assert store.get_summary(conv.thread_id) is not None


class Grower:
    @hookimpl
    def finalize_request(self, request: Any, context: Any) -> None:
        request.params["max_tokens"] = 250


class Retarget:
    @hookimpl
    def prepare_request(self, draft: Any, context: Any) -> None:
        draft.model = "convkit-test-retarget"


convkit.models.register("convkit-test-retarget", context_window=500, max_output_tokens=100)


@pytest.mark.parametrize("plugin", [Grower(), Retarget()], ids=["max_tokens", "model"])
def test_hook_edits_are_held_against_the_real_budget(store: Store, plugin: object) -> None:
    window = 500 if isinstance(plugin, Retarget) else 600
    guard = ContextWindowGuard(
        "convkit-test-retarget" if isinstance(plugin, Retarget) else "gpt-4o",
        context_window=window,
        reply=lambda r: Reply.text("fine " * 10),
    )
    with FakeChatServer(default_responder=guard) as server:
        conv = make(
            server,
            store,
            plugins=[plugin],
            policy=TrimOldest("gpt-4o", max_prompt_tokens=350),
            max_tokens=100,
        )
        for i in range(12):
            conv.send(f"turn {i} " + "word " * 30)
        assert guard.rejected == 0, guard.seen


# ---- failing plugins lose nothing


class BreaksMidStream:
    @hookimpl
    def wrap_stream(self, request: Any, context: Any) -> Any:
        return _Breaks()


class _Breaks:
    def __init__(self) -> None:
        self.n = 0

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        if chunk.text:
            self.n += 1
            if self.n == 3:
                raise RuntimeError("middleware bug")
        return [chunk]

    def close(self) -> list[ChatChunk]:
        return []


class BreaksResponse:
    @hookimpl
    def process_response(self, response: Any, request: Any, context: Any) -> None:
        raise RuntimeError("reviewer bug")


class Failures:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def request_failed(self, error: Any, attempts: int, request: Any, context: Any) -> None:
        self.seen.append(type(error).__name__)


def test_a_failing_middleware_stores_what_the_caller_received(
    server: FakeChatServer, store: Store
) -> None:
    failures = Failures()
    server.enqueue(Reply.text("one two three four", chunk_size=4))
    conv = make(server, store, plugins=[BreaksMidStream(), failures])
    got = []
    with pytest.raises(PluginError):
        for delta in conv.stream("go"):
            got.append(delta)
    assert roles(store, conv) == [("user", "complete", "go"), ("assistant", "incomplete", "".join(got))]
    assert failures.seen == ["PluginError"]
    server.enqueue(Reply.text("whole answer"))
    other = make(server, store, plugins=[BreaksResponse()])
    with pytest.raises(PluginError, match="BreaksResponse"):
        other.send("again")
    assert roles(store, other)[-1] == ("assistant", "incomplete", "whole answer")


def test_request_failed_runs_once_for_a_broken_stream(server: FakeChatServer, store: Store) -> None:
    failures = Failures()
    server.enqueue(Reply.text("cut short here", drop_after_chunks=2))
    conv = make(server, store, plugins=[failures])
    with pytest.raises(StreamError):
        list(conv.stream("go"))
    assert failures.seen == ["StreamError"]


# ---- the reply is safe before summarizing starts


class PeekingSummarizer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.newest: list[str] = []

    @hookimpl
    def summarizer(self, model: str, context: Any) -> Any:
        def summarize(request: Any) -> str:
            self.newest.append(self.store.messages(context.thread_id, last=1)[0].role)
            return "summary"

        return summarize


def test_the_reply_is_stored_before_the_summary_is_made(server: FakeChatServer, store: Store) -> None:
    peek = PeekingSummarizer(store)
    conv = make(
        server, store, plugins=[peek], policy=Summarize("gpt-4o", max_prompt_tokens=300)
    )
    for i in range(12):
        conv.send(f"question {i} " + "lamp " * 20)
    assert peek.newest and set(peek.newest) == {"assistant"}


# ---- observers


class Observer:
    def __init__(self) -> None:
        self.stored: list[list[str]] = []

    @hookimpl
    def turn_stored(self, messages: Any, usage: Any, context: Any) -> None:
        self.stored.append([m.role for m in messages])


class BrokenObserver:
    @hookimpl
    def window_fitted(self, window: Any, context: Any) -> None:
        raise RuntimeError("dashboard down")


def test_observers_see_tool_rows_and_failures_are_on_the_reply(
    server: FakeChatServer, store: Store
) -> None:
    seen = Observer()
    server.enqueue(Reply.tool_calls([{"id": "c1", "name": "f", "arguments": {}}]), Reply.text("done"))
    conv = make(server, store, plugins=[seen, BrokenObserver()], tool_handlers={"f": lambda a: "42"})
    reply = conv.send("go")
    assert seen.stored == [["assistant"], ["tool"], ["assistant"]]
    assert reply.plugin_errors and all(isinstance(e, PluginError) for e in reply.plugin_errors)
    assert "BrokenObserver" in str(reply.plugin_errors[0])


# ---- bad input, refused before anything is stored


@pytest.mark.parametrize(
    "content",
    [
        {"role": "assistant", "content": "I am the model"},
        {"role": "tool", "tool_call_id": "x", "content": "r"},
        Message.system("new rules"),
    ],
)
def test_only_user_messages_are_user_turns(
    server: FakeChatServer, store: Store, content: Any
) -> None:
    conv = make(server, store)
    with pytest.raises(InvalidMessageError, match="cannot be a user turn"):
        conv.send(content)
    assert not server.requests


def test_nothing_to_answer_and_impossible_budgets_are_refused(
    server: FakeChatServer, store: Store
) -> None:
    conv = make(server, store)
    with pytest.raises(InvalidRequestError, match="no message to answer"):
        conv.send()
    with pytest.raises(InvalidRequestError, match="reply reserve"):
        conv.send("hello", max_tokens=10**9)
    assert store.messages(conv.thread_id) == [] and not server.requests


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"store": 123}, "store must be"),
        ({"tool_handlers": [1]}, "tool_handlers"),
        ({"plugin_settings": [1]}, "plugin_settings"),
        ({"plugins": [1]}, "implements no convkit hook"),
    ],
)
def test_bad_constructor_arguments_are_clear(
    server: FakeChatServer, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        Conversation("gpt-4o", base_url=server.base_url, api_key=FAKE_API_KEY, **kwargs)
