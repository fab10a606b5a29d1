"""``ChatClient`` and ``AsyncChatClient``: the chat-completions call over httpx.

Both are thin shells over :class:`BaseChatClient`, which holds everything that decides —
request building, error mapping, retry decisions, key redaction — without doing any I/O. Stream
parsing and accumulation live in the sans-IO modules :mod:`convkit._sse` and
:mod:`convkit.chat`; the shells only move bytes and sleep.

Example::

    from convkit import ChatClient

    with ChatClient(base_url="http://127.0.0.1:8000/v1", api_key="sk-...") as client:
        reply = client.complete(model="gpt-4o-mini",
                                messages=[{"role": "user", "content": "Hello"}])
        print(reply.text)
        with client.stream(model="gpt-4o-mini", messages=[...]) as stream:
            for chunk in stream:
                print(chunk.text, end="")
        print(stream.response.usage)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx
from attrs import frozen

from convkit import __version__
from convkit._retry import Backoff, is_retryable_status
from convkit._sse import ChatEventDecoder, error_from_event
from convkit.chat import ChatChunk, ChatRequest, ChatResponse, StreamAccumulator
from convkit.errors import (
    APIStatusError,
    ConnectError,
    InvalidRequestError,
    StreamError,
    TimeoutError,  # noqa: A004 - convkit's TimeoutError (also a builtins.TimeoutError)
    TransportError,
    status_error_class,
)
from convkit.messages import MessageLike

__all__ = [
    "DEFAULT_BASE_URL",
    "DONE_DRAIN_SECONDS",
    "AsyncChatClient",
    "AsyncChatStream",
    "Backoff",
    "BaseChatClient",
    "ChatClient",
    "ChatStream",
    "Timeouts",
]

logger = logging.getLogger("convkit.client")

#: Used when neither ``base_url`` nor ``OPENAI_BASE_URL`` is given.
DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: After ``data: [DONE]``, the longest a stream waits for the server to end the HTTP body.
#: Servers end it right after ``[DONE]``, and reading that end lets the connection go back to
#: the pool for the next request. A server or proxy that holds the body open costs at most this
#: long: the stream then ends anyway and its connection is closed instead of reused.
DONE_DRAIN_SECONDS = 0.25

# What parsing a server's JSON into values may raise when a field has the wrong type or an
# absurd value (``"usage": {"prompt_tokens": [1]}``, ``Infinity``): the parsers document
# ValueError, but a server's answer must never surface as a raw TypeError or OverflowError.
_PARSE_ERRORS = (TypeError, ValueError, ArithmeticError)
# What json.loads raises on text that is not JSON, or nested too deeply to decode.
_JSON_ERRORS = (ValueError, RecursionError)

# What replaces the API key, or a piece of it, in text built from server data.
_REDACTED = "[redacted]"
# The shortest start of the key that is redacted on its own: text cut to a length (by a server,
# by Python's repr of a long value) may end inside the key and keep only its first characters.
_KEY_FRAGMENT = 8


def _seconds(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"Timeouts.{name} must be a positive number of seconds or None")
    return float(value)


@frozen(kw_only=True)
class Timeouts:
    """Timeouts in seconds (``None`` waits forever).

    * ``connect``: establishing a connection;
    * ``read``: waiting for any read — a whole non-streamed response, or a stream's headers;
    * ``write``: sending the request;
    * ``pool``: waiting for a free connection in the pool;
    * ``stream_idle``: the longest silence allowed once a stream's body has started
      (``None``: the ``read`` timeout applies). Keep-alive comments count as activity.

    Example::

        ChatClient(timeout=Timeouts(connect=3, read=120, stream_idle=30))
        ChatClient(timeout=10.0)   # every timeout 10 s
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0
    stream_idle: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool", "stream_idle"):
            _seconds(getattr(self, name), name)

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        """Return ``value`` as :class:`Timeouts`: a number sets every timeout, None the defaults."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(connect=value, read=value, write=value, pool=value)
        raise TypeError(f"timeout must be Timeouts, a number or None, got {type(value).__name__}")

    def to_httpx(self) -> httpx.Timeout:
        """The matching :class:`httpx.Timeout` (``stream_idle`` is applied separately)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class BaseChatClient:
    """What the sync and async clients share: configuration and every I/O-free decision.

    Not used directly; see :class:`ChatClient` and :class:`AsyncChatClient`.
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
        _caller_client: bool = False,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        #: The API root, such as ``https://api.openai.com/v1`` (no trailing slash).
        self.base_url = base_url.rstrip("/")
        #: How many times a failed request is retried (0 disables retries).
        self.max_retries = max_retries
        #: The backoff schedule between retries.
        self.backoff = backoff if backoff is not None else Backoff()
        #: Whether streams ask for the final usage chunk when the caller set no stream_options.
        self.stream_usage = stream_usage
        self._url = self.base_url + "/chat/completions"
        # Kept private and out of every repr: it only ever goes into the Authorization header.
        self._api_key = api_key or None
        self._headers = dict(headers or {})
        # With a caller-supplied httpx client and no explicit timeout, that client's own timeouts
        # apply; otherwise ours are sent with every request.
        self._timeouts: Timeouts | None = (
            None if timeout is None and _caller_client else Timeouts.coerce(timeout)
        )
        self._httpx_timeout = self._timeouts.to_httpx() if self._timeouts else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    # ---- requests

    def _request_headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"convkit/{__version__}",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(self._headers)
        return headers

    def _encode(self, request: ChatRequest, *, stream: bool) -> bytes:
        body = request.to_openai()
        if stream:
            body["stream"] = True
            if self.stream_usage and "stream_options" not in body:
                body["stream_options"] = {"include_usage": True}
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None

    def _build_request(
        self, http: httpx.Client | httpx.AsyncClient, content: bytes, *, stream: bool
    ) -> httpx.Request:
        if self._httpx_timeout is not None:
            return http.build_request(
                "POST",
                self._url,
                content=content,
                headers=self._request_headers(stream=stream),
                timeout=self._httpx_timeout,
            )
        return http.build_request(
            "POST", self._url, content=content, headers=self._request_headers(stream=stream)
        )

    def _start_idle_timeout(self, response: httpx.Response) -> None:
        # httpcore reads the request's "timeout" extension when the body iteration starts, so
        # tightening "read" here makes every wait for the next piece of the body bounded by
        # stream_idle, while the wait for the headers stayed bounded by read.
        idle = self._timeouts.stream_idle if self._timeouts is not None else None
        if idle is None:
            return
        timeouts = response.request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            timeouts["read"] = idle

    # ---- secrets

    def _redact_text(self, text: str) -> str:
        """Remove the API key from ``text``, and any run of its first 8 or more characters.

        A run of the key's first characters is what is left of it where text was cut to a
        length; redacting those too means a cut can never leave a usable part of the key.
        """
        key = self._api_key
        if not key or len(key) < 4:
            return text
        return _cut_key(text, key)

    def _redact(self, value: Any) -> Any:
        """Remove the API key from error text and bodies (some servers echo what they got)."""
        key = self._api_key
        if not key or len(key) < 4:
            return value
        if isinstance(value, str):
            return _cut_key(value, key)
        if isinstance(value, dict):
            return {self._redact(k): self._redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        return value

    def _scrub(self, err: TransportError) -> TransportError:
        """Redact the API key from an error built from server data (an echoing server)."""
        key = self._api_key
        if key and len(key) >= 4:
            if err.args and isinstance(err.args[0], str):
                text = _cut_key(err.args[0], key)
                if text is not err.args[0]:
                    err.args = (text, *err.args[1:])
            if isinstance(err, APIStatusError):
                err.body = self._redact(err.body)
        return err

    # ---- responses and errors

    def _status_error(self, response: httpx.Response) -> APIStatusError:
        status = response.status_code
        raw = response.content
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except _JSON_ERRORS:
            body = raw.decode("utf-8", "replace")
        body = self._redact(body)
        request_id = response.headers.get("x-request-id")
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            detail = str(err["message"])
        elif isinstance(err, str):
            detail = err
        elif isinstance(body, str) and body:
            detail = body[:500]
        elif body is not None:
            detail = json.dumps(body)[:500]
        else:
            detail = response.reason_phrase or "no body"
        message = f"HTTP {status} from {self._url}: {detail}"
        if request_id:
            message += f" (request id {request_id})"
        return status_error_class(status, body)(
            self._redact(message), status_code=status, body=body, request_id=request_id
        )

    def _parse_response(self, response: httpx.Response) -> ChatResponse:
        request_id = response.headers.get("x-request-id")
        try:
            body = json.loads(response.content)
        except _JSON_ERRORS:
            err = TransportError(
                f"HTTP {response.status_code} from {self._url}: the body is not JSON"
            )
            err.request_id = request_id
            raise err from None
        if isinstance(body, dict) and "choices" not in body and body.get("error"):
            raise error_from_event(json.dumps(self._redact(body)), request_id=request_id)
        try:
            return ChatResponse.from_openai(body)
        except _PARSE_ERRORS as exc:
            err = TransportError(
                f"HTTP {response.status_code} from {self._url}: not a chat completion ({exc})"
            )
            err.request_id = request_id
            raise self._scrub(err) from None

    def _transport_error(self, exc: Exception) -> tuple[TransportError, bool]:
        """Map an httpx exception to convkit's tree; the flag says whether a retry may help."""
        detail = self._redact(str(exc) or type(exc).__name__)
        where = self._url
        if isinstance(exc, httpx.ConnectTimeout):
            return TimeoutError(f"timed out connecting to {where}: {detail}"), True
        if isinstance(exc, httpx.PoolTimeout):
            return TimeoutError(f"timed out waiting for a free connection to {where}"), False
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError(f"timed out waiting for {where}: {detail}"), False
        if isinstance(exc, httpx.ConnectError):
            return ConnectError(f"could not connect to {where}: {detail}"), True
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            return ConnectError(f"connection to {where} lost: {detail}"), True
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ConnectError(f"cannot connect to {where}: {detail}"), False
        return TransportError(f"request to {where} failed: {detail}"), False

    def _body_error(self, exc: Exception, partial: ChatResponse) -> tuple[TransportError, bool]:
        """Map an httpx exception raised while reading a stream's body."""
        if isinstance(exc, httpx.ReadTimeout):
            idle = self._timeouts.stream_idle if self._timeouts is not None else None
            what = f"{idle:g} s" if idle is not None else "the read timeout"
            return TimeoutError(f"the stream from {self._url} went silent for {what}"), False
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            err = StreamError(
                f"the connection to {self._url} was lost mid-stream (truncated): "
                f"{self._redact(str(exc))}",
                partial=partial,
            )
            return err, True
        return self._transport_error(exc)

    def _retry_delay(
        self, attempt: int, retryable: bool, headers: Mapping[str, str] | None = None
    ) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based), or None to raise instead."""
        if not retryable or attempt >= self.max_retries:
            return None
        return self.backoff.delay(attempt, headers)

    def _log_retry(self, err: TransportError, attempt: int, delay: float) -> None:
        what = type(err).__name__
        if isinstance(err, APIStatusError):
            what += f" {err.status_code}"
        logger.info(
            "retrying POST %s in %.3f s after %s (retry %d of %d)",
            self._url,
            delay,
            what,
            attempt + 1,
            self.max_retries,
        )

    def _check_stream_params(self, params: Mapping[str, Any]) -> None:
        if params.get("stream") is False:
            raise InvalidRequestError("stream() cannot send stream=False", param="stream")


def _cut_key(text: str, key: str) -> str:
    """``text`` with every occurrence of ``key``, and of its first 8+ characters, redacted.

    Returns ``text`` itself when there is nothing to redact.
    """
    head = key[:_KEY_FRAGMENT]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        # Take the match as far as it follows the key: the whole key, or what a cut left.
        end, n = start + len(head), len(head)
        while end < len(text) and n < len(key) and text[end] == key[n]:
            end += 1
            n += 1
        out.append(text[done:start])
        out.append(_REDACTED)
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)


class _StreamCore:
    """The I/O-free heart of a stream: bytes in, chunks out, accumulation and failure state."""

    __slots__ = ("acc", "error", "events", "retryable")

    def __init__(self, request_id: str | None, redact: Callable[[str], str] | None = None) -> None:
        # Server data goes into error messages redacted first, and only then cut to length.
        self.events = ChatEventDecoder(request_id=request_id, redact=redact)
        self.acc = StreamAccumulator()
        self.error: TransportError | None = None
        self.retryable = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._chunks(self.events.feed(data))

    def close(self) -> list[ChatChunk]:
        return self._chunks(self.events.close())

    def fail(self, err: TransportError, retryable: bool) -> None:
        if self.error is None:
            self.error = err
            self.retryable = retryable

    def _chunks(self, objs: list[dict[str, Any]]) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        if objs:
            feed = self.acc.feed_openai
            append = chunks.append
            try:
                for obj in objs:
                    append(feed(obj))
            except _PARSE_ERRORS as exc:
                # The chunks before the bad one stay in ``chunks``: the caller gets them first.
                self.fail(StreamError(f"malformed chunk: {exc}"), False)
        if self.events.failure is not None or self.error is not None:
            self._settle()
        return chunks

    def _settle(self) -> None:
        failure = self.events.failure
        if failure is not None and self.error is None:
            if isinstance(failure, APIStatusError):
                retryable = is_retryable_status(failure.status_code)
            else:
                # A truncated stream is a dropped connection: worth a retry if nothing was shown.
                retryable = self.events.truncated
            self.fail(failure, retryable)
        if isinstance(self.error, StreamError) and self.error.partial is None:
            self.error.partial = self.acc.response()


class _BaseStream:
    """State and decisions shared by :class:`ChatStream` and :class:`AsyncChatStream`."""

    def __init__(self, client: BaseChatClient, request: ChatRequest) -> None:
        self._base = client
        #: The request this stream answers.
        self.request = request
        self._content = client._encode(request, stream=True)
        self._core: _StreamCore | None = None
        self._pending: deque[ChatChunk] = deque()
        self._attempt = 0
        self._yielded = 0
        self._final: ChatResponse | None = None
        self._closed = False
        self._fresh = StreamAccumulator()
        #: The server's request id once the stream is open.
        self.request_id: str | None = None

    def __repr__(self) -> str:
        state = "done" if self._final else "closed" if self._closed else "open"
        return f"<{type(self).__name__} model={self.request.model!r} {state}>"

    @property
    def response(self) -> ChatResponse:
        """The accumulated response, once the stream has been consumed to ``[DONE]``.

        Raises:
            RuntimeError: the stream has not finished (see :attr:`partial` for what arrived).
        """
        if self._final is None:
            raise RuntimeError(
                "the stream has not finished: iterate it to the end or call read() first"
            )
        return self._final

    @property
    def partial(self) -> ChatResponse:
        """What has arrived so far, accumulated (the final response once finished)."""
        if self._final is not None:
            return self._final
        core = self._core
        return (core.acc if core is not None else self._fresh).response()

    @property
    def chunks_yielded(self) -> int:
        """How many chunks have been handed to the caller."""
        return self._yielded

    def _after_open(self, response: httpx.Response) -> None:
        self.request_id = response.headers.get("x-request-id")
        self._core = _StreamCore(self.request_id, self._base._redact_text)
        self._base._start_idle_timeout(response)

    def _unexpected_body(self, response: httpx.Response) -> TransportError:
        """The error for a 2xx stream answer that is not an event stream."""
        try:
            body = json.loads(response.content)
        except _JSON_ERRORS:
            body = None
        if isinstance(body, dict) and body.get("error"):
            return error_from_event(
                json.dumps(self._base._redact(body)), request_id=self.request_id
            )
        ctype = response.headers.get("content-type", "")
        return StreamError(f"expected an event stream (text/event-stream), got {ctype!r}")

    def _failure_delay(self, err: TransportError, retryable: bool, headers: Any = None) -> float:
        """Decide after a failure: return the wait before retrying, or raise ``err``."""
        # Once a chunk has reached the caller a retry would show it twice: never retry then.
        delay = (
            self._base._retry_delay(self._attempt, retryable, headers)
            if self._yielded == 0
            else None
        )
        if delay is None:
            self._closed = True
            raise self._base._scrub(err)
        self._base._log_retry(err, self._attempt, delay)
        self._attempt += 1
        self._core = None
        return delay


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds; every client this process creates can
    # share one context (SSLContext is safe to share between connections and threads).
    return httpx.create_ssl_context()


def _reads_raw(response: httpx.Response) -> bool:
    """Whether to read the body with ``iter_raw`` rather than ``iter_bytes``.

    Event streams are almost never compressed; reading the raw bytes then skips httpx's
    per-piece decoding layer. A compressed stream still goes through it, and so does a body a
    transport has already read into memory (``httpx.MockTransport`` with ``content=``, respx,
    caching transports): ``iter_raw`` refuses such a response, ``iter_bytes`` replays it.
    """
    if response.is_stream_consumed:
        return False
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() == "identity"


def _is_event_stream(response: httpx.Response) -> bool:
    ctype = response.headers.get("content-type")
    # No content type at all: try to parse it as events rather than refuse a working server.
    return ctype is None or "event-stream" in ctype


def _log_undrained(url: str) -> None:
    logger.debug(
        "closing the stream from %s without the end of its body: it did not come within %g s "
        "of data: [DONE], or this transport cannot wait for it in bounded time",
        url,
        DONE_DRAIN_SECONDS,
    )


class _ReadsUntil:
    """Make this thread's reads of an HTTP/1.1 connection give up at a deadline, for a while.

    httpcore fixes the read timeout of a response body when the body starts, and a blocking
    read cannot be interrupted from outside. To bound the wait for the end of the body after
    ``[DONE]``, the connection's network stream (the ``network_stream`` response extension,
    the object httpcore reads from) gets a ``read`` that passes on a timeout no later than the
    deadline. The wrapper only tightens reads made by the thread that installed it: the moment
    the body ends, the connection is back in the pool, where another thread may take it before
    the wrapper is removed. ``installed`` is False when the stream cannot be wrapped.
    """

    __slots__ = ("_deadline", "_had_own", "_owner", "_read", "_stream", "installed")

    def __init__(self, stream: Any, seconds: float) -> None:
        self._stream = stream
        self._deadline = time.monotonic() + seconds
        self._owner = threading.get_ident()
        self._read: Callable[..., bytes] | None = getattr(stream, "read", None)
        self.installed = False
        try:
            self._had_own = "read" in vars(stream)
        except TypeError:  # no __dict__: nothing can be installed
            return
        if callable(self._read):
            try:
                stream.read = self._bounded
            except (AttributeError, TypeError):
                return
            self.installed = True

    def _bounded(self, max_bytes: int, timeout: float | None = None) -> bytes:
        assert self._read is not None
        if threading.get_ident() == self._owner:
            # 0 makes the socket non-blocking: what is already buffered is still read.
            left = max(self._deadline - time.monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        return self._read(max_bytes, timeout=timeout)

    def remove(self) -> None:
        """Give the stream its own ``read`` back."""
        if not self.installed:
            return
        self.installed = False
        if self._had_own:
            self._stream.read = self._read
        else:
            del self._stream.read


def _drain(response: httpx.Response, pieces: Iterator[bytes]) -> bool:
    """Read the rest of a finished stream's body within :data:`DONE_DRAIN_SECONDS`.

    Returns True when the body ended in time (its HTTP/1.1 connection then goes back to the
    pool), False when it did not or could not be waited for in bounded time; the caller then
    closes the response, which closes the connection.
    """
    stream = response.extensions.get("network_stream")
    if stream is None or response.http_version != "HTTP/1.1":
        # A transport without a socket of its own has no connection to hand back, and an
        # HTTP/2 connection survives the early end of one of its streams.
        return False
    reads = _ReadsUntil(stream, DONE_DRAIN_SECONDS)
    if not reads.installed:
        return False
    try:
        for _ in pieces:
            pass
    except httpx.HTTPError:
        return False
    finally:
        reads.remove()
    return True


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
            _caller_client=http_client is not None,
        )
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx.Client(verify=_default_ssl_context())
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
            ConnectError, TimeoutError, StreamError: the transport failed.
        """
        return self.complete_request(ChatRequest(model=model, messages=messages, params=params))

    def complete_request(self, request: ChatRequest) -> ChatResponse:
        """Like :meth:`complete`, for a prepared :class:`~convkit.chat.ChatRequest`."""
        if request.stream:
            with self.stream_request(request) as stream:
                return stream.read()
        content = self._encode(request, stream=False)
        attempt = 0
        while True:
            headers = None
            try:
                response = self._http.send(self._build_request(self._http, content, stream=False))
            except httpx.HTTPError as exc:
                err, retryable = self._transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.status_code < 400:
                    return self._parse_response(response)
                err = self._status_error(response)
                headers = response.headers
                retryable = is_retryable_status(response.status_code, headers)
                cause = None
            delay = self._retry_delay(attempt, retryable, headers)
            if delay is None:
                raise err from cause
            self._log_retry(err, attempt, delay)
            self._sleep(delay)
            attempt += 1

    def stream(self, *, model: str, messages: Iterable[MessageLike], **params: Any) -> ChatStream:
        """Stream a response: returns a :class:`ChatStream` to iterate (best in a ``with``).

        The request is sent when the stream is entered or first iterated; parameters are
        checked at once.
        """
        self._check_stream_params(params)
        return self.stream_request(ChatRequest(model=model, messages=messages, params=params))

    def stream_request(self, request: ChatRequest) -> ChatStream:
        """Like :meth:`stream`, for a prepared :class:`~convkit.chat.ChatRequest`."""
        self._check_stream_params(request.params)
        return ChatStream(self, request)


class ChatStream(_BaseStream):
    """A streamed response: iterate it for :class:`~convkit.chat.ChatChunk` values.

    Once iterated to the end, :attr:`response` holds the accumulated
    :class:`~convkit.chat.ChatResponse`; :attr:`partial` holds what arrived at any time, also
    after a failure. Failures before any chunk was yielded are retried like :meth:`complete`;
    later ones raise (a truncated stream raises :class:`~convkit.StreamError` whose ``partial``
    is the accumulated response so far).

    Example::

        with client.stream(model="m", messages=msgs) as stream:
            for chunk in stream:
                print(chunk.text, end="", flush=True)
        print(stream.response.finish_reason)
    """

    def __init__(self, client: ChatClient, request: ChatRequest) -> None:
        super().__init__(client, request)
        self._client = client
        self._http_response: httpx.Response | None = None
        self._bytes: Iterator[bytes] | None = None

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
            if self._final is not None or self._closed:
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
        client = self._client
        while True:
            headers = None
            cause: BaseException | None = None
            try:
                request = client._build_request(client._http, self._content, stream=True)
                response = client._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                err, retryable = client._transport_error(exc)
                cause = exc
            else:
                if response.status_code < 400 and _is_event_stream(response):
                    self._http_response = response
                    self._after_open(response)
                    raw = _reads_raw(response)
                    self._bytes = response.iter_raw() if raw else response.iter_bytes()
                    return
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    err, retryable = client._transport_error(exc)
                else:
                    headers = response.headers
                    if response.status_code >= 400:
                        err = client._status_error(response)
                        retryable = is_retryable_status(response.status_code, headers)
                    else:
                        self.request_id = response.headers.get("x-request-id")
                        err, retryable = self._unexpected_body(response), False
                finally:
                    response.close()
            try:
                delay = self._failure_delay(err, retryable, headers)
            except TransportError:
                if cause is not None:
                    err.__cause__ = cause
                raise
            client._sleep(delay)

    def _pump(self) -> None:
        core = self._core
        if core is None or self._bytes is None:
            self._open()
            return
        if core.error is not None:
            self._release()
            self._client._sleep(self._failure_delay(core.error, core.retryable))
            return
        if core.events.done:
            self._finish(core)
            return
        try:
            data = next(self._bytes)
        except StopIteration:
            self._pending.extend(core.close())
            if core.error is None:
                self._finish(core)
            return
        except httpx.HTTPError as exc:
            err, retryable = self._client._body_error(exc, core.acc.response())
            err.__cause__ = exc
            core.fail(err, retryable)
            return
        self._pending.extend(core.feed(data))

    def _finish(self, core: _StreamCore) -> None:
        self._final = core.acc.response()
        # Read the end of the body (normally right behind [DONE]) so that the connection can
        # be reused, but never wait long for it: the answer is complete. Whatever the server
        # does after [DONE] cannot spoil it.
        response, pieces = self._http_response, self._bytes
        if (
            response is not None
            and pieces is not None
            and not response.is_closed
            and not _drain(response, pieces)
        ):
            _log_undrained(self._client._url)
        self._release()


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
            _caller_client=http_client is not None,
        )
        self._owns_http = http_client is None
        self._http = (
            http_client
            if http_client is not None
            else httpx.AsyncClient(verify=_default_ssl_context())
        )
        self._sleep: Callable[[float], Any] = anyio.sleep

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
        content = self._encode(request, stream=False)
        attempt = 0
        while True:
            headers = None
            try:
                response = await self._http.send(
                    self._build_request(self._http, content, stream=False)
                )
            except httpx.HTTPError as exc:
                err, retryable = self._transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.status_code < 400:
                    return self._parse_response(response)
                err = self._status_error(response)
                headers = response.headers
                retryable = is_retryable_status(response.status_code, headers)
                cause = None
            delay = self._retry_delay(attempt, retryable, headers)
            if delay is None:
                raise err from cause
            self._log_retry(err, attempt, delay)
            await self._sleep(delay)
            attempt += 1

    def stream(
        self, *, model: str, messages: Iterable[MessageLike], **params: Any
    ) -> AsyncChatStream:
        """Stream a response: returns an :class:`AsyncChatStream` (use ``async with``)."""
        self._check_stream_params(params)
        return self.stream_request(ChatRequest(model=model, messages=messages, params=params))

    def stream_request(self, request: ChatRequest) -> AsyncChatStream:
        """Like :meth:`stream`, for a prepared :class:`~convkit.chat.ChatRequest`."""
        self._check_stream_params(request.params)
        return AsyncChatStream(self, request)


class AsyncChatStream(_BaseStream):
    """A streamed response for ``async for``; the async twin of :class:`ChatStream`.

    Example::

        async with client.stream(model="m", messages=msgs) as stream:
            async for chunk in stream:
                print(chunk.text, end="")
        print(stream.response.text)
    """

    def __init__(self, client: AsyncChatClient, request: ChatRequest) -> None:
        super().__init__(client, request)
        self._client = client
        self._http_response: httpx.Response | None = None
        self._bytes: AsyncIterator[bytes] | None = None

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
            if self._final is not None or self._closed:
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
        client = self._client
        while True:
            headers = None
            cause: BaseException | None = None
            try:
                request = client._build_request(client._http, self._content, stream=True)
                response = await client._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                err, retryable = client._transport_error(exc)
                cause = exc
            else:
                if response.status_code < 400 and _is_event_stream(response):
                    self._http_response = response
                    self._after_open(response)
                    raw = _reads_raw(response)
                    self._bytes = response.aiter_raw() if raw else response.aiter_bytes()
                    return
                try:
                    await response.aread()
                except httpx.HTTPError as exc:
                    err, retryable = client._transport_error(exc)
                else:
                    headers = response.headers
                    if response.status_code >= 400:
                        err = client._status_error(response)
                        retryable = is_retryable_status(response.status_code, headers)
                    else:
                        self.request_id = response.headers.get("x-request-id")
                        err, retryable = self._unexpected_body(response), False
                finally:
                    await response.aclose()
            try:
                delay = self._failure_delay(err, retryable, headers)
            except TransportError:
                if cause is not None:
                    err.__cause__ = cause
                raise
            await client._sleep(delay)

    async def _pump(self) -> None:
        core = self._core
        if core is None or self._bytes is None:
            await self._open()
            return
        if core.error is not None:
            await self._release()
            await self._client._sleep(self._failure_delay(core.error, core.retryable))
            return
        if core.events.done:
            await self._finish(core)
            return
        try:
            data = await self._bytes.__anext__()
        except StopAsyncIteration:
            self._pending.extend(core.close())
            if core.error is None:
                await self._finish(core)
            return
        except httpx.HTTPError as exc:
            err, retryable = self._client._body_error(exc, core.acc.response())
            err.__cause__ = exc
            core.fail(err, retryable)
            return
        self._pending.extend(core.feed(data))

    async def _finish(self, core: _StreamCore) -> None:
        import anyio  # already loaded by AsyncChatClient

        self._final = core.acc.response()
        # As ChatStream._finish: read the end of the body for at most DONE_DRAIN_SECONDS.
        response, pieces = self._http_response, self._bytes
        if response is not None and pieces is not None and not response.is_closed:
            drained = False
            with anyio.move_on_after(DONE_DRAIN_SECONDS):
                try:
                    async for _ in pieces:
                        pass
                    drained = True
                except httpx.HTTPError:
                    pass
            if not drained:
                _log_undrained(self._client._url)
        await self._release()
