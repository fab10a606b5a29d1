"""What the sync and async clients share: configuration and every I/O-free decision (private)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import httpx
from attrs import frozen

from convkit._retry import Backoff
from convkit.chat import ChatRequest
from convkit.client._attempt import Retries
from convkit.client._config import (
    ResponseLimits,
    Timeouts,
    check_api_key,
    check_headers,
    env_api_key,
    env_base_url,
    request_headers,
)
from convkit.client._errors import ErrorMap
from convkit.client._redact import Redactor
from convkit.errors import InvalidRequestError

__all__ = ["BaseChatClient", "Link", "Wire"]

R = TypeVar("R")


class Wire:
    """How one client speaks to its endpoint, without doing any I/O.

    Encodes request bodies, builds the httpx request, maps failures to errors (:attr:`errors`)
    and sets a stream's idle timeout. The client and its streams share one.
    """

    __slots__ = ("_api_key", "_headers", "_httpx_timeout", "errors", "stream_usage", "timeouts")

    def __init__(
        self,
        *,
        url: str,
        api_key: str | None,
        headers: Mapping[str, str],
        timeouts: Timeouts | None,
        stream_usage: bool,
        limits: ResponseLimits | None = None,
    ) -> None:
        # Kept private and out of every repr: it only ever goes into the Authorization header.
        self._api_key = api_key
        self._headers = dict(headers)
        #: None when a caller-supplied httpx client's own timeouts apply.
        self.timeouts = timeouts
        self._httpx_timeout = timeouts.to_httpx() if timeouts is not None else None
        self.stream_usage = stream_usage
        idle = timeouts.stream_idle if timeouts is not None else None
        #: Builds this client's errors, the API key cut out.
        self.errors = ErrorMap(
            url,
            Redactor(api_key),
            idle,
            timeouts,
            limits if limits is not None else ResponseLimits(),
        )

    def __repr__(self) -> str:
        return f"Wire(url={self.errors.url!r})"

    @property
    def url(self) -> str:
        """The completions endpoint, ``{base_url}/chat/completions``."""
        return self.errors.url

    def encode(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The JSON body for ``request``; a stream asks for usage unless told otherwise."""
        body = request.to_openai()
        if stream:
            body["stream"] = True
            if self.stream_usage and "stream_options" not in body:
                body["stream_options"] = {"include_usage": True}
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None

    def build(
        self, http: httpx.Client | httpx.AsyncClient, content: bytes, *, stream: bool
    ) -> httpx.Request:
        """The httpx request carrying ``content`` (through ``http``, for its own defaults)."""
        headers = request_headers(stream=stream, api_key=self._api_key, extra=self._headers)
        if self._httpx_timeout is not None:
            return http.build_request(
                "POST", self.url, content=content, headers=headers, timeout=self._httpx_timeout
            )
        return http.build_request("POST", self.url, content=content, headers=headers)

    @property
    def limits(self) -> ResponseLimits:
        """How large an answer may grow."""
        return self.errors.limits

    def start_idle_timeout(self, response: httpx.Response, left: float | None = None) -> None:
        """Bound each wait for the next piece of ``response``'s body by ``stream_idle``.

        ``left`` (seconds to the attempt's deadline, if any) tightens it further.
        """
        # httpcore reads the request's "timeout" extension when the body iteration starts, so
        # tightening "read" here makes every wait for the next piece of the body bounded by
        # stream_idle, while the wait for the headers stayed bounded by read.
        self.tighten_read(response, self.errors.stream_idle)
        self.tighten_read(response, left)

    @staticmethod
    def tighten_read(response: httpx.Response, seconds: float | None) -> None:
        """Bound each wait for a piece of ``response``'s body (not yet started) by ``seconds``."""
        if seconds is None:
            return
        timeouts = response.request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            read = timeouts.get("read")
            # 0 would make the socket non-blocking; a deadline just passed is caught as the
            # next piece arrives.
            seconds = max(seconds, 0.001)
            timeouts["read"] = seconds if read is None else min(read, seconds)


@frozen
class Link(Generic[R]):
    """What a client hands to each stream it opens.

    ``run`` drives an attempt generator (:mod:`convkit.client._attempt`) over the client's
    httpx client: a function for :class:`~convkit.client.ChatClient`, a coroutine function for
    :class:`~convkit.client.AsyncChatClient`.
    """

    wire: Wire
    retries: Retries
    run: R


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
        limits: ResponseLimits | None = None,
        _caller_client: bool = False,
    ) -> None:
        if base_url is None:
            base_url = env_base_url()
        if api_key is None:
            api_key = env_api_key()
        # Refused here, the key unshown, rather than inside httpx at call time, key quoted.
        api_key = check_api_key(api_key)
        extra = check_headers(headers or {})
        if limits is not None and not isinstance(limits, ResponseLimits):
            raise TypeError(f"limits must be ResponseLimits or None, got {type(limits).__name__}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        #: The API root, such as ``https://api.openai.com/v1`` (no trailing slash).
        self.base_url = base_url.rstrip("/")
        #: How many times a failed request is retried (0 disables retries).
        self.max_retries = max_retries
        #: The backoff schedule between retries.
        self.backoff = backoff if backoff is not None else Backoff()
        # With a caller-supplied httpx client and no explicit timeout, that client's own timeouts
        # apply; otherwise ours are sent with every request.
        timeouts = None if timeout is None and _caller_client else Timeouts.coerce(timeout)
        self._wire = Wire(
            url=self.base_url + "/chat/completions",
            api_key=api_key,
            headers=extra,
            timeouts=timeouts,
            stream_usage=stream_usage,
            limits=limits,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    @property
    def stream_usage(self) -> bool:
        """Whether streams ask for the final usage chunk when the caller set no stream_options."""
        return self._wire.stream_usage

    @stream_usage.setter
    def stream_usage(self, value: bool) -> None:
        self._wire.stream_usage = value

    def _retries(self) -> Retries:
        return Retries(max_retries=self.max_retries, backoff=self.backoff, url=self._wire.url)

    def _link(self, run: R) -> Link[R]:
        return Link(self._wire, self._retries(), run)

    @staticmethod
    def _check_stream_params(params: Mapping[str, Any]) -> None:
        if params.get("stream") is False:
            raise InvalidRequestError("stream() cannot send stream=False", param="stream")
