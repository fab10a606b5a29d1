"""Streaming against the loopback server: every wire shape, sync and async."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from convkit import APIStatusError, InvalidRequestError, StreamError, ToolCall, Usage
from convkit.chat import ChatRequest
from convkit.client import ChatClient
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY, FAST, MESSAGES, Driver

TEXT = "Stream me: h\u00e9llo \u20ac \U0001f600 \u4e16\u754c, done."


def make(server: FakeChatServer, **kw: Any) -> ChatClient:
    return ChatClient(
        base_url=server.base_url, api_key=FAKE_API_KEY, backoff=FAST, timeout=5.0, **kw
    )


def test_stream_yields_chunks_and_the_accumulated_response(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, chunk_size=3))
    res = driver.stream()
    assert res.error is None and res.response is not None
    assert res.text == TEXT == res.response.text
    assert res.response.finish_reason == "stop"
    assert isinstance(res.response.usage, Usage) and res.response.usage.completion_tokens > 0
    assert res.chunks[-1].usage == res.response.usage and res.chunks[-1].choices == ()
    assert len({c.id for c in res.chunks}) == 1
    req = driver.server.requests[0]
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}
    assert req.headers["accept"] == "text/event-stream"


def test_stream_and_complete_agree(driver: Driver) -> None:
    reply = Reply.tool_calls(
        [
            {"name": "a", "arguments": {"x": 1}, "id": "c1"},
            {"name": "b", "arguments": "{}", "id": "c2"},
        ],
        content="Calling tools.",
        chunk_size=2,
    )
    driver.server.enqueue(reply, reply)
    whole = driver.complete()
    streamed = driver.stream()
    assert streamed.response is not None
    assert streamed.response.message == whole.message
    assert streamed.response.finish_reason == whole.finish_reason == "tool_calls"
    assert streamed.response.usage == whole.usage
    assert streamed.response.tool_calls == (
        ToolCall(id="c1", name="a", arguments='{"x": 1}'),
        ToolCall(id="c2", name="b", arguments="{}"),
    )


def test_stream_usage_opt_out_and_caller_stream_options(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("a"), Reply.text("b"))
    res = driver.stream(client={"stream_usage": False})
    assert res.response is not None and res.response.usage is None
    assert "stream_options" not in driver.server.requests[0].body
    res = driver.stream(stream_options={"include_usage": False})
    assert driver.server.requests[1].body["stream_options"] == {"include_usage": False}
    assert res.response is not None and res.response.usage is None


def test_refusal_stream(driver: Driver) -> None:
    driver.server.enqueue(Reply.refusal("I can't help with that.", chunk_size=4))
    res = driver.stream()
    assert res.response is not None
    assert res.response.message.refusal == "I can't help with that."
    assert res.response.message.content is None


def test_several_choices_stream(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("xy", chunk_size=1))
    res = driver.stream(n=2)
    assert res.response is not None
    assert [(c.index, c.message.text) for c in res.response.choices] == [(0, "xy"), (1, "xy")]


SHAPES: dict[str, dict[str, Any]] = {
    "crlf": {"line_ending": "\r\n"},
    "cr": {"line_ending": "\r"},
    "data-without-space": {"data_prefix": "data:"},
    "keep-alive-comments": {"keepalive_every": 2},
    "byte-by-byte": {"split_writes": 1},
    "7-byte-pieces-crlf": {"split_writes": 7, "line_ending": "\r\n"},
    "coalesced-events": {"events_per_write": 50},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_wire_shapes(driver: Driver, shape: str) -> None:
    driver.server.enqueue(Reply.text(TEXT, chunk_size=2, **SHAPES[shape]))
    res = driver.stream()
    assert res.error is None, res.error
    assert res.text == TEXT
    assert res.response is not None and res.response.text == TEXT


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


BASE = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_raw_transcript_with_every_oddity(driver: Driver) -> None:
    hello = json.dumps(_chunk({"role": "assistant", "content": "h\u00e9"}), ensure_ascii=False)
    pieces = [
        b": keep-alive\r\n\r\n",
        b"\n\n",  # stray blank lines
        b"retry: 3000\nid: 1\n",
        b"data:" + hello.encode()[:20],  # no space, and the JSON split mid-way
        hello.encode()[20:] + b"\r\n\r\n",
        # one JSON object spread over two data lines
        b'data: {"id": "chatcmpl-9", "choices": [{"index": 0,\ndata: "delta": {"content": "llo"}}]}\n\n',
        _sse(_chunk({}, "stop")),
        _sse(
            {
                **BASE,
                "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        ),
        b"data: [DONE]",  # no blank line before the end of the body
    ]
    driver.server.enqueue(Reply.raw_stream(pieces))
    res = driver.stream()
    assert res.error is None, res.error
    assert res.text == "h\u00e9llo"
    assert res.response is not None
    assert res.response.usage == Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    assert res.response.finish_reason == "stop"


def test_openai_documented_tool_call_transcript(driver: Driver) -> None:
    # Shaped like the function-calling stream in OpenAI's guide: id and name first, then
    # argument fragments, two calls in parallel, then finish_reason and the usage chunk.
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return _chunk({"tool_calls": [{"index": index, **fields}]})

    transcript = [
        _chunk({"role": "assistant", "content": None, "refusal": None}),
        call(
            0,
            id="call_12345xyz",
            type="function",
            function={"name": "get_weather", "arguments": ""},
        ),
        call(0, function={"arguments": '{"location":'}),
        call(0, function={"arguments": '"Paris, France"}'}),
        call(
            1,
            id="call_67890abc",
            type="function",
            function={"name": "get_weather", "arguments": ""},
        ),
        call(1, function={"arguments": '{"location":"Bogot\u00e1, Colombia"}'}),
        _chunk({}, "tool_calls"),
        {
            **BASE,
            "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
        },
    ]
    body = b"".join(_sse(c) for c in transcript) + b"data: [DONE]\n\n"
    driver.server.enqueue(Reply.raw_stream([body[i : i + 11] for i in range(0, len(body), 11)]))
    res = driver.stream()
    assert res.response is not None, res.error
    assert [(c.id, c.name, json.loads(c.arguments)) for c in res.response.tool_calls] == [
        ("call_12345xyz", "get_weather", {"location": "Paris, France"}),
        ("call_67890abc", "get_weather", {"location": "Bogot\u00e1, Colombia"}),
    ]
    assert res.response.finish_reason == "tool_calls"
    assert res.response.usage is not None and res.response.usage.total_tokens == 50
    deltas = [tc for c in res.chunks for ch in c.choices for tc in ch.tool_calls]
    assert [d.index for d in deltas] == [0, 0, 0, 1, 1]


def test_error_event_mid_stream(driver: Driver) -> None:
    body = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
    driver.server.enqueue(Reply.text("abcdef", chunk_size=2, event_error_at=2, event_error=body))
    res = driver.stream()
    assert isinstance(res.error, APIStatusError)
    assert res.error.status_code == 500 and res.error.body == body
    assert res.error.request_id == "req_fake_1"
    assert res.text == "ab"  # the chunks before the error reached the caller
    assert res.partial.text == "ab"


def test_stream_refuses_stream_false(chat_server: FakeChatServer) -> None:
    with make(chat_server) as client:
        with pytest.raises(InvalidRequestError) as info:
            client.stream(model="m", messages=MESSAGES, stream=False)
        assert info.value.param == "stream"
        with pytest.raises(InvalidRequestError):
            client.stream_request(
                ChatRequest(model="m", messages=MESSAGES, params={"stream": False})
            )
    assert chat_server.requests == []


def test_iterating_without_with_and_read(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("plain loop"), Reply.text("read it"))
    with make(chat_server) as client:
        stream = client.stream(model="m", messages=MESSAGES)
        assert chat_server.requests == []  # nothing is sent before the stream is used
        with pytest.raises(RuntimeError, match="not finished"):
            _ = stream.response
        assert stream.partial.text == ""
        assert "".join(c.text for c in stream) == "plain loop"
        assert stream.response.text == "plain loop"
        assert stream.chunks_yielded > 2 and stream.request_id == "req_fake_1"
        assert list(stream) == []  # exhausted
        other = client.stream(model="m", messages=MESSAGES)
        assert other.read().text == "read it"
        assert "done" in repr(other)


def test_closing_early_keeps_the_partial_and_frees_the_client(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("0123456789" * 5, chunk_size=1), Reply.text("next"))
    with make(chat_server) as client:
        with client.stream(model="m", messages=MESSAGES) as stream:
            seen = ""
            for chunk in stream:
                seen += chunk.text
                if len(seen) >= 5:
                    break
        assert seen == "01234"
        assert stream.partial.text.startswith("01234")
        assert list(stream) == []  # closed streams yield nothing more
        stream.close()  # idempotent
        assert client.complete(model="m", messages=MESSAGES).text == "next"


def test_not_an_event_stream(driver: Driver) -> None:
    driver.server.enqueue(Reply.json({"object": "chat.completion"}))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "text/event-stream" in str(res.error)
    driver.server.enqueue(Reply.json({"error": {"message": "bad things", "code": 400}}))
    res = driver.stream(client={"max_retries": 0})
    assert isinstance(res.error, APIStatusError) and res.error.status_code == 400


def test_gzip_compressed_stream(driver: Driver) -> None:
    body = b"".join(_sse(_chunk({"content": c})) for c in "abc\u00e9") + b"data: [DONE]\n\n"
    gz = zlib.compressobj(wbits=31)  # gzip framing
    pieces = [
        gz.compress(body[i : i + 10]) + gz.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(body), 10)
    ]
    pieces.append(gz.flush())
    driver.server.enqueue(Reply.raw_stream(pieces, headers={"Content-Encoding": "gzip"}))
    res = driver.stream()
    assert res.error is None, res.error
    assert res.text == "abc\u00e9"


def test_a_stream_can_skip_accumulating(chat_server: FakeChatServer, chat_client: ChatClient) -> None:
    chat_server.enqueue(Reply.text("hello there", chunk_size=3))
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], params={"stream": True})
    with chat_client.stream_request(request, accumulate=False) as stream:
        chunks = list(stream)
    assert "".join(c.text for c in chunks) == "hello there"
    assert chunks and all(c.trusted for c in chunks)  # checked by the client itself
    assert not stream.accumulates
    with pytest.raises(RuntimeError, match="accumulate=False"):
        stream.response  # noqa: B018
    with pytest.raises(RuntimeError, match="accumulate=False"):
        stream.partial  # noqa: B018
