"""Fixtures for the client tests: the shipped server fixtures and a sync/async driver.

The ``driver`` fixture runs the same scenario through :class:`ChatClient` and, in a fresh event
loop, through :class:`AsyncChatClient`, so that every shape and fault is checked on both.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs
import pytest

from convkit._retry import Backoff
from convkit.chat import ChatChunk, ChatResponse
from convkit.client import AsyncChatClient, ChatClient
from convkit.testing import FakeChatServer
from convkit.testing.pytest_plugin import (  # noqa: F401 - fixtures, also when not installed
    FAKE_API_KEY,
    async_chat_client,
    chat_client,
    chat_server,
)

MESSAGES = [{"role": "user", "content": "hello"}]
FAST = Backoff(initial=0.001, maximum=0.005)


@attrs.define
class StreamResult:
    """What a stream produced: the chunks the caller saw, and its end."""

    chunks: list[ChatChunk]
    response: ChatResponse | None
    error: BaseException | None
    partial: ChatResponse
    elapsed: float

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.chunks)


class Driver:
    """Runs requests against ``server`` with a sync or an async client."""

    def __init__(self, kind: str, server: FakeChatServer) -> None:
        self.kind = kind
        self.server = server
        #: The backoff delays the clients asked for; they are recorded, not slept.
        self.sleeps: list[float] = []

    def _sync_client(self, kwargs: dict[str, Any]) -> ChatClient:
        client = ChatClient(**kwargs)
        client._sleep = self.sleeps.append
        return client

    def _async_client(self, kwargs: dict[str, Any]) -> AsyncChatClient:
        client = AsyncChatClient(**kwargs)

        async def sleep(delay: float) -> None:
            self.sleeps.append(delay)

        client._sleep = sleep
        return client

    def __repr__(self) -> str:
        return f"Driver({self.kind})"

    def client_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "base_url": self.server.base_url,
            "api_key": FAKE_API_KEY,
            "backoff": FAST,
            "timeout": 5.0,
        }
        kwargs.update(overrides)
        return kwargs

    def complete(self, client: dict[str, Any] | None = None, **request: Any) -> ChatResponse:
        request.setdefault("model", "fake-model")
        request.setdefault("messages", MESSAGES)
        kwargs = self.client_kwargs(client or {})
        if self.kind == "sync":
            with self._sync_client(kwargs) as c:
                return c.complete(**request)

        async def run() -> ChatResponse:
            async with self._async_client(kwargs) as c:
                return await c.complete(**request)

        return anyio.run(run)

    def stream(self, client: dict[str, Any] | None = None, **request: Any) -> StreamResult:
        request.setdefault("model", "fake-model")
        request.setdefault("messages", MESSAGES)
        kwargs = self.client_kwargs(client or {})
        chunks: list[ChatChunk] = []
        t0 = time.monotonic()
        if self.kind == "sync":
            with self._sync_client(kwargs) as c:
                s = c.stream(**request)
                try:
                    with s:
                        for chunk in s:
                            chunks.append(chunk)
                except Exception as exc:
                    return StreamResult(chunks, None, exc, s.partial, time.monotonic() - t0)
                return StreamResult(chunks, s.response, None, s.partial, time.monotonic() - t0)

        async def run() -> StreamResult:
            async with self._async_client(kwargs) as c:
                s = c.stream(**request)
                try:
                    async with s:
                        async for chunk in s:
                            chunks.append(chunk)
                except Exception as exc:
                    return StreamResult(chunks, None, exc, s.partial, time.monotonic() - t0)
                return StreamResult(chunks, s.response, None, s.partial, time.monotonic() - t0)

        return anyio.run(run)


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest, chat_server: FakeChatServer) -> Driver:  # noqa: F811
    """The same scenario through ChatClient and AsyncChatClient."""
    return Driver(request.param, chat_server)
