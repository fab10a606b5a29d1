"""A deadline for the blocking reads of the sync client's response headers (private).

A blocking read cannot be interrupted from outside, and httpx's ``read`` timeout bounds each
read, not the whole wait: a server that drips its response headers a byte at a time, each
within the read timeout, would hold a sync call forever. The async client bounds the wait with
a cancel scope. The sync client's own HTTP client gets a network backend whose streams pass on
a timeout no later than the deadline of the calling thread's request (:func:`reads_until`), so
the headers' reads give up at ``Timeouts.total`` (and, for an answer that is not streamed,
``read``) like the async client's. A thread without a deadline reads as before.

The backend is installed on the connection pool of an :class:`httpx.Client` made by convkit
(:func:`bounded_client`); an httpx client the caller passes in keeps its own reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

__all__ = ["bounded_client", "installed", "reads_until"]

_local = threading.local()
#: The shortest timeout passed on: 0 would make the socket non-blocking (a read of nothing
#: buffered then fails as an error, not a timeout).
_MIN_TIMEOUT = 0.001


def _bounded(timeout: float | None) -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), _MIN_TIMEOUT)
    return left if timeout is None else min(timeout, left)


@contextmanager
def reads_until(deadline: float) -> Iterator[None]:
    """Make this thread's reads through a bounded client give up at ``deadline`` (monotonic)."""
    before = getattr(_local, "deadline", None)
    _local.deadline = deadline if before is None else min(before, deadline)
    try:
        yield
    finally:
        _local.deadline = before


class _Stream(httpcore.NetworkStream):
    """A network stream whose reads end at the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The TLS handshake reads too: it is part of the wait for the answer.
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """Wraps a network backend so every stream it opens is a :class:`_Stream`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def _pool(client: httpx.Client) -> Any:
    return getattr(getattr(client, "_transport", None), "_pool", None)


def bounded_client(**kwargs: Any) -> httpx.Client:
    """An :class:`httpx.Client` whose reads honour :func:`reads_until` (when httpx allows)."""
    client = httpx.Client(**kwargs)
    pool = _pool(client)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _Backend(backend)
    return client


def installed(client: httpx.Client) -> bool:
    """Whether ``client``'s reads honour :func:`reads_until`."""
    return isinstance(getattr(_pool(client), "_network_backend", None), _Backend)
