"""What happens after ``data: [DONE]``: the stream ends promptly, and the connection is reused
when the server ends the body as it should.

A raw loopback socket server plays the server, so that the test controls the bytes that follow
``[DONE]``: the end of the chunked body at once, after a short pause, never (the body held
open), or keep-alive comments forever.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from convkit.client import DONE_DRAIN_SECONDS, AsyncChatClient, ChatClient, Timeouts

from .conftest import MESSAGES

DONE_BODY = (
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"hi"},'
    b'"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
HOLD_MAX = 5.0  # a held body is released at teardown, or after this long at the latest


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class AfterDoneServer:
    """A keep-alive HTTP/1.1 server answering every request with ``DONE_BODY``, then ``after``:

    * ``"end"``: the terminating chunk in the same write;
    * ``"pause"``: the terminating chunk 50 ms later (well within the drain deadline);
    * ``"hold"``: nothing, keeping the body open until released;
    * ``"keepalive"``: a ``: keep-alive`` comment every 20 ms until released.

    A held body is released at teardown or after ``HOLD_MAX``, whichever comes first, and the
    server then shuts the connection: a client that waits for the end of the body fails the
    test's time bound instead of hanging it.
    """

    def __init__(self, after: str) -> None:
        self.after = after
        self.connections = 0
        self.requests = 0
        self._release = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def close(self) -> None:
        self._release.set()
        self._accepting.join(5)
        for t in self._threads:
            t.join(5)
        self._listener.close()
        for s in self._sockets:
            s.close()

    def _accept(self) -> None:
        while not self._release.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(HOLD_MAX)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                with self._lock:
                    self.requests += 1
                if not self._answer(conn):
                    conn.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            return  # the client closed the connection

    def _answer(self, conn: socket.socket) -> bool:
        """Send one response; True when the connection may carry another request."""
        if self.after == "end":
            conn.sendall(HEAD + http_chunk(DONE_BODY) + b"0\r\n\r\n")
            return True
        conn.sendall(HEAD + http_chunk(DONE_BODY))
        if self.after == "pause":
            time.sleep(0.05)
            conn.sendall(b"0\r\n\r\n")
            return True
        if self.after == "hold":
            self._release.wait(HOLD_MAX)
            return False
        until = time.monotonic() + HOLD_MAX
        while not self._release.wait(0.02) and time.monotonic() < until:  # keepalive
            conn.sendall(http_chunk(b": keep-alive\n\n"))
        return False


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[AfterDoneServer]:
    srv = AfterDoneServer(request.param)
    try:
        yield srv
    finally:
        srv.close()


def stream_twice(kind: str, base_url: str, http_kwargs: dict[str, Any]) -> list[float]:
    """Stream two answers over one client; return how long each took, [DONE] to the end."""
    kwargs: dict[str, Any] = {"base_url": base_url, "timeout": Timeouts(read=30)}
    times: list[float] = []
    if kind == "sync":
        with httpx.Client(**http_kwargs) as http:
            client = ChatClient(http_client=http, **kwargs)
            for _ in range(2):
                with client.stream(model="m", messages=MESSAGES) as stream:
                    t0 = time.monotonic()
                    assert [c.text for c in stream] == ["hi"]
                    times.append(time.monotonic() - t0)
                assert stream.response.text == "hi" and stream.response.finish_reason == "stop"
        return times

    async def run() -> None:
        async with httpx.AsyncClient(**http_kwargs) as http:
            client = AsyncChatClient(http_client=http, **kwargs)
            for _ in range(2):
                async with client.stream(model="m", messages=MESSAGES) as stream:
                    t0 = time.monotonic()
                    assert [c.text async for c in stream] == ["hi"]
                    times.append(time.monotonic() - t0)
                assert stream.response.text == "hi" and stream.response.finish_reason == "stop"

    anyio.run(run)
    return times


def test_the_drain_deadline_is_a_fraction_of_a_second() -> None:
    assert 0 < DONE_DRAIN_SECONDS <= 0.5


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("server", ["hold", "keepalive"], indirect=True)
def test_a_body_held_open_after_done_does_not_hold_the_stream(
    kind: str, server: AfterDoneServer
) -> None:
    times = stream_twice(kind, server.base_url, {})
    # Without a bound the first stream would wait for the server (HOLD_MAX) and beyond.
    assert max(times) < 2.0
    # The unfinished connection was closed, not put back in the pool: the second request
    # needed a new one.
    assert server.requests == 2 and server.connections == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("server", ["end", "pause"], indirect=True)
def test_a_body_that_ends_after_done_keeps_its_connection(
    kind: str, server: AfterDoneServer
) -> None:
    times = stream_twice(kind, server.base_url, {})
    assert max(times) < 2.0
    assert server.requests == 2 and server.connections == 1


@pytest.mark.parametrize("server", ["pause", "hold"], indirect=True)
def test_the_sync_drain_leaves_the_network_stream_as_it_found_it(
    server: AfterDoneServer,
) -> None:
    streams: list[Any] = []

    def keep(response: httpx.Response) -> None:
        streams.append(response.extensions["network_stream"])

    stream_twice("sync", server.base_url, {"event_hooks": {"response": [keep]}})
    assert len(streams) == 2
    for stream in streams:
        assert "read" not in vars(stream)  # the bounded read was removed again
