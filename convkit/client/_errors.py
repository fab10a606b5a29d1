"""Mapping what went wrong on the wire to convkit's error tree (private; no I/O).

Each failure of a call — an httpx exception, an error status, a body that is not a chat
completion, a stream answer that is not an event stream — becomes one :class:`TransportError`
subclass, with the API key cut out, and a flag saying whether another attempt may help.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from attrs import frozen

from convkit._sse import error_from_event
from convkit._wire import JSON_ERRORS, error_detail
from convkit.chat import ChatResponse
from convkit.client._redact import Redactor
from convkit.errors import (
    APIStatusError,
    APITimeoutError,
    ConnectError,
    ResponseFormatError,
    StreamError,
    TransportError,
    status_error_class,
)

__all__ = ["ErrorMap"]


@frozen
class ErrorMap:
    """Builds the errors of one client: ``url`` names the endpoint in every message.

    ``stream_idle`` is the client's idle-stream timeout (None when the read timeout applies),
    quoted when a stream goes silent.
    """

    url: str
    redactor: Redactor
    stream_idle: float | None = None

    def status(self, response: httpx.Response) -> APIStatusError:
        """The error for an HTTP error status (the body must have been read)."""
        status = response.status_code
        raw = response.content
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except JSON_ERRORS:
            body = raw.decode("utf-8", "replace")
        body = self.redactor.value(body)
        request_id = response.headers.get("x-request-id")
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

    def parse(self, response: httpx.Response) -> ChatResponse:
        """The chat completion in a 2xx body, or raise the :class:`TransportError` it amounts to."""
        request_id = response.headers.get("x-request-id")
        try:
            body = json.loads(response.content)
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

    def unexpected_body(self, response: httpx.Response) -> TransportError:
        """The error for a 2xx stream answer that is not an event stream (body read)."""
        request_id = response.headers.get("x-request-id")
        try:
            body = json.loads(response.content)
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
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            return ConnectError(f"connection to {where} lost: {detail}"), True
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ConnectError(f"cannot connect to {where}: {detail}"), False
        return TransportError(f"request to {where} failed: {detail}"), False

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
