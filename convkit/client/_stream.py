"""What :class:`ChatStream` and :class:`AsyncChatStream` share, without I/O (private).

:class:`StreamCore` turns the bytes of one attempt's body into chunks, accumulates them and
records how the attempt failed; :class:`BaseStream` holds a stream's state across attempts and
decides, after each read, what the shell does next (:meth:`BaseStream._next_step`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

import httpx

from convkit._retry import is_retryable_status
from convkit._sse import ChatEventDecoder
from convkit.chat import ChatChunk, ChatRequest, ChatResponse, StreamAccumulator, check_chunk
from convkit.client._attempt import Sent, Steps, open_attempts
from convkit.client._base import Link
from convkit.client._config import ResponseLimits
from convkit.errors import (
    APIStatusError,
    ResponseFormatError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
)

__all__ = ["BaseStream", "StreamCore", "reads_raw"]

R = TypeVar("R")

#: What a stream's shell does next: (re)open the request, read more body, or finish.
Step = Literal["open", "read", "finish"]


class StreamCore:
    """The I/O-free heart of one attempt: bytes in, chunks out, accumulation and failure state."""

    __slots__ = ("_left", "_max_bytes", "acc", "error", "events", "retryable")

    def __init__(
        self,
        request_id: str | None,
        redact: Callable[[str], str] | None = None,
        *,
        accumulate: bool = True,
        limits: ResponseLimits | None = None,
    ) -> None:
        limits = limits if limits is not None else ResponseLimits()
        # Server data goes into error messages redacted first, and only then cut to length.
        self.events = ChatEventDecoder(
            request_id=request_id, redact=redact, max_event_chars=limits.max_event_chars
        )
        self.acc: StreamAccumulator | None = StreamAccumulator() if accumulate else None
        self.error: TransportError | None = None
        self.retryable = False
        self._max_bytes = limits.max_stream_bytes
        self._left = limits.max_stream_bytes

    def feed(self, data: bytes) -> list[ChatChunk]:
        """The chunks ``data`` completes (none past ``max_stream_bytes``: the attempt fails)."""
        left = self._left
        self._left = left - len(data)
        if self._left < 0:
            # Decode up to the limit (its chunks are delivered), then stop: nothing past it.
            chunks = self._chunks(self.events.feed(data[:left])) if left > 0 else []
            if self.error is None and self.events.failure is None:
                self.events.failure = ResponseTooLargeError(
                    f"the stream is longer than max_stream_bytes={self._max_bytes}: "
                    "stopped reading",
                    limit="max_stream_bytes",
                    size=self._max_bytes,
                )
            return chunks + self._chunks([])
        return self._chunks(self.events.feed(data))

    def close(self) -> list[ChatChunk]:
        """The chunks still pending when the body ends (a missing ``[DONE]`` fails the attempt)."""
        return self._chunks(self.events.close())

    def fail(self, err: TransportError, retryable: bool) -> None:
        """Record the first failure of this attempt."""
        if self.error is None:
            self.error = err
            self.retryable = retryable

    def _chunks(self, objs: list[dict[str, Any]]) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        if objs:
            # Accumulating checks each chunk as it merges it; otherwise the check runs alone.
            feed = self.acc.feed_openai if self.acc is not None else _checked_chunk
            append = chunks.append
            try:
                for obj in objs:
                    append(feed(obj))
            except ResponseFormatError as exc:
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
            elif isinstance(failure, ResponseTooLargeError):
                retryable = False  # another attempt would grow as large
            else:
                # A truncated stream is a dropped connection: worth a retry if nothing was shown.
                retryable = self.events.truncated
            self.fail(failure, retryable)
        if isinstance(self.error, (StreamError, ResponseTooLargeError)) and (
            self.error.partial is None
        ):
            self.error.partial = self.acc.response() if self.acc is not None else None


def _checked_chunk(obj: dict[str, Any]) -> ChatChunk:
    """A chunk the client decoded and checked (nothing else holds its object: trusted)."""
    check_chunk(obj)
    if type(obj) is dict:
        return ChatChunk(MappingProxyType(obj), trusted=True)
    return ChatChunk(obj)


def reads_raw(response: httpx.Response) -> bool:
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


class BaseStream(Generic[R]):
    """State and decisions shared by :class:`ChatStream` and :class:`AsyncChatStream`."""

    def __init__(self, link: Link[R], request: ChatRequest, *, accumulate: bool = True) -> None:
        self._link = link
        #: Whether the stream accumulates its chunks into :attr:`response` / :attr:`partial`
        #: (a caller that accumulates what it does with them, after middleware, turns it off).
        self.accumulates = accumulate
        #: The request this stream answers.
        self.request = request
        self._content = link.wire.encode(request, stream=True)
        self._core: StreamCore | None = None
        self._pending: deque[ChatChunk] = deque()
        self._yielded = 0
        self._final: ChatResponse | None = None
        self._finished = False
        self._closed = False
        self._fresh = StreamAccumulator()
        #: The server's request id once the stream is open.
        self.request_id: str | None = None
        self._deadline: float | None = None

    def __repr__(self) -> str:
        state = "done" if self._finished else "closed" if self._closed else "open"
        return f"<{type(self).__name__} model={self.request.model!r} {state}>"

    @property
    def response(self) -> ChatResponse:
        """The accumulated response, once the stream has been consumed to ``[DONE]``.

        Raises:
            RuntimeError: the stream has not finished (see :attr:`partial` for what arrived).
        """
        if not self.accumulates:
            raise RuntimeError("this stream was opened with accumulate=False")
        if self._final is None:
            raise RuntimeError(
                "the stream has not finished: iterate it to the end or call read() first"
            )
        return self._final

    @property
    def partial(self) -> ChatResponse:
        """What has arrived so far, accumulated (the final response once finished)."""
        if not self.accumulates:
            raise RuntimeError("this stream was opened with accumulate=False")
        if self._final is not None:
            return self._final
        core = self._core
        acc = core.acc if core is not None else None
        return (acc if acc is not None else self._fresh).response()

    @property
    def chunks_yielded(self) -> int:
        """How many chunks have been handed to the caller."""
        return self._yielded

    def _next_step(self, has_body: bool) -> Step:
        core = self._core
        if core is None or not has_body or core.error is not None:
            return "open"
        return "finish" if core.events.done else "read"

    def _open_steps(self) -> Steps[Sent]:
        """The attempt generator that (re)opens the stream after the current attempt."""
        core = self._core
        failed = None
        if core is not None and core.error is not None:
            # Once a chunk has reached the caller a retry would show it twice: never retry then.
            failed = (core.error, core.retryable and self._yielded == 0)
        wire = self._link.wire
        return open_attempts(wire.errors, self._link.retries, self._content, failed)

    def _opened(self, sent: Sent) -> bool:
        """Start a new attempt on ``sent``'s response; True when its raw bytes can be read."""
        response = sent.response
        wire = self._link.wire
        self.request_id = wire.errors.request_id(response)
        self._core = StreamCore(
            self.request_id,
            wire.errors.redactor.text,
            accumulate=self.accumulates,
            limits=wire.limits,
        )
        total = wire.timeouts.total if wire.timeouts is not None else None
        self._deadline = sent.at + total if total is not None else None
        wire.start_idle_timeout(response, self._left())
        return reads_raw(response)

    def _left(self) -> float | None:
        """Seconds to this attempt's deadline (``Timeouts.total``; never below 0), or None."""
        deadline = self._deadline
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def _check_deadline(self, *, passed: bool = False) -> None:
        """Fail the attempt once its deadline has passed (keep-alives do not hold it open)."""
        deadline, core = self._deadline, self._core
        if deadline is None or core is None or core.error is not None:
            return
        if passed or time.monotonic() > deadline:
            wire = self._link.wire
            total = wire.timeouts.total if wire.timeouts is not None else None
            core.fail(wire.errors.deadline(total or 0.0, stream=True), False)

    def _gave_up(self, err: TransportError) -> None:
        """The stream failed for good with ``err``."""
        self._closed = True
        if self.request_id is None:
            self.request_id = err.request_id

    def _body_failed(self, exc: httpx.HTTPError) -> None:
        core = self._core
        assert core is not None
        partial = core.acc.response() if core.acc is not None else None
        err, retryable = self._link.wire.errors.body(exc, partial)
        err.__cause__ = exc
        core.fail(err, retryable)

    def _done(self) -> None:
        core = self._core
        assert core is not None
        self._final = core.acc.response() if core.acc is not None else None
        self._finished = True
