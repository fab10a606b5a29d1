"""``ChatClient`` and ``ChatStream``: the blocking shell over httpx (private)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from convkit.client._attempt import drive as _drive
from convkit.client._base import BaseChatClient
from convkit.client._config import ResponseLimits, Timeouts, default_ssl_context
from convkit.client._deadline import bounded_client, reads_until
from convkit.client._drain import drain, log_undrained
from convkit.client._stream import BaseStream
from convkit.errors import TransportError
from convkit.messages import MessageLike

__all__ = ["ChatClient", "ChatStream"]

#: How a :class:`ChatStream` runs its attempt generators: over its client's httpx client.
Run = Callable[[Steps[Sent]], Sent]


class ChatClient(BaseChatClient):
    """Synchronous client for ``POST {base_url}/chat/completions``.

    ``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (the key may
    be absent for local servers). Pass ``http_client`` to use your own :class:`httpx.Client`
    (proxies, mTLS, pooling); you then close it yourself. The API key never appears in a repr,
    an error message or a log line.

    Example::

        with ChatClient(base_url="http://127.0.0.1:8000/v1", max_retries=3) as client:
            reply = client.complete(model="m", messages=[{"role": "user", "content": "hi"}],
                                    temperature=0.2)
            print(reply.text)
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
        http_client: httpx.Client | None = None,
    ) -> None:
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
            http_client if http_client is not None else bounded_client(verify=default_ssl_context())
        )
        self._sleep: Callable[[float], None] = time.sleep

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (a caller-supplied ``http_client`` is left open)."""
        if self._owns_http:
            self._http.close()

    def complete(
        self, *, model: str, messages: Iterable[MessageLike], **params: Any
    ) -> ChatResponse:
        """Send one request and return the whole response.

        ``params`` are the request body's other fields (``temperature``, ``tools``, vendor
        fields...); standard ones are checked before sending. With ``stream=True`` the response
        is streamed and accumulated.

        Raises:
            InvalidRequestError: a parameter is out of range or ill-typed (nothing was sent).
            APIStatusError: the server answered with an error status (subclass by status).
            ConnectError, APITimeoutError, StreamError: the transport failed.
        """
        return self.complete_request(ChatRequest(model=model, messages=messages, params=params))

    def complete_request(self, request: ChatRequest) -> ChatResponse:
        """Like :meth:`complete`, for a prepared :class:`~convkit.chat.ChatRequest`."""
        if request.stream:
            with self.stream_request(request) as stream:
                return stream.read()
        content = self._wire.encode(request, stream=False)
        return self._run(complete_attempts(self._wire.errors, self._retries(), content))

    def stream(self, *, model: str, messages: Iterable[MessageLike], **params: Any) -> ChatStream:
        """Stream a response: returns a :class:`ChatStream` to iterate (best in a ``with``).

        The request is sent when the stream is entered or first iterated; parameters are
        checked at once.
        """
        self._check_stream_params(params)
        return self.stream_request(ChatRequest(model=model, messages=messages, params=params))

    def stream_request(self, request: ChatRequest, *, accumulate: bool = True) -> ChatStream:
        """Like :meth:`stream`, for a prepared :class:`~convkit.chat.ChatRequest`.

        ``accumulate=False`` skips merging the chunks into :attr:`ChatStream.response` (which then
        raises): for a caller that accumulates what it makes of them itself.
        """
        self._check_stream_params(request.params)
        run: Run = self._run
        return ChatStream(self._link(run), request, accumulate=accumulate)

    def _run(self, steps: Steps[T]) -> T:
        return _drive(steps, self._handle)

    def _handle(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            http = self._http
            request = self._wire.build(http, effect.content, stream=effect.stream)
            at = time.monotonic()
            if effect.seconds is None:
                return Sent(http.send(request, stream=True), at)
            # A blocking read cannot be cut short: this thread's reads of the headers are
            # given a timeout no later than the deadline (convkit.client._deadline).
            with reads_until(at + effect.seconds):
                return Sent(http.send(request, stream=True), at)
        if isinstance(effect, ReadBody):
            response = effect.response
            body = BodyRead(effect, self._wire.errors)
            try:
                # A blocking read cannot be interrupted: each read waits at most until the
                # deadline, which is checked again as each piece arrives.
                self._wire.tighten_read(response, body.left())
                for piece in response.iter_bytes():
                    body.add(piece)
            finally:
                response.close()
            return body.body()
        assert isinstance(effect, Sleep)
        self._sleep(effect.seconds)
        return None


class ChatStream(BaseStream[Run]):
    """A streamed response: iterate it for :class:`~convkit.chat.ChatChunk` values.

    Once iterated to the end, :attr:`response` holds the accumulated
    :class:`~convkit.chat.ChatResponse`; :attr:`partial` holds what arrived at any time, also
    after a failure. Failures before any chunk was yielded are retried like
    :meth:`ChatClient.complete`; later ones raise (a truncated stream raises
    :class:`~convkit.StreamError` whose ``partial`` is the accumulated response so far).

    Example::

        with client.stream(model="m", messages=msgs) as stream:
            for chunk in stream:
                print(chunk.text, end="", flush=True)
        print(stream.response.finish_reason)
    """

    _http_response: httpx.Response | None = None
    _bytes: Iterator[bytes] | None = None

    def __enter__(self) -> ChatStream:
        if self._core is None and not self._closed:
            self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatChunk:
        pending = self._pending
        while not pending:
            if self._finished or self._closed:
                raise StopIteration
            self._pump()
        self._yielded += 1
        return pending.popleft()

    def read(self) -> ChatResponse:
        """Consume the rest of the stream and return the accumulated response."""
        for _ in self:
            pass
        return self.response

    def close(self) -> None:
        """Stop reading and release the connection (safe to call more than once)."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._bytes is not None:
            close = getattr(self._bytes, "close", None)
            if close is not None:
                close()
            self._bytes = None
        if self._http_response is not None:
            self._http_response.close()
            self._http_response = None

    def _open(self) -> None:
        steps = self._open_steps()
        self._release()
        try:
            sent = self._link.run(steps)
        except TransportError as err:
            self._gave_up(err)
            raise
        response = sent.response
        raw = self._opened(sent)
        self._http_response = response
        self._bytes = response.iter_raw() if raw else response.iter_bytes()

    def _pump(self) -> None:
        step = self._next_step(self._bytes is not None)
        if step == "read":
            core = self._core
            assert core is not None
            assert self._bytes is not None
            try:
                data = next(self._bytes)
            except StopIteration:
                self._pending.extend(core.close())
            except httpx.HTTPError as exc:
                self._body_failed(exc)
            else:
                self._pending.extend(core.feed(data))
                self._check_deadline()
        elif step == "finish":
            self._finish()
        else:
            self._open()

    def _finish(self) -> None:
        self._done()
        # Read the end of the body (normally right behind [DONE]) so that the connection can
        # be reused, but never wait long for it: the answer is complete. Whatever the server
        # does after [DONE] cannot spoil it.
        response, pieces = self._http_response, self._bytes
        if response is not None and pieces is not None and not drain(response, pieces):
            log_undrained(self._link.wire.url)
        self._release()
