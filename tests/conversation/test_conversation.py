"""Conversation / AsyncConversation: a whole turn against the loopback server, sync and async."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convkit import (
    AsyncConversation,
    ContextLengthExceededError,
    Conversation,
    InvalidMessageError,
    InvalidRequestError,
    Message,
    StreamError,
    TransportError,
)
from convkit._retry import Backoff
from convkit.client import AsyncChatClient, ChatClient
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY

FAST = Backoff(initial=0.001, maximum=0.01)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "Look up an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


_clients: list[ChatClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Any:
    yield
    while _clients:
        _clients.pop().close()


def conv_for(server: FakeChatServer, store: Store, **kw: Any) -> Conversation:
    client = ChatClient(base_url=server.base_url, api_key=FAKE_API_KEY, backoff=FAST, timeout=10)
    _clients.append(client)
    return Conversation(kw.pop("model", "gpt-4o"), store=store, client=client, **kw)


def rows(store: Store, thread_id: str) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.message.text) for m in store.messages(thread_id)]


# ---- the turn


def test_send_stores_the_user_message_and_the_reply(server: FakeChatServer, store: Store) -> None:
    server.enqueue(Reply.text("Your order ships today."))
    conv = conv_for(server, store, system="You are brief.", temperature=0.2)
    reply = conv.send("Where is my order?")
    assert reply.text == "Your order ships today."
    assert not reply.incomplete and reply.finish_reason == "stop"
    assert rows(store, conv.thread_id) == [
        ("user", "complete", "Where is my order?"),
        ("assistant", "complete", "Your order ships today."),
    ]
    stored = store.messages(conv.thread_id)[-1]
    assert stored.usage == reply.usage and reply.usage is not None
    assert stored.metadata["finish_reason"] == "stop"
    body = server.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": "You are brief."}
    assert body["temperature"] == 0.2 and body["model"] == "gpt-4o"
    assert reply.window is not None
    counter = conv.store.counter
    user = store.messages(conv.thread_id)[0]
    # the system prompt, the user's message, and the reply's priming
    assert reply.window.prompt_tokens == (
        counter.count_message(Message.system("You are brief.")) + user.tokens + 3
    )
    assert reply.window.dropped == 0 and reply.window.exact


def test_stream_yields_deltas_in_order_and_stores_the_whole_reply(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(Reply.text("one two three four", chunk_size=3))
    conv = conv_for(server, store)
    stream = conv.stream("count")
    deltas = list(stream)
    assert "".join(deltas) == "one two three four" and len(deltas) > 3
    assert stream.reply.text == "one two three four"
    assert stream.reply.usage is not None  # the conversation asks for the usage chunk
    assert server.requests[0].body["stream"] is True
    assert rows(store, conv.thread_id)[-1] == ("assistant", "complete", "one two three four")


def test_a_resumed_thread_keeps_its_system_prompt(server: FakeChatServer, store: Store) -> None:
    first = conv_for(server, store, system="Answer in French.")
    first.send("hello")
    again = conv_for(server, store, thread=first.thread_id)
    assert again.system is None  # not read until the first turn
    again.send("and now?")
    assert again.system == "Answer in French."
    body = server.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert [m["content"] for m in body["messages"][1:]] == ["hello", "hello", "and now?"]
    # giving a system prompt on resume replaces the stored one
    third = conv_for(server, store, thread=first.thread_id, system="Answer in German.")
    third.send("ok")
    fourth = conv_for(server, store, thread=first.thread_id)
    fourth.send("ok")
    assert server.requests[-1].body["messages"][0]["content"] == "Answer in German."


@pytest.mark.parametrize(
    "content", ["", "   ", 42, None.__class__, [], {"role": "user"}, {"content": "x"}]
)
def test_bad_content_is_refused_before_anything_is_stored(
    server: FakeChatServer, store: Store, content: Any
) -> None:
    conv = conv_for(server, store)
    conv.send("first")
    before = rows(store, conv.thread_id)
    with pytest.raises(InvalidMessageError):
        conv.send(content)
    assert rows(store, conv.thread_id) == before
    assert len(server.requests) == 1


def test_bad_arguments_are_refused_clearly(server: FakeChatServer, store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="temperature"):
        conv_for(server, store, temperature=7)
    with pytest.raises(InvalidRequestError, match="max_tool_rounds"):
        conv_for(server, store, max_tool_rounds=-1)
    with pytest.raises(InvalidRequestError, match="policy"):
        conv_for(server, store, policy="trim")
    conv = conv_for(server, store)
    conv.send("hi")
    before = rows(store, conv.thread_id)
    with pytest.raises(InvalidRequestError, match="no message 9"):
        conv.edit(9, "new text")
    with pytest.raises(InvalidRequestError, match="only user messages"):
        conv.edit(2, "new text")
    with pytest.raises(InvalidRequestError, match="no pending tool call"):
        conv.add_tool_result("call_nope", "42")
    with pytest.raises(InvalidRequestError, match="model"):
        conv.send("x", model="other")
    assert rows(store, conv.thread_id) == before


# ---- tools


def test_tool_handlers_run_and_the_turn_continues(server: FakeChatServer, store: Store) -> None:
    seen: list[dict[str, Any]] = []

    def order_status(arguments: dict[str, Any]) -> dict[str, Any]:
        seen.append(arguments)
        return {"status": "shipped"}

    server.enqueue(
        Reply.tool_calls([{"id": "call_1", "name": "order_status", "arguments": {"order_id": "A7"}}]),
        Reply.text("It shipped."),
    )
    conv = conv_for(server, store, tools=TOOLS, tool_handlers={"order_status": order_status})
    reply = conv.send("Where is A7?")
    assert reply.text == "It shipped." and reply.tool_rounds == 1
    assert seen == [{"order_id": "A7"}]
    history = store.messages(conv.thread_id)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1].message.tool_calls[0].id == "call_1"
    assert json.loads(history[2].message.text) == {"status": "shipped"}
    assert history[3].metadata["purpose"] == "tool_followup"
    second = server.requests[1].body
    assert second["tools"] == TOOLS
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"status": "shipped"}),
    }


def test_a_failing_handler_gives_the_model_an_error_result(
    server: FakeChatServer, store: Store
) -> None:
    def broken(arguments: dict[str, Any]) -> str:
        raise RuntimeError("database down")

    server.enqueue(
        Reply.tool_calls([{"id": "c1", "name": "order_status", "arguments": {"order_id": "1"}}]),
        Reply.text("Sorry, try later."),
    )
    conv = conv_for(server, store, tools=TOOLS, tool_handlers={"order_status": broken})
    assert conv.send("status?").text == "Sorry, try later."
    result = store.messages(conv.thread_id)[2]
    assert result.role == "tool" and "database down" in result.message.text


def test_tool_rounds_are_bounded(server: FakeChatServer, store: Store) -> None:
    call = {"name": "order_status", "arguments": {"order_id": "1"}}
    server.enqueue(*[Reply.tool_calls([{**call, "id": f"c{i}"}]) for i in range(3)])
    conv = conv_for(
        server, store, tools=TOOLS, tool_handlers={"order_status": lambda a: "x"}, max_tool_rounds=2
    )
    reply = conv.send("loop")
    assert reply.tool_rounds == 2 and reply.tool_calls  # returned with the call pending
    assert len(server.requests) == 3


def test_pending_calls_are_answered_with_add_tool_result(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(
        Reply.tool_calls([{"id": "call_9", "name": "order_status", "arguments": {"order_id": "9"}}]),
        Reply.text("Order 9 is late."),
    )
    conv = conv_for(server, store, tools=TOOLS)
    reply = conv.send("and order 9?")
    assert [c.id for c in reply.tool_calls] == ["call_9"]
    conv.add_tool_result("call_9", {"status": "late"})
    assert conv.send().text == "Order 9 is late."
    assert server.requests[1].body["messages"][-1]["role"] == "tool"
    with pytest.raises(InvalidRequestError, match="no pending tool call"):
        conv.add_tool_result("call_9", "again")  # already answered


# ---- failures, with nothing lost


def test_a_stream_broken_by_the_server_is_stored_incomplete(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(Reply.text("The answer is forty-two, as usual.", drop_after_chunks=3))
    conv = conv_for(server, store)
    stream = conv.stream("question")
    got: list[str] = []
    with pytest.raises(TransportError):
        for delta in stream:
            got.append(delta)
    partial = "".join(got)
    assert partial and "The answer is forty-two, as usual.".startswith(partial)
    assert len(partial) < len("The answer is forty-two, as usual.")
    history = store.messages(conv.thread_id)
    assert [(m.role, m.status) for m in history] == [("user", "complete"), ("assistant", "incomplete")]
    assert history[1].message.text == partial  # what arrived, exactly what the caller saw
    # the next turn's window carries the partial text, and the thread goes on
    server.enqueue(Reply.text("(continued)"))
    conv.send("go on")
    sent = server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == partial


def test_a_stream_left_early_by_the_caller_is_stored_incomplete(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(Reply.text("alpha beta gamma delta epsilon", chunk_size=6))
    conv = conv_for(server, store)
    got = []
    with conv.stream("letters") as stream:
        for delta in stream:
            got.append(delta)
            if len(got) == 2:
                break
    assert got == ["alpha ", "beta g"]
    last = store.messages(conv.thread_id)[-1]
    assert (last.role, last.status) == ("assistant", "incomplete")
    assert last.message.text.startswith("alpha beta g")
    with pytest.raises(RuntimeError, match="not finished"):
        stream.reply  # noqa: B018


def test_a_failed_call_keeps_the_user_message_and_adds_nothing(
    server: FakeChatServer, store: Store
) -> None:
    server.enqueue(Reply.error(401, message="bad key"))
    conv = conv_for(server, store)
    with pytest.raises(TransportError):
        conv.send("are you there?")
    assert rows(store, conv.thread_id) == [("user", "complete", "are you there?")]
    server.enqueue(Reply.error(503), Reply.error(503), Reply.text("back"))
    assert conv.send("now?").text == "back"  # retried by the client: one reply stored
    assert [r[0] for r in rows(store, conv.thread_id)] == ["user", "user", "assistant"]


def _long_history(conv: Conversation, store: Store, n: int) -> None:
    for i in range(n):
        store.append(conv.thread_id, Message.user(f"question {i} " + "word " * 30))
        store.append(conv.thread_id, Message.assistant(f"answer {i} " + "word " * 30))


def test_context_length_exceeded_is_refitted_and_retried_once(
    server: FakeChatServer, store: Store
) -> None:
    conv = conv_for(server, store)
    server.enqueue(Reply.text("warm-up"))
    conv.send("start")
    _long_history(conv, store, 20)
    first_tokens = None
    server.enqueue(
        Reply.error(
            400,
            code="context_length_exceeded",
            message="This model's maximum context length is 600 tokens. However, your "
            "messages resulted in 1,500 tokens.",
        ),
        Reply.text("fits now"),
    )
    reply = conv.send("the real question")
    assert reply.text == "fits now"
    first, second = server.requests[-2].body, server.requests[-1].body
    first_tokens = len(first["messages"])
    assert len(second["messages"]) < first_tokens
    assert second["messages"][-1]["content"] == "the real question"
    from convkit import count_tokens

    # tightened by what the API said was too much (900 tokens, plus a margin)
    assert reply.window is not None
    assert reply.window.prompt_tokens <= count_tokens(first["messages"], model="gpt-4o") - 900
    # twice in a row: a typed error, the user message stays stored
    too_long = Reply.error(400, code="context_length_exceeded", message="too long")
    server.enqueue(too_long, too_long)
    with pytest.raises(ContextLengthExceededError):
        conv.send("again")
    assert store.messages(conv.thread_id, last=1)[0].message.text == "again"


# ---- regenerate, edit, history


def test_regenerate_answers_again_on_a_fork(server: FakeChatServer, store: Store) -> None:
    server.enqueue(Reply.text("first answer"), Reply.text("second answer"))
    conv = conv_for(server, store)
    conv.send("question")
    original = conv.thread_id
    reply = conv.regenerate()
    assert reply.text == "second answer" and conv.thread_id != original
    assert rows(store, original)[-1][2] == "first answer"  # still reachable
    assert rows(store, conv.thread_id) == [
        ("user", "complete", "question"),
        ("assistant", "complete", "second answer"),
    ]
    assert store.get_thread(conv.thread_id).parent_id == original
    assert server.requests[1].body["messages"] == [{"role": "user", "content": "question"}]


def test_edit_forks_at_the_turn_and_answers_the_new_text(
    server: FakeChatServer, store: Store
) -> None:
    conv = conv_for(server, store)
    conv.send("one")
    conv.send("two")
    original = conv.thread_id
    reply = conv.edit(3, "TWO")
    assert reply.text == "TWO" and conv.thread_id != original
    assert [r[2] for r in rows(store, conv.thread_id)] == ["one", "one", "TWO", "TWO"]
    assert [r[2] for r in rows(store, original)] == ["one", "one", "two", "two"]
    assert [m.message.text for m in conv.history(limit=2)] == ["TWO", "TWO"]
    assert len(conv.history(limit=None)) == 4


# ---- calibration


def test_calibration_compares_the_count_with_the_reported_usage(store: Store) -> None:
    from convkit import count_tokens

    def exact(body: Any) -> int:
        return count_tokens(body["messages"], model="gpt-4o", tools=body.get("tools"))

    with FakeChatServer(prompt_tokens_fn=exact, default_responder=lambda r: Reply.text("ok")) as srv:
        conv = conv_for(srv, store, system="s")
        reply = conv.send("hello")
        entry = conv.calibration.get("gpt-4o")
        assert entry is not None and entry.samples == 1
        assert entry.predicted == entry.reported == reply.usage.prompt_tokens  # type: ignore[union-attr]
        assert reply.window is not None and reply.window.reported_prompt_tokens == entry.reported
        assert entry.scale == 1.0


def test_estimated_models_get_budgets_scaled_by_what_the_api_reports(store: Store) -> None:
    import convkit.models

    # (the registry has no removal: the name is unique to this test)
    convkit.models.register("vendor-model-x", context_window=4_000, max_output_tokens=500)
    dense = {"factor": 1.3}

    def denser(body: Any) -> int:
        from convkit import count_tokens

        return int(count_tokens(body["messages"], model="vendor-model-x") * dense["factor"])

    with FakeChatServer(
        prompt_tokens_fn=denser, default_responder=lambda r: Reply.text("ok")
    ) as srv:
        conv = conv_for(srv, store, model="vendor-model-x")
        first = conv.send("hello " * 20)
        assert first.window is not None and first.window.calibration == 1.0
        assert not first.window.exact
        entry = conv.calibration.get("vendor-model-x")
        assert entry is not None and 1.25 <= entry.scale <= 1.31
        second = conv.send("again")
        assert second.window is not None and second.window.calibration == entry.scale
        assert second.window.budget < first.window.budget / 1.2
        dense["factor"] = 9.0  # never scaled past the bound
        conv.send("more")
        assert conv.calibration.get("vendor-model-x").scale == 1.5  # type: ignore[union-attr]


# ---- async: the same turn, awaited


def aconv_for(server: FakeChatServer, store: AsyncStore, **kw: Any) -> AsyncConversation:
    client = AsyncChatClient(
        base_url=server.base_url, api_key=FAKE_API_KEY, backoff=FAST, timeout=10
    )
    return AsyncConversation(kw.pop("model", "gpt-4o"), store=store, client=client, **kw)


@pytest.mark.anyio
async def test_async_send_stream_tools_and_failures(server: FakeChatServer, db_url: str) -> None:
    async def order_status(arguments: dict[str, Any]) -> str:
        return f"order {arguments['order_id']} shipped"

    async with AsyncStore(db_url) as store:
        conv = aconv_for(
            server, store, system="brief", tools=TOOLS, tool_handlers={"order_status": order_status}
        )
        server.enqueue(Reply.text("hi there"))
        assert (await conv.send("hello")).text == "hi there"
        server.enqueue(Reply.text("streamed words", chunk_size=4))
        stream = conv.stream("stream please")
        assert "".join([d async for d in stream]) == "streamed words"
        assert stream.reply.text == "streamed words"
        server.enqueue(
            Reply.tool_calls([{"id": "k1", "name": "order_status", "arguments": {"order_id": "5"}}]),
            Reply.text("done"),
        )
        reply = await conv.send("order 5?")
        assert reply.text == "done" and reply.tool_rounds == 1
        server.enqueue(Reply.text("cut short answer", drop_after_chunks=2))
        with pytest.raises(StreamError):
            async for _ in conv.stream("break it"):
                pass
        server.enqueue(Reply.text("abcdefghijklmnop", chunk_size=2))
        async with conv.stream("leave early") as early:
            async for _ in early:
                break
        history = await store.messages(conv.thread_id)
        assert [(m.role, m.status) for m in history] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
            ("tool", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "incomplete"),
            ("user", "complete"),
            ("assistant", "incomplete"),
        ]
        assert history[6].message.text == "order 5 shipped"
        assert "cut short answer".startswith(history[9].message.text)
        assert history[9].message.text
        assert history[11].message.text.startswith("ab")
        regen = await conv.regenerate()
        assert regen.text == "leave early"  # the echo of the newest user message
        await conv.aclose()
        await conv.client.aclose()
