"""Fitting a token budget to a thread read newest-first (pure: no I/O).

The store feeds messages from the newest backwards; :class:`WindowBuilder` groups them into
*units*:

- an assistant message that calls tools, together with the ``tool`` results answering it, is one
  unit, kept or dropped whole (the legacy ``function_call`` / ``function`` pair likewise);
- a group whose calls did not all get a result (a call still running, a crash between the call and
  its results, an incomplete streamed call) is skipped, as are results with no matching call, so a
  window never holds an orphan the API would reject;
- every other message is a unit of its own.

The *newest user turn* — every unit from the newest ``user`` message to the end of the thread —
is always kept, even when it alone exceeds the budget: a request without the user's question is
never what the caller wants, and the caller's context policy decides whether to truncate it or
raise :class:`~convkit.ContextOverflowError`. Older whole units are then added newest-first while
they fit; the walk stops at the first one that does not. Leading ``assistant``/``tool`` units are
finally dropped so the window starts on a user turn (or a system/developer message).

A thread without any user message keeps only the newest units that fit the budget.
"""

from __future__ import annotations

from collections.abc import Callable

from convkit.store._values import StoredMessage

__all__ = ["WindowBuilder"]

_RESULT_ROLES = frozenset({"tool", "function"})
_NOT_A_START = frozenset({"assistant", "tool", "function"})


def _call_keys(m: StoredMessage) -> list[str] | None:
    """The result keys an assistant message waits for, or None if it calls nothing."""
    msg = m.message
    if msg.role != "assistant":
        return None
    if msg.tool_calls:
        return [f"tool:{c.id}" for c in msg.tool_calls]
    call = msg.extra.get("function_call")
    if isinstance(call, dict) and isinstance(call.get("name"), str):
        return [f"function:{call['name']}"]
    return None


def _result_key(m: StoredMessage) -> str:
    msg = m.message
    if msg.role == "tool":
        return f"tool:{msg.tool_call_id}"
    return f"function:{msg.name}"


class WindowBuilder:
    """Accumulate newest-first messages into a window: the newest user turn, then what fits.

    :meth:`feed` returns False when the caller should stop feeding. That happens in two cases:

    - the newest user turn has been taken and the next older unit does not fit the budget;
    - the budget is exceeded before any user message was seen (:attr:`needs_anchor` is True).
      The window then depends on whether an older user message exists: if one does, call
      :meth:`anchor_exists` and keep feeding (everything down to it is kept); if none does, stop
      and :meth:`finish` keeps only the newest units that fit, as for any thread without a user
      message. The store answers the question with one indexed query instead of reading rows.

    Example::

        builder = WindowBuilder(8000)
        for i, stored in enumerate(newest_first):
            if builder.feed(stored):
                continue
            if builder.needs_anchor and has_older_user_message(newest_first[i + 1 :]):
                builder.anchor_exists()
                continue
            break
        window = builder.finish()  # chronological

    Args:
        budget: the most tokens the window may hold (sum of ``tokens``), unless the newest user
            turn alone holds more.
        include_incomplete: keep messages stored as ``"incomplete"`` (a broken stream's text).
            Incomplete tool calls are never kept: their arguments may be cut short.
        tokens_of: how many tokens a message costs (defaults to its stored count).
    """

    def __init__(
        self,
        budget: int,
        *,
        include_incomplete: bool = True,
        tokens_of: Callable[[StoredMessage], int] | None = None,
    ) -> None:
        self.budget = budget
        self.used = 0
        self.include_incomplete = include_incomplete
        self._tokens_of = tokens_of or (lambda m: m.tokens)
        self._units: list[list[StoredMessage]] = []  # newest first
        self._pending: list[StoredMessage] = []  # results seen, waiting for their call
        self.full = False
        #: The newest user message has been taken: older units now need to fit the budget.
        self.anchored = False
        self._fitting = 0  # how many of the units taken so far fit the budget from the newest
        self._over = False  # the units taken before the anchor exceed the budget
        self._anchor_ahead = False  # an older user message is known to exist

    @property
    def needs_anchor(self) -> bool:
        """The budget is spent and no user message was seen: does an older one exist?"""
        return self._over and not self.anchored and not self._anchor_ahead

    def anchor_exists(self) -> None:
        """Tell the builder an older user message exists: keep everything down to it."""
        self._anchor_ahead = True

    def feed(self, m: StoredMessage) -> bool:
        """Take the next older message; return False when feeding should stop (see above)."""
        if self.full:
            return False
        if m.message.role in _RESULT_ROLES:
            self._pending.append(m)
            return True
        keys = _call_keys(m)
        pending, self._pending = self._pending, []
        if keys is not None:
            unit = self._group(m, keys, pending)
            return True if unit is None else self._take(unit)
        # Results not preceded by their call are orphans: the API would reject them.
        if m.status == "incomplete" and not self.include_incomplete:
            return True
        return self._take([m])

    def _group(
        self, call: StoredMessage, keys: list[str], pending: list[StoredMessage]
    ) -> list[StoredMessage] | None:
        if call.status == "incomplete":
            return None
        wanted = set(keys)
        results: list[StoredMessage] = []
        for r in reversed(pending):  # chronological
            key = _result_key(r)
            if key in wanted:
                wanted.discard(key)
                results.append(r)
        if wanted:  # some call never got its result: the whole group would be invalid
            return None
        return [call, *results]

    def _take(self, unit: list[StoredMessage]) -> bool:
        cost = sum(self._tokens_of(m) for m in unit)
        fits = self.used + cost <= self.budget
        if self.anchored:
            if not fits:
                self.full = True
                return False
        elif not fits:
            # Part of the newest user turn (if the thread has a user message): kept anyway.
            self._over = True
        if not self._over:
            self._fitting += 1
        self.used += cost
        self._units.append(unit)
        if unit[0].message.role == "user":
            self.anchored = True
        return not self.needs_anchor

    def finish(self) -> list[StoredMessage]:
        """Return the window in chronological order, starting on a user turn."""
        # Without a user message nothing is mandatory: only the units that fit are kept.
        taken = self._units if self.anchored else self._units[: self._fitting]
        units = taken[::-1]
        start = 0
        while start < len(units) and units[start][0].message.role in _NOT_A_START:
            start += 1
        kept = units[start:]
        self.used = sum(self._tokens_of(m) for u in kept for m in u)
        return [m for u in kept for m in u]
