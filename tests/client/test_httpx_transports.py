"""Streaming through a caller's httpx client whose transport hands back an already-read body.

``httpx.MockTransport`` with ``httpx.Response(content=...)``, respx, caching transports and
response hooks that call ``read()`` all give convkit a response whose body is in memory; httpx
refuses ``iter_raw`` on those, so the client must replay the decoded content instead.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from convkit import RateLimitError, StreamError
from convkit.client import AsyncChatClient, ChatClient
from convkit.testing.pytest_plugin import FAKE_API_KEY

from .conftest import MESSAGES

CHUNKS = [
    {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
    {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "hel"}}]},
    {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
    {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
    {
        "id": "c1",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    },
]
SSE = "".join(f"data: {json.dumps(c)}\n\n" for c in CHUNKS).encode() + b"data: [DONE]\n\n"
EVENT_STREAM = {"content-type": "text/event-stream"}


def sse_response(request: httpx.Request) -> httpx.Response:
    assert json.loads(request.content)["stream"] is True
    return httpx.Response(200, content=SSE, headers=EVENT_STREAM)


def gzip_sse_response(request: httpx.Request) -> httpx.Response:
    headers = {**EVENT_STREAM, "content-encoding": "gzip"}
    return httpx.Response(200, content=gzip.compress(SSE), headers=headers)


def make(http: httpx.Client) -> ChatClient:
    return ChatClient(base_url="http://test/v1", api_key=FAKE_API_KEY, http_client=http)


@pytest.mark.parametrize("handler", [sse_response, gzip_sse_response])
def test_sync_stream_through_a_mock_transport(
    handler: Callable[[httpx.Request], httpx.Response],
) -> None:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = make(http)
        with client.stream(model="m", messages=MESSAGES) as stream:
            texts = [chunk.text for chunk in stream]
        assert "".join(texts) == "hello" and len(texts) == len(CHUNKS)
        assert stream.response.text == "hello"
        assert stream.response.finish_reason == "stop"
        assert stream.response.usage is not None and stream.response.usage.total_tokens == 5
        # complete(stream=True) takes the same path
        assert client.complete(model="m", messages=MESSAGES, stream=True).text == "hello"


def test_sync_stream_when_a_response_hook_reads_the_body() -> None:
    def read(response: httpx.Response) -> None:
        response.read()  # a logging or caching hook

    transport = httpx.MockTransport(lambda r: httpx.Response(200, stream=httpx.ByteStream(SSE)))
    with httpx.Client(transport=transport, event_hooks={"response": [read]}) as http:
        assert make(http).complete(model="m", messages=MESSAGES, stream=True).text == "hello"


def test_sync_pre_read_stream_still_reports_faults() -> None:
    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=SSE[: SSE.index(b"data: [DONE]")], headers=EVENT_STREAM)

    with httpx.Client(transport=httpx.MockTransport(truncated)) as http:
        client = ChatClient(base_url="http://test/v1", http_client=http, max_retries=0)
        with pytest.raises(StreamError, match="DONE") as info:
            client.complete(model="m", messages=MESSAGES, stream=True)
    assert info.value.partial is not None and info.value.partial.text == "hello"


def test_sync_pre_read_error_status_maps_to_the_tree() -> None:
    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"message": "slow down"}})

    with httpx.Client(transport=httpx.MockTransport(limited)) as http:
        client = ChatClient(base_url="http://test/v1", http_client=http, max_retries=0)
        with pytest.raises(RateLimitError, match="slow down"):
            client.complete(model="m", messages=MESSAGES, stream=True)


@pytest.mark.anyio
@pytest.mark.parametrize("handler", [sse_response, gzip_sse_response])
async def test_async_stream_through_a_mock_transport(
    handler: Callable[[httpx.Request], httpx.Response],
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = AsyncChatClient(base_url="http://test/v1", api_key=FAKE_API_KEY, http_client=http)
        texts: list[str] = []
        async with client.stream(model="m", messages=MESSAGES) as stream:
            async for chunk in stream:
                texts.append(chunk.text)
        assert "".join(texts) == "hello" and len(texts) == len(CHUNKS)
        assert stream.response.finish_reason == "stop"
        assert stream.response.usage is not None and stream.response.usage.total_tokens == 5
        reply = await client.complete(model="m", messages=MESSAGES, stream=True)
        assert reply.text == "hello"


@pytest.mark.anyio
async def test_async_stream_when_a_response_hook_reads_the_body() -> None:
    async def read(response: httpx.Response) -> None:
        await response.aread()

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(SSE))

    hooks: dict[str, list[Any]] = {"response": [read]}
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), event_hooks=hooks) as http:
        client = AsyncChatClient(base_url="http://test/v1", http_client=http)
        assert (await client.complete(model="m", messages=MESSAGES, stream=True)).text == "hello"
