"""The fitting core: history views, truncation, building a :class:`Window`, ``trim_messages``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, TypeVar, Union, cast

import attrs

from convkit.context._budget import counting_key, prefix_tokens, prompt_budget, summary_tokens
from convkit.context._groups import PREFIX_ROLES, Chosen, Entry, Tail, Unit, _unit, select
from convkit.context._values import Counted, Summary, Window
from convkit.errors import SummarizationError
from convkit.messages import Message, MessageLike, TextPart, as_message
from convkit.tokens import TokenCounter, counter_for

__all__ = ["HistoryItem", "History", "build_window", "trim_messages"]

T = TypeVar("T")

#: What a policy accepts as history: :class:`Counted`, the store's stored messages (anything
#: with ``message``, ``tokens`` and ``seq``), :class:`~convkit.Message` or an OpenAI dict.
HistoryItem = Union[Counted, Entry, Message, Mapping[str, Any]]

#: Entry classes whose instances are trusted to carry a :class:`~convkit.Message`, an ``int``
#: ``tokens`` and ``seq``, a status and ``counted_with`` (the store registers its
#: ``StoredMessage``, which it builds from checked rows): one counted under a policy's rules
#: is used as it is, without conversion (:meth:`History._raw`).
TRUSTED_ENTRIES: set[type] = set()


def _to_counted(it: Any, i: int, counter: TokenCounter, key: str) -> Counted:
    if isinstance(it, Counted):
        return it
    msg = getattr(it, "message", None)
    tokens = getattr(it, "tokens", None)
    seq = getattr(it, "seq", None)
    if isinstance(msg, Message) and isinstance(tokens, int) and isinstance(seq, int):
        status = getattr(it, "status", "complete")
        made_with = getattr(it, "counted_with", None)
        if made_with is not None:
            stale = made_with != key  # counted under other rules
        else:
            # Counted before rows recorded their rules (a bare encoding name): the overheads
            # may differ even when the encoding matches, so count again.
            stale = getattr(it, "encoding", None) is not None
        if stale:
            tokens = counter.count_message(msg)
        return Counted(message=msg, tokens=tokens, seq=seq, status=status)
    m = as_message(it, i)
    return Counted(message=m, tokens=counter.count_message(m), seq=i + 1)


class History:
    """A lazy view of a policy's input: an item is converted (and counted) only when reached.

    Policies walk history newest-first and stop once the budget is met, so a turn on a
    100,000-message thread touches about as many items as one on a 100-message thread.

    The history's leading ``system`` / ``developer`` messages (the thread's oldest entries, as
    :func:`trim_messages` reads them) are not history to trim but part of the prefix: they are
    in :attr:`leading`, and indices start after them.
    """

    def __init__(self, items: Sequence[HistoryItem], counter: TokenCounter) -> None:
        self._items = items
        self._counter = counter
        self._key = counting_key(counter)
        self._memo: dict[int, Counted] = {}
        self._chosen: bool | None = None
        if self.chosen:
            # A store's window says which of its rows are the thread's leading ones: a system
            # or developer row from later in the thread that happens to come first is history.
            self._lead = cast(Chosen, items).lead
            return
        lead = 0
        while lead < len(items) and self._raw(lead).message.role in PREFIX_ROLES:
            lead += 1
        self._lead = lead

    @property
    def leading(self) -> list[Message]:
        """The history's leading system / developer messages, which the prefix keeps."""
        return [self._raw(k).message for k in range(self._lead)]

    def __len__(self) -> int:
        return len(self._items) - self._lead

    def at(self, i: int) -> Entry:
        """The ``i``-th item after the leading ones as an entry (counted once)."""
        return self._raw(i + self._lead)

    def _raw(self, i: int) -> Entry:
        item: Any = self._items[i]
        cls = type(item)
        if cls is Counted or (cls in TRUSTED_ENTRIES and item.counted_with == self._key):
            # A Counted, or a stored row counted under these rules: used as it is.
            return cast(Entry, item)
        c = self._memo.get(i)
        if c is None:
            c = self._memo[i] = _to_counted(item, i, self._counter, self._key)
        return c

    def tail(self, room: int, after_seq: int | None) -> list[Entry]:
        """The newest entries that can matter for a window of ``room`` history tokens.

        Stops at the summary's coverage (``after_seq``); follows :class:`Tail`'s reading rule,
        the same a store's ``window()`` read uses.
        """
        items, lead, raw = self._items, self._lead, self._raw
        if self.chosen:  # a store's window: bounded, nothing to stop reading early
            assert isinstance(items, Chosen)
            if items.counted_with is not None and items.counted_with == self._key:
                entries = items[lead:]  # every entry counted under these rules
            else:
                entries = [raw(k) for k in range(lead, len(items))]
            return entries if after_seq is None else [e for e in entries if e.seq > after_seq]
        tail = Tail(room, recount=self._counter.count_message, after_seq=after_seq)

        def walk(start: int) -> Iterator[Entry]:
            # at(k) inlined: this loop runs once per message a window reads
            for k in range(start + lead, lead - 1, -1):
                item = items[k]
                yield item if type(item) is Counted else raw(k)

        i = len(self) - 1
        while i >= 0:
            i -= tail.extend(walk(i))
            if i < 0 or tail.floor_reached:
                break
            # the entry at i was refused: go on down to an older user message, if there is one
            if tail.needs_anchor and self._user_before(i, after_seq):
                tail.anchor_exists()
                continue
            break
        return tail.entries

    def as_window(self, budget: int, after_seq: int | None) -> History:
        """This history as a store's ``window(budget, after_seq=...)`` would hand it over.

        The leading system / developer entries, then what the window rule keeps of the newest
        entries after ``after_seq`` within what ``budget`` leaves (the newest turn whole even
        over it): calls left unanswered and orphaned results are gone, as in the store's window.
        A policy that plans over history (what to summarize) plans over this, so fitting a
        whole thread and fitting the store's window of it agree. A store's window is returned
        as it is.
        """
        if self.chosen:
            return self
        lead = [self._raw(k) for k in range(self._lead)]
        room = max(0, budget - sum(e.tokens for e in lead))
        kept = select(
            self.tail(room, after_seq),
            room,
            recount=self._counter.count_message,
            over_budget="keep",
        ).kept
        window = Chosen([*lead, *kept], counted_with=self._key, lead=len(lead))
        return History(window, self._counter)

    @property
    def chosen(self) -> bool:
        """Whether the history is a store's window as the store made it (chosen by the window
        rule already); one its caller edited is not."""
        chosen = self._chosen
        if chosen is None:
            items = self._items
            chosen = self._chosen = type(items) is Chosen and items.unchanged()
        return chosen

    def _user_before(self, i: int, after_seq: int | None) -> bool:
        for k in range(i, -1, -1):
            c = self.at(k)
            if after_seq is not None and c.seq <= after_seq:
                return False
            if c.message.role == "user":
                return True
        return False


def cut_message(
    counter: TokenCounter, m: Message, allowed: int, *, text_only: bool = False
) -> tuple[Message, int]:
    """``m`` with its text cut (an ellipsis marks the cut) to cost at most ``allowed`` tokens.

    Returns the message and its count; the count stays above ``allowed`` only when what is not
    text (images, tool calls) costs more on its own. ``text_only`` turns the message into text
    alone, its tool calls written as a summary transcript writes them, then cuts that (what a
    summarizer is given: the count then stays above ``allowed`` only if the role does).
    """
    others = (
        ()
        if text_only or isinstance(m.content, str) or m.content is None
        else tuple(p for p in m.content if not isinstance(p, TextPart))
    )
    text = m.text
    if text_only and m.tool_calls:
        text += "".join(f"\n[calls {c.name}({c.arguments})]" for c in m.tool_calls)

    def with_text(text: str) -> Message:
        if text_only:
            return attrs.evolve(m, content=text, tool_calls=None)
        if not others:
            return attrs.evolve(m, content=text)
        return attrs.evolve(m, content=(TextPart(text=text), *others))

    enc = counter.encoding
    ids = enc.encode_ordinary(text)
    keep = max(0, allowed - counter.count_message(with_text("")) - 1)
    keep = min(keep, len(ids))
    while True:
        new = with_text(enc.decode(ids[:keep]) + ("…" if keep < len(ids) else ""))
        tokens = counter.count_message(new)
        if tokens <= allowed or keep == 0:
            return new, tokens
        keep = max(0, keep - max(1, tokens - allowed))


def truncator(counter: TokenCounter) -> Any:
    """The truncation step for :func:`~convkit.context._groups.select`: cut the newest message."""

    def truncate(
        units: list[Unit], last_user: int, need: int, budget: int
    ) -> tuple[list[Unit], int]:
        unit = units[last_user]
        entry = unit.entries[0]
        allowed = entry.tokens - (need - budget)  # what the message may cost after cutting
        new, tokens = cut_message(counter, entry.message, allowed)
        units = list(units)
        units[last_user] = _unit(
            (attrs.evolve(entry, message=new, tokens=tokens), *unit.entries[1:])
        )
        return units, need - entry.tokens + tokens

    return truncate


def build_window(
    counter: TokenCounter,
    history: History,
    *,
    system: Sequence[MessageLike],
    summary: Summary | None,
    tools: Sequence[Mapping[str, Any]] | None,
    budget: int,
    truncate: bool,
    summary_role: str,
    tool_choice: Any = None,
    summarized: tuple[int, ...] = (),
    error: SummarizationError | None = None,
) -> Window:
    """Fit ``history`` after ``system`` (and ``summary``) into ``budget``: the one window step.

    The prefix is ``system``, then the history's leading system messages, then the summary.
    """
    prefix = [as_message(m, i) for i, m in enumerate(system)]
    prefix.extend(history.leading)
    after_seq = None
    cost = 0
    carrier = None
    if summary is not None:
        after_seq = summary.covers_through_seq
        cost = summary_tokens(counter, summary, summary_role)
        carrier = summary.as_message(summary_role)
    fixed = prefix_tokens(
        counter, prefix, tools, cost, summary_message=carrier, tool_choice=tool_choice
    )
    if carrier is not None:
        prefix.append(carrier)
    candidates = history.tail(budget - fixed, after_seq)
    fit = select(
        candidates,
        budget,
        prefix_tokens=fixed,
        recount=counter.count_message,
        over_budget="truncate" if truncate else "raise",
        truncate=truncator(counter),
        selected=history.chosen,
    )
    return Window(
        messages=(*prefix, *[c.message for c in fit.kept]),
        prompt_tokens=fit.tokens,
        budget=budget,
        first_seq=fit.kept[0].seq if fit.kept else None,
        dropped=fit.dropped,
        summary=summary,
        summarized=summarized,
        truncated=fit.truncated,
        error=error,
        exact=_exact(counter, prefix, fit.kept, tools, tool_choice),
    )


def _exact(
    counter: TokenCounter,
    prefix: Sequence[Message],
    kept: Sequence[Any],
    tools: Sequence[Mapping[str, Any]] | None,
    tool_choice: Any,
) -> bool:
    """Whether the window's count reproduces the API's (else it is a high-side estimate).

    Estimated: models convkit does not count exactly, tool definitions beyond the published
    renderings, tool-call history, and content parts other than text (see docs/tokens.md).
    """
    if not counter.exact:
        return False
    if tools and not counter.measure_tools(tools, tool_choice).exact:
        return False
    for m in chain(prefix, [c.message for c in kept]):
        # Counted exactly: no tool call or result, and text only (~100 messages a window).
        if m.tool_calls or m.role in _TOOL_ROLES:
            return False
        content = m.content
        if (
            content.__class__ is not str  # the common case, decided without a call
            and isinstance(content, tuple)
            and not all(isinstance(p, TextPart) for p in content)
        ):
            return False
    return True


_TOOL_ROLES = frozenset({"tool", "function"})


def _split_prefix(msgs: Sequence[Message]) -> int:
    k = 0
    while k < len(msgs) and msgs[k].role in PREFIX_ROLES:
        k += 1
    return k


def trim_messages(
    messages: Sequence[T],
    *,
    model: str,
    max_prompt_tokens: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    max_tokens: int | None = None,
    max_completion_tokens: int | None = None,
    truncate: bool = False,
    counter: TokenCounter | None = None,
) -> list[T]:
    """Return the newest part of ``messages`` that fits the model's prompt budget.

    The result holds the same kind of items it was given (OpenAI dicts or :class:`Message`),
    untouched except where a call had to be removed from an incomplete tool-call group or the
    newest message was truncated. Its ``count_tokens(result, model=model, tools=tools)`` is
    within the budget, always.

    Args:
        messages: the conversation, oldest first.
        model: the model the request goes to (sets the window, encoding and overheads).
        max_prompt_tokens: the budget; default: the context window minus the reply reserve.
        tools: the request's tool definitions (they count against the budget).
        tool_choice: the request's ``tool_choice`` (a named choice costs tokens too).
        max_tokens: the request's reply limit (reserved from the window).
        max_completion_tokens: same, the newer parameter name (wins over ``max_tokens``).
        truncate: when the system prompt and newest turn alone do not fit, cut the newest
            user message's text instead of raising.
        counter: a :class:`TokenCounter` to reuse (default: a shared one for ``model``).

    Raises:
        ContextOverflowError: the smallest valid window does not fit (``needed``/``available``).
        InvalidMessageError: a message is invalid (names its index).

    Example::

        window = trim_messages(history, model="gpt-4o", max_prompt_tokens=8_000)
    """
    counter = counter or counter_for(model)
    items: list[Any] = list(messages)
    msgs = [as_message(m, i) for i, m in enumerate(items)]
    reply = max_completion_tokens if max_completion_tokens is not None else max_tokens
    budget = prompt_budget(counter, max_prompt_tokens=max_prompt_tokens, reply_tokens=reply)
    p = _split_prefix(msgs)
    fixed = prefix_tokens(counter, msgs[:p], tools, tool_choice=tool_choice)
    history = [
        Counted(message=m, tokens=counter.count_message(m), seq=i)
        for i, m in enumerate(msgs)
        if i >= p
    ]
    fit = select(
        history,
        budget,
        prefix_tokens=fixed,
        recount=counter.count_message,
        over_budget="truncate" if truncate else "raise",
        truncate=truncator(counter),
    )
    out: list[Any] = list(items[:p])
    for c in fit.kept:
        original = items[c.seq]
        if c.message is msgs[c.seq]:
            out.append(original)
        elif isinstance(original, Message):
            out.append(c.message)
        else:
            out.append(c.message.to_openai())
    return out
