"""The one window rule, tested once, over both of its callers: the store and the policies.

``convkit.context._groups`` decides what a window may hold; the store's ``window()`` reads by
its ``Tail`` and selects by its ``select``, and so do the policies over in-memory history. For
generated messy threads (parallel calls, several results per call, results before calls,
reused ids, interleaved groups, aborted streams marked incomplete) both callers must choose the
same messages, and every window must be one the API accepts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convkit import ContextOverflowError, Message, Summarize, TrimOldest
from convkit.context import Counted, Summary
from convkit.context._groups import (
    Chosen,
    Tail,
    Unit,
    choose,
    choose_on_top,
    select,
    units_of,
)
from convkit.store import NewMessage, Store
from tests.test_context import conversations

MODEL = "gpt-4o"


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store(f"sqlite:///{Path(tmp) / 'rule.db'}", model=MODEL, create_tables=True) as s,
    ):
        yield s


def assert_api_accepts(window: list[Message], *, has_user: bool) -> None:
    """No orphan either way, whole turns, no call from an incomplete row."""
    i = 0
    while i < len(window):
        m = window[i]
        assert m.role not in ("tool", "function"), f"orphaned result at {i}"
        if m.role == "assistant" and m.tool_calls:
            ids = [c.id for c in m.tool_calls]
            j = i + 1
            answered = []
            while j < len(window) and window[j].role == "tool":
                answered.append(window[j].tool_call_id)
                j += 1
            assert sorted(answered) == sorted(ids), "a call without its result, or the reverse"
            i = j
            continue
        i += 1
    if has_user and window:
        first = next(m for m in window if m.role not in ("system", "developer"))
        assert first.role == "user"


def _statuses(draw: st.DrawFn, messages: list[dict[str, Any]]) -> list[str]:
    return [
        "incomplete" if m["role"] == "assistant" and draw(st.integers(0, 5)) == 0 else "complete"
        for m in messages
    ]


@st.composite
def threads(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[str], int]:
    convo = [m for m in draw(conversations()) if m["role"] not in ("system", "developer")]
    # Sometimes a system prompt (and a developer message) stored as the thread's first rows.
    lead = draw(st.integers(0, 2))
    convo = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in French."},
    ][:lead] + convo
    return convo, _statuses(draw, convo), draw(st.integers(0, 3000))


def _stored(store: Store, convo: list[dict[str, Any]], statuses: list[str]) -> tuple[Any, Any]:
    """A new thread holding ``convo`` with these statuses: (the thread, its stored rows)."""
    thread = store.create_thread()
    rows = [NewMessage(message=m, status=s) for m, s in zip(convo, statuses, strict=True)]
    return thread, store.append_many(thread.id, rows)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=threads())
def test_store_and_policy_choose_the_same_window(
    store: Store, case: tuple[list[dict[str, Any]], list[str], int]
) -> None:
    convo, statuses, budget = case
    thread, stored = _stored(store, convo, statuses)
    from_store = chosen = store.window(thread.id, budget)
    whole, full_budget = stored, budget

    # 1. the store's read + select equals the rule applied to the whole thread in memory:
    #    the leading system rows first, then the rule over the rest with what budget is left
    lead = 0
    while lead < len(stored) and stored[lead].message.role in ("system", "developer"):
        lead += 1
    prefix, stored = stored[:lead], stored[lead:]
    assert list(from_store[:lead]) == prefix
    from_store = from_store[lead:]
    budget -= sum(m.tokens for m in prefix)
    tail = Tail(max(0, budget), recount=store.counter.count_message)
    for entry in reversed(stored):
        if not tail.take(entry):
            older = stored[: entry.seq - 1 - lead]
            if tail.needs_anchor and any(e.message.role == "user" for e in older):
                tail.anchor_exists()
                assert tail.take(entry)
                continue
            break
    in_memory = select(
        tail.entries, max(0, budget), recount=store.counter.count_message, over_budget="keep"
    )
    assert [m.seq for m in from_store] == [e.seq for e in in_memory.kept]
    assert [m.message for m in from_store] == [e.message for e in in_memory.kept]

    # 2. ... and equals what a policy fits from the whole thread (its budget: the same history
    #    room plus the reply priming it accounts for; the leading rows are its prefix too)
    has_user = any(m["role"] == "user" for m in convo)
    policy = TrimOldest(MODEL, max_prompt_tokens=full_budget + 3)
    try:
        window = policy.fit(whole)
    except ContextOverflowError:
        # only when the prefix and the newest turn are over budget: the store still hands
        # them over
        assert sum(m.tokens for m in chosen) > full_budget
    else:
        assert list(window.messages) == [m.message for m in chosen]
        assert window.prompt_tokens == 3 + sum(m.tokens for m in chosen)
        assert window.prompt_tokens <= full_budget + 3
        # 3. ... and fitting the store's window (handed to select without a walk) gives the
        #    same window as fitting the whole thread, and as fitting a plain copy of it
        assert type(chosen) is Chosen
        for rows in (chosen, list(chosen)):
            again = policy.fit(rows)
            assert again.messages == window.messages
            assert again.prompt_tokens == window.prompt_tokens
            assert again.first_seq == window.first_seq
    assert_api_accepts([m.message for m in from_store], has_user=has_user)
    # incomplete rows never carry a call into a window
    incomplete = {s.seq for s in stored if s.status == "incomplete"}
    assert not any(m.message.tool_calls for m in from_store if m.seq in incomplete)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=threads(),
    prompt=st.integers(120, 2_500),
    cap=st.integers(64, 500),
    batches=st.integers(1, 3),
    covered=st.none() | st.integers(0, 40),
)
def test_summarize_folds_the_same_turns_from_the_store_window_as_from_the_thread(
    store: Store,
    case: tuple[list[dict[str, Any]], list[str], int],
    prompt: int,
    cap: int,
    batches: int,
    covered: int | None,
) -> None:
    # What a turn summarizes must not depend on whether the policy was handed the whole
    # thread or the store's window for its read plan: unanswered calls, orphaned results and
    # incomplete rows cost in the plan what the window rule keeps of them.
    convo, statuses, _ = case
    thread, stored = _stored(store, convo, statuses)

    def summarizer(request: Any) -> str:  # its answer depends on every message it is given
        return f"{len(request.messages)} messages: " + " | ".join(
            f"{m.role}:{m.text[:10]}:{len(m.tool_calls or ())}" for m in request.messages
        )

    policy = Summarize(
        MODEL,
        summarizer=summarizer,
        max_prompt_tokens=prompt,
        max_summary_tokens=40,
        max_summarizer_input_tokens=cap,
        max_batches_per_turn=batches,
    )
    summary = (
        None
        if covered is None
        else Summary(text="Earlier: the user said hello.", covers_through_seq=covered)
    )
    rows = store.window(thread.id, policy.read_plan(summary=summary))
    outcomes: list[Any] = []
    for history in (stored, rows):
        try:
            w = policy.fit(history, summary=summary)
        except ContextOverflowError:
            outcomes.append("over budget")
            continue
        new = w.summary
        outcomes.append(
            (
                w.summarized,
                w.messages,
                w.prompt_tokens,
                None if new is None else (new.text, new.covers_through_seq),
            )
        )
    assert outcomes[0] == outcomes[1]


def test_summarize_reports_the_orphans_and_unanswered_calls_it_left_out_as_trimming_does() -> None:
    from convkit.messages import ToolCall

    history = [
        Message.user("look it up"),
        Message.assistant(tool_calls=[ToolCall(id="c1", name="lookup", arguments="{}")]),
        Message.tool("late", tool_call_id="zz"),
        Message.assistant("sorry, it failed"),
        Message.user("ok, thanks"),
    ]
    trimmed = TrimOldest(MODEL, max_prompt_tokens=2_000).fit(history)
    summarized = Summarize(MODEL, summarizer=lambda r: "s", max_prompt_tokens=2_000).fit(history)
    assert trimmed.dropped == (2, 3)
    assert summarized.dropped == trimmed.dropped
    assert summarized.messages == trimmed.messages


def _counted(convo: list[dict[str, Any]], statuses: list[str], counter: Any) -> list[Counted]:
    return [
        Counted(
            message=Message.from_openai(m), tokens=counter.count_message(m), seq=i + 1, status=s
        )
        for i, (m, s) in enumerate(zip(convo, statuses, strict=True))
    ]


@settings(max_examples=200)
@given(case=threads())
def test_select_is_idempotent_and_within_budget(
    case: tuple[list[dict[str, Any]], list[str], int],
) -> None:
    convo, statuses, budget = case
    counter = TrimOldest(MODEL).counter
    history = _counted(convo, statuses, counter)
    first = select(history, budget, recount=counter.count_message, over_budget="keep")
    again = select(list(first.kept), budget, recount=counter.count_message, over_budget="keep")
    assert again.kept == first.kept  # a window is already a window
    assert again.dropped == ()
    kept_seqs = {e.seq for e in first.kept}
    assert kept_seqs.isdisjoint(first.dropped)
    assert kept_seqs | set(first.dropped) == {e.seq for e in history}
    if first.tokens > budget:  # only the newest turn may exceed it
        last_user = max(e.seq for e in history if e.message.role == "user")
        assert min(kept_seqs) == last_user
    assert_api_accepts(
        [e.message for e in first.kept], has_user=any(m["role"] == "user" for m in convo)
    )


def test_the_window_says_when_its_count_is_an_estimate() -> None:
    from convkit import TrimOldest
    from convkit.messages import ToolCall

    plain = [Message.user("hello"), Message.assistant("hi")]
    assert TrimOldest(MODEL).fit(plain).exact
    with_tools = [
        Message.user("weather?"),
        Message.assistant(tool_calls=[ToolCall(id="c1", name="weather", arguments="{}")]),
        Message.tool("sunny", tool_call_id="c1"),
    ]
    assert not TrimOldest(MODEL).fit(with_tools).exact  # tool-call history is estimated
    from convkit.messages import ImagePart, TextPart

    class Text(str):
        pass

    # Text in any form counts exactly: a str subclass, text parts; an image does not.
    no_content = Message.assistant(refusal="no")
    assert TrimOldest(MODEL).fit([Message.user(Text("hello")), no_content]).exact
    parts = (TextPart(text="look"), TextPart(text="here"))
    assert TrimOldest(MODEL).fit([Message.system(Text("sys")), Message.user(parts)]).exact
    image = (TextPart(text="look"), ImagePart(url="https://example.com/a.png"))
    assert not TrimOldest(MODEL).fit([Message.user(image)]).exact
    import convkit.models

    convkit.models.register("convkit-test-estimated", context_window=8_000, max_output_tokens=500)
    assert not TrimOldest("convkit-test-estimated").fit(plain).exact


@settings(max_examples=200)
@given(case=threads(), other=st.integers(0, 3000))
def test_select_keeps_an_earlier_choice_as_splitting_it_again_would(
    case: tuple[list[dict[str, Any]], list[str], int], other: int
) -> None:
    # ``selected`` (a store's window handed to a policy) skips splitting into units only when
    # all of it fits; it must choose what the full rule chooses, for any budget, from the whole
    # choice or from any of its user messages on (a summary's coverage cuts a window there).
    convo, statuses, budget = case
    counter = TrimOldest(MODEL).counter
    history = [
        e
        for e in _counted(convo, statuses, counter)
        if e.message.role not in ("system", "developer")
    ]
    first = list(select(history, budget, recount=counter.count_message, over_budget="keep").kept)
    starts = [0, *(k for k, e in enumerate(first) if e.message.role == "user")]
    for k in starts:
        part = first[k:]
        for b in (other, budget, sum(e.tokens for e in part), sum(e.tokens for e in part) - 1):
            for prefix in (0, 7):
                full = select(
                    part, b, prefix_tokens=prefix, recount=counter.count_message, over_budget="keep"
                )
                fast = select(
                    part,
                    b,
                    prefix_tokens=prefix,
                    recount=counter.count_message,
                    over_budget="keep",
                    selected=True,
                )
                assert fast == full


@settings(max_examples=300)
@given(
    case=threads(),
    more=st.lists(
        st.tuples(st.sampled_from(["user", "assistant"]), st.integers(0, 400)), max_size=6
    ),
    budget=st.integers(0, 3000),
)
def test_choosing_on_top_of_an_earlier_choice_is_choosing_again(
    case: tuple[list[dict[str, Any]], list[str], int],
    more: list[tuple[str, int]],
    budget: int,
) -> None:
    # choose_on_top (a store's next window from its last one) keeps what choose keeps over
    # the same units, whatever the budget: smaller, equal or larger than the first one.
    convo, statuses, first_budget = case
    counter = TrimOldest(MODEL).counter
    history = _counted(convo, statuses, counter)
    units, left_out = units_of(history, counter.count_message)
    _, first = choose(units, left_out, first_budget, over_budget="keep")
    seq = len(history)
    new = []
    for role, tokens in more:
        seq += 1
        entry = Counted(message=Message(role=role, content="x"), tokens=tokens, seq=seq)
        new.append(Unit((entry,), tokens, role == "user"))
    both = [*first.units, *new]
    # the drawn budget, and every suffix's exact sum and one less (where the walks turn)
    suffixes = [sum(u.tokens for u in both[k:]) for k in range(len(both))]
    for b in {budget, *suffixes, *(max(0, t - 1) for t in suffixes)}:
        want, want_picked = choose(both, [], b, over_budget="keep")
        got = choose_on_top(first, new, b)
        assert got.units == want_picked.units, b
        assert got.entries == want.kept
        assert got.tokens == want.tokens
        assert got == want_picked  # and it goes on from there the same way
