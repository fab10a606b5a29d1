"""window(): the newest user turn always, then older units while they fit; tool groups whole."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import event

from convkit import Message, ToolCall, TrimOldest
from convkit.context._groups import Tail, select
from convkit.store import NewMessage, Store, StoredMessage
from tests.store.test_store_recent import _spy

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def sm(seq: int, message: Message, tokens: int = 10, status: str = "complete") -> StoredMessage:
    return StoredMessage(
        thread_id="t",
        seq=seq,
        message=message,
        tokens=tokens,
        encoding="e",
        status=status,
        created_at=NOW,  # type: ignore[arg-type]
    )


def call(*ids: str) -> Message:
    return Message.assistant(tool_calls=[ToolCall(id=i, name="f", arguments="{}") for i in ids])


def result(call_id: str) -> Message:
    return Message.tool("ok", tool_call_id=call_id)


def _is_anchor(m: StoredMessage, include_incomplete: bool) -> bool:
    return m.message.role == "user" and (include_incomplete or m.status == "complete")


def fit(history: list[StoredMessage], budget: int, **kw: Any) -> list[int]:
    """Read and select the way the store does, answering the question about older users."""
    include_incomplete = kw.get("include_incomplete", True)
    tail = Tail(budget, include_incomplete=include_incomplete)
    newest_first = history[::-1]
    for i, m in enumerate(newest_first):
        if tail.take(m):
            continue
        if tail.needs_anchor and any(
            _is_anchor(o, include_incomplete) for o in newest_first[i + 1 :]
        ):
            tail.anchor_exists()
            assert tail.take(m)
            continue
        break
    chosen = select(tail.entries, budget, include_incomplete=include_incomplete, over_budget="keep")
    return [m.seq for m in chosen.kept]


def test_keeps_newest_that_fit_and_starts_on_user() -> None:
    h = [sm(i, Message.user(str(i)) if i % 2 else Message.assistant(str(i))) for i in range(1, 11)]
    assert fit(h, 100) == list(range(1, 11))
    assert fit(h, 40) == [7, 8, 9, 10]
    assert fit(h, 49) == [7, 8, 9, 10]  # 6 would fit but is an assistant turn: dropped
    assert fit(h, 5) == [9, 10]  # the newest user turn, over budget


def test_stops_at_first_unit_that_does_not_fit() -> None:
    h = [sm(1, Message.user("a"), 1), sm(2, Message.user("big"), 100), sm(3, Message.user("c"), 10)]
    # seq 1 would fit on its own, but the walk stops at seq 2: no holes in a window
    assert fit(h, 15) == [3]
    assert fit(h, 105) == [3]
    assert fit(h, 111) == [1, 2, 3]


def test_tool_group_is_whole_or_absent() -> None:
    h = [
        sm(1, Message.user("q")),
        sm(2, call("a", "b"), 10),
        sm(3, result("a"), 10),
        sm(4, result("b"), 10),
        sm(5, Message.assistant("answer")),
        sm(6, Message.user("next")),
    ]
    assert fit(h, 60) == [1, 2, 3, 4, 5, 6]
    # 50 holds 6, 5 and the 30-token group but not 1: the window must start on a user turn,
    # so the group (an assistant turn) is dropped from the front as well
    assert fit(h, 50) == [6]
    assert fit(h, 25) == [6]
    # when the newest turn is the group's turn, it is kept whole, however small the budget
    assert fit(h[:5], 25) == [1, 2, 3, 4, 5]
    assert fit(h[:5], 0) == [1, 2, 3, 4, 5]


def test_incomplete_group_and_orphans_are_left_out() -> None:
    h = [
        sm(1, Message.user("q1")),
        sm(2, call("a", "b")),
        sm(3, result("a")),  # b never answered
        sm(4, Message.user("q2")),
        sm(5, result("zzz")),  # orphan: no call before it
        sm(6, Message.assistant("answer")),
        sm(7, call("c")),  # newest call still waiting for its result
    ]
    # the answered call stays (call b removed from its message), the orphan and the waiting
    # call (no text, nothing answered) go
    assert fit(h, 1000) == [1, 2, 3, 4, 6]


def test_incomplete_messages() -> None:
    h = [sm(1, Message.user("q")), sm(2, Message.assistant("half an ans"), status="incomplete")]
    assert fit(h, 100) == [1, 2]
    assert fit(h, 100, include_incomplete=False) == [1]
    streamed_call = [
        sm(1, Message.user("q")),
        sm(2, call("a"), status="incomplete"),
        sm(3, result("a")),
    ]
    assert fit(streamed_call, 100) == [1]


def test_legacy_function_call_pairs() -> None:
    fc = Message.from_openai(
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    )
    h = [
        sm(1, Message.user("q")),
        sm(2, fc),
        sm(3, Message.from_openai({"role": "function", "name": "f", "content": "1"})),
    ]
    assert fit(h, 100) == [1, 2, 3]
    assert fit(h[:2], 100) == [1]


def _history(store: Store, thread_id: str, n: int) -> None:
    batch: list[NewMessage] = []
    for i in range(1, n + 1):
        if i % 4 == 1:
            m: Message = Message.user(f"question {i}")
        elif i % 4 == 2:
            m = call(f"c{i}")
        elif i % 4 == 3:
            m = result(f"c{i - 1}")
        else:
            m = Message.assistant(f"answer {i}")
        batch.append(NewMessage(message=m, tokens=10))
    store.append_many(thread_id, batch)


def test_store_window_matches_the_builder(store: Store) -> None:
    thread = store.create_thread()
    _history(store, thread.id, 40)
    everything = store.messages(thread.id)
    newest_turn = 40  # seq 37-40: user, call, result, answer; 10 tokens each
    for budget in (0, 9, 10, 35, 40, 45, 100, 399, 400, 10_000):
        got = [m.seq for m in store.window(thread.id, budget)]
        assert got == fit(everything, budget), budget
        assert got[-4:] == [37, 38, 39, 40]
        assert sum(m.tokens for m in store.window(thread.id, budget)) <= max(budget, newest_turn)
        assert everything[got[0] - 1].message.role == "user"


def _bounded_newest_first(statement: str) -> bool:
    # A page is a seq range (no LIMIT for a planner to misjudge); a point lookup has LIMIT 1.
    # The one oldest-first read is the thread's first rows, looking for its system prompt.
    if "ORDER BY convkit_messages.seq DESC" not in statement:
        return _leading_read(statement)
    return "convkit_messages.seq >" in statement or "LIMIT" in statement


def _leading_read(statement: str) -> bool:
    return (
        "ORDER BY convkit_messages.seq" in statement
        and "DESC" not in statement
        and "convkit_messages.seq >" in statement
        and "convkit_messages.seq <=" in statement
    )


def test_window_reads_a_bounded_number_of_rows(store: Store) -> None:
    thread = store.create_thread()
    _history(store, thread.id, 3000)
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM convkit_messages" in statement:
            statements.append(statement)

    window = store.window(thread.id, 500)
    assert 40 <= len(window) <= 50
    assert statements, "window() must read messages"
    assert all(_bounded_newest_first(s) for s in statements)
    assert _leading_read(statements[0])  # the first rows: is there a system prompt?
    assert len(statements) <= 3  # then 64 rows, then 128: never the 3000
    statements.clear()
    messages_reads: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record_all(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        messages_reads.append(statement)

    last = store.messages(thread.id, last=50)
    assert [m.seq for m in last] == list(range(2951, 3001))
    (read,) = [s for s in messages_reads if "convkit_messages" in s]  # one statement
    assert "LIMIT" not in read and "convkit_messages.seq >" in read  # a seq range: 50 rows


def test_window_recounts_rows_counted_with_another_encoding(store_url: Any) -> None:
    from convkit.tokens import TokenCounter

    with Store(store_url, model="gpt-4") as old:  # cl100k_base
        thread = old.create_thread()
        stored = old.append(thread.id, Message.user("héllo wörld " * 20))
        assert stored.encoding == "cl100k_base"
    with Store(store_url, model="gpt-4o") as new:  # o200k_base
        (w,) = new.window(thread.id, 10_000)
        assert w.encoding == "o200k_base"
        assert w.tokens == TokenCounter("gpt-4o").count_message(stored.message)
        # the row itself keeps what was counted at append
        assert new.messages(thread.id)[0].encoding == "cl100k_base"


def test_a_policy_counting_otherwise_recounts_the_store_window(store_url: Any) -> None:
    # The window carries the store's counting key: a policy under the same key takes its
    # rows as they are, one under another key (same encoding, other per-message overheads)
    # counts each row again, so its count is its own either way.
    from convkit.context import counting_key

    with Store(store_url, model="gpt-4") as store:  # cl100k_base, 3 tokens a message
        thread = store.create_thread()
        store.append_many(thread.id, [Message.user("hi there"), Message.assistant("hello")])
        window = store.window(thread.id, 10_000)
        assert window.counted_with == counting_key(store.counter)  # type: ignore[attr-defined]
        for model in ("gpt-4", "gpt-3.5-turbo-0301"):  # 3, then 4 tokens a message
            policy = TrimOldest(model)
            fitted = policy.fit(window)
            want = policy.counter.info.reply_priming + sum(
                policy.counter.count_message(m.message) for m in window
            )
            assert fitted.prompt_tokens == want
            assert fitted.prompt_tokens == policy.fit([m.message for m in window]).prompt_tokens


def test_a_system_row_from_later_in_the_thread_is_history_even_first(store: Store) -> None:
    # No user message: the window starts at the developer row (the call before it has no
    # result and is left out). That row is history, not the thread's prefix, as it is when
    # the whole thread is fitted.
    thread = store.create_thread()
    rows = store.append_many(
        thread.id, [call("c1"), Message.developer("Answer in French."), Message.assistant("Oui.")]
    )
    window = store.window(thread.id, 1000)
    assert [m.seq for m in window] == [2, 3]
    policy = TrimOldest("gpt-4o", max_prompt_tokens=1000)
    whole = policy.fit(rows)
    fitted = policy.fit(window)
    assert fitted.messages == whole.messages
    assert fitted.first_seq == whole.first_seq == 2
    assert fitted.prompt_tokens == whole.prompt_tokens


def test_a_window_edited_by_its_caller_is_fitted_as_any_history(store: Store) -> None:
    # The window is trusted as the store's choice only while it is as the store made it: an
    # entry added, removed or replaced makes it a history like any other.
    thread = store.create_thread()
    store.append_many(
        thread.id,
        [
            Message.user("what is six times seven?"),
            call("c1"),
            result("c1"),
            Message.assistant("it is 42"),
        ],
    )
    for model in ("gpt-4o", "gpt-3.5-turbo-0301"):  # counting as the store does, and not
        policy = TrimOldest(model, max_prompt_tokens=1000)

        def edited(edit: Any, policy: TrimOldest = policy) -> list[Any]:
            window = store.window(thread.id, policy.read_plan())
            edit(window)
            return window

        cases = [
            edited(lambda w: w.append(Message.user("and times eight?"))),
            edited(lambda w: w.append({"role": "user", "content": "and times eight?"})),
            edited(lambda w: w.__delitem__(2)),  # the call's result removed
            edited(lambda w: w.__setitem__(slice(None), [m for m in w if m.message.role != "tool"])),
            edited(lambda w: w.append(call("c9"))),  # a call with no result at the end
        ]
        for window in cases:
            got = policy.fit(window)
            assert got.messages == policy.fit(list(window)).messages
            roles = [m.role for m in got.messages]
            assert "tool" not in roles or roles.index("tool") > 0
            assert not any(
                m.tool_calls and (i + 1 == len(got.messages) or got.messages[i + 1].role != "tool")
                for i, m in enumerate(got.messages)
            )


@pytest.mark.parametrize("budget", [0, 1])
def test_tiny_budget_still_gives_the_newest_user_turn(store: Store, budget: int) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.assistant("welcome"))
    store.append(thread.id, Message.user("hello there"))
    window = store.window(thread.id, budget)
    assert [(m.seq, m.role) for m in window] == [(2, "user")]
    assert window[0].tokens > budget


def test_incomplete_user_message_is_not_the_anchor_when_excluded() -> None:
    h = [
        sm(1, Message.user("q1")),
        sm(2, Message.assistant("a")),
        sm(3, Message.user("q2, cut short"), 50, status="incomplete"),
    ]
    assert fit(h, 5) == [3]
    assert fit(h, 5, include_incomplete=False) == [1, 2]


def test_without_any_user_message_only_what_fits() -> None:
    h = [
        sm(1, Message.system("s")),
        sm(2, Message.assistant("a")),
        sm(3, Message.assistant("b"), 30),
    ]
    assert fit(h, 100) == [1, 2, 3]
    # nothing is mandatory: 3 fits, 2 does not, and a window never starts on an assistant
    assert fit(h, 35) == []
    assert fit(h, 5) == []
    tail = Tail(5)
    assert tail.take(h[2]) is False
    assert tail.needs_anchor
    assert select(tail.entries, 5, over_budget="keep").kept == ()


def _seqs(window: list[StoredMessage]) -> list[int]:
    return [m.seq for m in window]


def test_newest_turn_over_budget_is_kept_whole(store: Store) -> None:
    # The review's repro: the newest user message alone exceeds the budget.
    thread = store.create_thread()
    store.append(thread.id, Message.user("hi"))
    store.append(thread.id, Message.assistant("hello"))
    store.append(thread.id, Message.user("word " * 9000))
    window = store.window(thread.id, 8000)
    assert [(m.seq, m.role) for m in window] == [(3, "user")]
    assert window[0].tokens > 8000
    # a user message that fits, followed by a tool group that does not: the turn stays whole
    other = store.create_thread()
    store.append_many(
        other.id,
        [
            NewMessage(message=Message.user("old"), tokens=10),
            NewMessage(message=Message.assistant("old answer"), tokens=10),
            NewMessage(message=Message.user("new"), tokens=10),
            NewMessage(message=call("a"), tokens=10),
            NewMessage(message=result("a"), tokens=500),
            NewMessage(message=Message.assistant("done"), tokens=10),
            NewMessage(message=call("b"), tokens=10),  # still running: left out
        ],
    )
    assert _seqs(store.window(other.id, 100)) == [3, 4, 5, 6]
    assert _seqs(store.window(other.id, 549)) == [3, 4, 5, 6]
    assert _seqs(store.window(other.id, 550)) == [1, 2, 3, 4, 5, 6]


def test_thread_without_user_message_keeps_what_fits(store: Store) -> None:
    thread = store.create_thread()
    store.append_many(
        thread.id,
        [
            NewMessage(message=Message.system("rules"), tokens=10),
            NewMessage(message=Message.assistant("a"), tokens=10),
            NewMessage(message=Message.assistant("b"), tokens=10),
        ],
    )
    # The leading system row is the prefix, always returned; with no user message, assistant
    # rows cannot start what follows it (as a policy fitting the thread decides).
    for budget in (30, 25, 0):
        assert _seqs(store.window(thread.id, budget)) == [1]
    store.append(thread.id, Message.user("q"), tokens=10)
    assert _seqs(store.window(thread.id, 30)) == [1, 4]


def test_the_leading_system_rows_are_always_in_the_window(store: Store) -> None:
    thread = store.create_thread()
    store.append_many(
        thread.id,
        [
            NewMessage(message=Message.system("rules"), tokens=10),
            NewMessage(message=Message.developer("more rules"), tokens=10),
            *[
                NewMessage(
                    message=Message.user(f"q{i}") if i % 2 == 0 else Message.assistant(f"a{i}"),
                    tokens=10,
                )
                for i in range(3000)
            ],
        ],
    )
    statements = _message_statements(store)
    window = store.window(thread.id, 120)
    assert _seqs(window)[:2] == [1, 2] and len(window) == 12  # 20 for the prefix, 100 after
    assert window[2].message.role == "user" and window[-1].seq == 3002
    assert all(_bounded_newest_first(s) for s in statements)  # never the whole thread
    # A policy fitting the window keeps the same prefix and history as fitting the thread.
    policy = TrimOldest("gpt-4o", max_prompt_tokens=123, counter=store.counter)
    whole = policy.fit(store.messages(thread.id))
    assert policy.fit(window).messages == whole.messages
    assert whole.messages[0].text == "rules" and whole.messages[1].text == "more rules"
    # Covered by a summary or not, they stay: they are the prefix, not history to fold.
    assert _seqs(store.window(thread.id, 120, after_seq=2990))[:2] == [1, 2]


def _message_statements(store: Store) -> list[str]:
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM convkit_messages" in statement:
            statements.append(statement)

    return statements


def test_long_newest_turn_reads_only_the_window(store: Store) -> None:
    thread = store.create_thread()
    batch = [NewMessage(message=Message.user(f"q{i}"), tokens=10) for i in range(500)]
    batch.append(NewMessage(message=Message.user("the question"), tokens=10))  # seq 501
    batch += [NewMessage(message=Message.assistant(f"step {i}"), tokens=10) for i in range(1500)]
    store.append_many(thread.id, batch)
    statements = _message_statements(store)
    window = store.window(thread.id, 100)
    assert _seqs(window) == list(range(501, 2002))
    assert all(_bounded_newest_first(s) for s in statements)
    # the first rows (no system prompt), the first page, the query for the newest user
    # message, one page down to it
    assert len(statements) == 4
    statements.clear()

    # the same window again: what the last one chose is chosen again, no row read
    read = _spy(store)
    assert _seqs(store.window(thread.id, 100)) == list(range(501, 2002))
    assert read == []
    # a store keeping nothing reads only the window and the message right before it
    with Store(store.url, counter=store.counter, keep_rows=0) as fresh:
        read = _spy(fresh)
        assert _seqs(fresh.window(thread.id, 100)) == list(range(501, 2002))
        assert min(read) >= 500
        assert len(read) == len(set(read))


def test_no_user_message_in_a_long_thread_reads_one_page(store: Store) -> None:
    thread = store.create_thread()
    store.append_many(
        thread.id, [NewMessage(message=Message.assistant(str(i)), tokens=10) for i in range(3000)]
    )
    statements = _message_statements(store)
    assert store.window(thread.id, 100) == []
    # the first rows, one page of 64 rows, then the query for a user message
    assert len(statements) == 3
    assert "LIMIT" in statements[2] and "role" in statements[2]


def test_newest_turn_spanning_a_fork(store: Store) -> None:
    parent = store.create_thread()
    store.append_many(
        parent.id,
        [
            NewMessage(message=Message.user("p1"), tokens=10),
            NewMessage(message=Message.assistant("p2"), tokens=10),
            NewMessage(message=Message.user("p3"), tokens=10),
            NewMessage(message=Message.assistant("p4 (not shared)"), tokens=10),
        ],
    )
    child = store.fork(parent.id, at_seq=3)
    store.append_many(
        child.id, [NewMessage(message=Message.assistant(f"c{i}"), tokens=10) for i in range(100)]
    )
    window = store.window(child.id, 50)
    assert _seqs(window) == list(range(3, 104))
    assert window[0].message.text == "p3" and all(m.thread_id == child.id for m in window)
    grandchild = store.fork(child.id)
    store.append(grandchild.id, Message.assistant("g"), tokens=10)
    assert _seqs(store.window(grandchild.id, 0)) == list(range(3, 105))
