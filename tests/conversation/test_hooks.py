"""Every hook, exercised by real throwaway plugins around real turns, sync and async, streamed
and not: hooks are effects of the one sans-IO turn, so both shells run them the same way."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from convkit import (
    AsyncConversation,
    ContextOverflowError,
    Conversation,
    Message,
    PluginError,
    Summarize,
    TransportError,
    TrimOldest,
    hookimpl,
)
from convkit._replay import with_text
from convkit.chat import ChatChunk, ChatResponse
from convkit.hookspecs import CallContext, OutgoingRequest, RequestDraft
from convkit.models import ModelInfo
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY

MODEL = "gpt-4o"


_made: list[Conversation] = []


@pytest.fixture(autouse=True)
def _close_conversations() -> Any:
    yield
    while _made:
        _made.pop().close()


def make(server: FakeChatServer, store: Store, plugins: list[object], **kw: Any) -> Conversation:
    conv = Conversation(
        kw.pop("model", MODEL),
        store=store,
        base_url=server.base_url,
        api_key=FAKE_API_KEY,
        plugins=plugins,
        **kw,
    )
    _made.append(conv)
    return conv


def canned(text: str) -> ChatResponse:
    return ChatResponse(id="cached", model=MODEL, created=0, message=Message.assistant(text),
                        finish_reason="stop")


@pytest.fixture(params=[False, True], ids=["send", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def turn(conv: Conversation, text: str, streaming: bool) -> tuple[str, Any]:
    if not streaming:
        reply = conv.send(text)
        return reply.text, reply
    stream = conv.stream(text)
    seen = "".join(stream)
    return seen, stream.reply


# ---- before fitting


class EditDraft:
    @hookimpl
    def prepare_request(self, draft: RequestDraft, context: CallContext) -> None:
        assert context.purpose == "turn" and context.thread_id
        draft.system.append(Message.system("Always mention the order number."))
        draft.params["temperature"] = 0.1


def test_prepare_request_edits_the_draft(server: FakeChatServer, store: Store, streaming: bool) -> None:
    conv = make(server, store, [EditDraft()], system="Be brief.")
    turn(conv, "hello", streaming)
    body = server.requests[-1].body
    assert [m["content"] for m in body["messages"][:2]] == [
        "Be brief.",
        "Always mention the order number.",
    ]
    assert body["temperature"] == 0.1


class AnswerEarly:
    @hookimpl
    def prepare_request(self, draft: RequestDraft, context: CallContext) -> ChatResponse:
        return canned("answered without the API")


def test_prepare_request_can_answer_without_calling_the_api(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    conv = make(server, store, [AnswerEarly()])
    text, reply = turn(conv, "hello", streaming)
    assert text == "answered without the API" and not server.requests
    stored = store.messages(conv.thread_id)[-1]
    assert stored.message.text == "answered without the API"
    assert stored.metadata["answered_by_plugin"] is True
    assert reply.window is not None and reply.window.answered_by_plugin


# ---- after fitting


class Mask:
    @hookimpl
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> None:
        request.messages = [
            Message(role=m.role, content=m.text.replace("4111", "####"))
            if m.role == "user"
            else m
            for m in request.messages
        ]


def test_finalize_request_edit_is_what_is_sent_and_counted(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    from convkit import count_tokens

    conv = make(server, store, [Mask()])
    _, reply = turn(conv, "my card 4111 is stuck", streaming)
    sent = server.requests[-1].body["messages"]
    assert sent[-1]["content"] == "my card #### is stuck"
    assert reply.window.prompt_tokens == count_tokens(sent, model=MODEL)  # recounted
    # what is stored is what the user typed
    assert store.messages(conv.thread_id)[0].message.text == "my card 4111 is stuck"


class Grow:
    def __init__(self, words: int) -> None:
        self.words = words

    @hookimpl
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> None:
        request.messages.insert(0, Message.system("policy " * self.words))


def test_a_request_grown_past_the_budget_is_refitted_or_refused(
    server: FakeChatServer, store: Store
) -> None:
    from convkit import count_tokens

    policy = TrimOldest(MODEL, max_prompt_tokens=600)
    conv = make(server, store, [Grow(300)], policy=policy)
    conv.send("first " + "y " * 60)
    for i in range(6):
        conv.send(f"turn {i} " + "z " * 60)
    for record in server.requests:
        assert count_tokens(record.body["messages"], model=MODEL) <= 600  # never over budget
    assert len(server.requests[-1].body["messages"]) < 14  # older turns made room
    huge = make(server, store, [Grow(2000)], policy=policy)
    before = len(server.requests)
    with pytest.raises(ContextOverflowError, match="finalize_request"):
        huge.send("hi")
    assert len(server.requests) == before  # nothing over budget was sent


class Cache:
    def __init__(self) -> None:
        self.seen: dict[str, ChatResponse] = {}

    @hookimpl(trylast=True)
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> Any:
        key = repr([m.to_openai() for m in request.messages][-1:])
        return self.seen.get(key)

    @hookimpl
    def process_response(self, response: ChatResponse, request: Any, context: CallContext) -> None:
        self.seen[repr([m.to_openai() for m in request.messages][-1:])] = response


def test_finalize_request_can_answer_from_a_cache(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    cache = Cache()
    first = make(server, store, [cache])
    turn(first, "same question", streaming)
    second = make(server, store, [cache])
    text, _ = turn(second, "same question", streaming)
    assert text == "same question" and len(server.requests) == 1


# ---- streaming middleware


class Upper:
    @hookimpl
    def wrap_stream(self, request: Any, context: CallContext) -> Any:
        return UpperMiddleware()


class UpperMiddleware:
    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        return [with_text(chunk, chunk.text.upper())] if chunk.text else [chunk]

    def close(self) -> list[ChatChunk]:
        return []


class HoldSecret:
    """Replaces 'SECRET' even when it is split across chunks; appends a note at the end."""

    @hookimpl(tryfirst=True)
    def wrap_stream(self, request: Any, context: CallContext) -> Any:
        return HoldSecretMiddleware()


class HoldSecretMiddleware:
    def __init__(self) -> None:
        self.held = ""
        self.last: ChatChunk | None = None

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        if not chunk.text:
            return [chunk]
        self.last = chunk
        text = (self.held + chunk.text).replace("SECRET", "[x]")
        keep = next((k for k in range(min(5, len(text)), 0, -1) if "SECRET".startswith(text[-k:])), 0)
        self.held = text[len(text) - keep :] if keep else ""
        out = text[: len(text) - keep] if keep else text
        return [with_text(chunk, out)] if out else []  # dropped while held

    def close(self) -> list[ChatChunk]:
        assert self.last is not None
        return [with_text(self.last, self.held + " (checked)")]


def test_middleware_transforms_holds_back_drops_and_flushes(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    server.enqueue(Reply.text("my SECRET is safe", chunk_size=2))
    conv = make(server, store, [Upper(), HoldSecret()])
    text, reply = turn(conv, "tell me", streaming)
    # HoldSecret is tryfirst: it sees the raw chunks first, then Upper sees its output
    assert text == "MY [X] IS SAFE (CHECKED)"
    assert reply.text == text
    assert store.messages(conv.thread_id)[-1].message.text == text  # what is stored


# ---- after the response, after storage, on error, window


class Replace:
    @hookimpl
    def process_response(self, response: ChatResponse, request: Any, context: CallContext) -> Any:
        return ChatResponse(id=response.id, model=response.model, created=response.created,
                            message=Message.assistant(response.text + " [reviewed]"),
                            finish_reason=response.finish_reason, usage=response.usage)


def test_process_response_replaces_what_is_stored_and_returned(
    server: FakeChatServer, store: Store
) -> None:
    conv = make(server, store, [Replace()])
    assert conv.send("hi").text == "hi [reviewed]"
    assert store.messages(conv.thread_id)[-1].message.text == "hi [reviewed]"


class Observers:
    def __init__(self) -> None:
        self.stored: list[Any] = []
        self.failed: list[Any] = []
        self.windows: list[Any] = []

    @hookimpl
    def turn_stored(self, messages: Any, usage: Any, context: CallContext) -> None:
        self.stored.append(([m.seq for m in messages], usage, context.purpose))

    @hookimpl
    def request_failed(self, error: Any, attempts: int, request: Any, context: CallContext) -> None:
        self.failed.append((type(error).__name__, attempts))

    @hookimpl
    def window_fitted(self, window: Any, context: CallContext) -> None:
        self.windows.append(window.prompt_tokens)


class BrokenObserver:
    @hookimpl
    def turn_stored(self, messages: Any, usage: Any, context: CallContext) -> None:
        raise RuntimeError("analytics down")


def test_observers_see_storage_failures_and_windows(
    server: FakeChatServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Observers()
    conv = make(server, store, [seen, BrokenObserver()])
    with caplog.at_level(logging.ERROR, logger="convkit.plugins"):
        reply = conv.send("hello")
    assert reply.text == "hello"  # a failing observer loses nothing
    assert seen.stored == [([2], reply.usage, "turn")]
    assert seen.windows == [reply.window.prompt_tokens]
    assert "BrokenObserver" in caplog.text
    server.enqueue(Reply.error(401))
    with pytest.raises(TransportError):
        conv.send("again")
    assert seen.failed == [("AuthenticationError", 1)]


# ---- single answers


class Counter:
    @hookimpl
    def count_tokens(self, model: str, messages: Any, tools: Any) -> int | None:
        if model != "acme-1":
            return None
        return sum(4 * len(m.text.split()) + 5 for m in messages)

    @hookimpl
    def register_models(self, register: Any) -> None:
        register(ModelInfo(name="acme-1", context_window=8_000, max_output_tokens=1_000,
                           encoding="cl100k_base", exact=False, safety_margin=0.1))


def test_register_models_and_count_tokens_for_an_unknown_model(
    server: FakeChatServer, store: Store
) -> None:
    conv = make(server, store, [Counter()], model="acme-1")
    reply = conv.send("one two three")
    assert reply.window is not None and not reply.window.exact
    assert reply.window.prompt_tokens == 4 * 3 + 5  # the plugin's count is the prediction
    assert server.requests[-1].body["model"] == "acme-1"


class Summaries:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def summarizer(self, model: str, context: CallContext) -> Any:
        assert context.purpose == "summary"

        def summarize(request: Any) -> str:
            self.calls += 1
            return f"{len(request.messages)} messages about lamps"

        return summarize


def test_the_summarizer_hook_replaces_the_summary_call(server: FakeChatServer, store: Store) -> None:
    plugin = Summaries()
    policy = Summarize(MODEL, max_prompt_tokens=400, max_summary_tokens=40)
    conv = make(server, store, [plugin], policy=policy)
    for i in range(20):
        conv.send(f"question {i} " + "lamp " * 20)
    from convkit import count_tokens

    assert plugin.calls >= 1
    summary = store.get_summary(conv.thread_id)
    assert summary is not None and summary.text.endswith("messages about lamps")
    # no summary call reached the server; later requests carry the plugin's summary
    assert all("Summary so far" not in str(r.messages) for r in server.requests)
    assert summary.text in server.requests[-1].messages[0]["content"]
    assert all(count_tokens(r.messages, model=MODEL) <= 400 for r in server.requests)


# ---- failures of plugins, sync and async


class Raises:
    @hookimpl
    def prepare_request(self, draft: Any, context: Any) -> None:
        raise ValueError("bad plugin")


class AsyncEdit:
    @hookimpl
    async def prepare_request(self, draft: RequestDraft, context: CallContext) -> None:
        draft.params["temperature"] = 0.7


def test_a_raising_plugin_is_named_and_the_user_message_is_kept(
    server: FakeChatServer, store: Store
) -> None:
    conv = make(server, store, [Raises()])
    with pytest.raises(PluginError) as info:
        conv.send("hello")
    assert "Raises" in str(info.value) and "prepare_request" in str(info.value)
    assert [m.message.text for m in store.messages(conv.thread_id)] == ["hello"]
    sync = make(server, store, [AsyncEdit()])
    with pytest.raises(PluginError, match="AsyncEdit"):
        sync.send("hello")


@pytest.mark.anyio
async def test_async_hooks_are_awaited(server: FakeChatServer, db_url: str) -> None:
    async with AsyncStore(db_url) as store, AsyncConversation(
        MODEL, store=store, base_url=server.base_url, api_key=FAKE_API_KEY,
        plugins=[AsyncEdit(), Upper(), HoldSecret()],
    ) as conv:
        reply = await conv.send("a SECRET word")
        assert reply.text == "A [X] WORD (CHECKED)"
        assert server.requests[-1].body["temperature"] == 0.7
        server.enqueue(Reply.text("streamed SECRET", chunk_size=3))
        stream = conv.stream("go")
        assert "".join([d async for d in stream]) == "STREAMED [X] (CHECKED)"


# ---- what plugins add to the stored reply


class Tag:
    """Tags every call's reply, tries to overwrite a convkit key, and adds what it is given."""

    def __init__(self, **extra: Any) -> None:
        self.extra = extra
        self.calls = 0

    @hookimpl
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> None:
        self.calls += 1
        assert context.reply_metadata == {}  # fresh for every call
        context.reply_metadata["tag"] = {"call": self.calls, "model": request.model}
        context.reply_metadata["model"] = "not-the-model"  # convkit's own key: not replaced
        context.reply_metadata.update(self.extra)


def test_reply_metadata_is_stored_with_the_reply(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    server.enqueue(Reply.text("one", model="gpt-4o-2024-08-06"), Reply.text("two"))
    conv = make(server, store, [Tag()])
    turn(conv, "first", streaming)
    _, reply = turn(conv, "second", streaming)
    stored = store.messages(conv.thread_id)
    answers = [m.metadata for m in stored if m.role == "assistant"]
    assert [a["tag"] for a in answers] == [
        {"call": 1, "model": MODEL},
        {"call": 2, "model": MODEL},
    ]
    assert answers[0]["model"] == "gpt-4o-2024-08-06" and answers[1]["model"] == MODEL
    assert all("tag" not in m.metadata for m in stored if m.role == "user")
    assert reply.plugin_errors == ()


class Broken(dict):  # type: ignore[type-arg]
    """A plugin's buggy value: looking inside it fails."""

    def items(self) -> Any:
        raise RuntimeError("a bug in the plugin")

    def __iter__(self) -> Any:
        raise RuntimeError("a bug in the plugin")


def test_reply_metadata_the_store_would_refuse_is_left_out_and_reported(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    server.enqueue(Reply.text("kept"))
    conv = make(
        server,
        store,
        [Tag(bad={1, 2}, api_key="sk-" + "x" * 24, fine=[1, "a"], broken=Broken())],
    )
    text, reply = turn(conv, "hi", streaming)
    assert text == "kept"
    [*_, answer] = store.messages(conv.thread_id)
    assert answer.message.text == "kept" and answer.status == "complete"
    assert answer.metadata["fine"] == [1, "a"] and "tag" in answer.metadata
    assert "bad" not in answer.metadata and "api_key" not in answer.metadata
    assert "broken" not in answer.metadata
    assert sorted(e.plugin for e in reply.plugin_errors) == ["api_key", "bad", "broken"]
    assert all(e.hook == "reply_metadata" for e in reply.plugin_errors)
    assert all("sk-xxxx" not in str(e) for e in reply.plugin_errors)  # the value is not echoed


def test_reply_metadata_marks_a_partial_reply_too(server: FakeChatServer, store: Store) -> None:
    server.enqueue(Reply.text("cut short here", drop_after_chunks=2))
    conv = make(server, store, [Tag()])
    with pytest.raises(TransportError):
        list(conv.stream("go"))
    [*_, partial] = store.messages(conv.thread_id)
    assert partial.status == "incomplete" and partial.metadata["tag"] == {"call": 1, "model": MODEL}


class AnswerAndTag:
    @hookimpl(trylast=True)
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> ChatResponse:
        context.reply_metadata["canned"] = {"sent": len(request.messages)}
        return canned("from the plugin")

    @hookimpl
    def process_response(self, response: ChatResponse, request: Any, context: CallContext) -> None:
        # An answer keyed on the fitted request is processed with that request, not a stand-in.
        context.reply_metadata["seen_by_process_response"] = [m.text for m in request.messages]


@pytest.mark.anyio
async def test_async_reply_metadata_of_an_answered_call(
    server: FakeChatServer, db_url: str
) -> None:
    async with AsyncStore(db_url) as store, AsyncConversation(
        MODEL,
        store=store,
        base_url=server.base_url,
        api_key=FAKE_API_KEY,
        plugins=[AnswerAndTag()],
        system="Be brief.",
    ) as conv:
        reply = await conv.send("hello")
        [*_, answer] = await store.messages(conv.thread_id)
    assert reply.text == "from the plugin" and server.requests == []
    assert answer.metadata["canned"] == {"sent": 2}
    assert answer.metadata["seen_by_process_response"] == ["Be brief.", "hello"]
    assert answer.metadata["answered_by_plugin"] is True
