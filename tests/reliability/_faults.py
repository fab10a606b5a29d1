"""What the fault tests share: running one call, sync or async, streamed or not, to its outcome."""

from __future__ import annotations

import gzip
import json
from typing import Any

import anyio
import attrs

from convkit._retry import Backoff
from convkit.chat import ChatResponse
from convkit.client import AsyncChatClient, ChatClient
from convkit.testing import FakeChatServer

MESSAGES = [{"role": "user", "content": "hello"}]
#: Retries without real waits (the waits are recorded, not slept).
FAST = Backoff(initial=0.001, maximum=0.002)
KEY = "sk-reliability-0123456789abcdef"


@attrs.define
class Outcome:
    """How one call ended: the response or the error, what the caller saw, what was kept."""

    response: ChatResponse | None
    error: BaseException | None
    seen: str = ""
    partial: ChatResponse | None = None
    request_id: str | None = None


def client_kwargs(server: FakeChatServer, overrides: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "backoff": FAST,
        "timeout": 5.0,
    }
    kwargs.update(overrides)
    return kwargs


def run_call(kind: str, server: FakeChatServer, *, stream: bool, **client: Any) -> Outcome:
    """One ``complete`` (or one stream read to its end) through a sync or an async client."""
    kwargs = client_kwargs(server, client)
    if kind == "sync":
        with ChatClient(**kwargs) as c:
            c._sleep = lambda _s: None
            if not stream:
                try:
                    return Outcome(c.complete(model="m", messages=MESSAGES), None)
                except Exception as exc:
                    return Outcome(None, exc)
            s = c.stream(model="m", messages=MESSAGES)
            seen: list[str] = []
            try:
                with s:
                    for chunk in s:
                        seen.append(chunk.text)
            except Exception as exc:
                return Outcome(None, exc, "".join(seen), s.partial, s.request_id)
            return Outcome(s.response, None, "".join(seen), s.partial, s.request_id)

    async def arun() -> Outcome:
        async with AsyncChatClient(**kwargs) as c:

            async def no_sleep(_s: float) -> None:
                return None

            c._sleep = no_sleep
            if not stream:
                try:
                    return Outcome(await c.complete(model="m", messages=MESSAGES), None)
                except Exception as exc:
                    return Outcome(None, exc)
            s = c.stream(model="m", messages=MESSAGES)
            seen: list[str] = []
            try:
                async with s:
                    async for chunk in s:
                        seen.append(chunk.text)
            except Exception as exc:
                return Outcome(None, exc, "".join(seen), s.partial, s.request_id)
            return Outcome(s.response, None, "".join(seen), s.partial, s.request_id)

    return anyio.run(arun)


def chunk(text: str | None = None, finish: Any = None, **delta: Any) -> dict[str, Any]:
    """One chat.completion.chunk object."""
    if text is not None:
        delta["content"] = text
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def event(obj: Any) -> bytes:
    """``obj`` as one ``data:`` event."""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return b"data: " + data.encode() + b"\n\n"


def http(status_line: bytes, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes of one whole HTTP/1.1 answer."""
    head = [status_line]
    head += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)
