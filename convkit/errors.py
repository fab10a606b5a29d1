"""The exceptions convkit raises, rooted at :class:`ConvkitError`.

The tree::

    ConvkitError
    ├── InvalidMessageError (ValueError)      bad message input: names the index and field
    ├── InvalidRequestError (ValueError)      bad request parameters, caught before sending
    ├── UnknownModelError (KeyError)          a model the registry cannot resolve (strict lookups)
    ├── ModelsFileError (ValueError)          the CONVKIT_MODELS file cannot be read or is invalid
    ├── EncodingUnavailableError (RuntimeError)  no verified BPE file for a tiktoken encoding
    ├── ContextOverflowError (ValueError)     even the minimal window does not fit the budget
    ├── ResponseFormatError (ValueError)      a server's body or chunk not shaped as the API says
    ├── SummarizationError                    a summarizer failed (reported, turn falls back)
    ├── PluginError                           a plugin's hook raised or misbehaved: names both
    ├── StoreError                            persistence problems
    │   ├── StoreValueError (ValueError)      a value the store refuses; nothing written
    │   ├── ThreadNotFoundError (KeyError)
    │   └── SchemaVersionError                database schema older/newer than this convkit
    └── TransportError                        anything that went wrong talking to the API
        ├── ConnectError                      could not connect
        ├── APITimeoutError (TimeoutError)    connect/read/idle-stream timeout
        ├── StreamError                       malformed or truncated server-sent events
        ├── ResponseTooLargeError             an answer grew past a configured size limit
        └── APIStatusError                    the server answered with an HTTP error status
            ├── BadRequestError (400)
            │   └── ContextLengthExceededError  the server says the prompt is too long
            ├── AuthenticationError (401)
            ├── PermissionDeniedError (403)
            ├── NotFoundError (404)
            ├── ConflictError (409)
            ├── UnprocessableEntityError (422)
            ├── RateLimitError (429)
            └── InternalServerError (5xx)

Every error message is built without secrets: API keys never appear in ``str()``,
``repr()`` or attributes of these exceptions.

``TimeoutError`` is a deprecated alias of :class:`APITimeoutError`: importing it from here or
from ``convkit`` still works, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import builtins
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from convkit.chat import ChatResponse

__all__ = [
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConnectError",
    "ContextLengthExceededError",
    "ContextOverflowError",
    "ConvkitError",
    "EncodingUnavailableError",
    "InternalServerError",
    "InvalidMessageError",
    "InvalidRequestError",
    "ModelsFileError",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "RateLimitError",
    "ResponseFormatError",
    "ResponseTooLargeError",
    "SchemaVersionError",
    "StoreError",
    "StoreValueError",
    "StreamError",
    "SummarizationError",
    "ThreadNotFoundError",
    "TransportError",
    "UnknownModelError",
    "UnprocessableEntityError",
    "status_error_class",
]


class ConvkitError(Exception):
    """Root of every exception convkit raises on purpose."""


class InvalidMessageError(ConvkitError, ValueError):
    """A message (or a list of messages) is not valid chat-completions input.

    Attributes:
        index: position of the offending message in the list, or None for a single message.
        field: the offending field as a dotted path (``"content[1].image_url.url"``), or None.
        reason: the problem, without the location.
    """

    def __init__(self, reason: str, *, index: int | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.index = index
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"message {self.index}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def at_index(self, index: int) -> InvalidMessageError:
        """Return a copy of this error that names the message's position in a list."""
        return InvalidMessageError(self.reason, index=index, field=self.field)


class InvalidRequestError(ConvkitError, ValueError):
    """A request parameter is out of range or of the wrong type (caught before sending).

    Attributes:
        param: the parameter's name.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class ModelsFileError(ConvkitError, ValueError):
    """The file named by ``CONVKIT_MODELS`` cannot be read, or holds an invalid entry.

    Raised by the first model lookup that needs the file (never by ``import convkit``), and by
    every later one until the file is fixed.

    Attributes:
        path: the file's path, as ``CONVKIT_MODELS`` gives it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"CONVKIT_MODELS={path}: {reason}")


class UnknownModelError(ConvkitError, KeyError):
    """The model registry has no entry for this name (raised only by strict lookups)."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(model)

    def __str__(self) -> str:
        return (
            f"unknown model {self.model!r}: register it with convkit.models.register() "
            "or list it in the file named by CONVKIT_MODELS"
        )


class EncodingUnavailableError(ConvkitError, RuntimeError):
    """No verified BPE file could be found for a tiktoken encoding.

    Attributes:
        encoding: the encoding's name (``"o200k_base"``).
    """

    def __init__(self, encoding: str, message: str) -> None:
        self.encoding = encoding
        super().__init__(message)


class ContextOverflowError(ConvkitError, ValueError):
    """Even the smallest acceptable window (system prompt + newest turn) exceeds the budget.

    Attributes:
        needed: prompt tokens the smallest acceptable window takes.
        available: the prompt-token budget.
    """

    def __init__(self, needed: int, available: int, detail: str = "") -> None:
        self.needed = needed
        self.available = available
        msg = (
            f"context overflow: the smallest valid window needs {needed} tokens, "
            f"{available} available"
        )
        super().__init__(f"{msg}; {detail}" if detail else msg)


class _FieldError(ConvkitError):
    """An error about one field: ``reason``, and where (``field``), rendered "field: reason"."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class ResponseFormatError(_FieldError, ValueError):
    """A response body or stream chunk from the server is not shaped as the protocol says.

    Raised by the parsers (:meth:`convkit.chat.ChatResponse.from_openai`,
    :meth:`convkit.chat.ChatChunk.from_openai`, :class:`convkit.chat.StreamAccumulator`); the
    clients turn it into a :class:`TransportError` (a whole body) or a :class:`StreamError` (a
    chunk), so callers of the clients never see it. Any other exception from a parser is a bug
    and propagates as it is.

    Attributes:
        field: where the problem is, as a dotted path (``"choices[0].delta.content"``), or None.
        reason: the problem, without the location.
    """


class SummarizationError(ConvkitError):
    """The summarizer failed; the turn falls back to trimming and reports this error."""


class PluginError(ConvkitError):
    """A plugin's hook implementation (or the stream middleware it returned) failed.

    The original exception is the ``__cause__`` as well as :attr:`cause`. Also raised when a
    synchronous conversation meets an ``async`` hook implementation, which only the async
    conversation can await.

    Attributes:
        plugin: the plugin's registered name.
        hook: the hook's name (``"prepare_request"``, ``"wrap_stream"``, ...).
        cause: the exception the plugin raised, or None when convkit refused the plugin's
            result (an awaitable in a synchronous conversation, a wrapper that did not yield).
    """

    def __init__(
        self,
        plugin: str,
        hook: str,
        cause: BaseException | None = None,
        *,
        message: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.hook = hook
        self.cause = cause
        if message is None:
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else "failed"
            message = f"plugin {plugin!r} failed in hook {hook!r}: {detail}"
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause

    def __reduce__(self) -> Any:
        return (_rebuild_plugin_error, (self.plugin, self.hook, self.cause, str(self)))


def _rebuild_plugin_error(
    plugin: str, hook: str, cause: BaseException | None, message: str
) -> PluginError:
    return PluginError(plugin, hook, cause, message=message)


class StoreError(ConvkitError):
    """Something went wrong in the persistence layer."""


class StoreValueError(_FieldError, StoreError, ValueError):
    """A value handed to the store cannot be stored; nothing was written.

    Raised for metadata that is not JSON, too large, or looks like a credential; for a
    malformed thread id, status or ``seq``; and for a malformed export file.

    Attributes:
        field: where the problem is, as a dotted path (``"metadata.user.api_key"``), or None.
        reason: the problem, without the location.
    """


class ThreadNotFoundError(StoreError, KeyError):
    """No thread with this id exists.

    Attributes:
        thread_id: the id that was asked for.
    """

    def __init__(self, thread_id: object) -> None:
        self.thread_id = thread_id
        super().__init__(thread_id)

    def __str__(self) -> str:
        return f"no thread with id {self.thread_id!r}"


class SchemaVersionError(StoreError):
    """The database schema is not the one this version of convkit expects."""


class TransportError(ConvkitError):
    """Talking to the completions endpoint failed."""

    #: The server's request id (``x-request-id``) when one was received.
    request_id: str | None = None


class ConnectError(TransportError):
    """The connection could not be established or was dropped before a response."""


class APITimeoutError(TransportError, builtins.TimeoutError):
    """A connect, read, pool or idle-stream timeout expired.

    Also a :class:`builtins.TimeoutError`, so ``except TimeoutError`` catches it as well.
    """


class StreamError(TransportError):
    """The event stream was malformed or ended before ``[DONE]``.

    Attributes:
        partial: whatever had been accumulated before the failure, or None.
    """

    def __init__(self, message: str, *, partial: ChatResponse | None = None) -> None:
        self.partial = partial
        super().__init__(message)


class ResponseTooLargeError(TransportError):
    """An answer grew past one of the client's size limits; reading stopped there.

    Raised for a body (decompressed) longer than ``max_body_bytes``, a stream longer than
    ``max_stream_bytes``, or one stream event longer than ``max_event_chars`` (see
    ``convkit.client.ResponseLimits``). Never retried: the same request would grow as large
    again.

    Attributes:
        limit: the name of the limit that was reached, such as ``"max_stream_bytes"``.
        size: that limit's value.
        partial: for a stream, what had been accumulated before the limit (or None).
    """

    def __init__(
        self, message: str, *, limit: str, size: int, partial: ChatResponse | None = None
    ) -> None:
        self.limit = limit
        self.size = size
        self.partial = partial
        super().__init__(message)


class APIStatusError(TransportError):
    """The server answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status.
        body: the decoded JSON error body (or the raw text), never containing request headers.
        code: ``error.code`` from the body when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        err = body.get("error") if isinstance(body, dict) else None
        self.code: str | None = err.get("code") if isinstance(err, dict) else None
        super().__init__(message)


class BadRequestError(APIStatusError):
    """HTTP 400."""


class ContextLengthExceededError(BadRequestError):
    """HTTP 400 where the server says the prompt exceeds the model's context window."""


class AuthenticationError(APIStatusError):
    """HTTP 401."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404."""


class ConflictError(APIStatusError):
    """HTTP 409."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422."""


class RateLimitError(APIStatusError):
    """HTTP 429."""


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int, body: Any = None) -> type[APIStatusError]:
    """Pick the exception class for an HTTP error status (and its decoded body)."""
    if status_code == 400 and _mentions_context_length(body):
        return ContextLengthExceededError
    if status_code >= 500:
        return InternalServerError
    return _BY_STATUS.get(status_code, APIStatusError)


def _mentions_context_length(body: Any) -> bool:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        if err.get("code") == "context_length_exceeded":
            return True
        text = str(err.get("message", ""))
    else:
        text = str(body or "")
    text = text.lower()
    return "context length" in text or "context_length" in text or "maximum context" in text


def __getattr__(name: str) -> Any:
    # The old name shadowed the builtin inside every module that imported it.
    if name == "TimeoutError":
        warnings.warn(
            "convkit.errors.TimeoutError is deprecated; use convkit.errors.APITimeoutError",
            DeprecationWarning,
            stacklevel=2,
        )
        return APITimeoutError
    raise AttributeError(f"module 'convkit.errors' has no attribute {name!r}")
