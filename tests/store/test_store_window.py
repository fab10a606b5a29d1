"""window(): newest-first, stops at the budget, tool groups whole, starts on a user turn."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import event

from convkit import Message, ToolCall
from convkit.store import NewMessage, Store, StoredMessage
from convkit.store._window import WindowBuilder

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


def fit(history: list[StoredMessage], budget: int, **kw: Any) -> list[int]:
    builder = WindowBuilder(budget, **kw)
    for m in reversed(history):
        if not builder.feed(m):
            break
    return [m.seq for m in builder.finish()]


def test_keeps_newest_that_fit_and_starts_on_user() -> None:
    h = [sm(i, Message.user(str(i)) if i % 2 else Message.assistant(str(i))) for i in range(1, 11)]
    assert fit(h, 100) == list(range(1, 11))
    assert fit(h, 40) == [7, 8, 9, 10]
    assert fit(h, 49) == [7, 8, 9, 10]  # 6 would fit but is an assistant turn: dropped
    assert fit(h, 5) == []


def test_stops_at_first_unit_that_does_not_fit() -> None:
    h = [sm(1, Message.user("a"), 1), sm(2, Message.user("big"), 100), sm(3, Message.user("c"), 10)]
    # seq 1 would fit on its own, but the walk stops at seq 2: no holes in a window
    assert fit(h, 15) == [3]


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
    assert fit(h, 1000) == [1, 4, 6]


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
    for budget in (0, 9, 10, 35, 40, 45, 100, 399, 400, 10_000):
        got = [m.seq for m in store.window(thread.id, budget)]
        assert got == fit(everything, budget), budget
        assert sum(m.tokens for m in store.window(thread.id, budget)) <= budget
        if got:
            assert everything[got[0] - 1].message.role == "user"


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
    assert all("LIMIT" in s and "ORDER BY convkit_messages.seq DESC" in s for s in statements)
    assert len(statements) <= 2  # 64 rows, then 128: never the 3000
    statements.clear()
    last = store.messages(thread.id, last=50)
    assert [m.seq for m in last] == list(range(2951, 3001))
    assert len(statements) == 1
    assert "LIMIT" in statements[0]


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


@pytest.mark.parametrize("budget", [0, 1])
def test_tiny_budget_gives_empty_window(store: Store, budget: int) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("hello there"))
    assert store.window(thread.id, budget) == []
