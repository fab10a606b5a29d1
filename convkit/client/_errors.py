"""Mapping what went wrong on the wire to convkit's error tree (private; no I/O).

Each failure of a call — an httpx exception, an error status, a body that is not a chat
completion, a stream answer that is not an event stream — becomes one :class:`TransportError`
subclass, with the API key cut out, and a flag saying whether another attempt may help.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from attrs import field, frozen

from convkit._retry import is_retryable_status
from convkit._sse import error_from_event
from convkit._wire import JSON_ERRORS, error_detail
from convkit.chat import ChatResponse
from convkit.client._config import ResponseLimits, Timeouts
from convkit.client._redact import Redactor
from convkit.errors import (
    APIStatusError,
    APITimeoutError,
    ConnectError,
    ResponseFormatError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
    status_error_class,
)

__all__ = ["ErrorMap"]


@frozen
class ErrorMap:
    """Builds the errors of one client: ``url`` names the endpoint in every message.

    ``stream_idle`` is the client's idle-stream timeout (None when the read timeout applies),
    quoted when a stream goes silent. ``timeouts`` (None when a caller's httpx client sets
    its own) and ``limits`` bound how long and how large an answer may grow.
    """

    url: str
    redactor: Redactor
    stream_idle: float | None = None
    timeouts: Timeouts | None = None
    limits: ResponseLimits = field(factory=ResponseLimits)

    def request_id(self, response: httpx.Response) -> str | None:
        """The server's ``x-request-id``, the key cut out (a server may echo it anywhere)."""
        return self.redactor.header(response.headers, "x-request-id")

    def status(self, response: httpx.Response, raw: bytes) -> APIStatusError:
        """The error for an HTTP error status whose body is ``raw``."""
        status = response.status_code
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except JSON_ERRORS:
            body = raw.decode("utf-8", "replace")
        body = self.redactor.value(body)
        request_id = self.request_id(response)
        detail = error_detail(body)
        if detail is None:
            if isinstance(body, str) and body:
                detail = body[:500]
            elif body is not None:
                detail = json.dumps(body)[:500]
            else:
                detail = response.reason_phrase or "no body"
        message = f"HTTP {status} from {self.url}: {detail}"
        if request_id:
            message += f" (request id {request_id})"
        return status_error_class(status, body)(
            self.redactor.text(message), status_code=status, body=body, request_id=request_id
        )

    def parse(self, response: httpx.Response, raw: bytes) -> ChatResponse:
        """The chat completion in a 2xx body ``raw``, or raise the error it amounts to."""
        request_id = self.request_id(response)
        try:
            body = json.loads(raw)
        except JSON_ERRORS:
            err = TransportError(
                f"HTTP {response.status_code} from {self.url}: the body is not JSON"
            )
            err.request_id = request_id
            raise err from None
        if isinstance(body, dict) and "choices" not in body and body.get("error"):
            raise error_from_event(json.dumps(self.redactor.value(body)), request_id=request_id)
        try:
            return ChatResponse.from_openai(body)
        except ResponseFormatError as exc:
            err = TransportError(
                f"HTTP {response.status_code} from {self.url}: not a chat completion ({exc})"
            )
            err.request_id = request_id
            raise self.redactor.error(err) from None

    def unexpected_body(self, response: httpx.Response, raw: bytes) -> TransportError:
        """The error for a 2xx stream answer that is not an event stream, of body ``raw``."""
        request_id = self.request_id(response)
        try:
            body = json.loads(raw)
        except JSON_ERRORS:
            body = None
        if isinstance(body, dict) and body.get("error"):
            return error_from_event(json.dumps(self.redactor.value(body)), request_id=request_id)
        ctype = response.headers.get("content-type", "")
        err = StreamError(f"expected an event stream (text/event-stream), got {ctype!r}")
        err.request_id = request_id
        return err

    def transport(self, exc: Exception) -> tuple[TransportError, bool]:
        """Map an httpx exception to convkit's tree; the flag says whether a retry may help."""
        detail = self.redactor.text(str(exc) or type(exc).__name__)
        where = self.url
        if isinstance(exc, httpx.ConnectTimeout):
            return APITimeoutError(f"timed out connecting to {where}: {detail}"), True
        if isinstance(exc, httpx.PoolTimeout):
            return APITimeoutError(f"timed out waiting for a free connection to {where}"), False
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"timed out waiting for {where}: {detail}"), False
        if isinstance(exc, httpx.ConnectError):
            return ConnectError(f"could not connect to {where}: {detail}"), True
        if isinstance(exc, httpx.RemoteProtocolError) and _parser_refused(exc):
            # The server answered, with bytes that are not HTTP (a garbage status line, broken
            # headers): a malformed response, which another attempt would only repeat.
            return TransportError(f"malformed HTTP response from {where}: {detail}"), False
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            return ConnectError(f"connection to {where} lost: {detail}"), True
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ConnectError(f"cannot connect to {where}: {detail}"), False
        return TransportError(f"request to {where} failed: {detail}"), False

    def answer_failed(self, exc: Exception, status: int) -> tuple[TransportError, bool]:
        """Map an httpx exception raised while reading a whole (non-event-stream) body.

        The answer had begun: its status line came. A 2xx body cut short is never retried
        (the request may have been carried out; see "Retries" in the docs); an error status
        stays as retryable as that status is.
        """
        err, _ = self.transport(exc)
        if isinstance(exc, httpx.TimeoutException):
            return err, False
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            err = TransportError(
                f"the connection to {self.url} was lost in the middle of an HTTP {status} body "
                f"(truncated): {self.redactor.text(str(exc))}"
            )
        return err, status >= 400 and is_retryable_status(status)

    def too_large(
        self, limit: str, size: int, what: str, partial: ChatResponse | None = None
    ) -> ResponseTooLargeError:
        """The error for an answer that grew past ``limit`` (``size`` bytes or characters)."""
        return ResponseTooLargeError(
            f"{what} from {self.url} is longer than {limit}={size}: stopped reading",
            limit=limit,
            size=size,
            partial=partial,
        )

    def deadline(self, seconds: float, *, stream: bool) -> APITimeoutError:
        """The error for an attempt whose answer did not end within ``seconds``."""
        what = "stream" if stream else "answer"
        return APITimeoutError(f"the {what} from {self.url} did not end within {seconds:g} s")

    def body(self, exc: Exception, partial: ChatResponse | None) -> tuple[TransportError, bool]:
        """Map an httpx exception raised while reading a stream's body."""
        if isinstance(exc, httpx.ReadTimeout):
            idle = self.stream_idle
            what = f"{idle:g} s" if idle is not None else "the read timeout"
            return APITimeoutError(f"the stream from {self.url} went silent for {what}"), False
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            err = StreamError(
                f"the connection to {self.url} was lost mid-stream (truncated): "
                f"{self.redactor.text(str(exc))}",
                partial=partial,
            )
            return err, True
        return self.transport(exc)


def _parser_refused(exc: BaseException) -> bool:
    """Whether an HTTP parser (h11, h2) refused bytes the server sent, somewhere in the chain.

    httpcore raises its own ``RemoteProtocolError`` (such as "Server disconnected without
    sending a response") when the connection ends; it wraps the parser's exception, as an
    argument or a cause, when what came was not HTTP.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if type(e).__module__.split(".")[0] in ("h11", "h2"):
            return True
        todo.extend(a for a in e.args if isinstance(a, BaseException))
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return False
