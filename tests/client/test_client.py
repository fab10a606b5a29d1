"""ChatClient.complete against the loopback server: requests, responses, errors, secrets."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import httpx
import pytest

import convkit
from convkit import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectError,
    ContextLengthExceededError,
    InternalServerError,
    InvalidMessageError,
    InvalidRequestError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    StreamError,
    TransportError,
    UnprocessableEntityError,
    Usage,
)
from convkit.chat import ChatRequest
from convkit.client import DEFAULT_BASE_URL, ChatClient, Timeouts
from convkit.client._errors import ErrorMap
from convkit.client._redact import Redactor
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY, FAST, MESSAGES, Driver


def make(server: FakeChatServer, **kw: Any) -> ChatClient:
    kw.setdefault("base_url", server.base_url)
    kw.setdefault("api_key", FAKE_API_KEY)
    kw.setdefault("backoff", FAST)
    kw.setdefault("timeout", 5.0)
    return ChatClient(**kw)


# --------------------------------------------------------------------------- happy path


def test_complete_returns_the_response_value(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.text(
            "Bonjour !", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        )
    )
    r = driver.complete()
    assert r.text == "Bonjour !"
    assert r.message == Message.assistant("Bonjour !").__class__.from_openai(
        {"role": "assistant", "content": "Bonjour !", "refusal": None}
    )
    assert r.finish_reason == "stop"
    assert r.usage == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert r.id.startswith("chatcmpl-") and r.model == "fake-model" and r.created is not None
    assert r.extra["system_fingerprint"] == "fp_fake"  # raw extras kept
    assert len(r.choices) == 1


def test_request_carries_headers_body_and_every_parameter(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("ok"))
    params: dict[str, Any] = {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "max_completion_tokens": 60,
        "stop": ["\n\n"],
        "seed": 7,
        "n": 1,
        "frequency_penalty": 0.1,
        "presence_penalty": -0.1,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "user": "u1",
        "reasoning_effort": "low",
        "logit_bias": {"42": 1},
        "parallel_tool_calls": True,
        "top_k": 5,
        "chat_template_kwargs": {"enable_thinking": False},  # vendor fields
    }
    with make(chat_server, headers={"X-Trace": "abc"}) as client:
        client.complete(model="gpt-x", messages=[Message.system("s"), *MESSAGES], **params)
    [req] = chat_server.requests
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"
    assert req.headers["user-agent"].startswith("convkit/")
    assert req.headers["x-trace"] == "abc"
    assert req.body == {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}],
        **params,
    }
    assert "stream_options" not in req.body


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch, chat_server: FakeChatServer) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.base_url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123")
    chat_server.enqueue(Reply.text("ok"))
    with ChatClient() as client:
        assert client.base_url == chat_server.base_url
        client.complete(model="m", messages=MESSAGES)
    assert chat_server.requests[0].headers["authorization"] == "Bearer sk-from-env-123"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    with ChatClient() as client:
        assert client.base_url == DEFAULT_BASE_URL


def test_no_api_key_sends_no_authorization(
    monkeypatch: pytest.MonkeyPatch, chat_server: FakeChatServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_server.enqueue(Reply.text("ok"))
    with ChatClient(base_url=chat_server.base_url) as client:
        client.complete(model="m", messages=MESSAGES)
    assert "authorization" not in chat_server.requests[0].headers


def test_invalid_parameters_are_rejected_before_sending(chat_server: FakeChatServer) -> None:
    with make(chat_server) as client:
        with pytest.raises(InvalidRequestError) as info:
            client.complete(model="m", messages=MESSAGES, temperature=2.5)
        assert info.value.param == "temperature"
        with pytest.raises(InvalidRequestError):
            client.complete(model="m", messages=MESSAGES, max_tokens=0)
        with pytest.raises(InvalidMessageError):
            client.complete(model="m", messages=[{"role": "user"}])
        with pytest.raises(InvalidRequestError, match="JSON"):
            client.complete(model="m", messages=MESSAGES, vendor=object())
        with pytest.raises(InvalidRequestError):
            client.stream(model="m", messages=MESSAGES, top_p=-1)
    assert chat_server.requests == []


def test_complete_request_takes_a_prepared_request(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("ok"))
    req = ChatRequest(model="m", messages=MESSAGES, params={"seed": 1})
    with make(chat_server) as client:
        assert client.complete_request(req).text == "ok"
    assert chat_server.requests[0].body["seed"] == 1


def test_complete_with_stream_true_streams_and_accumulates(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("streamed whole", chunk_size=2))
    r = driver.complete(stream=True)
    assert r.text == "streamed whole"
    assert r.usage is not None  # stream_options.include_usage was added
    body = driver.server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_tool_calls_and_refusal_responses(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}]),
        Reply.refusal("I can't help with that."),
    )
    r = driver.complete(tools=[{"type": "function", "function": {"name": "get_weather"}}])
    assert r.finish_reason == "tool_calls"
    assert r.message.is_tool_call and r.text == ""
    assert [(c.id, c.name, json.loads(c.arguments)) for c in r.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    refused = driver.complete()
    assert refused.message.refusal == "I can't help with that."


def test_several_choices(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("same"))
    r = driver.complete(n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.text == "same" for c in r.choices)


def test_caller_supplied_http_client_is_used_and_left_open(chat_server: FakeChatServer) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    try:
        chat_server.enqueue(Reply.text("one"), Reply.text("two"))
        with ChatClient(base_url=chat_server.base_url, http_client=http) as client:
            assert client.complete(model="m", messages=MESSAGES).text == "one"
        assert not http.is_closed
        assert seen == [chat_server.base_url + "/chat/completions"]
        with ChatClient(base_url=chat_server.base_url, http_client=http, timeout=3) as client:
            assert client.complete(model="m", messages=MESSAGES).text == "two"
    finally:
        http.close()


def test_close_closes_an_owned_pool(chat_server: FakeChatServer) -> None:
    client = make(chat_server)
    client.close()
    assert client._http.is_closed


def test_timeouts_value() -> None:
    assert Timeouts.coerce(None) == Timeouts()
    t = Timeouts.coerce(3)
    assert (t.connect, t.read, t.write, t.pool, t.stream_idle) == (3, 3, 3, 3, None)
    assert Timeouts.coerce(t) is t
    with pytest.raises(ValueError, match="stream_idle"):
        Timeouts(stream_idle=0)
    with pytest.raises(TypeError):
        Timeouts.coerce("3")  # type: ignore[arg-type]
    assert Timeouts(read=9).to_httpx().read == 9
    with pytest.raises(ValueError, match="max_retries"):
        ChatClient(base_url="http://127.0.0.1:1/v1", max_retries=-1)


def test_public_names_are_importable_lazily_or_directly() -> None:
    from convkit.chat import ChatChunk, ChatResponse, StreamAccumulator, validate_params
    from convkit.client import AsyncChatClient, AsyncChatStream, ChatStream

    for obj in (
        ChatChunk,
        ChatResponse,
        StreamAccumulator,
        validate_params,
        AsyncChatClient,
        AsyncChatStream,
        ChatStream,
    ):
        assert obj.__doc__ and obj.__doc__.strip()


# --------------------------------------------------------------------------- errors

STATUS_CASES = [
    (400, None, BadRequestError),
    (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
        ContextLengthExceededError,
    ),
    (401, None, AuthenticationError),
    (403, None, PermissionDeniedError),
    (404, None, NotFoundError),
    (409, None, ConflictError),
    (422, None, UnprocessableEntityError),
    (429, None, RateLimitError),
    (500, None, InternalServerError),
    (503, None, InternalServerError),
    (418, None, APIStatusError),
]


@pytest.mark.parametrize(("status", "body", "cls"), STATUS_CASES)
def test_status_errors_carry_status_body_and_request_id(
    driver: Driver, status: int, body: Any, cls: type[APIStatusError]
) -> None:
    driver.server.enqueue(Reply.error(status, body, message=f"nope {status}"))
    with pytest.raises(APIStatusError) as info:
        driver.complete(client={"max_retries": 0})
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id == "req_fake_1"
    expected_body = body or {
        "error": {
            "message": f"nope {status}",
            "type": err.body["error"]["type"],
            "param": None,
            "code": None,
        }
    }
    assert err.body == expected_body
    assert str(status) in str(err) and "req_fake_1" in str(err)
    assert err.body["error"]["message"] in str(err)


def test_non_json_error_body_is_kept_as_text(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.error(502, "<html>Bad gateway</html>"))
    with make(chat_server, max_retries=0) as client, pytest.raises(InternalServerError) as info:
        client.complete(model="m", messages=MESSAGES)
    assert info.value.body == "<html>Bad gateway</html>"


def test_connection_refused_is_a_connect_error(driver: Driver) -> None:
    with FakeChatServer() as other:
        closed_url = other.base_url
    with pytest.raises(ConnectError) as info:
        driver.complete(client={"base_url": closed_url, "max_retries": 1})
    assert "could not connect" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_read_timeout_is_a_timeout_error(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("late", latency=5))
    with pytest.raises(convkit.APITimeoutError) as info:
        driver.complete(client={"timeout": Timeouts(read=0.2), "max_retries": 0})
    assert isinstance(info.value, convkit.TransportError)
    assert len(driver.server.requests) == 1  # read timeouts are not retried


def test_200_with_a_body_that_is_not_a_completion(driver: Driver) -> None:
    driver.server.enqueue(Reply.json({"object": "list", "data": []}))
    with pytest.raises(TransportError, match="not a chat completion"):
        driver.complete()
    driver.server.enqueue(Reply.text("x", malformed_chunk_at=0))
    with pytest.raises(TransportError, match="not JSON") as info:
        driver.complete()
    assert info.value.request_id is not None


def test_200_with_an_error_body_raises_the_error(driver: Driver) -> None:
    driver.server.enqueue(Reply.json({"error": {"message": "quota", "code": 429}}))
    with pytest.raises(RateLimitError, match="quota"):
        driver.complete(client={"max_retries": 0})


# --------------------------------------------------------------------------- secrets


def _trigger(kind: str, server: FakeChatServer) -> tuple[BaseException, ChatClient]:
    client = make(server, max_retries=0, timeout=Timeouts(read=2, stream_idle=0.2))
    request: dict[str, Any] = {"model": "m", "messages": MESSAGES}
    stream = False
    if kind.startswith("status"):
        status = int(kind.split("-")[1])
        server.enqueue(Reply.error(status))
    elif kind == "echoed-key":
        server.enqueue(
            Reply.error(
                401,
                {"error": {"message": f"Incorrect API key: {FAKE_API_KEY}", "key": FAKE_API_KEY}},
            )
        )
    elif kind == "connect":
        with FakeChatServer() as other:
            url = other.base_url
        client.close()
        client = make(server, base_url=url, max_retries=0)
    elif kind == "read-timeout":
        server.enqueue(Reply.text("x", latency=3))
        client.close()
        client = make(server, max_retries=0, timeout=Timeouts(read=0.2))
    elif kind == "truncated":
        server.enqueue(Reply.text("abcdefgh", drop_after_chunks=2))
        stream = True
    elif kind == "malformed":
        server.enqueue(Reply.text("abcdefgh", malformed_chunk_at=2))
        stream = True
    elif kind == "idle":
        server.enqueue(Reply.text("abcdefgh", stall_after_chunks=1, stall_seconds=5))
        stream = True
    elif kind == "event-error":
        server.enqueue(
            Reply.text(
                "abc", event_error_at=1, event_error={"error": {"message": f"bad {FAKE_API_KEY}"}}
            )
        )
        stream = True
    elif kind == "no-done":
        server.enqueue(Reply.text("abc", omit_done=True))
        stream = True
    try:
        if stream:
            with client.stream(**request) as s:
                for _ in s:
                    pass
        else:
            client.complete(**request)
    except convkit.ConvkitError as exc:
        return exc, client
    raise AssertionError(f"{kind} did not raise")


LEAK_KINDS = [
    "status-400",
    "status-401",
    "status-403",
    "status-404",
    "status-409",
    "status-422",
    "status-429",
    "status-500",
    "echoed-key",
    "connect",
    "read-timeout",
    "truncated",
    "malformed",
    "idle",
    "event-error",
    "no-done",
]


@pytest.mark.parametrize("kind", LEAK_KINDS)
def test_api_key_never_leaks(
    kind: str, chat_server: FakeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    exc, client = _trigger(kind, chat_server)
    try:
        texts = [
            str(exc),
            repr(exc),
            repr(client),
            str(client.__dict__.get("base_url")),
            "".join(traceback.format_exception(exc)),  # with every chained cause
            json.dumps(getattr(exc, "body", None), default=str),
            repr(getattr(exc, "partial", None)),
            caplog.text,
        ]
        for text in texts:
            assert FAKE_API_KEY not in text
        assert repr(client) == f"ChatClient(base_url={client.base_url!r}, max_retries=0)"
    finally:
        client.close()
    if kind == "echoed-key":
        assert "[redacted]" in str(exc)
        assert exc.body["error"]["key"] == "[redacted]"  # type: ignore[attr-defined]
    if kind in ("truncated", "malformed", "no-done"):
        assert isinstance(exc, StreamError)


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (httpx.ConnectTimeout("t"), convkit.APITimeoutError, True),
        (httpx.PoolTimeout("t"), convkit.APITimeoutError, False),
        (httpx.ReadTimeout("t"), convkit.APITimeoutError, False),
        (httpx.WriteTimeout("t"), convkit.APITimeoutError, False),
        (httpx.ConnectError("refused"), ConnectError, True),
        (httpx.RemoteProtocolError("closed"), ConnectError, True),
        (httpx.ReadError("reset"), ConnectError, True),
        (httpx.UnsupportedProtocol("ftp"), ConnectError, False),
        (httpx.DecodingError("gzip"), TransportError, False),
    ],
)
def test_httpx_errors_map_to_the_tree(exc: Exception, cls: type, retryable: bool) -> None:
    errors = ErrorMap("http://127.0.0.1:9/v1/chat/completions", Redactor(FAKE_API_KEY))
    err, may_retry = errors.transport(exc)
    assert type(err) is cls and may_retry is retryable


def test_idle_timeout_message_and_truncation_mapping() -> None:
    errors = ErrorMap("http://127.0.0.1:9/v1/chat/completions", Redactor(None), stream_idle=1.5)
    partial = client_partial()
    err, retry = errors.body(httpx.ReadTimeout("t"), partial)
    assert isinstance(err, convkit.APITimeoutError) and "1.5 s" in str(err) and not retry
    err, retry = errors.body(httpx.RemoteProtocolError("incomplete"), partial)
    assert isinstance(err, StreamError) and err.partial is partial and retry


def client_partial() -> Any:
    from convkit.chat import StreamAccumulator

    return StreamAccumulator().response()
