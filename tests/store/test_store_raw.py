"""SQLite's fast path (operations on the driver connection) against the SQLAlchemy path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from convkit import StoreError
from convkit.store import NewMessage, Store, StoreValueError, Summary


def _exercise(store: Store) -> list[Any]:
    thread = store.create_thread(title="t", metadata={"k": 1, "f": 1.5, "s": "x"}, thread_id="t1")
    store.append(thread.id, {"role": "user", "content": "hi"}, metadata={"m": [1, 2]})
    store.append_many(
        thread.id,
        [
            NewMessage(message={"role": "assistant", "content": "yo"}, usage={"prompt_tokens": 3}),
            {"role": "user", "content": "again"},
        ],
    )
    child = store.fork(thread.id, 2, metadata={"fork": True})
    store.append(child.id, {"role": "user", "content": "branch"})
    store.put_summary(thread.id, Summary(covers_through_seq=1, text="s"))
    page = store.list_threads(metadata={"k": 1})
    return [
        store.get_thread(thread.id),
        store.messages(thread.id),
        store.messages(child.id, last=2),
        store.messages(thread.id, after_seq=1, limit=1),
        store.window(child.id, 1000),
        [t.id for t in page.threads],
        store.update_thread(thread.id, title="u").title,
        store.get_summary(child.id),
    ]


def test_fast_path_gives_what_sqlalchemy_gives(tmp_path: Path) -> None:
    fast = Store(f"sqlite:///{tmp_path / 'fast.db'}", create_tables=True)
    slow = Store(f"sqlite:///{tmp_path / 'slow.db'}", create_tables=True)
    seen: list[str] = []

    @event.listens_for(slow.engine, "before_cursor_execute")
    def _listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)  # a listener sends every operation through SQLAlchemy

    try:
        assert fast._runner._raw is not None and fast._runner._raw.usable()
        assert not slow._runner._raw.usable()  # type: ignore[union-attr]
        a, b = _exercise(fast), _exercise(slow)
        assert seen
        # the same values, field by field (timestamps differ between the two runs)
        assert [type(x) for x in a] == [type(x) for x in b]
        assert a[1][0].created_at.tzinfo is not None
        for x, y in zip(a[1] + a[2] + a[4], b[1] + b[2] + b[4], strict=True):
            assert (x.seq, x.message, x.tokens, x.encoding, x.status, x.usage, x.metadata) == (
                y.seq,
                y.message,
                y.tokens,
                y.encoding,
                y.status,
                y.usage,
                y.metadata,
            )
            assert x.counted_with == y.counted_with
        assert a[0].metadata == b[0].metadata == {"k": 1, "f": 1.5, "s": "x"}
        assert a[5] == b[5] == ["t1"]
        assert a[6] == b[6] == "u"
        with pytest.raises(StoreValueError, match="already exists"):
            fast.create_thread(thread_id="t1")
    finally:
        fast.close()
        slow.close()


def test_fast_path_driver_errors_are_store_errors(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'x.db'}", create_tables=True) as store:
        thread = store.create_thread()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE convkit_summaries")
        with pytest.raises(StoreError, match="no such table"):
            store.delete_thread(thread.id)
        assert store.get_thread(thread.id).id == thread.id  # rolled back, still usable
