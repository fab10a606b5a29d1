"""The bounded read of a stream's body after ``data: [DONE]`` (private).

Servers end the HTTP body right after ``[DONE]``; reading that end lets the connection go back
to the pool for the next request. A server or proxy that holds the body open must not hold the
caller: the read gives up after :data:`DONE_DRAIN_SECONDS` and the connection is closed instead
of reused. Async code bounds the read with a cancel scope; a blocking read cannot be
interrupted, so the sync read tightens the timeout of the connection's own reads for a while
(:class:`_ReadsUntil`, which patches httpcore's network stream).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

__all__ = ["DONE_DRAIN_SECONDS", "adrain", "drain", "log_undrained"]

logger = logging.getLogger("convkit.client")

#: After ``data: [DONE]``, the longest a stream waits for the server to end the HTTP body.
#: Servers end it right after ``[DONE]``, and reading that end lets the connection go back to
#: the pool for the next request. A server or proxy that holds the body open costs at most this
#: long: the stream then ends anyway and its connection is closed instead of reused.
DONE_DRAIN_SECONDS = 0.25


def log_undrained(url: str) -> None:
    """Say (at DEBUG) that a finished stream's connection is closed rather than reused."""
    logger.debug(
        "closing the stream from %s without the end of its body: it did not come within %g s "
        "of data: [DONE], or this transport cannot wait for it in bounded time",
        url,
        DONE_DRAIN_SECONDS,
    )


class _ReadsUntil:
    """Make this thread's reads of an HTTP/1.1 connection give up at a deadline, for a while.

    httpcore fixes the read timeout of a response body when the body starts, and a blocking
    read cannot be interrupted from outside. To bound the wait for the end of the body after
    ``[DONE]``, the connection's network stream (the ``network_stream`` response extension,
    the object httpcore reads from) gets a ``read`` that passes on a timeout no later than the
    deadline. The wrapper only tightens reads made by the thread that installed it: the moment
    the body ends, the connection is back in the pool, where another thread may take it before
    the wrapper is removed. ``installed`` is False when the stream cannot be wrapped.
    """

    __slots__ = ("_deadline", "_had_own", "_owner", "_read", "_stream", "installed")

    def __init__(self, stream: Any, seconds: float) -> None:
        self._stream = stream
        self._deadline = time.monotonic() + seconds
        self._owner = threading.get_ident()
        self._read: Callable[..., bytes] | None = getattr(stream, "read", None)
        self.installed = False
        try:
            self._had_own = "read" in vars(stream)
        except TypeError:  # no __dict__: nothing can be installed
            return
        if callable(self._read):
            try:
                stream.read = self._bounded
            except (AttributeError, TypeError):
                return
            self.installed = True

    def _bounded(self, max_bytes: int, timeout: float | None = None) -> bytes:
        assert self._read is not None
        if threading.get_ident() == self._owner:
            # 0 makes the socket non-blocking: what is already buffered is still read.
            left = max(self._deadline - time.monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        return self._read(max_bytes, timeout=timeout)

    def remove(self) -> None:
        """Give the stream its own ``read`` back."""
        if not self.installed:
            return
        self.installed = False
        if self._had_own:
            self._stream.read = self._read
        else:
            del self._stream.read


def drain(response: httpx.Response, pieces: Iterator[bytes]) -> bool:
    """Read the rest of a finished stream's body within :data:`DONE_DRAIN_SECONDS`.

    Returns True when the body ended in time (its HTTP/1.1 connection then goes back to the
    pool), False when it did not or could not be waited for in bounded time; the caller then
    closes the response, which closes the connection.
    """
    if response.is_closed:
        return True
    stream = response.extensions.get("network_stream")
    if stream is None or response.http_version != "HTTP/1.1":
        # A transport without a socket of its own has no connection to hand back, and an
        # HTTP/2 connection survives the early end of one of its streams.
        return False
    reads = _ReadsUntil(stream, DONE_DRAIN_SECONDS)
    if not reads.installed:
        return False
    try:
        for _ in pieces:
            pass
    except httpx.HTTPError:
        return False
    finally:
        reads.remove()
    return True


async def adrain(response: httpx.Response, pieces: AsyncIterator[bytes]) -> bool:
    """The async :func:`drain`: a cancel scope bounds the read, whatever the transport."""
    import anyio  # loaded already by AsyncChatClient

    if response.is_closed:
        return True
    with anyio.move_on_after(DONE_DRAIN_SECONDS):
        try:
            async for _ in pieces:
                pass
        except httpx.HTTPError:
            return False
        return True
    return False
