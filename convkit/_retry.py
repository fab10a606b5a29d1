"""When to retry a failed request and how long to wait first (pure; no sleeping here).

The clients ask :meth:`Backoff.delay` after each failure that :func:`is_retryable_status` (or
the transport mapping) marks as retryable; ``None`` means "give up and raise".
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping

from attrs import field, frozen

__all__ = ["RETRYABLE_STATUSES", "Backoff", "is_retryable_status", "retry_after_seconds"]

#: Statuses worth another attempt, besides every 5xx: request timeout, conflict (a lock held by
#: a concurrent request), rate limit.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def is_retryable_status(status: int, headers: Mapping[str, str] | None = None) -> bool:
    """True for 408, 409, 429 and 5xx, unless the server sent ``x-should-retry: false``.

    The header can only hold a retry back: ``x-should-retry: true`` does not make any other
    status retryable, because a 400, 401, 403, 404 or 422 fails the same way every time.
    """
    if headers is not None:
        hint = headers.get("x-should-retry")
        if hint is not None and hint.strip().lower() == "false":
            return False
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after_seconds(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """The wait the server asked for, in seconds, or None if it asked for nothing readable.

    ``retry-after-ms`` (milliseconds, used by OpenAI and Azure) wins over ``Retry-After``,
    which may hold seconds or an HTTP date. ``headers`` must look names up case-insensitively
    (``httpx.Headers`` does) or hold lower-case names.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # reject negative and NaN
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - now()
        return max(seconds, 0.0)
    if seconds != seconds or seconds < 0:
        return None
    return seconds


@frozen(kw_only=True)
class Backoff:
    """Exponential backoff with full jitter, bounded, honouring the server's ``Retry-After``.

    The n-th retry (``attempt`` counts from 0) waits a random time in
    ``[0, min(maximum, initial * multiplier**attempt)]`` unless the server said how long to wait.
    A server wait longer than ``max_retry_after`` is not honoured by sleeping: the client gives
    up at once and raises the error, so that a call never blocks for minutes.

    Example::

        >>> b = Backoff(initial=0.5, maximum=4.0, random=lambda: 1.0)
        >>> [b.delay(n) for n in range(5)]
        [0.5, 1.0, 2.0, 4.0, 4.0]
        >>> b.delay(0, {"retry-after-ms": "250"})
        0.25
    """

    initial: float = 0.5
    maximum: float = 8.0
    multiplier: float = 2.0
    max_retry_after: float = 60.0
    random: Callable[[], float] = field(default=random.random, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        for name in ("initial", "maximum", "multiplier", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"Backoff.{name} must be a non-negative number, got {value!r}")

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (0-based), or None to give up."""
        if headers is not None:
            asked = retry_after_seconds(headers)
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        cap = min(self.maximum, self.initial * self.multiplier**attempt)
        return self.random() * cap
