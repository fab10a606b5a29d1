"""fork(): shared history without copies, nested lineage, summaries, deleting a parent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from convkit import Message
from convkit.context import Summary, counting_key
from convkit.store import Store, StoreValueError


def texts(store: Store, thread_id: str, **kw: Any) -> list[str]:
    return [m.message.text for m in store.messages(thread_id, **kw)]


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM convkit_messages")).scalar_one())


def test_fork_shares_history_without_copying(store: Store) -> None:
    parent = store.create_thread(title="p", metadata={"k": "v"})
    store.append_many(parent.id, [Message.user(f"p{i}") for i in range(1, 6)])
    rows = _rows(store)
    child = store.fork(parent.id, at_seq=3)
    assert _rows(store) == rows  # nothing copied
    assert (child.parent_id, child.fork_seq, child.last_seq) == (parent.id, 3, 3)
    assert child.title == "p"
    assert dict(child.metadata) == {"k": "v"}
    assert texts(store, child.id) == ["p1", "p2", "p3"]
    appended = store.append(child.id, Message.user("c4"))
    assert appended.seq == 4
    store.append(parent.id, Message.user("p6"))
    assert texts(store, child.id) == ["p1", "p2", "p3", "c4"]
    assert texts(store, parent.id) == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert [m.thread_id for m in store.messages(child.id)] == [child.id] * 4
    assert texts(store, child.id, last=2) == ["p3", "c4"]
    assert texts(store, child.id, after_seq=2) == ["p3", "c4"]
    assert texts(store, child.id, after_seq=1, limit=2) == ["p2", "p3"]
    assert [m.seq for m in store.window(child.id, 10_000)] == [1, 2, 3, 4]


def test_fork_defaults_and_bounds(store: Store) -> None:
    parent = store.create_thread(title="p")
    store.append_many(parent.id, [Message.user("a"), Message.user("b")])
    whole = store.fork(parent.id, title="mine", metadata={"x": 1})
    assert whole.fork_seq == 2 and whole.title == "mine" and dict(whole.metadata) == {"x": 1}
    empty = store.fork(parent.id, at_seq=0)
    assert texts(store, empty.id) == []
    assert store.append(empty.id, Message.user("fresh")).seq == 1
    with pytest.raises(StoreValueError, match="cannot fork at seq 3"):
        store.fork(parent.id, at_seq=3)


def test_nested_forks(store: Store) -> None:
    a = store.create_thread()
    store.append_many(a.id, [Message.user(f"a{i}") for i in range(1, 7)])
    b = store.fork(a.id, at_seq=4)
    store.append_many(b.id, [Message.user("b5"), Message.user("b6")])
    c = store.fork(b.id, at_seq=5)
    store.append(c.id, Message.user("c6"))
    d = store.fork(c.id, at_seq=2)  # earlier than every fork point above it
    store.append(d.id, Message.user("d3"))
    assert texts(store, c.id) == ["a1", "a2", "a3", "a4", "b5", "c6"]
    assert texts(store, d.id) == ["a1", "a2", "d3"]
    assert texts(store, c.id, last=3) == ["a4", "b5", "c6"]
    assert [m.seq for m in store.window(c.id, 10_000)] == [1, 2, 3, 4, 5, 6]


def test_summaries_follow_lineage(store: Store) -> None:
    parent = store.create_thread()
    store.append_many(parent.id, [Message.user(str(i)) for i in range(10)])
    store.put_summary(parent.id, Summary(covers_through_seq=4, text="first four", model="m"))
    store.put_summary(parent.id, Summary(covers_through_seq=8, text="first eight"))
    child = store.fork(parent.id, at_seq=6)
    s = store.get_summary(child.id)
    assert s is not None and s.text == "first four" and s.thread_id == child.id
    store.append(child.id, Message.user("7"))
    store.put_summary(child.id, Summary(covers_through_seq=7, text="child seven"))
    got = store.get_summary(child.id)
    assert got is not None and got.text == "child seven"
    assert [x.text for x in store.list_summaries(child.id)] == ["first four", "child seven"]
    parent_summary = store.get_summary(parent.id)
    assert parent_summary is not None and parent_summary.text == "first eight"


def test_summary_put_and_get(store: Store, counter: Any) -> None:
    thread = store.create_thread()
    assert store.get_summary(thread.id) is None
    store.append_many(thread.id, [Message.user("a"), Message.user("b")])
    s1 = store.put_summary(thread.id, Summary(covers_through_seq=1, text="about a", model="gpt-4o-mini"))
    # one rendering of a summary into a message, one count, stored with its counting rules
    assert s1.tokens == counter.count_message(s1.as_message())
    assert s1.as_message().content == "Summary of the earlier conversation:\nabout a"
    assert s1.counted_with == counting_key(counter)
    s2 = store.put_summary(thread.id, Summary(covers_through_seq=2, text="about a and b", tokens=5))
    assert store.get_summary(thread.id) == s2
    assert store.list_summaries(thread.id) == [s1, s2]


def test_deleting_a_parent_keeps_its_forks_whole(store: Store) -> None:
    a = store.create_thread()
    store.append_many(a.id, [Message.user(f"a{i}") for i in range(1, 6)])
    store.put_summary(a.id, Summary(covers_through_seq=2, text="a up to 2"))
    b = store.fork(a.id, at_seq=3)
    store.append_many(b.id, [Message.user("b4"), Message.user("b5")])
    store.put_summary(b.id, Summary(covers_through_seq=4, text="b up to 4"))
    c = store.fork(b.id, at_seq=5)
    store.append(c.id, Message.user("c6"))
    d = store.fork(b.id, at_seq=2)
    before = {t: texts(store, t) for t in (b.id, c.id, d.id)}
    summaries_before = {t: store.get_summary(t) for t in (b.id, c.id)}

    store.delete_thread(b.id)  # middle of the lineage
    assert texts(store, c.id) == before[c.id] == ["a1", "a2", "a3", "b4", "b5", "c6"]
    assert texts(store, d.id) == before[d.id] == ["a1", "a2"]
    c_now = store.get_thread(c.id)
    assert (c_now.parent_id, c_now.fork_seq, c_now.last_seq) == (a.id, 3, 6)
    c_sum = store.get_summary(c.id)
    b_sum = summaries_before[c.id]
    assert c_sum is not None and b_sum is not None and c_sum.text == b_sum.text == "b up to 4"

    store.delete_thread(a.id)  # the root
    assert texts(store, c.id) == before[c.id]
    assert texts(store, d.id) == before[d.id]
    assert store.get_thread(c.id).parent_id is None
    assert store.append(c.id, Message.user("c7")).seq == 7
    assert [s.text for s in store.list_summaries(c.id)] == ["a up to 2", "b up to 4"]
