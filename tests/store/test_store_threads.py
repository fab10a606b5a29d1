"""Threads: create, read, list (pages, order, metadata filters), update, delete."""

from __future__ import annotations

import pytest

from convkit import ThreadNotFoundError
from convkit.context import Summary
from convkit.store import Store, StoreValueError


def test_create_and_get(store: Store) -> None:
    thread = store.create_thread(title="Support #42", metadata={"customer": "acme", "n": 3})
    assert len(thread.id) == 32
    assert thread.last_seq == 0
    assert thread.message_count == 0
    assert thread.created_at.tzinfo is not None
    got = store.get_thread(thread.id)
    assert got == thread
    assert dict(got.metadata) == {"customer": "acme", "n": 3}


def test_create_with_id_and_duplicate(store: Store) -> None:
    store.create_thread(thread_id="ticket-42")
    with pytest.raises(StoreValueError, match="already exists"):
        store.create_thread(thread_id="ticket-42")
    assert len(store.list_threads()) == 1
    with pytest.raises(StoreValueError, match="thread id"):
        store.create_thread(thread_id="has space")


def test_unknown_thread_everywhere(store: Store) -> None:
    for call in (
        lambda: store.get_thread("nope"),
        lambda: store.update_thread("nope", title="x"),
        lambda: store.delete_thread("nope"),
        lambda: store.append("nope", {"role": "user", "content": "hi"}),
        lambda: store.append_many("nope", [{"role": "user", "content": "hi"}]),
        lambda: store.append_many("nope", []),
        lambda: store.messages("nope"),
        lambda: store.window("nope", 100),
        lambda: store.fork("nope"),
        lambda: store.put_summary("nope", Summary(covers_through_seq=1, text="s")),
        lambda: store.get_summary("nope"),
    ):
        with pytest.raises(ThreadNotFoundError) as info:
            call()
        assert info.value.thread_id == "nope"
        assert isinstance(info.value, KeyError)
    assert len(store.list_threads()) == 0


def test_update_thread(store: Store) -> None:
    thread = store.create_thread(title="old", metadata={"a": 1})
    updated = store.update_thread(thread.id, title="new")
    assert updated.title == "new"
    assert dict(updated.metadata) == {"a": 1}
    assert updated.updated_at >= thread.updated_at
    cleared = store.update_thread(thread.id, title=None, metadata={"b": [1, 2]})
    assert cleared.title is None
    assert dict(cleared.metadata) == {"b": [1, 2]}
    assert store.get_thread(thread.id) == cleared


def test_list_threads_pages_newest_first(store: Store) -> None:
    ids = [store.create_thread(title=str(i)).id for i in range(7)]
    seen: list[str] = []
    page = store.list_threads(limit=3)
    pages = 1
    seen.extend(t.id for t in page)
    while page.next_cursor:
        page = store.list_threads(limit=3, cursor=page.next_cursor)
        seen.extend(t.id for t in page)
        pages += 1
    assert pages == 3
    assert seen == ids[::-1]


def test_list_threads_by_update_time(store: Store) -> None:
    a = store.create_thread(title="a")
    b = store.create_thread(title="b")
    store.append(a.id, {"role": "user", "content": "bump"})
    assert [t.id for t in store.list_threads(order="updated")] == [a.id, b.id]
    assert [t.id for t in store.list_threads(order="created")] == [b.id, a.id]
    cursor = store.list_threads(order="updated", limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(StoreValueError, match="cursor"):
        store.list_threads(order="created", cursor=cursor)
    with pytest.raises(StoreValueError, match="cursor"):
        store.list_threads(cursor="garbage!")


def test_list_threads_metadata_filter(store: Store) -> None:
    t1 = store.create_thread(metadata={"team": "red", "n": 1, "vip": True, "note": None})
    t2 = store.create_thread(metadata={"team": "blue", "n": 2, "vip": False})
    t3 = store.create_thread(metadata={"team": "red", "n": 2.0, "nested": {"team": "blue"}})

    def ids(**wanted: object) -> set[str]:
        return {t.id for t in store.list_threads(metadata=wanted)}

    assert ids(team="red") == {t1.id, t3.id}
    assert ids(team="red", n=2) == {t3.id}
    assert ids(n=2) == {t2.id, t3.id}  # numbers compare as numbers
    assert ids(vip=True) == {t1.id}
    assert ids(vip=False) == {t2.id}
    assert ids(note=None) == {t1.id}
    assert ids(team="green") == set()
    assert ids(missing="x") == set()
    assert ids(n="1") == set()  # a string is not the number 1
    with pytest.raises(StoreValueError, match="top-level"):
        store.list_threads(metadata={"nested": {"team": "blue"}})


def test_delete_thread_takes_messages_and_summaries(store: Store) -> None:
    keep = store.create_thread()
    gone = store.create_thread()
    for t in (keep, gone):
        store.append_many(
            t.id, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        )
        store.put_summary(t.id, Summary(covers_through_seq=2, text="summary"))
    store.delete_thread(gone.id)
    with pytest.raises(ThreadNotFoundError):
        store.get_thread(gone.id)
    assert [t.id for t in store.list_threads()] == [keep.id]
    assert len(store.messages(keep.id)) == 2
    assert store.get_summary(keep.id) is not None
    # no rows of the deleted thread are left behind
    from sqlalchemy import text

    with store.engine.connect() as conn:
        for table in ("convkit_messages", "convkit_summaries"):
            n = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE thread_id = :t"), {"t": gone.id}
            ).scalar_one()
            assert n == 0


def test_repr_and_values_are_frozen(store: Store) -> None:
    thread = store.create_thread(metadata={"a": 1})
    with pytest.raises(AttributeError):
        thread.title = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        thread.metadata["a"] = 2  # type: ignore[index]
    assert repr(store).startswith("Store(")
