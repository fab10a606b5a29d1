"""The official ``openai`` package, pointed at FakeChatServer, completes and streams.

This is the proof that the test server speaks the protocol: a client convkit did not write
parses its answers, streams, tool calls, usage and errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from convkit.testing import FakeChatServer, Reply

openai = pytest.importorskip("openai")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
MESSAGES = [{"role": "user", "content": "Weather in Paris and Rome?"}]


@pytest.fixture
def sdk(chat_server: FakeChatServer) -> Iterator[object]:
    with openai.OpenAI(base_url=chat_server.base_url, api_key="sk-sdk", max_retries=0) as client:
        yield client


def test_sdk_completes(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(
        Reply.text("Bonjour", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    )
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, seed=3)  # type: ignore[attr-defined]
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Bonjour"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 4
    assert completion.model == "gpt-4o-mini"
    [req] = chat_server.requests
    assert req.body == {"model": "gpt-4o-mini", "messages": MESSAGES, "seed": 3}
    assert req.headers["authorization"] == "Bearer sk-sdk"


def test_sdk_completes_with_tool_calls(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(
        Reply.tool_calls(
            [
                {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_p"},
                {"name": "get_weather", "arguments": {"city": "Rome"}, "id": "call_r"},
            ]
        )
    )
    completion = sdk.chat.completions.create(  # type: ignore[attr-defined]
        model="m", messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_p", "get_weather", {"city": "Paris"}),
        ("call_r", "get_weather", {"city": "Rome"}),
    ]


def test_sdk_streams_text_and_usage(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(Reply.text("Hello from the stream \u00e9\U0001f600", chunk_size=3))
    stream = sdk.chat.completions.create(  # type: ignore[attr-defined]
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text = ""
    usage = None
    finish = None
    with stream:
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
    assert text == "Hello from the stream \u00e9\U0001f600"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_sdk_streams_parallel_tool_calls(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(
        Reply.tool_calls(
            [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ],
            chunk_size=5,
        )
    )
    # The SDK's own stream helper accumulates tool-call deltas into a final completion.
    with sdk.chat.completions.stream(model="m", messages=MESSAGES, tools=[WEATHER_TOOL]) as s:  # type: ignore[attr-defined]
        kinds = {event.type for event in s}
        final = s.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    calls = final.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert final.choices[0].finish_reason == "tool_calls"


def test_sdk_sees_refusals(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(Reply.refusal("I can't help with that."))
    completion = sdk.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[attr-defined]
    assert completion.choices[0].message.refusal == "I can't help with that."


def test_sdk_maps_server_errors(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(Reply.error(429, message="Rate limit reached", retry_after=1))
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[attr-defined]
    assert info.value.status_code == 429
    assert info.value.request_id == "req_fake_1"
    assert "Rate limit reached" in str(info.value)


def test_sdk_sees_a_dropped_stream(chat_server: FakeChatServer, sdk: object) -> None:
    chat_server.enqueue(Reply.text("abcdefgh", chunk_size=2, drop_after_chunks=2))
    stream = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[attr-defined]
    seen = ""
    with pytest.raises(openai.APIConnectionError), stream:
        for chunk in stream:
            seen += chunk.choices[0].delta.content or ""
    assert seen == "ab"


@pytest.mark.anyio
async def test_async_sdk_streams(chat_server: FakeChatServer) -> None:
    chat_server.enqueue(Reply.text("async sdk", chunk_size=2))
    async with openai.AsyncOpenAI(
        base_url=chat_server.base_url, api_key="sk-sdk", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "async sdk"
