"""Fitting history into the context window: trimming and rolling summaries.

Every window convkit builds is one the API accepts and that fits:

* its ``count_tokens`` (messages + tools + reply priming) is within the prompt budget;
* the leading ``system``/``developer`` messages and the newest ``user`` message are kept;
* an assistant message with ``tool_calls`` and its ``tool`` results are kept or dropped as one
  unit; a call whose results never arrived (an aborted stream) loses that call, and a result
  whose call is gone is dropped: no orphan either way;
* after the system prompt (and summary), the window starts on a ``user`` message: the oldest
  whole turns go first;
* order is preserved.

Two ways in:

* :func:`trim_messages` — stateless, for a list you hold: dicts in, dicts out; Messages in,
  Messages out.
* :class:`TrimOldest` and :class:`Summarize` — :class:`ContextPolicy` objects for long-running
  threads. They read each message's cached token count (what the store keeps on its row) and
  never re-encode history, so a turn costs O(new text + window), not O(thread). They return a
  :class:`Window` saying what is sent, what was dropped and which summary was used.

The budget, unless given as ``max_prompt_tokens``, is the model's context window minus the
reply's reserve (the request's ``max_completion_tokens``/``max_tokens``, else
:func:`default_reply_reserve`), less the model's safety margin when its counts are estimates
(see :mod:`convkit.models`). Tool definitions count against it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, Union, runtime_checkable

import attrs
from attrs import frozen

from convkit.errors import ContextOverflowError, InvalidRequestError, SummarizationError
from convkit.messages import Message, MessageLike, TextPart, as_message
from convkit.tokens import TokenCounter, _counter_for

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "ContextPolicy",
    "Counted",
    "Summarize",
    "Summary",
    "SummaryLike",
    "SummaryRequest",
    "TrimOldest",
    "Window",
    "default_reply_reserve",
    "prompt_budget",
    "trim_messages",
]

log = logging.getLogger("convkit.context")

T = TypeVar("T")


# --------------------------------------------------------------------------- values


@frozen(kw_only=True)
class Counted:
    """A message with its cached token count and its position in the thread.

    The store's stored messages have the same attributes, so they can be passed to a policy
    directly; :meth:`ContextPolicy.fit` also accepts plain messages and counts them once.
    """

    message: Message
    tokens: int
    seq: int


@frozen(kw_only=True)
class Summary:
    """A rolling summary of a thread's older messages.

    Attributes:
        text: the summary itself.
        covers_through_seq: the summary stands in for every message with ``seq`` up to this.
        tokens: tokens the summary's message adds to a prompt (overhead included).
        model: the model that wrote it (or None).
    """

    text: str
    covers_through_seq: int
    tokens: int = 0
    model: str | None = None


@runtime_checkable
class SummaryLike(Protocol):
    """What a policy reads from a summary: :class:`Summary` and the store's summaries both fit."""

    @property
    def text(self) -> str:
        """The summary text."""
        ...

    @property
    def covers_through_seq(self) -> int:
        """The last ``seq`` the summary stands in for."""
        ...


@frozen(kw_only=True)
class Window:
    """What a policy decided to send.

    Attributes:
        messages: the messages to send, in order (system prompt, summary message, history).
        prompt_tokens: their exact count, tools and reply priming included.
        budget: the prompt-token budget the window was fitted to.
        first_seq: ``seq`` of the oldest history message sent (None if none is). Every older
            message not covered by the summary was left out.
        dropped: ``seq`` of the newer history messages that were examined and left out
            (orphaned tool results, calls that never got results, turns that did not fit).
        summary: the summary used (new or previous), or None.
        summarized: ``seq`` of the messages newly folded into the summary on this turn.
        truncated: True when the newest message's text was cut to fit.
        error: a summarization failure the policy recovered from by trimming, or None.
    """

    messages: tuple[Message, ...]
    prompt_tokens: int
    budget: int
    first_seq: int | None = None
    dropped: tuple[int, ...] = ()
    summary: SummaryLike | None = None
    summarized: tuple[int, ...] = ()
    truncated: bool = False
    error: SummarizationError | None = None


@frozen(kw_only=True)
class SummaryRequest:
    """What a summarizer is asked to do: fold ``messages`` into ``previous``.

    ``as_messages()`` gives a ready chat request for a completions client.
    """

    previous: str | None
    messages: tuple[Message, ...]
    prompt: str
    model: str | None
    max_tokens: int

    def as_messages(self) -> list[Message]:
        """The chat messages that ask a model for the new summary."""
        lines = []
        for m in self.messages:
            who = m.role if m.name is None else f"{m.role} ({m.name})"
            text = m.text
            if m.tool_calls:
                text += "".join(f"\n[calls {c.name}({c.arguments})]" for c in m.tool_calls)
            lines.append(f"{who}: {text}")
        body = "\n".join(lines)
        prev = self.previous or "(none yet)"
        return [
            Message.system(self.prompt),
            Message.user(f"Summary so far:\n{prev}\n\nNew messages:\n{body}"),
        ]


DEFAULT_SUMMARY_PROMPT = (
    "You maintain a running summary of a conversation. Given the summary so far and the "
    "messages that follow it, write an updated summary that keeps every fact, decision, name, "
    "number and open question a later reply could need. Be concise; write plain prose."
)

Summarizer = Callable[[SummaryRequest], Union[str, Awaitable[str]]]


# --------------------------------------------------------------------------- budgets


def default_reply_reserve(context_window: int, max_output_tokens: int) -> int:
    """Tokens held for the reply when a request names no ``max_tokens``.

    ``min(4096, max_output_tokens, context_window // 4)``: enough for a long answer without
    starving small windows (gpt-4's 8,192 keeps 2,048).
    """
    return min(4096, max_output_tokens, context_window // 4)


def prompt_budget(
    counter: TokenCounter,
    *,
    max_prompt_tokens: int | None = None,
    reply_tokens: int | None = None,
) -> int:
    """The prompt-token budget for ``counter``'s model (tools not yet subtracted)."""
    if max_prompt_tokens is not None:
        if max_prompt_tokens <= 0:
            raise ValueError(f"max_prompt_tokens must be positive, got {max_prompt_tokens}")
        return max_prompt_tokens
    info = counter.info
    reserve = (
        reply_tokens
        if reply_tokens is not None
        else default_reply_reserve(info.context_window, info.max_output_tokens)
    )
    if reserve < 0:
        raise ValueError(f"the reply reserve must be >= 0, got {reserve}")
    if reserve >= info.context_window:
        raise InvalidRequestError(
            f"the reply reserve ({reserve} tokens) leaves no room for a prompt in "
            f"{info.name}'s {info.context_window}-token context window",
            param="max_tokens",
        )
    return math.floor((info.context_window - reserve) * (1.0 - info.safety_margin))


# --------------------------------------------------------------------------- the fitting core


class _Unit(NamedTuple):
    """Consecutive history entries that are kept or dropped together.

    A named tuple rather than an attrs class: a turn builds one per message in the window,
    and tuple construction is several times cheaper.
    """

    entries: tuple[Counted, ...]
    tokens: int
    starts_user: bool


def _repair_groups(
    history: Sequence[Counted], counter: TokenCounter | None
) -> tuple[list[_Unit], list[int]]:
    """Split history into units the API accepts; repair or drop incomplete tool-call groups.

    The API pairs results with calls by position: an assistant message with ``tool_calls``
    must be followed directly by the ``tool`` messages answering them. So a call's results
    are the run of ``tool`` messages right after it with a matching id; a call left without
    one (an aborted stream, a reused id answered elsewhere) is removed from its message, and
    any other ``tool`` message is an orphan.

    Returns the units and the ``seq`` of entries removed as orphans.
    """
    units: list[_Unit] = []
    orphans: list[int] = []
    i, n = 0, len(history)
    while i < n:
        c = history[i]
        m = c.message
        if m.role == "tool":
            orphans.append(c.seq)  # not directly after the call it answers
            i += 1
            continue
        if not (m.role == "assistant" and m.tool_calls):
            units.append(_unit([c]))
            i += 1
            continue
        j = i + 1
        while j < n and history[j].message.role == "tool":
            j += 1
        ids = {tc.id for tc in m.tool_calls}
        results = [r for r in history[i + 1 : j] if r.message.tool_call_id in ids]
        orphans.extend(r.seq for r in history[i + 1 : j] if r.message.tool_call_id not in ids)
        answered = {r.message.tool_call_id for r in results}
        kept_calls = tuple(tc for tc in m.tool_calls if tc.id in answered)
        if len(kept_calls) != len(m.tool_calls):
            repaired = _drop_calls(c, kept_calls, counter)
            if repaired is None:
                orphans.append(c.seq)  # nothing left of it: no text, no answered call
                i = j
                continue
            c = repaired
        units.append(_unit([c, *results]))
        i = j
    return units, orphans


def _drop_calls(c: Counted, kept: tuple[Any, ...], counter: TokenCounter | None) -> Counted | None:
    m = c.message
    if not kept and not m.content and m.refusal is None:
        return None
    new = attrs.evolve(m, tool_calls=kept or None)
    tokens = counter.count_message(new) if counter is not None else c.tokens
    return Counted(message=new, tokens=tokens, seq=c.seq)


def _unit(entries: Sequence[Counted]) -> _Unit:
    first = entries[0]
    if len(entries) == 1:
        return _Unit((first,), first.tokens, first.message.role == "user")
    return _Unit(tuple(entries), sum(e.tokens for e in entries), first.message.role == "user")


@frozen
class _Fit:
    kept: tuple[Counted, ...]
    dropped: tuple[int, ...]
    tokens: int
    truncated: bool


def _fit(
    prefix_tokens: int,
    history: Sequence[Counted],
    budget: int,
    *,
    counter: TokenCounter | None,
    truncate: bool,
) -> _Fit:
    """Keep the newest turn whole, then the newest older units that fit the budget."""
    units, orphans = _repair_groups(history, counter)
    last_user = max((k for k, u in enumerate(units) if u.starts_user), default=None)
    # The newest user message and everything after it (the turn in progress, tool results
    # included) is what the reply needs: it is sent whole or the request cannot be made.
    first_mandatory = last_user if last_user is not None else len(units)
    need = prefix_tokens + sum(u.tokens for u in units[first_mandatory:])
    truncated = False
    if need > budget:
        if not truncate or last_user is None:
            raise ContextOverflowError(
                need, budget, "the system prompt (and summary) and the newest turn do not fit"
            )
        units, need = _truncate_newest(units, last_user, need, budget, counter)
        truncated = True
        if need > budget:
            raise ContextOverflowError(need, budget, "even with the newest message truncated")
    room = budget - need
    start = first_mandatory
    while start > 0 and units[start - 1].tokens <= room:
        start -= 1
        room -= units[start].tokens
    # Whole turns only: the kept history begins on a user message. (With no user message at
    # all, nothing can open a valid window but system messages.)
    while start < first_mandatory and not units[start].starts_user:
        start += 1
    if last_user is None:
        while start < len(units) and units[start].entries[0].message.role in ("tool", "assistant"):
            start += 1
    kept = [e for u in units[start:] for e in u.entries]
    dropped = [*orphans, *(e.seq for u in units[:start] for e in u.entries)]
    tokens = prefix_tokens + sum(c.tokens for c in kept)
    return _Fit(tuple(kept), tuple(sorted(dropped)), tokens, truncated)


def _truncate_newest(
    units: list[_Unit], last_user: int, need: int, budget: int, counter: TokenCounter | None
) -> tuple[list[_Unit], int]:
    """Cut the newest user message's text so that ``need`` drops to ``budget`` if possible."""
    if counter is None:  # pragma: no cover - every caller passes one
        raise ContextOverflowError(need, budget, "truncation needs a token counter")
    unit = units[last_user]
    entry = unit.entries[0]
    m = entry.message
    allowed = entry.tokens - (need - budget)  # what the message may cost after cutting
    others = (
        ()
        if isinstance(m.content, str) or m.content is None
        else tuple(p for p in m.content if not isinstance(p, TextPart))
    )

    def with_text(text: str) -> Message:
        if not others:
            return attrs.evolve(m, content=text)
        return attrs.evolve(m, content=(TextPart(text=text), *others))

    enc = counter.encoding
    ids = enc.encode_ordinary(m.text)
    keep = max(0, allowed - counter.count_message(with_text("")) - 1)
    keep = min(keep, len(ids))
    while True:
        new = with_text(enc.decode(ids[:keep]) + ("…" if keep < len(ids) else ""))
        tokens = counter.count_message(new)
        if tokens <= allowed or keep == 0:
            break
        keep = max(0, keep - max(1, tokens - allowed))
    units = list(units)
    units[last_user] = _unit(
        (Counted(message=new, tokens=tokens, seq=entry.seq), *unit.entries[1:])
    )
    return units, need - entry.tokens + tokens


# --------------------------------------------------------------------------- stateless API


def _split_prefix(msgs: Sequence[Message]) -> int:
    k = 0
    while k < len(msgs) and msgs[k].role in ("system", "developer"):
        k += 1
    return k


def trim_messages(
    messages: Sequence[T],
    *,
    model: str,
    max_prompt_tokens: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
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
    counter = counter or _counter_for(model)
    items = list(messages)
    msgs = [as_message(m, i) for i, m in enumerate(items)]  # type: ignore[arg-type]
    reply = max_completion_tokens if max_completion_tokens is not None else max_tokens
    budget = prompt_budget(counter, max_prompt_tokens=max_prompt_tokens, reply_tokens=reply)
    fixed = counter.info.reply_priming + counter.count_tools(tools)
    p = _split_prefix(msgs)
    prefix_tokens = fixed + sum(counter.count_message(m) for m in msgs[:p])
    history = [
        Counted(message=m, tokens=counter.count_message(m), seq=i)
        for i, m in enumerate(msgs)
        if i >= p
    ]
    fit = _fit(prefix_tokens, history, budget, counter=counter, truncate=truncate)
    out: list[T] = list(items[:p])
    for c in fit.kept:
        original = items[c.seq]
        if c.message is msgs[c.seq]:
            out.append(original)
        elif isinstance(original, Message):
            out.append(c.message)  # type: ignore[arg-type]
        else:
            out.append(c.message.to_openai())  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- policies


HistoryItem = Union[Counted, Message, Mapping[str, Any], Any]


@runtime_checkable
class ContextPolicy(Protocol):
    """Decides which messages a request carries.

    ``fit`` takes the system prompt, the thread's history (stored messages with cached counts,
    or plain messages), the previous summary if any, and the request's tools; it returns a
    :class:`Window`. ``afit`` is the same for async callers (summarizers may be async).
    """

    def fit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Fit ``history`` (oldest first) into the budget."""
        ...

    async def afit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Async form of :meth:`fit`."""
        ...


def _to_counted(it: HistoryItem, i: int, counter: TokenCounter) -> Counted:
    if isinstance(it, Counted):
        return it
    msg = getattr(it, "message", None)
    tokens = getattr(it, "tokens", None)
    seq = getattr(it, "seq", None)
    if isinstance(msg, Message) and isinstance(tokens, int) and isinstance(seq, int):
        encoding = getattr(it, "encoding", counter.encoding_name)
        if encoding != counter.encoding_name:
            tokens = counter.count_message(msg)  # counted for another model: recount once
        return Counted(message=msg, tokens=tokens, seq=seq)
    m = as_message(it, i)
    return Counted(message=m, tokens=counter.count_message(m), seq=i + 1)


class _History:
    """A lazy view of a policy's input: an item is converted (and counted) only when reached.

    Policies walk history newest-first and stop once the budget is met, so a turn on a
    100,000-message thread touches about as many items as one on a 100-message thread.
    """

    def __init__(self, items: Sequence[HistoryItem], counter: TokenCounter) -> None:
        self._items = items
        self._counter = counter
        self._memo: dict[int, Counted] = {}

    def __len__(self) -> int:
        return len(self._items)

    def at(self, i: int) -> Counted:
        item = self._items[i]
        if type(item) is Counted:
            return item  # the common case: nothing to convert or remember
        c = self._memo.get(i)
        if c is None:
            c = self._memo[i] = _to_counted(item, i, self._counter)
        return c

    def tail(self, room: int, after_seq: int | None) -> list[Counted]:
        """The newest entries that could fit in ``room`` tokens (always through a user message).

        Stops at the summary's coverage (``after_seq``). Whatever lies before the returned
        entries cannot be part of a window of this size.
        """
        out: list[Counted] = []
        acc = 0
        seen_user = False
        for i in range(len(self._items) - 1, -1, -1):
            c = self.at(i)
            if after_seq is not None and c.seq <= after_seq:
                break
            if seen_user and acc + c.tokens > room:
                break
            out.append(c)
            acc += c.tokens
            seen_user = seen_user or c.message.role == "user"
        out.reverse()
        return out


@attrs.define
class TrimOldest:
    """Drop the oldest whole turns until the window fits (no summarizing).

    Example::

        policy = TrimOldest("gpt-4o", max_prompt_tokens=8_000)
        window = policy.fit(store.window(thread_id, 8_000), system=[Message.system("Be brief.")])
        window.messages, window.prompt_tokens, window.dropped
    """

    model: str
    max_prompt_tokens: int | None = None
    truncate: bool = False
    counter: TokenCounter = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.counter is None:
            self.counter = TokenCounter(self.model)

    def budget(self, reply_tokens: int | None = None) -> int:
        """The prompt budget for a request reserving ``reply_tokens`` for the reply."""
        return prompt_budget(
            self.counter, max_prompt_tokens=self.max_prompt_tokens, reply_tokens=reply_tokens
        )

    def fit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Fit ``history`` after ``system`` (and ``summary``), dropping the oldest turns."""
        return _window(
            self.counter,
            _History(history, self.counter),
            system=system,
            summary=summary,
            tools=tools,
            budget=self.budget(reply_tokens),
            truncate=self.truncate,
            summary_role="system",
        )

    async def afit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Async form of :meth:`fit` (trimming does no I/O)."""
        return self.fit(
            history, system=system, summary=summary, tools=tools, reply_tokens=reply_tokens
        )


def _summary_message(summary: SummaryLike, role: str) -> Message:
    return Message(role=role, content=f"Summary of the earlier conversation:\n{summary.text}")


def _window(
    counter: TokenCounter,
    history: _History,
    *,
    system: Sequence[MessageLike],
    summary: SummaryLike | None,
    tools: Sequence[Mapping[str, Any]] | None,
    budget: int,
    truncate: bool,
    summary_role: str,
    summarized: tuple[int, ...] = (),
    error: SummarizationError | None = None,
) -> Window:
    prefix = [as_message(m, i) for i, m in enumerate(system)]
    after_seq = None
    if summary is not None:
        after_seq = summary.covers_through_seq
        prefix.append(_summary_message(summary, summary_role))
    prefix_tokens = (
        counter.info.reply_priming
        + counter.count_tools(tools)
        + sum(counter.count_message(m) for m in prefix)
    )
    candidates = history.tail(budget - prefix_tokens, after_seq)
    fit = _fit(prefix_tokens, candidates, budget, counter=counter, truncate=truncate)
    return Window(
        messages=(*prefix, *(c.message for c in fit.kept)),
        prompt_tokens=fit.tokens,
        budget=budget,
        first_seq=fit.kept[0].seq if fit.kept else None,
        dropped=fit.dropped,
        summary=summary,
        summarized=summarized,
        truncated=fit.truncated,
        error=error,
    )


@attrs.define
class Summarize:
    """Keep a rolling summary of what no longer fits, extended incrementally.

    When the thread (after the current summary) grows past ``trigger`` x budget, the oldest
    whole turns are folded into the summary until what remains is at most ``target`` x budget:
    the summarizer gets the previous summary and only the newly evicted messages, never the
    whole history again. Between the two thresholds nothing is summarized (hysteresis), so a
    summarizer call happens about once every ``(trigger - target) x budget`` tokens of new
    conversation.

    If the summarizer fails, the turn falls back to trimming with the previous summary, and
    the failure is reported on :attr:`Window.error` (and logged); it is never swallowed.

    Args:
        model: the model requests go to.
        summarizer: ``f(SummaryRequest) -> str`` or an async function returning ``str``.
        max_prompt_tokens: the budget (default: derived from the model).
        trigger: fraction of the budget that triggers summarizing (default 0.9).
        target: fraction of the budget to summarize down to (default 0.6).
        max_summarizer_input_tokens: cap on one summarizer call's new messages; larger
            evictions are folded in several incremental calls.
        max_summary_tokens: cap on the summary's length (longer answers are cut).
        max_batches_per_turn: at most this many summarizer calls per turn. When a long thread
            first meets this policy, messages older than those batches can carry are left out
            without being summarized (the summary's ``covers_through_seq`` moves past them).
        prompt: the summarizer's instructions.
        summary_model: the model to summarize with (often a cheaper one), passed along.
        summary_role: the role of the message carrying the summary in the window.

    Example::

        policy = Summarize("gpt-4o", summarizer=my_summarizer, max_prompt_tokens=8_000)
        window = policy.fit(history, system=[system_prompt], summary=stored_summary)
        if window.summary is not stored_summary:
            store.put_summary(thread_id, window.summary)
    """

    model: str
    summarizer: Summarizer
    max_prompt_tokens: int | None = None
    trigger: float = 0.9
    target: float = 0.6
    max_summarizer_input_tokens: int = 8_000
    max_summary_tokens: int = 1_000
    max_batches_per_turn: int = 4
    prompt: str = DEFAULT_SUMMARY_PROMPT
    summary_model: str | None = None
    summary_role: str = "system"
    truncate: bool = False
    counter: TokenCounter = attrs.field(default=None)
    #: How many times the summarizer has been called (for monitoring).
    calls: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.counter is None:
            self.counter = TokenCounter(self.model)
        if not 0.0 < self.target < self.trigger <= 1.0:
            raise ValueError(
                f"need 0 < target < trigger <= 1, got target={self.target}, trigger={self.trigger}"
            )
        if self.max_summarizer_input_tokens <= 0 or self.max_summary_tokens <= 0:
            raise ValueError("summarizer token caps must be positive")

    def budget(self, reply_tokens: int | None = None) -> int:
        """The prompt budget for a request reserving ``reply_tokens`` for the reply."""
        return prompt_budget(
            self.counter, max_prompt_tokens=self.max_prompt_tokens, reply_tokens=reply_tokens
        )

    # ---- planning (no I/O)

    def _plan(
        self,
        history: _History,
        system: Sequence[MessageLike],
        summary: SummaryLike | None,
        tools: Sequence[Mapping[str, Any]] | None,
        budget: int,
    ) -> list[list[Counted]]:
        """Return the batches of messages to fold into the summary (empty: nothing to do).

        Walks newest-first: in steady state it reads only the unsummarized tail, which the
        hysteresis keeps below ``trigger`` x budget.
        """
        counter = self.counter
        summary_tokens = (
            counter.count_message(_summary_message(summary, self.summary_role))
            if summary is not None
            else 0
        )
        fixed = (
            counter.info.reply_priming
            + counter.count_tools(tools)
            + sum(counter.count_message(as_message(m, i)) for i, m in enumerate(system))
            + summary_tokens
        )
        after = summary.covers_through_seq if summary is not None else None
        trigger_room = self.trigger * budget - fixed
        # What may stay after summarizing: target x budget, less the rewritten summary (capped).
        goal = self.target * budget - fixed + summary_tokens
        goal -= self.max_summary_tokens + counter.info.tokens_per_message + 16
        acc = 0
        last_user: int | None = None
        keep_from: int | None = None
        triggered = False
        live_start = len(history)
        evict_tokens = 0
        evict_cap = self.max_summarizer_input_tokens * self.max_batches_per_turn
        for i in range(len(history) - 1, -1, -1):
            c = history.at(i)
            if after is not None and c.seq <= after:
                break
            if triggered and keep_from is not None and i < keep_from:
                evict_tokens += c.tokens
                if evict_tokens > evict_cap:
                    break  # older messages are left out unsummarized (see max_batches_per_turn)
            acc += c.tokens
            live_start = i
            if c.message.role == "user":
                if last_user is None:
                    last_user = i
                if acc <= goal:
                    keep_from = i  # the oldest turn boundary whose tail fits the target
            if acc > trigger_room:
                triggered = True
                if keep_from is None:
                    keep_from = last_user
                if keep_from is None:
                    return []  # no user message at all: nothing sensible to summarize
        if not triggered or keep_from is None or keep_from <= live_start:
            return []
        batches: list[list[Counted]] = [[]]
        size = 0
        for i in range(live_start, keep_from):
            c = history.at(i)
            if batches[-1] and size + c.tokens > self.max_summarizer_input_tokens:
                batches.append([])
                size = 0
            batches[-1].append(c)
            size += c.tokens
        return batches

    def _request(self, previous: SummaryLike | None, batch: list[Counted]) -> SummaryRequest:
        return SummaryRequest(
            previous=previous.text if previous is not None else None,
            messages=tuple(c.message for c in batch),
            prompt=self.prompt,
            model=self.summary_model,
            max_tokens=self.max_summary_tokens,
        )

    def _make_summary(self, text: Any, batch: list[Counted]) -> Summary:
        if not isinstance(text, str) or not text.strip():
            raise SummarizationError(f"the summarizer returned {type(text).__name__}, not text")
        enc = self.counter.encoding
        ids = enc.encode_ordinary(text)
        if len(ids) > self.max_summary_tokens:
            text = enc.decode(ids[: self.max_summary_tokens])
        msg = _summary_message(Summary(text=text, covers_through_seq=0), self.summary_role)
        return Summary(
            text=text,
            covers_through_seq=batch[-1].seq,
            tokens=self.counter.count_message(msg),
            model=self.summary_model or self.model,
        )

    def _finish(
        self,
        history: _History,
        system: Sequence[MessageLike],
        summary: SummaryLike | None,
        tools: Sequence[Mapping[str, Any]] | None,
        budget: int,
        summarized: tuple[int, ...],
        error: SummarizationError | None,
    ) -> Window:
        return _window(
            self.counter,
            history,
            system=system,
            summary=summary,
            tools=tools,
            budget=budget,
            truncate=self.truncate,
            summary_role=self.summary_role,
            summarized=summarized,
            error=error,
        )

    # ---- the turn as a generator (no I/O): it yields summarizer requests, receives answers

    def _steps(
        self,
        history: Sequence[HistoryItem],
        system: Sequence[MessageLike],
        summary: SummaryLike | None,
        tools: Sequence[Mapping[str, Any]] | None,
        reply_tokens: int | None,
    ) -> Generator[SummaryRequest, Any, Window]:
        counted = _History(history, self.counter)
        budget = self.budget(reply_tokens)
        current, error = summary, None
        folded: list[int] = []
        for batch in self._plan(counted, system, summary, tools, budget):
            self.calls += 1
            try:
                answer = yield self._request(current, batch)
                current = self._make_summary(answer, batch)
            except Exception as exc:
                error = _as_summarization_error(exc)
                break
            folded.extend(c.seq for c in batch)
        try:
            return self._finish(counted, system, current, tools, budget, tuple(folded), error)
        except ContextOverflowError as exc:
            if current is summary:
                raise  # the newest turn does not fit even without a new summary
            # The new summary leaves no room for the newest turn: keep the previous one (or
            # none), trim, and report it, as for any other summarization failure.
            error = _as_summarization_error(
                SummarizationError(
                    f"the new summary does not fit beside the newest turn ({exc}); "
                    "lower max_summary_tokens or raise the budget"
                )
            )
            return self._finish(counted, system, summary, tools, budget, (), error)

    # ---- sync and async shells

    def fit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Fit ``history``, summarizing first if the thread crossed the trigger."""
        steps = self._steps(history, system, summary, tools, reply_tokens)
        try:
            request = next(steps)
            while True:
                try:
                    answer = self.summarizer(request)
                    if inspect.isawaitable(answer):
                        close = getattr(answer, "close", None)
                        if close is not None:
                            close()  # never awaited: close it rather than leak a warning
                        raise SummarizationError(
                            "the summarizer is async: call afit() instead of fit()"
                        )
                except Exception as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(answer)
        except StopIteration as done:
            window: Window = done.value
            return window

    async def afit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: SummaryLike | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
    ) -> Window:
        """Async form of :meth:`fit`; the summarizer may be sync or async."""
        steps = self._steps(history, system, summary, tools, reply_tokens)
        try:
            request = next(steps)
            while True:
                try:
                    answer = self.summarizer(request)
                    if inspect.isawaitable(answer):
                        answer = await answer
                except Exception as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(answer)
        except StopIteration as done:
            window: Window = done.value
            return window


def _as_summarization_error(exc: Exception) -> SummarizationError:
    err = (
        exc
        if isinstance(exc, SummarizationError)
        else SummarizationError(f"summarizer failed: {type(exc).__name__}: {exc}")
    )
    if err is not exc:
        err.__cause__ = exc
    log.warning("summarization failed; falling back to trimming: %s", err)
    return err
