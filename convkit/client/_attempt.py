"""The attempt loop, once for both clients: sans-IO generators that yield effects (private).

A call is a loop of attempts: send the request, classify what came back, and either return,
raise, or wait and send again. The loop is written here once, as generators that *yield* the
I/O they need as effect objects and receive its result (or get its httpx exception thrown
back in), the way the store's statement generators work:

* :class:`Send` — send the request; the result is the :class:`httpx.Response` (streamed
  when ``stream`` is true, read whole otherwise);
* :class:`ReadBody` — read a streamed response's whole body, then close it (always);
* :class:`Sleep` — wait before the next attempt.

:class:`~convkit.client.ChatClient` and :class:`~convkit.client.AsyncChatClient` run these
generators with :func:`drive` and :func:`adrive` over their httpx client; that is all the I/O
they do for a call. Retry decisions come from :mod:`convkit._retry`, error mapping from
:mod:`convkit.client._errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

import httpx
from attrs import frozen

from convkit._retry import Backoff, is_retryable_status
from convkit.chat import ChatResponse
from convkit.client._errors import ErrorMap
from convkit.errors import APIStatusError, TransportError

__all__ = [
    "Effect",
    "ReadBody",
    "Retries",
    "Send",
    "Sleep",
    "adrive",
    "complete_attempts",
    "drive",
    "is_event_stream",
    "open_attempts",
]

logger = logging.getLogger("convkit.client")

T = TypeVar("T")


@frozen
class Send:
    """Send the request body ``content``; answer with the :class:`httpx.Response`."""

    content: bytes
    stream: bool


@frozen
class ReadBody:
    """Read the whole body of a streamed ``response``, then close it; answer None."""

    response: httpx.Response


@frozen
class Sleep:
    """Wait ``seconds`` before the next attempt; answer None."""

    seconds: float


Effect = Send | ReadBody | Sleep
#: What the attempt generators are: effects out, their results in, a value returned.
Steps = Generator[Effect, Any, T]


class Retries:
    """How many attempts a call has made, and whether it may make another (mutable).

    One per :meth:`~convkit.client.ChatClient.complete` call, one for a stream's whole life
    (a stream that fails before its first chunk reopens under the same count).
    """

    __slots__ = ("_backoff", "_max", "_url", "attempt")

    def __init__(self, *, max_retries: int, backoff: Backoff, url: str) -> None:
        self._max = max_retries
        self._backoff = backoff
        self._url = url
        #: Retries made so far.
        self.attempt = 0

    def delay(
        self, err: TransportError, retryable: bool, headers: Mapping[str, str] | None
    ) -> float | None:
        """The wait before the next attempt after ``err``, or None to give up (and raise)."""
        if not retryable or self.attempt >= self._max:
            return None
        delay = self._backoff.delay(self.attempt, headers)
        if delay is None:
            return None
        what = type(err).__name__
        if isinstance(err, APIStatusError):
            what += f" {err.status_code}"
        logger.info(
            "retrying POST %s in %.3f s after %s (retry %d of %d)",
            self._url,
            delay,
            what,
            self.attempt + 1,
            self._max,
        )
        self.attempt += 1
        return delay


def is_event_stream(response: httpx.Response) -> bool:
    """Whether a 2xx answer to a stream request is an event stream."""
    ctype = response.headers.get("content-type")
    # No content type at all: try to parse it as events rather than refuse a working server.
    return ctype is None or "event-stream" in ctype


def _give_up_or_wait(
    errors: ErrorMap,
    retries: Retries,
    err: TransportError,
    retryable: bool,
    *,
    headers: Mapping[str, str] | None = None,
    cause: BaseException | None = None,
) -> Steps[None]:
    delay = retries.delay(err, retryable, headers)
    if delay is None:
        errors.redactor.error(err)
        if cause is not None:
            raise err from cause
        raise err
    yield Sleep(delay)


def _attempts(errors: ErrorMap, retries: Retries, content: bytes, *, stream: bool) -> Steps[Any]:
    """Send until the server gives a usable answer (returned), or raise the last failure."""
    while True:
        headers: Mapping[str, str] | None = None
        cause: BaseException | None = None
        try:
            response: httpx.Response = yield Send(content, stream)
        except httpx.HTTPError as exc:
            err, retryable = errors.transport(exc)
            cause = exc
        else:
            if response.status_code < 400 and (not stream or is_event_stream(response)):
                return response
            if stream:
                try:
                    yield ReadBody(response)
                except httpx.HTTPError as exc:
                    err, retryable = errors.transport(exc)
                    cause = exc
            if cause is None:
                if response.status_code >= 400:
                    headers = response.headers
                    err = errors.status(response)
                    retryable = is_retryable_status(response.status_code, headers)
                else:
                    err, retryable = errors.unexpected_body(response), False
        yield from _give_up_or_wait(errors, retries, err, retryable, headers=headers, cause=cause)


def complete_attempts(errors: ErrorMap, retries: Retries, content: bytes) -> Steps[ChatResponse]:
    """One non-streamed call: the parsed response (a malformed one is not retried)."""
    response = yield from _attempts(errors, retries, content, stream=False)
    return errors.parse(response)


def open_attempts(
    errors: ErrorMap,
    retries: Retries,
    content: bytes,
    failed: tuple[TransportError, bool] | None = None,
) -> Steps[httpx.Response]:
    """Open a stream: the response whose body is the event stream.

    ``failed`` is the failure that ended the previous attempt's body, with whether a retry
    may help (the caller passes False once a chunk has reached its user: a retry would show
    it twice). It is retried, or raised, like a failure to open.
    """
    if failed is not None:
        yield from _give_up_or_wait(errors, retries, *failed)
    response: httpx.Response = yield from _attempts(errors, retries, content, stream=True)
    return response


def drive(steps: Steps[T], handle: Callable[[Effect], Any]) -> T:
    """Run ``steps`` to its end, answering each effect with ``handle(effect)``.

    An exception ``handle`` raises is thrown back into the generator at the effect.
    """
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            effect = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value, error = handle(effect), None
        except Exception as exc:  # thrown back: the generator decides what it means
            value, error = None, exc


async def adrive(steps: Steps[T], handle: Callable[[Effect], Awaitable[Any]]) -> T:
    """The async :func:`drive`: ``handle`` returns an awaitable."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            effect = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value, error = await handle(effect), None
        except Exception as exc:  # thrown back: the generator decides what it means
            value, error = None, exc
