"""The reply DSL of :class:`~convkit.testing.FakeChatServer`: what a test scripts (private).

:class:`Reply` values say what to answer and which fault to inject; :class:`RecordedRequest`
is what the server saw; :func:`echo_responder` and :func:`approx_prompt_tokens` are the default
responder and token rule. Served from :mod:`convkit.testing` and :mod:`convkit.testing.server`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import evolve, field, frozen

from convkit._wire import EMPTY as _EMPTY
from convkit._wire import freeze as _freeze

__all__ = [
    "RecordedRequest",
    "Reply",
    "UnconsumedRepliesError",
    "UnexpectedRequestError",
    "approx_prompt_tokens",
    "ceil4",
    "describe",
    "echo_responder",
]


class UnconsumedRepliesError(AssertionError):
    """Scripted replies were left in the queue when the test expected them all to be used."""


class UnexpectedRequestError(AssertionError):
    """A request arrived that no scripted reply (and no default responder) could answer."""


def ceil4(n: int) -> int:
    """``n`` characters as tokens: one per 4, rounded up (the server's completion rule)."""
    return -(-n // 4)


def _message_text(message: Any) -> str:
    if not isinstance(message, Mapping):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def approx_prompt_tokens(body: Mapping[str, Any]) -> int:
    """The default, deterministic prompt-token rule (not a tokenizer; see the module docs)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return 3 + sum(3 + ceil4(len(_message_text(m))) for m in messages)


@frozen(kw_only=True)
class RecordedRequest:
    """One request the server received: method, path, lower-cased headers, decoded JSON body."""

    method: str
    path: str
    headers: Mapping[str, str] = field(converter=_freeze)
    body: Any = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def messages(self) -> list[Any]:
        """The body's ``messages`` list (empty if absent)."""
        body = self.body
        msgs = body.get("messages") if isinstance(body, Mapping) else None
        return msgs if isinstance(msgs, list) else []

    @property
    def stream(self) -> bool:
        """True when the request asked for a streamed answer."""
        return isinstance(self.body, Mapping) and self.body.get("stream") is True


def _tool_call_dict(call: Any, n: int) -> dict[str, Any]:
    if hasattr(call, "to_openai"):
        call = call.to_openai()
    if not isinstance(call, Mapping):
        raise TypeError(f"a tool call must be a mapping or a ToolCall, got {type(call).__name__}")
    if "function" in call:
        fn = dict(call["function"])
        name, args = fn.get("name"), fn.get("arguments", "")
        call_id = call.get("id")
    else:
        name, args, call_id = call.get("name"), call.get("arguments", ""), call.get("id")
    if not isinstance(args, str):
        args = json.dumps(args)
    return {
        "id": call_id or f"call_fake_{n}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


@frozen(kw_only=True)
class Reply:
    """One scripted answer. Build it with :meth:`text`, :meth:`tool_calls`, :meth:`refusal`,
    :meth:`error`, :meth:`json` or :meth:`raw_stream`; each takes the options below.

    Shape of a streamed answer:

    * ``chunk_size``: characters of text (or tool arguments) per chunk;
    * ``events_per_write``: events sent per socket write (1: each event on its own);
    * ``split_writes``: instead, cut the event bytes into pieces of this many bytes, each
      written separately (splits lines, UTF-8 characters and ``\\r\\n`` on the wire);
    * ``line_ending`` (``"\\n"``, ``"\\r\\n"`` or ``"\\r"``), ``data_prefix`` (``"data: "`` or
      ``"data:"``), ``keepalive_every`` (a ``: keep-alive`` comment before every n-th chunk);
    * ``usage``: True computes figures, False omits them, or give a ``Usage``/dict;
      streams carry the usage chunk when the request asked for it
      (``stream_options.include_usage``) unless ``usage_in_stream`` says otherwise.

    Faults (counted in data chunks, ``[DONE]`` excluded):

    * ``drop_after_chunks=N``: close the connection after N chunks (non-streamed: no response);
    * ``malformed_chunk_at=N``: chunk N is not JSON (non-streamed: a broken JSON body);
    * ``stall_after_chunks=N``, ``stall_seconds``: go silent after N chunks (bounded; ``stop()``
      ends it); ``latency``: wait before sending the headers;
    * ``omit_done=True``: end the body without ``data: [DONE]``;
    * ``event_error_at=N``: send ``event: error`` after N chunks, then end the body; its data
      is ``event_error`` (default: an OpenAI-shaped ``server_error`` object). Non-streamed,
      that object is the 200 body;
    * ``piece_delay``: seconds to wait before each piece of a :meth:`raw_stream` or
      :meth:`raw_http` answer (a slow drip);
    * :meth:`raw_http`: the exact bytes of the whole HTTP answer — status line, headers and
      body, garbage included — after which the connection is closed.

    Example::

        Reply.text("Hello there", chunk_size=3, usage=False)
        Reply.tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
        Reply.error(429, retry_after=1)
        Reply.text("partial answer", drop_after_chunks=2)
    """

    content: str | None = None
    calls: tuple[Mapping[str, Any], ...] = ()
    refusal_text: str | None = None
    finish_reason: str | None = None
    status: int = 200
    body: Any = None
    raw_pieces: tuple[bytes, ...] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default=_EMPTY, converter=_freeze)
    model: str | None = None
    usage: Any = True
    usage_in_stream: bool | None = None
    extra_delta: Mapping[str, Any] = field(default=_EMPTY, converter=_freeze)
    chunk_size: int = 4
    events_per_write: int = 1
    split_writes: int | None = None
    line_ending: str = "\n"
    data_prefix: str = "data: "
    keepalive_every: int = 0
    drop_after_chunks: int | None = None
    malformed_chunk_at: int | None = None
    stall_after_chunks: int | None = None
    stall_seconds: float = 30.0
    latency: float = 0.0
    omit_done: bool = False
    event_error_at: int | None = None
    event_error: Any = None
    piece_delay: float = 0.0
    raw_http_pieces: tuple[bytes, ...] | None = field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.chunk_size < 1 or self.events_per_write < 1:
            raise ValueError("chunk_size and events_per_write must be at least 1")
        if self.split_writes is not None and self.split_writes < 1:
            raise ValueError("split_writes must be at least 1")
        if self.line_ending not in ("\n", "\r\n", "\r"):
            raise ValueError("line_ending must be '\\n', '\\r\\n' or '\\r'")
        if self.stall_seconds < 0 or self.latency < 0 or self.piece_delay < 0:
            raise ValueError("stall_seconds, latency and piece_delay must be non-negative")

    # ---- builders

    @classmethod
    def text(cls, text: str, **options: Any) -> Reply:
        """An assistant text answer (``finish_reason`` "stop" unless given)."""
        options.setdefault("finish_reason", "stop")
        return cls(content=text, **options)

    @classmethod
    def tool_calls(
        cls, calls: Sequence[Any], *, content: str | None = None, **options: Any
    ) -> Reply:
        """An answer calling tools: each call a ``ToolCall``, a wire dict, or
        ``{"name": ..., "arguments": str-or-dict, "id": optional}``. Several calls stream as
        parallel calls (index 0, 1, ...)."""
        options.setdefault("finish_reason", "tool_calls")
        counter = itertools.count()
        frozen_calls = tuple(_tool_call_dict(c, next(counter)) for c in calls)
        return cls(content=content, calls=frozen_calls, **options)

    @classmethod
    def refusal(cls, text: str, **options: Any) -> Reply:
        """A refusal (``message.refusal``; streamed as refusal deltas)."""
        options.setdefault("finish_reason", "stop")
        return cls(refusal_text=text, **options)

    @classmethod
    def error(
        cls,
        status: int,
        body: Any = None,
        *,
        message: str | None = None,
        code: str | None = None,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        **options: Any,
    ) -> Reply:
        """An HTTP error answer; the default body is OpenAI's ``{"error": {...}}`` shape.

        ``retry_after`` becomes a ``Retry-After`` header (seconds, or an HTTP date string),
        ``retry_after_ms`` a ``retry-after-ms`` header.
        """
        if not 400 <= status <= 599:
            raise ValueError("an error status must be in 400..599")
        if body is None:
            body = {
                "error": {
                    "message": message or f"fake error {status}",
                    "type": "server_error" if status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        headers = dict(options.pop("headers", {}) or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls(status=status, body=body, headers=headers, **options)

    @classmethod
    def json(cls, body: Any, status: int = 200, **options: Any) -> Reply:
        """Answer with this exact JSON body, streamed or not."""
        return cls(status=status, body=body, **options)

    @classmethod
    def raw_stream(cls, data: bytes | str | Iterable[bytes | str], **options: Any) -> Reply:
        """Answer a stream with these exact event-stream bytes (a sequence is written piece by
        piece, one write each, so a test controls where the bytes split on the wire)."""
        if isinstance(data, (bytes, str)):
            data = [data]
        pieces = tuple(p.encode() if isinstance(p, str) else bytes(p) for p in data)
        return cls(raw_pieces=pieces, **options)

    @classmethod
    def raw_http(cls, data: bytes | str | Iterable[bytes | str], **options: Any) -> Reply:
        """Answer, streamed or not, with these exact bytes as the whole HTTP response (status
        line and headers included), then close the connection. A sequence is written piece by
        piece; with ``piece_delay`` each piece waits that long first (a slowloris drip).

        Example::

            Reply.raw_http(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\n{\\"id\\"")
            Reply.raw_http(b"garbage\\r\\n\\r\\n")
        """
        if isinstance(data, (bytes, str)):
            data = [data]
        pieces = tuple(p.encode() if isinstance(p, str) else bytes(p) for p in data)
        return cls(raw_http_pieces=pieces, **options)

    def with_options(self, **options: Any) -> Reply:
        """A copy with some options changed."""
        return evolve(self, **options)


def echo_responder(request: RecordedRequest) -> Reply:
    """A default responder that answers with the text of the last user message."""
    for message in reversed(request.messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return Reply.text(_message_text(message))
    return Reply.text("")


def describe(reply: Reply) -> str:
    """A short name for ``reply``, for the list of unconsumed replies."""
    if reply.status >= 400:
        return f"error {reply.status}"
    if reply.calls:
        return f"tool_calls({', '.join(str(c['function']['name']) for c in reply.calls)})"
    if reply.refusal_text is not None:
        return f"refusal({reply.refusal_text[:20]!r})"
    if reply.raw_pieces is not None:
        return "raw_stream"
    if reply.raw_http_pieces is not None:
        return "raw_http"
    if reply.content is not None:
        return f"text({reply.content[:20]!r})"
    return "json"
