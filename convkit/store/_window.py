"""Fitting a token budget to a thread read newest-first (pure: no I/O).

The store feeds messages from the newest backwards; :class:`WindowBuilder` groups them into
*units* and keeps whole units while they fit:

- an assistant message that calls tools, together with the ``tool`` results answering it, is one
  unit, kept or dropped whole (the legacy ``function_call`` / ``function`` pair likewise);
- a group whose calls did not all get a result (a call still running, a crash between the call and
  its results, an incomplete streamed call) is skipped, as are results with no matching call, so a
  window never holds an orphan the API would reject;
- every other message is a unit of its own.

The walk stops at the first unit that does not fit. Leading ``assistant``/``tool`` units are then
dropped so the window starts on a user turn (or a system/developer message).
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
    """Accumulate newest-first messages into a window of at most ``budget`` tokens.

    Example::

        builder = WindowBuilder(8000)
        for stored in newest_first:
            if not builder.feed(stored):
                break
        window = builder.finish()  # chronological

    Args:
        budget: the most tokens the window may hold (sum of ``tokens``).
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

    def feed(self, m: StoredMessage) -> bool:
        """Take the next older message; return False once the budget is met (stop feeding)."""
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
        if self.used + cost > self.budget:
            self.full = True
            return False
        self.used += cost
        self._units.append(unit)
        return True

    def finish(self) -> list[StoredMessage]:
        """Return the window in chronological order, starting on a user turn."""
        units = self._units[::-1]
        start = 0
        while start < len(units) and units[start][0].message.role in _NOT_A_START:
            start += 1
        kept = units[start:]
        self.used = sum(self._tokens_of(m) for u in kept for m in u)
        return [m for u in kept for m in u]
