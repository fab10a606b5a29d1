"""The attempt loop, once for both clients: sans-IO generators that yield effects (private).

A call is a loop of attempts: send the request, classify what came back, and either return,
raise, or wait and send again. The loop is written here once, as generators that *yield* the
I/O they need as effect objects and receive its result (or get its httpx exception thrown
back in), the way the store's statement generators work:

* :class:`Send` — send the request; the result is a :class:`Sent`: the
  :class:`httpx.Response` once its headers came, its body unread, and when it was sent;
* :class:`ReadBody` — read a response's whole body within a size limit and a deadline, then
  close it (always); the result is the body;
* :class:`Sleep` — wait before the next attempt.

:class:`~convkit.client.ChatClient` and :class:`~convkit.client.AsyncChatClient` run these
generators with :func:`drive` and :func:`adrive` over their httpx client; that is all the I/O
they do for a call. Retry decisions come from :mod:`convkit._retry`, error mapping from
:mod:`convkit.client._errors`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

import httpx
from attrs import frozen

from convkit._retry import Backoff, is_retryable_status
from convkit.chat import ChatResponse
from convkit.client._errors import ErrorMap
from convkit.errors import APIStatusError, TransportError

__all__ = [
    "BodyRead",
    "Effect",
    "ReadBody",
    "Retries",
    "Send",
    "Sent",
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
    """Send the request body ``content``; answer with a :class:`Sent`.

    The response comes back as soon as its headers have arrived (its body not yet read), for
    streams and whole answers alike: a failure reading the body is then known to have
    happened after the answer began. ``stream`` says what to ask for (``Accept``).
    """

    content: bytes
    stream: bool
    #: The longest the whole answer may take (``Timeouts.answer_seconds``), or None. Both
    #: shells also bound the wait for the headers by it: the async one with a cancel scope, the
    #: sync one by the timeouts its reads are given (``convkit.client._deadline``).
    seconds: float | None = None


@frozen
class Sent:
    """What :class:`Send` answers: the ``response`` (body unread) and ``at``, the monotonic
    time the request was sent, from which :attr:`ReadBody.deadline` is counted."""

    response: httpx.Response
    at: float


@frozen
class ReadBody:
    """Read the whole body of ``response`` (decoded), then close it; answer with its bytes.

    The read stops with :class:`~convkit.errors.ResponseTooLargeError` past ``max_bytes``
    and with :class:`~convkit.errors.APITimeoutError` once the monotonic clock passes
    ``deadline`` (None: no deadline); the shell builds both errors through ``errors``.
    """

    response: httpx.Response
    max_bytes: int
    deadline: float | None = None
    seconds: float | None = None


@frozen
class Sleep:
    """Wait ``seconds`` before the next attempt; answer None."""

    seconds: float


class BodyRead:
    """The bytes of one :class:`ReadBody`, collected within its limits (no I/O).

    The shells feed it each decoded piece of the body; :meth:`add` raises the
    :class:`~convkit.errors.TransportError` that ends the read once the body is too long or
    its deadline has passed (checked as each piece arrives).
    """

    __slots__ = ("_effect", "_errors", "_pieces", "_size")

    def __init__(self, effect: ReadBody, errors: ErrorMap) -> None:
        self._effect = effect
        self._errors = errors
        self._pieces: list[bytes] = []
        self._size = 0

    def left(self) -> float | None:
        """Seconds until the deadline (never below 0), or None without one."""
        deadline = self._effect.deadline
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def add(self, piece: bytes) -> None:
        """Take one piece of the body."""
        self._size += len(piece)
        if self._size > self._effect.max_bytes:
            status = self._effect.response.status_code
            raise self._errors.too_large(
                "max_body_bytes", self._effect.max_bytes, f"the HTTP {status} body"
            )
        self._pieces.append(piece)
        deadline = self._effect.deadline
        if deadline is not None and time.monotonic() > deadline:
            raise self.timed_out()

    def timed_out(self) -> TransportError:
        """The error for a body whose deadline passed."""
        seconds = self._effect.seconds
        return self._errors.deadline(seconds if seconds is not None else 0.0, stream=False)

    def body(self) -> bytes:
        """The whole body."""
        return b"".join(self._pieces)


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
        if cause is not None:
            err.__cause__ = cause
        # Redacted last, chain included: httpx's exceptions quote what they were given.
        errors.redactor.error(err)
        raise err
    yield Sleep(delay)


def _read(errors: ErrorMap, sent: Sent, *, stream: bool) -> Steps[bytes]:
    """Read ``sent``'s whole body within the client's limits (raises what the shell raises)."""
    seconds = errors.timeouts.answer_seconds(stream=stream) if errors.timeouts else None
    deadline = sent.at + seconds if seconds is not None else None
    body: bytes = yield ReadBody(sent.response, errors.limits.max_body_bytes, deadline, seconds)
    return body


def _attempts(errors: ErrorMap, retries: Retries, content: bytes, *, stream: bool) -> Steps[Any]:
    """Send until the server gives a usable answer, or raise the last failure.

    Returns the :class:`Sent` of a stream whose body is an event stream, and ``(response,
    body)`` for a whole 2xx answer.
    """
    timeouts = errors.timeouts
    seconds = timeouts.answer_seconds(stream=stream) if timeouts is not None else None
    while True:
        headers: Mapping[str, str] | None = None
        cause: BaseException | None = None
        try:
            sent: Sent = yield Send(content, stream, seconds)
        except httpx.HTTPError as exc:
            err, retryable = errors.transport(exc)
            cause = exc
        else:
            response = sent.response
            status = response.status_code
            if status < 400 and stream and is_event_stream(response):
                return sent
            try:
                raw = yield from _read(errors, sent, stream=stream)
            except httpx.HTTPError as exc:
                err, retryable = errors.answer_failed(exc, status)
                cause = exc
            except TransportError as exc:  # a limit of the read: never retried
                err, retryable = exc, False
            else:
                if status < 400 and not stream:
                    return response, raw
                if status >= 400:
                    headers = response.headers
                    err = errors.status(response, raw)
                    retryable = is_retryable_status(status, headers)
                else:
                    err, retryable = errors.unexpected_body(response, raw), False
        yield from _give_up_or_wait(errors, retries, err, retryable, headers=headers, cause=cause)


def complete_attempts(errors: ErrorMap, retries: Retries, content: bytes) -> Steps[ChatResponse]:
    """One non-streamed call: the parsed response (a malformed one is not retried)."""
    response, raw = yield from _attempts(errors, retries, content, stream=False)
    try:
        return errors.parse(response, raw)
    except TransportError as err:
        raise errors.redactor.error(err) from None


def open_attempts(
    errors: ErrorMap,
    retries: Retries,
    content: bytes,
    failed: tuple[TransportError, bool] | None = None,
) -> Steps[Sent]:
    """Open a stream: the :class:`Sent` whose response body is the event stream.

    ``failed`` is the failure that ended the previous attempt's body, with whether a retry
    may help (the caller passes False once a chunk has reached its user: a retry would show
    it twice). It is retried, or raised, like a failure to open.
    """
    if failed is not None:
        yield from _give_up_or_wait(errors, retries, *failed)
    sent: Sent = yield from _attempts(errors, retries, content, stream=True)
    return sent


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
