"""When to retry a failed request and how long to wait first (pure; no sleeping here).

The clients ask :meth:`Backoff.delay` after each failure that :func:`is_retryable_status` (or
the transport mapping) marks as retryable; ``None`` means "give up and raise".
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping

from attrs import field, frozen

__all__ = ["RETRYABLE_STATUSES", "Backoff", "is_retryable_status", "retry_after_seconds"]

#: Statuses worth another attempt, besides every 5xx: request timeout, conflict (a lock held by
#: a concurrent request), rate limit.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# The longest wait a Backoff field takes, as Timeouts takes (sleeping longer overflows).
_MAX_WAIT = 1_000_000.0


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
        try:
            parsed = email.utils.parsedate_tz(raw)
            if parsed is None:
                return None
            # A date far in the future (year 99999999999) is past what the calendar functions
            # take: it asks for a wait longer than any limit, so it reads as infinity.
            seconds = email.utils.mktime_tz(parsed) - now()
        except (OverflowError, ValueError, OSError):
            return math.inf
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
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 <= value <= _MAX_WAIT  # False for NaN and infinity too
            ):
                raise ValueError(
                    f"Backoff.{name} must be a number in [0, {_MAX_WAIT:g}], got {value!r}"
                )

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (0-based), or None to give up."""
        if headers is not None:
            asked = retry_after_seconds(headers)
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        return self.random() * self.cap(attempt)

    def cap(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt``: ``initial * multiplier**attempt``,
        at most ``maximum`` (for any ``attempt``: the power is never let overflow)."""
        if self.initial == 0 or self.multiplier <= 1:  # the power shrinks: no overflow
            return min(self.maximum, self.initial * self.multiplier**attempt)
        # multiplier**attempt reaches maximum/initial after log(maximum/initial)/log(multiplier)
        # attempts; past that the cap is maximum, and computing the power would overflow.
        if self.maximum == 0 or attempt >= math.log(self.maximum / self.initial) / math.log(
            self.multiplier
        ):
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier**attempt)
