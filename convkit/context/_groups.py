"""The one rule for what a window may hold: tool-call groups, the newest turn, where it starts.

Both the policies (:mod:`convkit.context`) and the store's ``window()`` use this module, so a
window read from the store and a window fitted by a policy follow the same rule:

1. **Tool-call groups.** An assistant message with ``tool_calls`` and the run of ``tool``
   messages *directly* after it are one unit, kept or dropped whole (the API pairs results with
   calls by position). Within the run, the first result for each call id belongs to the call;
   any other ``tool`` message is an orphan and is dropped, as is a ``tool`` message anywhere
   else. A call left without a result (a crash between call and result, a call still running)
   is removed from its message; the answered calls and the message's text stay. A message left
   with no text, no refusal and no call is dropped. The legacy ``function_call`` / ``function``
   pair follows the same rule, keyed by function name.
2. **Incomplete rows** (what a broken or abandoned stream left, status ``"incomplete"``) are
   kept as text; their tool calls are removed (the arguments may be cut short), so the results
   after them become orphans. ``include_incomplete=False`` leaves such rows out altogether.
3. **The newest turn is whole.** The newest ``user`` message and everything after it is what the
   reply needs: it is sent whole, or (for a policy) the request cannot be made.
4. **Older whole units, newest first, while they fit.** The walk stops at the first unit that
   does not fit: a window has no holes.
5. **Whole turns.** After the system prompt (and summary), the kept history begins on a ``user``
   message. A history with no user message at all keeps the newest units that fit, without a
   leading ``assistant`` or ``tool`` message.

:class:`Tail` is the matching rule for *reading*: which newest-first entries can matter for a
window of a given size, so that a store reads exactly those rows and no others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import is_
from typing import Any, NamedTuple, Protocol, TypeVar

import attrs

from convkit.errors import ContextOverflowError
from convkit.messages import Message

__all__ = [
    "PREFIX_ROLES",
    "Chosen",
    "Entry",
    "Selection",
    "Tail",
    "Unit",
    "Picked",
    "choose",
    "choose_on_top",
    "select",
    "unit_of_its_own",
    "units_of",
]

_RESULT_ROLES = frozenset({"tool", "function"})
_NOT_A_START = frozenset({"assistant", "tool", "function"})
#: The roles of the messages a history begins with that are its prefix, not history to trim:
#: policies send them first (rule 6), a store's window returns them first.
PREFIX_ROLES = frozenset({"system", "developer"})


class Entry(Protocol):
    """A history entry: :class:`~convkit.context.Counted` and the store's stored messages."""

    @property
    def message(self) -> Message:
        """The message."""
        ...

    @property
    def tokens(self) -> int:
        """Its cached count."""
        ...

    @property
    def seq(self) -> int:
        """Its position in the thread."""
        ...

    @property
    def status(self) -> str:
        """``"complete"`` or ``"incomplete"``."""
        ...


E = TypeVar("E", bound=Entry)

#: Recounts a message whose calls were removed (None: keep the entry's count, an over-count).
Recount = Callable[[Message], int]
#: Cuts the newest user message so the window fits: (units, newest user unit, need, budget) ->
#: (units, need).
Truncate = Callable[[list["Unit"], int, int, int], tuple[list["Unit"], int]]


class Unit(NamedTuple):
    """Consecutive entries kept or dropped together.

    A named tuple rather than an attrs class: a turn builds one per message in the window, and
    tuple construction is several times cheaper.
    """

    entries: tuple[Any, ...]
    tokens: int
    starts_user: bool


_tuple_new = tuple.__new__


def _unit(entries: Sequence[Any]) -> Unit:
    first = entries[0]
    if len(entries) == 1:
        return Unit((first,), first.tokens, first.message.role == "user")
    return Unit(tuple(entries), sum(e.tokens for e in entries), first.message.role == "user")


def unit_of_its_own(m: Message) -> bool:
    """Whether :func:`units_of` makes ``m`` a unit alone, whatever comes before or after it:
    not a tool result, no call (a user, assistant, system or developer message of text)."""
    return (
        m.role not in _RESULT_ROLES
        and not m.tool_calls
        and (m.role != "assistant" or "function_call" not in m.extra)
    )


def _call_keys(m: Message) -> list[str]:
    """The result keys an assistant message waits for (empty if it calls nothing)."""
    if m.role != "assistant":
        return []
    if m.tool_calls:
        return [f"tool:{c.id}" for c in m.tool_calls]
    call = m.extra.get("function_call")
    if isinstance(call, dict) and isinstance(call.get("name"), str):
        return [f"function:{call['name']}"]
    return []


def _result_key(m: Message) -> str:
    if m.role == "tool":
        return f"tool:{m.tool_call_id}"
    return f"function:{m.name}"


def _without_calls(entry: Any, answered: set[str], recount: Recount | None) -> Any | None:
    """``entry`` with its unanswered calls removed, or None when nothing would be left."""
    m = entry.message
    if m.tool_calls:
        kept = tuple(c for c in m.tool_calls if f"tool:{c.id}" in answered)
        if not kept and not m.content and m.refusal is None and "function_call" not in m.extra:
            return None
        new = attrs.evolve(m, tool_calls=kept or None)
    else:
        if not m.content and m.refusal is None:
            return None
        new = attrs.evolve(m, extra={k: v for k, v in m.extra.items() if k != "function_call"})
    tokens = recount(new) if recount is not None else entry.tokens
    return attrs.evolve(entry, message=new, tokens=tokens)


def units_of(
    history: Sequence[Any],
    recount: Recount | None = None,
    *,
    include_incomplete: bool = True,
) -> tuple[list[Unit], list[int]]:
    """Split chronological ``history`` into units the API accepts (rules 1 and 2).

    Returns the units and the ``seq`` of the entries left out (orphans, calls with nothing
    left, incomplete rows when they are excluded).
    """
    units: list[Unit] = []
    left_out: list[int] = []
    i, n = 0, len(history)
    while i < n:
        c = history[i]
        m = c.message
        if m.role in _RESULT_ROLES:
            left_out.append(c.seq)  # not directly after the call it answers
            i += 1
            continue
        incomplete = c.status == "incomplete"
        if incomplete and not include_incomplete:
            left_out.append(c.seq)
            i += 1
            continue
        role = m.role
        if not m.tool_calls and (role != "assistant" or "function_call" not in m.extra):
            # the common case, built inline (tuple.__new__ skips the named tuple's own __new__)
            units.append(_tuple_new(Unit, ((c,), c.tokens, role == "user")))
            i += 1
            continue
        keys = _call_keys(m)
        if not keys:
            units.append(Unit((c,), c.tokens, m.role == "user"))
            i += 1
            continue
        j = i + 1
        while j < n and history[j].message.role in _RESULT_ROLES:
            j += 1
        wanted = set() if incomplete else set(keys)
        results = []
        for r in history[i + 1 : j]:
            key = _result_key(r.message)
            if key in wanted:
                wanted.discard(key)
                results.append(r)
            else:
                left_out.append(r.seq)
        if wanted or incomplete:
            answered = {_result_key(r.message) for r in results}
            repaired = _without_calls(c, answered, recount)
            if repaired is None:
                left_out.append(c.seq)
                i = j
                continue
            c = repaired
        units.append(_unit([c, *results]))
        i = j
    return units, left_out


@attrs.frozen
class Selection:
    """The outcome of :func:`select`: the kept entries (chronological) and what was left out."""

    kept: tuple[Any, ...]
    dropped: tuple[int, ...]
    tokens: int
    truncated: bool


def select(
    history: Sequence[Any],
    budget: int,
    *,
    prefix_tokens: int = 0,
    recount: Recount | None = None,
    include_incomplete: bool = True,
    over_budget: str = "raise",
    truncate: Truncate | None = None,
    selected: bool = False,
) -> Selection:
    """Apply the whole rule: the newest turn whole, then the newest older units that fit.

    Args:
        history: chronological entries (after the system prompt and any summary).
        budget: the most tokens the window (prefix included) may hold.
        prefix_tokens: what the system prompt, summary, tools and reply priming take.
        recount: counts a message whose calls were removed.
        include_incomplete: keep incomplete rows as text (rule 2).
        over_budget: what to do when the prefix and the newest turn alone exceed ``budget``:
            ``"raise"`` :class:`~convkit.ContextOverflowError`, ``"keep"`` the newest turn
            anyway (the store's read: the policy decides later), or ``"truncate"`` it with
            ``truncate``.
        selected: ``history`` is what this rule chose before (a :class:`Chosen`, or the part
            of one from a user message on): whole units, none left out. If all of it fits
            ``budget``, the rule keeps all of it, so it is kept without splitting it again.
    """
    if selected and (not history or history[0].message.role == "user"):
        # Whole units of an earlier choice, from a user message on: units_of would give them
        # back as they are, and when their sum fits, the rule keeps every one of them.
        tokens = prefix_tokens + sum([e.tokens for e in history])
        if tokens <= budget:
            return Selection(tuple(history), (), tokens, False)
    units, left_out = units_of(history, recount, include_incomplete=include_incomplete)
    return choose(
        units, left_out, budget, prefix_tokens=prefix_tokens, over_budget=over_budget,
        truncate=truncate,
    )[0]  # fmt: skip


class Picked(NamedTuple):
    """What :func:`choose` kept, in the form :func:`choose_on_top` goes on from: the units
    (oldest first), their entries, their tokens (without the prefix), and the index of the
    last unit that starts with a user message (None if none does)."""

    units: tuple[Unit, ...]
    entries: tuple[Any, ...]
    tokens: int
    last_user: int | None


def choose(
    units: list[Unit],
    left_out: list[int],
    budget: int,
    *,
    prefix_tokens: int = 0,
    over_budget: str = "raise",
    truncate: Truncate | None = None,
) -> tuple[Selection, Picked]:
    """:func:`select` over history already split by :func:`units_of` (``units`` and the seqs
    it left out, a list this extends): the selection, and what it keeps as :class:`Picked`."""
    last_user = next((k for k in range(len(units) - 1, -1, -1) if units[k].starts_user), None)
    first_mandatory = last_user if last_user is not None else len(units)
    need = prefix_tokens + sum(u.tokens for u in units[first_mandatory:])
    truncated = False
    if need > budget and (last_user is None or over_budget != "keep"):
        if last_user is None or over_budget != "truncate" or truncate is None:
            raise ContextOverflowError(
                need, budget, "the system prompt (and summary) and the newest turn do not fit"
            )
        units, need = truncate(units, last_user, need, budget)
        truncated = True
        if need > budget:
            raise ContextOverflowError(need, budget, "even with the newest message truncated")
    room = budget - need
    start = first_mandatory
    while start > 0 and units[start - 1].tokens <= room:
        start -= 1
        room -= units[start].tokens
    start = _turn_start(units, start, last_user)
    chosen = tuple(units[start:])
    kept = tuple([e for u in chosen for e in u.entries])
    if start:
        left_out.extend([e.seq for u in units[:start] for e in u.entries])
        left_out.sort()
    elif len(left_out) > 1:
        left_out.sort()
    tokens = sum([u.tokens for u in chosen])
    return (
        Selection(kept, tuple(left_out), prefix_tokens + tokens, truncated),
        Picked(chosen, kept, tokens, None if last_user is None else last_user - start),
    )


def choose_on_top(previous: Picked, new: Sequence[Unit], budget: int) -> Picked:
    """What ``choose([*previous.units, *new], [], budget, over_budget="keep")`` keeps.

    The same rule, computed from the oldest end: with the total and the last user unit known,
    the units to drop are found by walking up from the oldest one, so a window that moved by
    a message or two costs a few steps, not one per unit. (The rule's greedy walk keeps the
    longest run of newest units that fits ``budget`` and still holds the newest turn; a run's
    sum only grows as it reaches older units, so walking down from the newest turn and up
    from the oldest unit stop at the same unit.)
    """
    base = len(previous.units)
    units = previous.units + tuple(new)
    last_user = previous.last_user
    for k, u in enumerate(new):
        if u.starts_user:
            last_user = base + k
    total = previous.tokens + sum([u.tokens for u in new])
    first_mandatory = last_user if last_user is not None else len(units)
    start = 0
    while start < first_mandatory and total > budget:
        total -= units[start].tokens
        start += 1
    turn = _turn_start(units, start, last_user)
    total -= sum([u.tokens for u in units[start:turn]])
    dropped = sum([len(u.entries) for u in units[:turn]])  # a few units a turn
    entries = (previous.entries + tuple([e for u in new for e in u.entries]))[dropped:]
    return Picked(units[turn:], entries, total, None if last_user is None else last_user - turn)


def _turn_start(units: Sequence[Unit], start: int, last_user: int | None) -> int:
    """Where kept history may begin, at ``start`` or after: on a user message when there is
    one (whole turns only), else past the units that cannot begin a request."""
    if last_user is not None:
        while start < last_user and not units[start].starts_user:
            start += 1
    else:
        while start < len(units) and units[start].entries[0].message.role in _NOT_A_START:
            start += 1
    return start


class Chosen(list[Any]):
    """Entries a store's ``window()`` chose by this rule: chronological, bounded by the window.

    A policy fitting them hands them to :func:`select` as they are, without walking them with
    a :class:`Tail` first: the walk exists to stop reading a long history early, and
    :func:`select` over any superset of what a walk returns chooses the same window. When
    they all fit the policy's budget, :func:`select` keeps them without splitting them into
    units again (its ``selected``).

    ``counted_with`` is the counting key every entry was counted under (the store's): a
    policy counting under the same key uses the entries as they are, without looking at each.

    ``lead`` is how many of the first entries are the thread's leading system / developer
    rows (its prefix); a row of those roles from later in the thread is history, even first.

    These hold only while the list is as the store made it (:meth:`unchanged`): a caller may
    edit the list it was handed, which is then fitted as any other history.
    """

    __slots__ = ("_made", "counted_with", "lead")

    def __init__(
        self, entries: Iterable[Any] = (), counted_with: str | None = None, lead: int = 0
    ) -> None:
        super().__init__(entries)
        self.counted_with = counted_with
        self.lead = lead
        self._made = tuple(self)

    def unchanged(self) -> bool:
        """Whether the list holds exactly the entries it was made with (the same objects)."""
        made = self._made
        return len(self) == len(made) and all(map(is_, self, made))


class Tail:
    """Which entries, read newest first, can matter for a window of ``budget`` history tokens.

    Feed entries newest-first to :meth:`take` until it returns False; :attr:`entries` are then
    what :func:`select` needs (chronological): everything from the newest user message on, and
    older entries while what :func:`select` would keep of them stays within ``budget``. Tool
    results are held until their call is read, and a group costs what the rule keeps of it
    (an unanswered call with no text, an orphaned result cost nothing), so reading and
    selecting agree. Nothing older than the returned entries can be part of such a window.

    When the budget runs out before any user message was seen, :attr:`needs_anchor` is True:
    whether to go on depends on whether an older user message exists at all (a store answers
    that with one indexed query). Call :meth:`anchor_exists` and feed the same entry again if
    one does; otherwise stop.

    Example::

        tail = Tail(8_000)
        for entry in newest_first:
            if not tail.take(entry):
                if tail.needs_anchor and older_user_exists():
                    tail.anchor_exists()
                    tail.take(entry)
                    continue
                break
        history = tail.entries
    """

    def __init__(
        self,
        budget: int,
        *,
        include_incomplete: bool = True,
        recount: Recount | None = None,
        after_seq: int | None = None,
    ) -> None:
        self.budget = budget
        #: Entries with ``seq`` up to this are covered by a summary: reading stops there.
        self.after_seq = after_seq
        #: True once an entry at or below ``after_seq`` was reached.
        self.floor_reached = False
        self.include_incomplete = include_incomplete
        self._recount = recount
        self._taken: list[Any] = []  # newest first
        self._results: list[Any] = []  # results read, waiting for their call (newest first)
        self._used = 0
        self._seen_user = False
        self._anchor_ahead = False
        self.needs_anchor = False

    def _cost(self, entry: Any) -> int:
        m = entry.message
        results = self._results
        calls = m.tool_calls
        if not results and not calls and "function_call" not in m.extra:
            if entry.status == "incomplete" and not self.include_incomplete:
                return 0
            return int(entry.tokens)
        if calls and results and entry.status != "incomplete" and len(results) == len(calls):
            # The common case: every call answered once, directly after it.
            ids = {c.id for c in calls}
            answered = {r.message.tool_call_id for r in results if r.message.role == "tool"}
            if answered == ids:
                return int(entry.tokens) + sum(int(r.tokens) for r in results)
        group = [entry, *reversed(results)]
        units, _ = units_of(group, self._recount, include_incomplete=self.include_incomplete)
        return sum(u.tokens for u in units)

    def take(self, entry: Any) -> bool:
        """Take the next older entry if it can matter; False when reading should stop."""
        return self.extend((entry,)) == 1

    def extend(self, entries: Iterable[Any]) -> int:
        """Take the next older entries in order; return how many were taken.

        Stops at the first entry refused (see :attr:`needs_anchor`) or at or below
        ``after_seq`` (:attr:`floor_reached`); entries after it are not looked at, so a lazy
        iterable converts only what is read. One call per page of rows keeps reading cheap.
        """
        floor = self.after_seq
        taken, results = self._taken, self._results
        used, budget = self._used, self.budget
        seen_user, ahead = self._seen_user, self._anchor_ahead
        include_incomplete = self.include_incomplete
        n = 0
        refused = False
        for entry in entries:
            if floor is not None and entry.seq <= floor:
                self.floor_reached = True
                break
            m = entry.message
            role = m.role
            if role in _RESULT_ROLES:
                results.append(entry)
                n += 1
                continue
            if (
                not results
                and not m.tool_calls
                and (role != "assistant" or "function_call" not in m.extra)
            ):
                cost = (
                    0 if not include_incomplete and entry.status == "incomplete" else entry.tokens
                )
            else:
                cost = self._cost(entry)
            anchor = role == "user" and (include_incomplete or entry.status != "incomplete")
            if used + cost > budget and (seen_user or (not ahead and not anchor)):
                refused = True
                break
            if results:
                taken.extend(results)
                results = self._results = []
            taken.append(entry)
            used += cost
            if anchor:
                seen_user = True
            n += 1
        self.needs_anchor = refused and not seen_user
        self._used, self._seen_user = used, seen_user
        return n

    def anchor_exists(self) -> None:
        """An older user message exists: every entry down to it belongs to the window."""
        self._anchor_ahead = True
        self.needs_anchor = False

    @property
    def entries(self) -> list[Any]:
        """What was taken, oldest first (results still waiting for a call included)."""
        return [*self._taken, *self._results][::-1]
