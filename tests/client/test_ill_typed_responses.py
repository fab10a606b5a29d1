"""Ill-typed fields in a server's answer raise convkit errors, never raw TypeError/OverflowError.

A non-streamed body that cannot be read raises :class:`~convkit.TransportError`; a stream
raises :class:`~convkit.StreamError` with ``partial`` after handing out every chunk that arrived
before the bad one, also those decoded from the same read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from convkit import StreamError, TransportError, Usage
from convkit.chat import ChatChunk, ChatResponse, StreamAccumulator
from convkit.client import ChatClient
from convkit.errors import ResponseFormatError
from convkit.testing import Reply
from convkit.testing.pytest_plugin import FAKE_API_KEY

from .conftest import MESSAGES, Driver

HI = {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}


def completion(**fields: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}}
    choice.update(fields.pop("choice", {}))
    return {"id": "c1", "model": "m", "choices": [choice], **fields}


def sse(*objs: Any, done: bool = True) -> bytes:
    """The event-stream bytes for these chunk objects (already JSON text when a str)."""
    out = [f"data: {o if isinstance(o, str) else json.dumps(o)}\n\n" for o in objs]
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


# Python's json reads (and writes) Infinity, and 1e400 overflows to it.
BAD_USAGE = [
    pytest.param({"prompt_tokens": [1]}, id="list"),
    pytest.param({"prompt_tokens": {"a": 1}}, id="object"),
    pytest.param({"prompt_tokens": float("inf")}, id="infinity"),
    pytest.param({"completion_tokens": float("nan")}, id="nan"),
    pytest.param({"total_tokens": "many"}, id="text"),
    pytest.param("lots", id="not-an-object"),
    pytest.param([1, 2], id="a-list"),
]


# --------------------------------------------------------------------------- the parsers


@pytest.mark.parametrize("usage", BAD_USAGE)
def test_parsers_reject_a_malformed_usage_with_value_error(usage: Any) -> None:
    with pytest.raises(ValueError, match="usage"):
        ChatResponse.from_openai(completion(usage=usage))
    bad = {"id": "c1", "choices": [], "usage": usage}
    with pytest.raises(ValueError, match="usage"):
        ChatChunk.from_openai(bad)
    acc = StreamAccumulator()
    acc.feed_openai(dict(HI))
    with pytest.raises(ValueError, match="usage"):
        acc.feed_openai(bad)
    assert acc.response().text == "hi"  # what came before stays accumulated


@pytest.mark.parametrize("exc", [TypeError("int() argument"), OverflowError("inf")])
def test_parsers_turn_whatever_usage_parsing_raises_into_value_error(
    monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def boom(cls: type, d: Mapping[str, Any]) -> Usage:
        raise exc

    monkeypatch.setattr(Usage, "from_openai", classmethod(boom))
    with pytest.raises(ValueError, match="malformed 'usage'"):
        ChatResponse.from_openai(completion(usage={"prompt_tokens": 1}))
    with pytest.raises(ValueError, match="malformed 'usage'"):
        StreamAccumulator().feed_openai({"choices": [], "usage": {"prompt_tokens": 1}})


@pytest.mark.parametrize("finish", [5, ["stop"], {"reason": "stop"}, True])
def test_finish_reason_must_be_a_string_streamed_or_not(finish: Any) -> None:
    with pytest.raises(ValueError, match="finish_reason"):
        ChatResponse.from_openai(completion(choice={"finish_reason": finish}))
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    with pytest.raises(ValueError, match="finish_reason"):
        ChatChunk.from_openai(chunk)
    with pytest.raises(ValueError, match="finish_reason"):
        StreamAccumulator().feed_openai(chunk)


def test_absent_or_null_finish_reason_and_usage_are_fine() -> None:
    r = ChatResponse.from_openai(completion(choice={"finish_reason": None}, usage=None))
    assert r.finish_reason is None and r.usage is None
    acc = StreamAccumulator()
    acc.feed_openai({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]})
    acc.feed_openai({"choices": [], "usage": None})
    assert acc.response().finish_reason is None and acc.response().usage is None


# --------------------------------------------------------------------------- through the clients


@pytest.mark.parametrize("usage", BAD_USAGE)
def test_malformed_usage_in_a_body_is_a_transport_error(driver: Driver, usage: Any) -> None:
    driver.server.enqueue(Reply.json(completion(usage=usage)))
    with pytest.raises(TransportError, match="not a chat completion") as info:
        driver.complete()
    assert type(info.value) is TransportError
    assert info.value.request_id == "req_fake_1"
    assert len(driver.server.requests) == 1  # a malformed answer is not retried


@pytest.mark.parametrize("usage", BAD_USAGE)
def test_malformed_usage_in_a_stream_keeps_the_chunks_before_it(driver: Driver, usage: Any) -> None:
    # One write, so that the good chunk and the bad one arrive in the same read.
    body = sse(HI, {"id": "c1", "choices": [], "usage": usage})
    driver.server.enqueue(Reply.raw_stream(body))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "malformed chunk" in str(res.error)
    assert res.text == "hi" and len(res.chunks) == 1
    assert res.error.partial is not None and res.error.partial.text == "hi"
    assert len(driver.server.requests) == 1


def test_non_string_finish_reason_fails_the_same_way_streamed_or_not(driver: Driver) -> None:
    driver.server.enqueue(Reply.json(completion(choice={"finish_reason": 5})))
    with pytest.raises(TransportError, match="finish_reason"):
        driver.complete()
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": 5}]}
    driver.server.enqueue(Reply.raw_stream(sse(HI, chunk)))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "finish_reason" in str(res.error)
    assert res.text == "hi"


def test_a_format_error_from_the_body_parser_becomes_a_transport_error(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(d: Mapping[str, Any]) -> ChatResponse:
        raise ResponseFormatError("odd", field="choices")

    monkeypatch.setattr(ChatResponse, "from_openai", staticmethod(boom))
    driver.server.enqueue(Reply.text("hi"))
    with pytest.raises(TransportError, match=r"not a chat completion \(choices: odd\)") as info:
        driver.complete()
    assert type(info.value) is TransportError


@pytest.mark.parametrize("exc", [TypeError("boom"), OverflowError("boom"), ZeroDivisionError()])
def test_a_bug_in_the_body_parser_is_not_disguised_as_a_transport_error(
    driver: Driver, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def boom(d: Mapping[str, Any]) -> ChatResponse:
        raise exc

    monkeypatch.setattr(ChatResponse, "from_openai", staticmethod(boom))
    driver.server.enqueue(Reply.text("hi"))
    with pytest.raises(type(exc)) as info:
        driver.complete()
    assert not isinstance(info.value, TransportError)


def test_a_format_error_from_the_chunk_parser_becomes_a_stream_error_after_earlier_chunks(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = StreamAccumulator.feed_openai

    def feed(self: StreamAccumulator, obj: Mapping[str, Any]) -> ChatChunk:
        if "boom" in obj:
            raise ResponseFormatError("odd")
        return real(self, obj)

    monkeypatch.setattr(StreamAccumulator, "feed_openai", feed)
    driver.server.enqueue(Reply.raw_stream(sse(HI, {"boom": 1, "choices": []})))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "malformed chunk: odd" in str(res.error)
    assert res.text == "hi" and res.error.partial is not None
    assert res.error.partial.text == "hi"


@pytest.mark.parametrize("exc", [TypeError("boom"), OverflowError("boom"), ZeroDivisionError()])
def test_a_bug_in_the_chunk_parser_is_not_disguised_as_a_stream_error(
    driver: Driver, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    real = StreamAccumulator.feed_openai

    def feed(self: StreamAccumulator, obj: Mapping[str, Any]) -> ChatChunk:
        if "boom" in obj:
            raise exc
        return real(self, obj)

    monkeypatch.setattr(StreamAccumulator, "feed_openai", feed)
    driver.server.enqueue(Reply.raw_stream(sse(HI, {"boom": 1, "choices": []})))
    res = driver.stream()
    assert type(res.error) is type(exc)  # a bug surfaces as itself, not as a server fault


def test_every_parse_failure_is_a_response_format_error_and_a_value_error() -> None:
    # The documented contract of the parsers: ValueError, as convkit's own subclass.
    cases = [
        lambda: ChatResponse.from_openai({"choices": "no"}),
        lambda: ChatResponse.from_openai(completion(choice={"message": {"content": 5}})),
        lambda: ChatChunk.from_openai({"choices": [{"delta": {"content": 5}}]}),
        lambda: ChatChunk.from_openai({"choices": [{"delta": {"tool_calls": {}}}]}),
        lambda: StreamAccumulator().feed_openai({"choices": [{"delta": {"role": 1}}]}),
        lambda: StreamAccumulator().feed(ChatChunk({"choices": [{"delta": {"refusal": 1}}]})),
    ]
    for case in cases:
        with pytest.raises(ResponseFormatError) as info:
            case()
        assert isinstance(info.value, ValueError)


def test_json_nested_too_deeply_is_malformed_not_a_recursion_error(driver: Driver) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    driver.server.enqueue(Reply.raw_stream(sse(HI, deep)))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "not JSON" in str(res.error)
    assert res.text == "hi"


def test_a_body_nested_too_deeply_is_a_transport_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"content-type": "application/json"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = ChatClient(base_url="http://test/v1", api_key=FAKE_API_KEY, http_client=http)
    try:
        with pytest.raises(TransportError, match="not JSON"):
            client.complete(model="m", messages=MESSAGES)
    finally:
        http.close()
