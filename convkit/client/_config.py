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
    "MAX_TIMEOUT",
    "ResponseLimits",
    "Timeouts",
    "check_api_key",
    "check_headers",
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


#: The longest timeout a :class:`Timeouts` field takes (about 11.6 days); ``None`` waits forever.
#: Sockets, ``threading`` and event loops refuse waits much longer than this with a raw
#: ``OverflowError``, so a larger value is refused when the client is made, not at call time.
MAX_TIMEOUT = 1_000_000.0


def _seconds(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 < value <= MAX_TIMEOUT  # False for NaN and infinity too
    ):
        raise ValueError(
            f"Timeouts.{name} must be a number of seconds in (0, {MAX_TIMEOUT:g}] or None "
            "(None waits forever)"
        )
    return float(value)


@frozen(kw_only=True)
class Timeouts:
    """Timeouts in seconds (``None`` waits forever).

    * ``connect``: establishing a connection;
    * ``read``: waiting for any read — a whole non-streamed response, or a stream's headers;
    * ``write``: sending the request;
    * ``pool``: waiting for a free connection in the pool;
    * ``stream_idle``: the longest silence allowed once a stream's body has started
      (``None``: the ``read`` timeout applies). Keep-alive comments count as activity;
    * ``total``: the longest one attempt may take from sending the request to the end of its
      answer — a whole stream, keep-alives and all (a non-streamed answer is also bounded by
      ``read``). Checked whenever data arrives; a silent server is cut off by ``read`` or
      ``stream_idle``.

    Every value is a number of seconds up to :data:`MAX_TIMEOUT`, or None (no limit).

    Example::

        ChatClient(timeout=Timeouts(connect=3, read=120, stream_idle=30))
        ChatClient(timeout=10.0)   # every timeout 10 s
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0
    stream_idle: float | None = None
    total: float | None = 3600.0

    def __attrs_post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool", "stream_idle", "total"):
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

    def answer_seconds(self, *, stream: bool) -> float | None:
        """The longest one attempt's whole answer may take: ``total``, and ``read`` if not a
        stream (None: no bound)."""
        bounds = [b for b in (self.total, None if stream else self.read) if b is not None]
        return min(bounds) if bounds else None

    def to_httpx(self) -> httpx.Timeout:
        """The matching :class:`httpx.Timeout` (``stream_idle`` is applied separately)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


_MiB = 1024 * 1024


def _size(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ResponseLimits.{name} must be a positive integer, got {value!r}")
    return value


@frozen(kw_only=True)
class ResponseLimits:
    """How large an answer may grow before the client stops reading it.

    * ``max_body_bytes``: a whole non-streamed body, or an error body, after decompression
      (default 256 MiB);
    * ``max_stream_bytes``: a whole stream's body, after decompression, keep-alives included
      (default 256 MiB);
    * ``max_event_chars``: one stream event — one chunk — as decoded text (default 16 Mi).

    The defaults are far above any real reply: they only stop a broken or hostile server
    (a compression bomb, a body or a stream without end) from exhausting memory. Going past a
    limit raises :class:`~convkit.errors.ResponseTooLargeError`, never retried; a stream's
    ``partial`` keeps what arrived before.

    Example::

        ChatClient(limits=ResponseLimits(max_body_bytes=8 * 1024 * 1024))
    """

    max_body_bytes: int = 256 * _MiB
    max_stream_bytes: int = 256 * _MiB
    max_event_chars: int = 16 * _MiB

    def __attrs_post_init__(self) -> None:
        for name in ("max_body_bytes", "max_stream_bytes", "max_event_chars"):
            _size(getattr(self, name), name)


def check_api_key(api_key: object) -> str | None:
    """``api_key`` if it can be sent in a header: None, or printable ASCII without spaces.

    Checked when the client is made. A key with a stray newline or a non-ASCII character
    would otherwise fail at call time inside httpx, with the key quoted in the exception and
    in httpx's debug log. The message never shows the key.
    """
    if api_key is None or api_key == "":
        return None
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
    for i, ch in enumerate(api_key):
        if not "!" <= ch <= "~":
            what = "whitespace" if ch.isspace() else "a control" if ch < " " else "a non-ASCII"
            if what == "whitespace" and i == len(api_key) - 1:
                what = "trailing whitespace (a newline read from a file?)"
            else:
                what += " character"
            raise ValueError(
                f"api_key holds {what} at position {i} of {len(api_key)}: an API key is "
                "printable ASCII without spaces (the key itself is not shown)"
            ) from None
    return api_key


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` as a dict, refusing names and values that cannot be sent.

    A value (which may hold a token) is never shown; the offending header's name is.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not all("!" <= c <= "~" for c in name):
            raise ValueError(f"header name {name!r} is not a token of printable ASCII")
        if not isinstance(value, str):
            raise TypeError(f"header {name!r} must be a str, got {type(value).__name__}")
        if any(not (" " <= c <= "~" or c == "\t") for c in value) or value != value.strip():
            raise ValueError(
                f"header {name!r} holds a control, non-ASCII or surrounding whitespace "
                "character (its value is not shown)"
            ) from None
        out[name] = value
    return out


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
