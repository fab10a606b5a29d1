"""``FakeChatServer``: a real OpenAI-protocol HTTP server on loopback, for tests and demos.

It listens on ``127.0.0.1`` on an ephemeral port, serves ``POST /v1/chat/completions`` from a
background thread (HTTP/1.1; streams use chunked transfer encoding), answers with scripted
:class:`Reply` values, records every request it receives, and injects faults on demand: any
status with ``Retry-After``, a dropped connection, a malformed chunk, a stall, a missing
``[DONE]``, an ``event: error``. Only the standard library is used.

Example::

    from convkit.testing import FakeChatServer, Reply

    with FakeChatServer() as server:
        server.enqueue(Reply.text("Hello!"), Reply.error(429, retry_after=0))
        # point any OpenAI-compatible client at server.base_url
        ...
        assert server.requests[0].body["model"] == "gpt-4o-mini"
        server.assert_all_consumed()

Token usage: unless a reply scripts its own figures, ``prompt_tokens`` is computed by
``prompt_tokens_fn(body)``, by default :func:`approx_prompt_tokens` — 3 tokens per message plus
one token per 4 characters (rounded up) of its text, plus 3 for the reply's priming — and
``completion_tokens`` is one token per 4 characters (rounded up) of the reply's text, refusal,
tool names and arguments. The rule is deterministic, not a real tokenizer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any

from attrs import evolve, field, frozen

__all__ = [
    "FakeChatServer",
    "RecordedRequest",
    "Reply",
    "UnconsumedRepliesError",
    "UnexpectedRequestError",
    "approx_prompt_tokens",
    "echo_responder",
]

logger = logging.getLogger("convkit.testing")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class UnconsumedRepliesError(AssertionError):
    """Scripted replies were left in the queue when the test expected them all to be used."""


class UnexpectedRequestError(AssertionError):
    """A request arrived that no scripted reply (and no default responder) could answer."""


def _ceil4(n: int) -> int:
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
    return 3 + sum(3 + _ceil4(len(_message_text(m))) for m in messages)


def _freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if value else _EMPTY


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
      that object is the 200 body.

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

    def __attrs_post_init__(self) -> None:
        if self.chunk_size < 1 or self.events_per_write < 1:
            raise ValueError("chunk_size and events_per_write must be at least 1")
        if self.split_writes is not None and self.split_writes < 1:
            raise ValueError("split_writes must be at least 1")
        if self.line_ending not in ("\n", "\r\n", "\r"):
            raise ValueError("line_ending must be '\\n', '\\r\\n' or '\\r'")
        if self.stall_seconds < 0 or self.latency < 0:
            raise ValueError("stall_seconds and latency must be non-negative")

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

    def with_options(self, **options: Any) -> Reply:
        """A copy with some options changed."""
        return evolve(self, **options)


def echo_responder(request: RecordedRequest) -> Reply:
    """A default responder that answers with the text of the last user message."""
    for message in reversed(request.messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return Reply.text(_message_text(message))
    return Reply.text("")


# --------------------------------------------------------------------------- rendering


class _Render:
    """Turns a reply into response bodies for one request (pure; no sockets)."""

    def __init__(self, server: FakeChatServer, reply: Reply, body: Mapping[str, Any], n: int):
        self.reply = reply
        self.body = body
        self.id = f"chatcmpl-fake-{n}"
        self.created = 1_700_000_000 + n
        self.model = reply.model or str(body.get("model") or "fake-model")
        choices = body.get("n")
        self.n = 1
        if isinstance(choices, int) and not isinstance(choices, bool) and choices > 0:
            self.n = choices
        self.server = server

    def usage(self) -> dict[str, Any] | None:
        usage = self.reply.usage
        if usage is False or usage is None:
            return None
        if usage is True:
            r = self.reply
            text = (r.content or "") + (r.refusal_text or "")
            text += "".join(
                str(c["function"]["name"] or "") + str(c["function"]["arguments"]) for c in r.calls
            )
            prompt = int(self.server.prompt_tokens_fn(self.body))
            completion = _ceil4(len(text)) * self.n
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if hasattr(usage, "to_openai"):
            return dict(usage.to_openai())
        return dict(usage)

    def completion(self) -> dict[str, Any]:
        r = self.reply
        message: dict[str, Any] = {
            "role": "assistant",
            "content": r.content,
            "refusal": r.refusal_text,
        }
        if r.calls:
            message["tool_calls"] = [json.loads(json.dumps(c)) for c in r.calls]
        message.update(r.extra_delta)
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": r.finish_reason}
                for i in range(self.n)
            ],
            "system_fingerprint": "fp_fake",
        }
        usage = self.usage()
        if usage is not None:
            out["usage"] = usage
        return out

    def chunks(self) -> list[dict[str, Any]]:
        r = self.reply
        opts = self.body.get("stream_options")
        asked = isinstance(opts, Mapping) and opts.get("include_usage") is True
        with_usage = asked if r.usage_in_stream is None else r.usage_in_stream
        usage = self.usage() if with_usage else None
        size = r.chunk_size
        out: list[dict[str, Any]] = []

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
            c: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if with_usage:
                c["usage"] = None  # as OpenAI does: null on every chunk but the last
            out.append(c)

        for index in range(self.n):
            first: dict[str, Any] = {
                "role": "assistant",
                "content": None if r.content is None else "",
                "refusal": None,
            }
            first.update(r.extra_delta)
            chunk(index, first)
            text = r.content or ""
            for i in range(0, len(text), size):
                chunk(index, {"content": text[i : i + size]})
            refusal = r.refusal_text or ""
            for i in range(0, len(refusal), size):
                chunk(index, {"refusal": refusal[i : i + size]})
            for k, call in enumerate(r.calls):
                fn = call["function"]
                head = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": fn["name"], "arguments": ""},
                }
                chunk(index, {"tool_calls": [head]})
                args = str(fn["arguments"])
                for i in range(0, len(args), size):
                    piece = {"index": k, "function": {"arguments": args[i : i + size]}}
                    chunk(index, {"tool_calls": [piece]})
            chunk(index, {}, r.finish_reason)
        if usage is not None:
            out.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": usage,
                }
            )
        return out


# --------------------------------------------------------------------------- HTTP


class _Abort(Exception):
    """The server is stopping or the client went away: end this response quietly."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeChatServer/1"
    # Bounds an idle keep-alive connection even if the server is never stopped.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s " + fmt, self.address_string(), *args)

    # ---- entry points

    _n = 0  # this request's number, for its x-request-id

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": "fake-model", "object": "model", "owned_by": "convkit"}
            self._send_json(200, {"object": "list", "data": [model]})
            return
        error = {"message": f"no route for GET {self.path}", "type": "not_found"}
        self._send_json(404, {"error": error})

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
        )
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._n = owner._record(record, unexpected=True)
            self._send_json(
                404, {"error": {"message": f"no route for POST {self.path}", "type": "not_found"}}
            )
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._n = owner._record(record, unexpected=False)
            self._send_json(
                400,
                {
                    "error": {
                        "message": "the body must be a JSON object with a 'messages' list",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": None,
                    }
                },
            )
            return
        reply, n = owner._take(record)
        self._n = n
        if reply is None:
            self._send_json(
                500,
                {
                    "error": {
                        "message": (
                            "FakeChatServer: no reply scripted for this request; call "
                            "server.enqueue(...) first or pass default_responder="
                        ),
                        "type": "fake_server_unscripted",
                        "code": "unscripted_request",
                    }
                },
            )
            return
        try:
            self._answer(reply, body, n)
        except _Abort:
            self.close_connection = True
        except OSError:  # ConnectionError and TimeoutError included
            # The client hung up (it gave up on a stall, or closed mid-stream): nothing to do.
            self.close_connection = True

    # ---- answers

    def _answer(self, reply: Reply, body: dict[str, Any], n: int) -> None:
        owner = self.server.owner
        if reply.latency:
            owner._wait(reply.latency)
        render = _Render(owner, reply, body, n)
        if reply.status >= 400:
            self._send_json(reply.status, reply.body, reply.headers)
            return
        stream = body.get("stream") is True
        if reply.raw_pieces is not None:
            self._stream_pieces(reply.raw_pieces, reply)
            return
        if not stream:
            self._answer_plain(reply, render)
            return
        if reply.body is not None:  # Reply.json for a stream request: send the JSON as is
            self._send_json(reply.status, reply.body, reply.headers)
            return
        self._answer_stream(reply, render)

    def _answer_plain(self, reply: Reply, render: _Render) -> None:
        owner = self.server.owner
        if reply.drop_after_chunks is not None:
            self._drop()
            return
        if reply.stall_after_chunks is not None:
            owner._wait(reply.stall_seconds)
        if reply.body is not None:
            self._send_json(reply.status, reply.body, reply.headers)
            return
        if reply.event_error_at is not None:
            self._send_json(200, self._error_body(reply), reply.headers)
            return
        data = json.dumps(render.completion()).encode()
        if reply.malformed_chunk_at is not None:
            data = data[: len(data) // 2]
        self._send_bytes(200, data, "application/json", reply.headers)

    @staticmethod
    def _error_body(reply: Reply) -> Any:
        if reply.event_error is not None:
            return reply.event_error
        return {"error": {"message": "fake stream error", "type": "server_error", "code": None}}

    def _answer_stream(self, reply: Reply, render: _Render) -> None:
        owner = self.server.owner
        le = reply.line_ending
        prefix = reply.data_prefix
        end = (le + le).encode()
        chunks = render.chunks()
        self._start_stream(reply.headers)
        out: list[bytes] = []

        def event(data: str) -> None:
            out.append(prefix.encode() + data.encode() + end)

        for i, c in enumerate(chunks):
            if reply.drop_after_chunks == i:
                self._flush(out, reply)
                self._drop()
                return
            if reply.stall_after_chunks == i:
                self._flush(out, reply)
                owner._wait(reply.stall_seconds)
            if reply.event_error_at == i:
                out.append(
                    b"event: error"
                    + le.encode()
                    + prefix.encode()
                    + json.dumps(self._error_body(reply)).encode()
                    + end
                )
                self._flush(out, reply)
                self._end_stream()
                return
            if reply.keepalive_every and i % reply.keepalive_every == 0:
                out.append(b": keep-alive" + end)
            if reply.malformed_chunk_at == i:
                event('{"id": "broken", "choices": [')
            else:
                event(json.dumps(c, separators=(",", ":")))
            if len(out) >= reply.events_per_write and reply.split_writes is None:
                self._flush(out, reply)
        count = len(chunks)
        if reply.drop_after_chunks is not None and reply.drop_after_chunks >= count:
            self._flush(out, reply)
            self._drop()
            return
        if reply.stall_after_chunks is not None and reply.stall_after_chunks >= count:
            self._flush(out, reply)
            owner._wait(reply.stall_seconds)
        if reply.event_error_at is not None and reply.event_error_at >= count:
            out.append(
                b"event: error"
                + le.encode()
                + prefix.encode()
                + json.dumps(self._error_body(reply)).encode()
                + end
            )
        elif not reply.omit_done:
            event("[DONE]")
        self._flush(out, reply)
        self._end_stream()

    def _stream_pieces(self, pieces: Sequence[bytes], reply: Reply) -> None:
        self._start_stream(reply.headers)
        for piece in pieces:
            if piece:
                self._write_chunk(piece)
        if reply.drop_after_chunks is not None:
            self._drop()
            return
        self._end_stream()

    # ---- wire helpers

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] = _EMPTY) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, data: bytes, ctype: str, headers: Mapping[str, str] = _EMPTY
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_fake_{self._n}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, headers: Mapping[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_fake_{self._n}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        if self.server.owner._stopping.is_set():
            raise _Abort
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _flush(self, out: list[bytes], reply: Reply) -> None:
        if not out:
            return
        if reply.split_writes is not None:
            data = b"".join(out)
            step = reply.split_writes
            for i in range(0, len(data), step):
                self._write_chunk(data[i : i + step])
        elif reply.events_per_write == 1:
            for piece in out:
                self._write_chunk(piece)
        else:
            # One HTTP chunk per event, as real servers frame them, but one socket write.
            if self.server.owner._stopping.is_set():
                raise _Abort
            self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in out))
        out.clear()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        # Close without finishing the response: the client sees the connection end mid-body.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: FakeChatServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Track every connection thread so that stop() can end and join them.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="FakeChatServer-conn",
            daemon=True,
        )
        with self.owner._lock:
            self.owner._connections[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("FakeChatServer connection error", exc_info=True)


# --------------------------------------------------------------------------- the server


class FakeChatServer:
    """A chat-completions server on ``127.0.0.1`` in a background thread, for tests and demos.

    Script answers with :meth:`enqueue`; each request takes the next one. With the queue empty,
    ``default_responder(request)`` answers if given (:func:`echo_responder` echoes the last user
    message); otherwise the server answers 500 with a clear message and records the request in
    :attr:`unexpected_requests`. Faults are options of :class:`Reply`.

    Example::

        with FakeChatServer() as server:
            server.enqueue(Reply.text("hi"), Reply.tool_calls([{"name": "f", "arguments": {}}]))
            client = ChatClient(base_url=server.base_url, api_key="sk-test")
            ...
            assert len(server.requests) == 2
            server.assert_all_consumed()
    """

    def __init__(
        self,
        *,
        default_responder: Callable[[RecordedRequest], Reply] | None = None,
        prompt_tokens_fn: Callable[[Mapping[str, Any]], int] = approx_prompt_tokens,
        port: int = 0,
    ) -> None:
        self.default_responder = default_responder
        #: Computes ``usage.prompt_tokens`` from a request body when a reply scripts no usage.
        self.prompt_tokens_fn = prompt_tokens_fn
        self._port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[RecordedRequest] = []
        self._connections: dict[Any, threading.Thread] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._request_count = 0

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"<FakeChatServer {where} queued={len(self._queue)}>"

    # ---- lifecycle

    def start(self) -> FakeChatServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="FakeChatServer",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end stalls and open connections, join every thread (bounded)."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on (after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The API root to give a client, such as ``http://127.0.0.1:54321/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- scripting

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each incoming chat request takes the next one, in order."""
        for r in replies:
            if not isinstance(r, Reply):
                raise TypeError(f"enqueue() takes Reply values, got {type(r).__name__}")
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def unexpected_requests(self) -> list[RecordedRequest]:
        """Requests that found no scripted reply (answered 500) or hit an unknown path."""
        with self._lock:
            return list(self._unexpected)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._unexpected.clear()

    def assert_all_consumed(self) -> None:
        """Raise if scripted replies are left or unexpected requests arrived.

        Raises:
            UnconsumedRepliesError: replies were queued but never requested.
            UnexpectedRequestError: requests arrived that nothing was scripted for.
        """
        with self._lock:
            left = list(self._queue)
            unexpected = list(self._unexpected)
        if unexpected:
            raise UnexpectedRequestError(
                f"{len(unexpected)} request(s) arrived with nothing scripted; first: "
                f"{unexpected[0].method} {unexpected[0].path}"
            )
        if left:
            raise UnconsumedRepliesError(
                f"{len(left)} scripted repl{'y' if len(left) == 1 else 'ies'} never requested: "
                + ", ".join(_describe(r) for r in left[:5])
            )

    # ---- called from handler threads

    def _record(self, record: RecordedRequest, *, unexpected: bool) -> int:
        with self._lock:
            self._request_count += 1
            self._requests.append(record)
            if unexpected:
                self._unexpected.append(record)
            return self._request_count

    def _take(self, record: RecordedRequest) -> tuple[Reply | None, int]:
        with self._lock:
            self._request_count += 1
            self._requests.append(record)
            n = self._request_count
            if self._queue:
                return self._queue.popleft(), n
            responder = self.default_responder
            if responder is None:
                self._unexpected.append(record)
                return None, n
        return responder(record), n

    def _wait(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Abort


def _describe(reply: Reply) -> str:
    if reply.status >= 400:
        return f"error {reply.status}"
    if reply.calls:
        return f"tool_calls({', '.join(str(c['function']['name']) for c in reply.calls)})"
    if reply.refusal_text is not None:
        return f"refusal({reply.refusal_text[:20]!r})"
    if reply.raw_pieces is not None:
        return "raw_stream"
    if reply.content is not None:
        return f"text({reply.content[:20]!r})"
    return "json"


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a FakeChatServer that echoes the last user message, until interrupted.

    Run it with ``python -m convkit.testing.server [--port N]``.
    """
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    with FakeChatServer(default_responder=echo_responder, port=args.port) as server:
        print(f"FakeChatServer listening: OPENAI_BASE_URL={server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
