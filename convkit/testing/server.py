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
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from convkit._wire import EMPTY as _EMPTY
from convkit.testing._main import main
from convkit.testing._render import Render

# The reply DSL, importable from here as it always was.
from convkit.testing._replies import RecordedRequest as RecordedRequest
from convkit.testing._replies import Reply as Reply
from convkit.testing._replies import UnconsumedRepliesError as UnconsumedRepliesError
from convkit.testing._replies import UnexpectedRequestError as UnexpectedRequestError
from convkit.testing._replies import approx_prompt_tokens as approx_prompt_tokens
from convkit.testing._replies import describe
from convkit.testing._replies import echo_responder as echo_responder

__all__ = ["FakeChatServer", "main"]

logger = logging.getLogger("convkit.testing")


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
        render = Render(owner.prompt_tokens_fn, reply, body, n)
        if reply.raw_http_pieces is not None:
            self._raw_http(reply)
            return
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

    def _answer_plain(self, reply: Reply, render: Render) -> None:
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

    def _error_event(self, reply: Reply, le: str, prefix: str, end: bytes) -> bytes:
        body = json.dumps(self._error_body(reply)).encode()
        return b"event: error" + le.encode() + prefix.encode() + body + end

    def _answer_stream(self, reply: Reply, render: Render) -> None:
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
                out.append(self._error_event(reply, le, prefix, end))
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
            out.append(self._error_event(reply, le, prefix, end))
        elif not reply.omit_done:
            event("[DONE]")
        self._flush(out, reply)
        self._end_stream()

    def _raw_http(self, reply: Reply) -> None:
        assert reply.raw_http_pieces is not None
        owner = self.server.owner
        self.close_connection = True
        for piece in reply.raw_http_pieces:
            if reply.piece_delay:
                owner._wait(reply.piece_delay)
            if owner._stopping.is_set():
                raise _Abort
            self.wfile.write(piece)
            self.wfile.flush()
        self._drop()

    def _stream_pieces(self, pieces: Sequence[bytes], reply: Reply) -> None:
        owner = self.server.owner
        self._start_stream(reply.headers)
        for piece in pieces:
            if reply.piece_delay:
                owner._wait(reply.piece_delay)
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
                + ", ".join(describe(r) for r in left[:5])
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


if __name__ == "__main__":  # pragma: no cover
    main()
