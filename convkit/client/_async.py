"""``AsyncChatClient`` and ``AsyncChatStream``: the async shell over httpx (private)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from convkit._retry import Backoff
from convkit.chat import ChatChunk, ChatRequest, ChatResponse
from convkit.client._attempt import (
    BodyRead,
    Effect,
    ReadBody,
    Send,
    Sent,
    Sleep,
    Steps,
    T,
    complete_attempts,
)
from convkit.client._attempt import adrive as _adrive
from convkit.client._base import BaseChatClient
from convkit.client._config import ResponseLimits, Timeouts, default_ssl_context
from convkit.client._drain import adrain, log_undrained
from convkit.client._stream import BaseStream
from convkit.errors import TransportError
from convkit.messages import MessageLike

__all__ = ["AsyncChatClient", "AsyncChatStream"]

#: How an :class:`AsyncChatStream` runs its attempt generators: over its client's httpx client.
ARun = Callable[[Steps[Sent]], Awaitable[Sent]]


class AsyncChatClient(BaseChatClient):
    """Asynchronous client for ``POST {base_url}/chat/completions`` (asyncio or trio).

    Mirrors :class:`ChatClient`: ``await client.complete(...)``, ``async with
    client.stream(...) as stream``, ``await client.aclose()``.

    Example::

        async with AsyncChatClient(base_url="http://127.0.0.1:8000/v1") as client:
            reply = await client.complete(model="m", messages=[{"role": "user", "content": "hi"}])
            async with client.stream(model="m", messages=msgs) as stream:
                async for chunk in stream:
                    print(chunk.text, end="")
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts | float | None = None,
        max_retries: int = 2,
        backoff: Backoff | None = None,
        stream_usage: bool = True,
        limits: ResponseLimits | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        import anyio  # httpx depends on anyio; imported here to keep the sync path lean

        super().__init__(
            base_url=base_url,
            api_key=api_key,
            headers=headers,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            stream_usage=stream_usage,
            limits=limits,
            _caller_client=http_client is not None,
        )
        self._owns_http = http_client is None
        self._http = (
            http_client
            if http_client is not None
            else httpx.AsyncClient(verify=default_ssl_context())
        )
        self._sleep: Callable[[float], Awaitable[None]] = anyio.sleep

    async def __aenter__(self) -> AsyncChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (a caller-supplied ``http_client`` is left open)."""
        if self._owns_http:
            await self._http.aclose()

    async def complete(
        self, *, model: str, messages: Iterable[MessageLike], **params: Any
    ) -> ChatResponse:
        """Send one request and return the whole response (see :meth:`ChatClient.complete`)."""
        return await self.complete_request(
            ChatRequest(model=model, messages=messages, params=params)
        )

    async def complete_request(self, request: ChatRequest) -> ChatResponse:
        """Like :meth:`complete`, for a prepared :class:`~convkit.chat.ChatRequest`."""
        if request.stream:
            async with self.stream_request(request) as stream:
                return await stream.read()
        content = self._wire.encode(request, stream=False)
        return await self._run(complete_attempts(self._wire.errors, self._retries(), content))

    def stream(
        self, *, model: str, messages: Iterable[MessageLike], **params: Any
    ) -> AsyncChatStream:
        """Stream a response: returns an :class:`AsyncChatStream` (use ``async with``)."""
        self._check_stream_params(params)
        return self.stream_request(ChatRequest(model=model, messages=messages, params=params))

    def stream_request(self, request: ChatRequest, *, accumulate: bool = True) -> AsyncChatStream:
        """Like :meth:`stream`, for a prepared :class:`~convkit.chat.ChatRequest`.

        ``accumulate=False`` skips merging the chunks into :attr:`AsyncChatStream.response`
        (which then raises): for a caller that accumulates what it makes of them itself.
        """
        self._check_stream_params(request.params)
        run: ARun = self._run
        return AsyncChatStream(self._link(run), request, accumulate=accumulate)

    async def _run(self, steps: Steps[T]) -> T:
        return await _adrive(steps, self._handle)

    async def _handle(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            http = self._http
            request = self._wire.build(http, effect.content, stream=effect.stream)
            at = time.monotonic()
            if effect.seconds is None:
                return Sent(await http.send(request, stream=True), at)
            import anyio

            with anyio.move_on_after(effect.seconds):
                return Sent(await http.send(request, stream=True), at)
            raise httpx.ReadTimeout(
                f"no response headers within {effect.seconds:g} s", request=request
            )
        if isinstance(effect, ReadBody):
            import anyio

            response = effect.response
            body = BodyRead(effect, self._wire.errors)
            left = body.left()
            try:
                with anyio.move_on_after(math.inf if left is None else left) as scope:
                    async for piece in response.aiter_bytes():
                        body.add(piece)
            finally:
                await response.aclose()
            if scope.cancelled_caught:
                raise body.timed_out()
            return body.body()
        assert isinstance(effect, Sleep)
        await self._sleep(effect.seconds)
        return None


class AsyncChatStream(BaseStream[ARun]):
    """A streamed response for ``async for``; the async twin of :class:`ChatStream`.

    Example::

        async with client.stream(model="m", messages=msgs) as stream:
            async for chunk in stream:
                print(chunk.text, end="")
        print(stream.response.text)
    """

    _http_response: httpx.Response | None = None
    _bytes: AsyncIterator[bytes] | None = None

    async def __aenter__(self) -> AsyncChatStream:
        if self._core is None and not self._closed:
            await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        pending = self._pending
        while not pending:
            if self._finished or self._closed:
                raise StopAsyncIteration
            await self._pump()
        self._yielded += 1
        return pending.popleft()

    async def read(self) -> ChatResponse:
        """Consume the rest of the stream and return the accumulated response."""
        async for _ in self:
            pass
        return self.response

    async def aclose(self) -> None:
        """Stop reading and release the connection (safe to call more than once)."""
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        if self._bytes is not None:
            aclose = getattr(self._bytes, "aclose", None)
            if aclose is not None:
                await aclose()
            self._bytes = None
        if self._http_response is not None:
            await self._http_response.aclose()
            self._http_response = None

    async def _open(self) -> None:
        steps = self._open_steps()
        await self._release()
        try:
            sent = await self._link.run(steps)
        except TransportError as err:
            self._gave_up(err)
            raise
        response = sent.response
        raw = self._opened(sent)
        self._http_response = response
        self._bytes = response.aiter_raw() if raw else response.aiter_bytes()

    async def _pump(self) -> None:
        step = self._next_step(self._bytes is not None)
        if step == "read":
            core = self._core
            assert core is not None
            assert self._bytes is not None
            try:
                data = await self._read_piece(self._bytes)
            except StopAsyncIteration:
                self._pending.extend(core.close())
            except httpx.HTTPError as exc:
                self._body_failed(exc)
            else:
                if data is None:
                    self._check_deadline(passed=True)
                else:
                    self._pending.extend(core.feed(data))
                    self._check_deadline()
        elif step == "finish":
            await self._finish()
        else:
            await self._open()

    async def _read_piece(self, pieces: AsyncIterator[bytes]) -> bytes | None:
        """The next piece of the body, or None once the attempt's deadline has passed."""
        left = self._left()
        if left is None:
            return await pieces.__anext__()
        import anyio

        # A cancel scope ends the wait at the deadline, whatever the transport.
        with anyio.move_on_after(left):
            return await pieces.__anext__()
        return None

    async def _finish(self) -> None:
        self._done()
        # As ChatStream._finish: read the end of the body for at most DONE_DRAIN_SECONDS.
        response, pieces = self._http_response, self._bytes
        if response is not None and pieces is not None and not await adrain(response, pieces):
            log_undrained(self._link.wire.url)
        await self._release()
