"""Context policies: :class:`TrimOldest` and :class:`Summarize`, each a generator of steps."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from convkit._drive import adrive, drive
from convkit.context._budget import (
    check_tokens,
    counting_key,
    prefix_tokens,
    prompt_budget,
    summary_tokens,
)
from convkit.context._fit import History, HistoryItem, build_window, cut_message
from convkit.context._groups import Entry
from convkit.context._values import (
    DEFAULT_SUMMARY_PROMPT,
    Counted,
    ReadPlan,
    Summarizer,
    Summary,
    SummaryRequest,
    Window,
)
from convkit.errors import ContextOverflowError, SummarizationError
from convkit.messages import MessageLike, as_message
from convkit.tokens import TokenCounter

__all__ = ["ContextPolicy", "Steps", "Summarize", "TrimOldest"]

log = logging.getLogger("convkit.context")

#: A policy's turn as a generator: it yields summary requests and receives their text.
Steps = Generator[SummaryRequest, Any, Window]


@runtime_checkable
class ContextPolicy(Protocol):
    """Decides which messages a request carries.

    A policy works in two steps, so that a turn reads from the store exactly what it may send:

    * :meth:`read_plan` says how much history to read (a token budget, newest first) and from
      which ``seq`` on (after the summary's coverage);
    * :meth:`steps` fits what was read: a generator that yields :class:`SummaryRequest` values
      (summarizing policies only), receives each one's text, and returns the :class:`Window`.
      ``fit``/``afit`` drive it with the policy's own summarizer; a conversation drives it
      itself (``window = yield from policy.steps(...)``).

    :class:`TrimOldest` and :class:`Summarize` implement it.
    """

    def read_plan(
        self,
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> ReadPlan:
        """How much history a turn must read for :meth:`steps`."""
        ...

    def steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Steps:
        """Fit ``history`` (oldest first) into the budget, as a generator of summary requests."""
        ...

    def fit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Window:
        """Fit ``history`` (oldest first) into the budget."""
        ...

    async def afit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Window:
        """Async form of :meth:`fit`."""
        ...


def _check_budget(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None:
        check_tokens(value, attribute.name, minimum=1)


def _default_counter(self: Any) -> TokenCounter:
    return TokenCounter(self.model)


@attrs.define
class _Policy:
    """What both policies share: the model, the budget, the counter, ``fit``/``afit``."""

    model: str
    max_prompt_tokens: int | None = attrs.field(default=None, validator=_check_budget)
    truncate: bool = False
    counter: TokenCounter = attrs.field(
        default=attrs.Factory(_default_counter, takes_self=True), kw_only=True
    )

    def budget(self, reply_tokens: int | None = None) -> int:
        """The prompt budget for a request reserving ``reply_tokens`` for the reply."""
        return prompt_budget(
            self.counter, max_prompt_tokens=self.max_prompt_tokens, reply_tokens=reply_tokens
        )

    def _fixed(
        self,
        system: Sequence[MessageLike],
        summary: Summary | None,
        tools: Sequence[Mapping[str, Any]] | None,
        summary_role: str = "system",
        tool_choice: Any = None,
    ) -> int:
        prefix = [as_message(m, i) for i, m in enumerate(system)]
        cost, carrier = 0, None
        if summary is not None:
            cost = summary_tokens(self.counter, summary, summary_role)
            carrier = summary.as_message(summary_role)
        return prefix_tokens(
            self.counter, prefix, tools, cost, summary_message=carrier, tool_choice=tool_choice
        )

    def read_plan(
        self,
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> ReadPlan:
        """How much history :meth:`steps` can use: the budget left after the fixed part."""
        room = self.budget(reply_tokens) - self._fixed(
            system, summary, tools, tool_choice=tool_choice
        )
        after = None if summary is None else summary.covers_through_seq
        return ReadPlan(budget=max(0, room), after_seq=after)

    def steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Steps:  # pragma: no cover - every policy defines it
        raise NotImplementedError
        yield

    def _summarize(self, request: SummaryRequest) -> Any:
        raise SummarizationError(f"{type(self).__name__} has no summarizer")

    def fit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Window:
        """Fit ``history`` after ``system`` (and ``summary``) into the budget."""
        steps = self.steps(
            history,
            system=system,
            summary=summary,
            tools=tools,
            reply_tokens=reply_tokens,
            tool_choice=tool_choice,
        )
        return drive(steps, self._summarize_sync)

    async def afit(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Window:
        """Async form of :meth:`fit`; a summarizer may be sync or async."""
        steps = self.steps(
            history,
            system=system,
            summary=summary,
            tools=tools,
            reply_tokens=reply_tokens,
            tool_choice=tool_choice,
        )
        return await adrive(steps, self._summarize_async)

    def _summarize_sync(self, request: SummaryRequest) -> Any:
        answer = self._summarize(request)
        if inspect.isawaitable(answer):
            close = getattr(answer, "close", None)
            if close is not None:
                close()  # never awaited: close it rather than leak a warning
            raise SummarizationError("the summarizer is async: call afit() instead of fit()")
        return answer

    async def _summarize_async(self, request: SummaryRequest) -> Any:
        answer = self._summarize(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer


@attrs.define
class TrimOldest(_Policy):
    """Drop the oldest whole turns until the window fits (no summarizing).

    Example::

        policy = TrimOldest("gpt-4o", max_prompt_tokens=8_000)
        plan = policy.read_plan(system=[Message.system("Be brief.")])
        window = policy.fit(store.window(thread_id, plan), system=[Message.system("Be brief.")])
        window.messages, window.prompt_tokens, window.dropped
    """

    def steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Steps:
        """Fit ``history``, dropping the oldest turns (a generator that yields nothing)."""
        window = build_window(
            self.counter,
            History(history, self.counter),
            system=system,
            summary=summary,
            tools=tools,
            budget=self.budget(reply_tokens),
            truncate=self.truncate,
            summary_role="system",
            tool_choice=tool_choice,
        )
        yield from ()
        return window


def _fraction(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive whole number, got {value!r}")


@attrs.define
class Summarize(_Policy):
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
        summarizer: ``f(SummaryRequest) -> str`` or an async function returning ``str``; None
            when a conversation drives :meth:`steps` and answers the requests itself.
        max_prompt_tokens: the budget (default: derived from the model).
        trigger: fraction of the budget that triggers summarizing (default 0.9).
        target: fraction of the budget to summarize down to (default 0.6).
        max_summarizer_input_tokens: cap on one summarizer call's new messages (lowered to
            what fits the summary model's context window beside the prompt and summaries); larger
            evictions are folded in several incremental calls.
        max_summary_tokens: cap on the summary's length (longer answers are cut; lowered to
            the summary model's output limit).
        max_batches_per_turn: at most this many summarizer calls per turn. When a long thread
            first meets this policy, messages older than those batches can carry are left out
            without being summarized (the summary's ``covers_through_seq`` moves past them).
        prompt: the summarizer's instructions.
        summary_model: the model to summarize with (often a cheaper one), passed along.
        summary_role: the role of the message carrying the summary in the window.

    Example::

        policy = Summarize("gpt-4o", summarizer=my_summarizer, max_prompt_tokens=8_000)
        window = policy.fit(history, system=[system_prompt], summary=stored_summary)
        if window.summarized:
            store.put_summary(thread_id, window.summary)
    """

    summarizer: Summarizer | None = attrs.field(default=None, kw_only=True)
    trigger: float = attrs.field(default=0.9, kw_only=True, validator=_fraction)
    target: float = attrs.field(default=0.6, kw_only=True, validator=_fraction)
    max_summarizer_input_tokens: int = attrs.field(
        default=8_000, kw_only=True, validator=_positive_int
    )
    max_summary_tokens: int = attrs.field(default=1_000, kw_only=True, validator=_positive_int)
    max_batches_per_turn: int = attrs.field(default=4, kw_only=True, validator=_positive_int)
    prompt: str = attrs.field(default=DEFAULT_SUMMARY_PROMPT, kw_only=True)
    summary_model: str | None = attrs.field(default=None, kw_only=True)
    summary_role: str = attrs.field(default="system", kw_only=True)
    #: How many times the summarizer has been asked (for monitoring).
    calls: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.target < self.trigger <= 1.0:
            raise ValueError(
                f"need 0 < target < trigger <= 1, got target={self.target}, trigger={self.trigger}"
            )

    def _input_cap(self) -> int:
        """New messages one summarizer call may take: the setting, or less for a small window.

        The request also carries the instructions, the previous summary and room for the new
        one, all within the summary model's context window.
        """
        info = (
            self.counter.info
            if self.summary_model is None
            else TokenCounter(self.summary_model).info
        )
        room = info.context_window - 2 * self._summary_cap() - 256
        return max(64, min(self.max_summarizer_input_tokens, room))

    def _summary_cap(self) -> int:
        """The summary's length: the setting, or the summary model's output limit if lower."""
        info = (
            self.counter.info
            if self.summary_model is None
            else TokenCounter(self.summary_model).info
        )
        return max(1, min(self.max_summary_tokens, info.max_output_tokens))

    def _summarize(self, request: SummaryRequest) -> Any:
        if self.summarizer is None:
            raise SummarizationError(
                "this Summarize policy has no summarizer: pass summarizer=, or let a "
                "Conversation drive it"
            )
        return self.summarizer(request)

    def read_plan(
        self,
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> ReadPlan:
        """The history summarizing may fold this turn, beside what the window sends."""
        room = self.budget(reply_tokens) - self._fixed(
            system, summary, tools, self.summary_role, tool_choice
        )
        evict_cap = self._input_cap() * self.max_batches_per_turn
        after = None if summary is None else summary.covers_through_seq
        return ReadPlan(budget=max(0, room) + evict_cap, after_seq=after)

    # ---- planning (no I/O)

    def _planned(
        self,
        history: History,
        system: Sequence[MessageLike],
        summary: Summary | None,
        tools: Sequence[Mapping[str, Any]] | None,
        reply_tokens: int | None,
        tool_choice: Any,
    ) -> History:
        """``history`` as the store's window for this turn's :meth:`read_plan` holds it.

        What to fold is planned over what the window rule keeps (an unanswered call costs
        what is left of it, an orphaned result nothing), so a whole thread and the store's
        window of it summarize the same turns. The window itself is built from ``history``
        as given (its ``dropped`` names the orphans and unanswered calls it examined).
        """
        plan = self.read_plan(
            system=system,
            summary=summary,
            tools=tools,
            reply_tokens=reply_tokens,
            tool_choice=tool_choice,
        )
        return history.as_window(plan.budget, plan.after_seq)

    def _plan(
        self,
        history: History,
        system: Sequence[MessageLike],
        summary: Summary | None,
        tools: Sequence[Mapping[str, Any]] | None,
        budget: int,
        tool_choice: Any = None,
    ) -> list[list[Entry]]:
        """Return the batches of messages to fold into the summary (empty: nothing to do).

        Walks newest-first: in steady state it reads only the unsummarized tail, which the
        hysteresis keeps below ``trigger`` x budget.
        """
        counter = self.counter
        summary_cost = 0 if summary is None else summary_tokens(counter, summary, self.summary_role)
        fixed = self._fixed(
            (*system, *history.leading), summary, tools, self.summary_role, tool_choice
        )
        after = summary.covers_through_seq if summary is not None else None
        trigger_room = self.trigger * budget - fixed
        # What may stay after summarizing: target x budget, less the rewritten summary (capped).
        goal = self.target * budget - fixed + summary_cost
        goal -= self._summary_cap() + counter.info.tokens_per_message + 16
        acc = 0
        last_user: int | None = None
        keep_from: int | None = None
        triggered = False
        live_start = len(history)
        evict_tokens = 0
        input_cap = self._input_cap()
        evict_cap = input_cap * self.max_batches_per_turn
        for i in range(len(history) - 1, -1, -1):
            c = history.at(i)
            if after is not None and c.seq <= after:
                break
            if triggered and keep_from is not None and i < keep_from:
                if evict_tokens + c.tokens > evict_cap:
                    break  # older messages are left out unsummarized (see max_batches_per_turn)
                evict_tokens += c.tokens
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
        batches: list[list[Entry]] = [[]]
        size = 0
        for i in range(live_start, keep_from):
            c = history.at(i)
            if c.tokens > input_cap:
                # One message larger than a whole request: the summarizer gets its text cut to
                # the cap (the stored message is unchanged).
                cut, tokens = cut_message(counter, c.message, input_cap, text_only=True)
                c = Counted(message=cut, tokens=tokens, seq=c.seq, status=c.status)
            if batches[-1] and size + c.tokens > input_cap:
                if len(batches) == self.max_batches_per_turn:
                    break
                batches.append([])
                size = 0
            batches[-1].append(c)
            size += c.tokens
        return batches

    def _request(self, previous: Summary | None, batch: Sequence[Entry]) -> SummaryRequest:
        return SummaryRequest(
            previous=previous.text if previous is not None else None,
            messages=tuple(c.message for c in batch),
            prompt=self.prompt,
            model=self.summary_model,
            max_tokens=self._summary_cap(),
        )

    def _make_summary(self, text: Any, batch: Sequence[Entry]) -> Summary:
        if not isinstance(text, str) or not text.strip():
            raise SummarizationError(f"the summarizer returned {type(text).__name__}, not text")
        enc = self.counter.encoding
        ids = enc.encode_ordinary(text)
        cap = self._summary_cap()
        if len(ids) > cap:
            text = enc.decode(ids[:cap])
        new = Summary(text=text, covers_through_seq=batch[-1].seq)
        return attrs.evolve(
            new,
            tokens=self.counter.count_message(new.as_message()),
            counted_with=counting_key(self.counter),
            model=self.summary_model or self.model,
        )

    def _window(
        self,
        history: History,
        system: Sequence[MessageLike],
        summary: Summary | None,
        tools: Sequence[Mapping[str, Any]] | None,
        budget: int,
        summarized: tuple[int, ...] = (),
        error: SummarizationError | None = None,
        tool_choice: Any = None,
    ) -> Window:
        return build_window(
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
            tool_choice=tool_choice,
        )

    def _fold(
        self,
        history: History,
        system: Sequence[MessageLike],
        summary: Summary | None,
        tools: Sequence[Mapping[str, Any]] | None,
        budget: int,
        tool_choice: Any = None,
    ) -> Generator[SummaryRequest, Any, tuple[Summary | None, tuple[int, ...], Any]]:
        """Fold what the plan evicts into the summary: (new summary, folded seqs, error)."""
        current, error = summary, None
        folded: list[int] = []
        for batch in self._plan(history, system, summary, tools, budget, tool_choice):
            self.calls += 1
            try:
                answer = yield self._request(current, batch)
                current = self._make_summary(answer, batch)
            except Exception as exc:
                error = _as_summarization_error(exc)
                break
            folded.extend(c.seq for c in batch)
        return current, tuple(folded), error

    # ---- the turn as a generator (no I/O): it yields summarizer requests, receives answers

    def steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Steps:
        """Fit ``history``, summarizing first if the thread crossed the trigger."""
        counted = History(history, self.counter)
        budget = self.budget(reply_tokens)
        current, folded, error = yield from self._fold(
            self._planned(counted, system, summary, tools, reply_tokens, tool_choice),
            system,
            summary,
            tools,
            budget,
            tool_choice,
        )
        try:
            return self._window(counted, system, current, tools, budget, folded, error, tool_choice)
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
            return self._window(counted, system, summary, tools, budget, (), error, tool_choice)

    def trim_steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Steps:
        """Fit ``history`` with the current summary only (summarizing deferred; no requests)."""
        counted = History(history, self.counter)
        window = self._window(
            counted, system, summary, tools, self.budget(reply_tokens), tool_choice=tool_choice
        )
        yield from ()
        return window

    def update_steps(
        self,
        history: Sequence[HistoryItem],
        *,
        system: Sequence[MessageLike] = (),
        summary: Summary | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reply_tokens: int | None = None,
        tool_choice: Any = None,
    ) -> Generator[SummaryRequest, Any, tuple[Summary | None, SummarizationError | None]]:
        """Summarize what the trigger says should be folded, for a later turn.

        Returns ``(summary, error)``: the new summary (None when there was nothing to fold, or
        the first batch failed) and the failure, if any.
        """
        counted = History(history, self.counter)
        planned = self._planned(counted, system, summary, tools, reply_tokens, tool_choice)
        budget = self.budget(reply_tokens)
        current, folded, error = yield from self._fold(
            planned, system, summary, tools, budget, tool_choice
        )
        return (current if folded else None), error


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
