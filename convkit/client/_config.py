"""Client configuration: the default endpoint, timeouts, request headers and TLS (private)."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping

import httpx
from attrs import frozen

from convkit._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "Timeouts",
    "default_ssl_context",
    "env_api_key",
    "env_base_url",
    "request_headers",
]

#: Used when neither ``base_url`` nor ``OPENAI_BASE_URL`` is given.
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def env_base_url() -> str:
    """``OPENAI_BASE_URL``, or :data:`DEFAULT_BASE_URL` when it is unset or empty."""
    return os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL


def env_api_key() -> str | None:
    """``OPENAI_API_KEY``, or None."""
    return os.environ.get("OPENAI_API_KEY")


def _seconds(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"Timeouts.{name} must be a positive number of seconds or None")
    return float(value)


@frozen(kw_only=True)
class Timeouts:
    """Timeouts in seconds (``None`` waits forever).

    * ``connect``: establishing a connection;
    * ``read``: waiting for any read — a whole non-streamed response, or a stream's headers;
    * ``write``: sending the request;
    * ``pool``: waiting for a free connection in the pool;
    * ``stream_idle``: the longest silence allowed once a stream's body has started
      (``None``: the ``read`` timeout applies). Keep-alive comments count as activity.

    Example::

        ChatClient(timeout=Timeouts(connect=3, read=120, stream_idle=30))
        ChatClient(timeout=10.0)   # every timeout 10 s
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0
    stream_idle: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool", "stream_idle"):
            _seconds(getattr(self, name), name)

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        """Return ``value`` as :class:`Timeouts`: a number sets every timeout, None the defaults."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(connect=value, read=value, write=value, pool=value)
        raise TypeError(f"timeout must be Timeouts, a number or None, got {type(value).__name__}")

    def to_httpx(self) -> httpx.Timeout:
        """The matching :class:`httpx.Timeout` (``stream_idle`` is applied separately)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def request_headers(
    *, stream: bool, api_key: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """The headers of one completions request; ``extra`` (the caller's) win."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": f"convkit/{__version__}",
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra)
    return headers


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """The TLS context of every client that brings no httpx client of its own.

    Loading the CA bundle takes tens of milliseconds; every client this process creates can
    share one context (SSLContext is safe to share between connections and threads).
    """
    return httpx.create_ssl_context()
