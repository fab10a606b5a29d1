"""Kept window rows (convkit.store._recent): the next window fetches only what is new, and is
always exactly the window a store keeping nothing reads, whatever happened to the thread."""

from __future__ import annotations

import io
import random
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from convkit import Message, ToolCall
from convkit.errors import StoreValueError
from convkit.store import AsyncStore, Store, StoredMessage
from convkit.store._engine import run_upgrade
from convkit.tokens import TokenCounter


def _message(rng: random.Random, i: int) -> Message:
    kind = rng.random()
    if kind < 0.35:
        return Message.user(f"question {i} " + "word " * rng.randint(0, 40))
    if kind < 0.45:
        return Message.assistant(tool_calls=[ToolCall(id=f"c{i}", name="look", arguments="{}")])
    if kind < 0.55:
        return Message.tool(f"result {i}", tool_call_id=f"c{i - 1}")
    return Message.assistant(f"answer {i} " + "word " * rng.randint(0, 60))


def turns(prefix: str, n: int) -> list[Message]:
    """``n`` messages, user and assistant in turn."""
    return [
        Message.user(f"{prefix} {i}") if i % 2 == 0 else Message.assistant(f"{prefix} {i}")
        for i in range(n)
    ]


def said(*texts: str) -> list[Message]:
    """User and assistant messages in turn, with these texts."""
    return [Message.user(t) if i % 2 == 0 else Message.assistant(t) for i, t in enumerate(texts)]


def _shape(window: list[StoredMessage]) -> list[tuple[int, int, str, str | None]]:
    return [(m.seq, m.tokens, m.status, m.message.text) for m in window]


def _spy(store: Store | AsyncStore) -> list[int]:
    """The seqs of the rows built from the database from now on (kept rows are not)."""
    built: list[int] = []
    original = store._base._recount

    def recount(stored: StoredMessage) -> StoredMessage:
        built.append(stored.seq)
        return original(stored)

    store._base._recount = recount  # type: ignore[method-assign]
    return built


def test_the_next_window_builds_only_the_new_rows(store_url: URL, counter: TokenCounter) -> None:
    with Store(store_url, counter=counter) as store:
        tid = store.create_thread().id
        store.append_many(tid, turns("message", 2000))
        first = store.window(tid, 800)
        built = _spy(store)
        store.append(tid, Message.user("one more"))
        second = store.window(tid, 800)
        assert built == [2001]  # one row from the database, the rest kept
        with Store(store_url, counter=counter, keep_rows=0) as fresh:
            assert _shape(second) == _shape(fresh.window(tid, 800))
        assert second[-1].seq == 2001 and first[-1].seq == 2000
        assert len(store._base.recent) >= len(second)


@pytest.mark.reliability
@pytest.mark.parametrize("fork", [False, True], ids=["thread", "fork"])
def test_windows_equal_a_store_keeping_nothing_through_a_random_history(
    store_url: URL, counter: TokenCounter, fork: bool
) -> None:
    rng = random.Random(7)
    with (
        Store(store_url, counter=counter) as kept,
        Store(store_url, counter=counter, keep_rows=0) as plain,
        Store(store_url, counter=counter) as other,  # another process appending
    ):
        tid = kept.create_thread().id
        n = 0
        if fork:  # a fork's history starts in its parent's rows
            kept.append_many(tid, [_message(rng, i) for i in range(1, 31)])
            tid = kept.fork(tid, at_seq=20).id
            n = 20
        for step in range(300):
            writer = other if rng.random() < 0.3 else kept
            for _ in range(rng.choice((1, 1, 2, 5, 40))):
                n += 1
                status = "incomplete" if rng.random() < 0.05 else "complete"
                writer.append(tid, _message(rng, n), status=status)
            budget = rng.choice((0, 30, 200, 600, 2000, 20_000))
            after = rng.choice((None, None, None, max(0, n - rng.randint(1, 50))))
            incomplete = rng.random() < 0.8
            got = kept.window(tid, budget, after_seq=after, include_incomplete=incomplete)
            want = plain.window(tid, budget, after_seq=after, include_incomplete=incomplete)
            assert _shape(got) == _shape(want), (step, budget, after)


@pytest.mark.reliability
def test_windows_chosen_again_equal_a_store_keeping_nothing(
    store_url: URL, counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A chat's turns: a message or two appended between windows of (mostly) the same budget,
    # now and then a tool call and its result, a smaller or larger budget, a summary's floor,
    # incomplete rows, another process appending. Most windows are chosen again from the last
    # one's units; every one must be the window a store keeping nothing reads.
    from convkit.store import _sql

    again = {"chosen": 0, "walked": 0}
    original = _sql._choose_again

    def counted(*args: Any) -> Any:
        out = original(*args)
        again["chosen" if out is not None else "walked"] += 1
        return out

    monkeypatch.setattr(_sql, "_choose_again", counted)
    rng = random.Random(11)
    with (
        Store(store_url, counter=counter) as kept,
        Store(store_url, counter=counter, keep_rows=0) as plain,
        Store(store_url, counter=counter) as other,
    ):
        for lead in (
            [],
            [Message.system("Be brief.")],
            [Message.system("a"), Message.developer("b")],
        ):
            tid = kept.create_thread().id
            if lead:
                kept.append_many(tid, lead)
            n = len(lead)
            budget, after = 400, None
            for step in range(250):
                writer = other if rng.random() < 0.2 else kept
                kind = rng.random()
                if kind < 0.1:
                    n += 2
                    writer.append_many(
                        tid,
                        [
                            Message.assistant(
                                tool_calls=[ToolCall(id=f"k{n}", name="f", arguments="{}")]
                            ),
                            Message.tool(f"r{n}", tool_call_id=f"k{n}"),
                        ],
                    )
                elif kind < 0.15:
                    n += 1  # a call whose result is not written yet
                    writer.append(
                        tid,
                        Message.assistant(
                            tool_calls=[ToolCall(id=f"w{n}", name="f", arguments="{}")]
                        ),
                    )
                else:
                    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
                        n += 1
                        status = "incomplete" if rng.random() < 0.05 else "complete"
                        message = (
                            Message.user(f"q{n} " + "w " * rng.randint(0, 30))
                            if rng.random() < 0.5
                            else Message.assistant(f"a{n} " + "w " * rng.randint(0, 60))
                        )
                        writer.append(tid, message, status=status)
                change = rng.random()
                if change < 0.1:
                    budget = rng.choice((0, 40, 150, 400, 1200))
                elif change < 0.15:
                    budget = max(0, budget - rng.randint(1, 50))
                elif change < 0.18:
                    after = rng.choice((None, max(0, n - rng.randint(1, 30))))
                incomplete = rng.random() < 0.9
                got = kept.window(tid, budget, after_seq=after, include_incomplete=incomplete)
                want = plain.window(tid, budget, after_seq=after, include_incomplete=incomplete)
                assert _shape(got) == _shape(want), (lead, step, budget, after, incomplete)
    # the reuse was exercised, and so was the walk it falls back to
    assert again["chosen"] > 300 and again["walked"] > 50, again


def test_a_thread_deleted_and_created_again_is_read_afresh(
    store_url: URL, counter: TokenCounter
) -> None:
    with Store(store_url, counter=counter) as store, Store(store_url, counter=counter) as other:
        store.create_thread(thread_id="t1")
        store.append_many("t1", said("first life 1", "first life 2", "first life 3"))
        assert [m.message.text for m in store.window("t1", 1000)][-1] == "first life 3"
        other.delete_thread("t1")  # elsewhere: this store is not told
        other.create_thread(thread_id="t1")
        other.append_many("t1", said("second life 1", "second life 2", "second life 3", "4"))
        texts = [m.message.text for m in store.window("t1", 1000)]
        assert texts == ["second life 1", "second life 2", "second life 3", "4"]


def test_an_edited_export_imported_under_the_same_id_is_read_afresh(
    store_url: URL, counter: TokenCounter
) -> None:
    # Same id, same message timestamps, same last_seq: the incarnation tells the two apart.
    with Store(store_url, counter=counter) as store, Store(store_url, counter=counter) as other:
        thread = store.create_thread()
        store.append_many(thread.id, said("my card is 4111 1111 1111 1111", "noted"))
        assert store.window(thread.id, 1000)[0].message.text.startswith("my card")
        out = io.StringIO()
        other.export_thread(thread.id, out)
        edited = out.getvalue().replace("4111 1111 1111 1111", "[removed]")
        other.delete_thread(thread.id)
        other.import_thread(edited, thread_id=thread.id)
        texts = [m.message.text for m in store.window(thread.id, 1000)]
        assert texts == ["my card is [removed]", "noted"]


def test_a_kept_window_on_sqlite_reads_the_thread_row_and_new_rows_at_once(
    tmp_path: Any, counter: TokenCounter
) -> None:
    from convkit.store import _raw, _sql

    ran: list[Any] = []
    execute = _raw.RawRunner._execute

    def spy(self: Any, dbapi: Any, q: Any) -> Any:
        ran.append(q.stmt)
        return execute(self, dbapi, q)

    url = f"sqlite:///{tmp_path / 'kept.db'}"
    with (
        Store(url, counter=counter, create_tables=True) as store,
        Store(url, counter=counter, keep_rows=0) as plain,
    ):
        parent = store.create_thread().id
        store.append_many(parent, turns("shared", 40))
        fork = store.fork(parent, at_seq=30).id
        for tid in (parent, fork):
            store.window(tid, 300)
            store.append(tid, Message.user(f"new in {tid}"))
            store.append(tid, Message.assistant("and its answer"))
            _raw.RawRunner._execute = spy  # type: ignore[method-assign]
            try:
                got = store.window(tid, 300)
            finally:
                _raw.RawRunner._execute = execute  # type: ignore[method-assign]
            assert _shape(got) == _shape(plain.window(tid, 300))
            assert got[-2].message.text == f"new in {tid}"
            assert ran[0] is _sql._LINEAGE_AND_NEW
            # the thread alone: one statement; the fork reads its parent's thread row too
            assert len(ran) == (1 if tid == parent else 2), ran
            ran.clear()


def test_a_fork_and_its_parent_keep_their_own_rows(store_url: URL, counter: TokenCounter) -> None:
    with Store(store_url, counter=counter) as store:
        parent = store.create_thread()
        store.append_many(parent.id, turns("shared", 10))
        fork = store.fork(parent.id, at_seq=6)
        assert [m.seq for m in store.window(fork.id, 10_000)] == list(range(1, 7))
        store.append(parent.id, Message.user("parent only"))
        store.append(fork.id, Message.user("fork only"))
        assert store.window(fork.id, 10_000)[-1].message.text == "fork only"
        assert [m.seq for m in store.window(fork.id, 10_000)] == list(range(1, 8))
        assert store.window(parent.id, 10_000)[-1].message.text == "parent only"
        store.delete_thread(parent.id)  # the fork gets its shared history copied
        assert [m.message.text for m in store.window(fork.id, 10_000)][-2:] == [
            "shared 5",
            "fork only",
        ]


def test_what_is_kept_is_bounded(store_url: URL, counter: TokenCounter) -> None:
    with Store(store_url, counter=counter, keep_rows=400) as store:
        tids = [store.create_thread().id for _ in range(6)]
        for tid in tids:
            store.append_many(tid, turns("m", 300))
            store.window(tid, 600)  # about 80 rows each
            assert len(store._base.recent) <= 400
        built = _spy(store)
        store.window(tids[-1], 600)  # the most recent thread is still kept
        assert built == []
        store.window(tids[0], 600)  # the oldest was dropped: read again
        assert built
        store.append_many(tids[0], turns("long", 300))
        store.window(tids[0], 100_000)  # 600 rows: more than a quarter of the bound
        assert len(store._base.recent) <= 400
    with Store(store_url, counter=counter, keep_rows=0) as nothing:
        nothing.window(tids[0], 600)
        assert len(nothing._base.recent) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "many", True])
def test_keep_rows_is_checked(store_url: URL, bad: Any) -> None:
    with pytest.raises(StoreValueError, match="keep_rows"):
        Store(store_url, keep_rows=bad)
    with pytest.raises(StoreValueError, match="keep_rows"):
        AsyncStore(store_url, keep_rows=bad)


@pytest.mark.anyio
async def test_async_store_keeps_rows_too(store_url: URL, counter: TokenCounter) -> None:
    async with AsyncStore(store_url, counter=counter) as store:
        tid = (await store.create_thread()).id
        await store.append_many(tid, turns("message", 500))
        await store.window(tid, 600)
        built = _spy(store)
        await store.append(tid, Message.user("new"))
        window = await store.window(tid, 600)
        assert built == [501] and window[-1].message.text == "new"
        await store.delete_thread(tid)
        assert len(store._base.recent) == 0


def test_revision_0005_gives_existing_threads_an_incarnation(empty_url: URL) -> None:
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            run_upgrade(conn, "0004")
            for tid in ("a", "b"):
                conn.execute(
                    text(
                        "INSERT INTO convkit_threads (id, metadata, created_at, updated_at, "
                        "last_seq) VALUES (:id, '{}', :now, :now, 0)"
                    ),
                    {"id": tid, "now": "2026-12-01 00:00:00"},
                )
        with engine.begin() as conn:
            run_upgrade(conn)
            rows = conn.execute(text("SELECT incarnation FROM convkit_threads")).all()
    finally:
        engine.dispose()
    marks = [r[0] for r in rows]
    assert all(isinstance(m, str) and len(m) == 32 for m in marks)
    assert len(set(marks)) == 2


def test_a_read_that_raced_a_deleted_ancestor_is_not_kept(
    store_url: URL, counter: TokenCounter
) -> None:
    # On PostgreSQL each statement sees the latest commits: a middle ancestor deleted while a
    # window of its fork is being read moves its rows into the fork, and that read may miss
    # them. Such a read must not be kept for later windows (it would be wrong for good).
    from convkit.store import _sql

    with (
        Store(store_url, counter=counter) as kept,
        Store(store_url, counter=counter) as other,
        Store(store_url, counter=counter, keep_rows=0) as plain,
    ):
        grand = kept.create_thread().id
        kept.append_many(grand, turns("g", 4))  # seq 1-4
        parent = kept.fork(grand, at_seq=4).id
        kept.append_many(parent, turns("p", 4))  # 5-8
        fork = kept.fork(parent, at_seq=8).id
        kept.append_many(fork, turns("f", 4))  # 9-12
        original = _sql.window

        def racing(*args: Any, **kwargs: Any) -> Any:
            # The same operation, with the parent deleted elsewhere just before its rows are read.
            steps, fired = original(*args, **kwargs), False
            try:
                q = next(steps)
                while True:
                    params = q.params if isinstance(q.params, dict) else {}
                    if not fired and params.get("tid") == parent and "lo" in params:
                        fired = True
                        other.delete_thread(parent)
                    q = steps.send((yield q))
            except StopIteration as done:
                return done.value

        _sql.window = racing  # type: ignore[assignment]
        try:
            kept.window(fork, 10_000)  # may miss rows 5-8 on PostgreSQL: one read's problem
        finally:
            _sql.window = original  # type: ignore[assignment]
        kept.append(fork, Message.user("later"))
        for after in (None, 6):
            assert _shape(kept.window(fork, 10_000, after_seq=after)) == _shape(
                plain.window(fork, 10_000, after_seq=after)
            )
        assert [m.seq for m in kept.window(fork, 10_000)] == list(range(1, 14))


def _rows(*seqs: int) -> list[StoredMessage]:
    return [
        StoredMessage(
            thread_id="t",
            seq=seq,
            message=Message.user(f"m{seq}"),
            tokens=5,
            encoding="o200k_base",
            status="complete",
            usage=None,
            created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            metadata={},
        )
        for seq in seqs
    ]


def test_kept_on_top_checks_the_new_rows_and_cuts_below_the_window() -> None:
    from convkit.store._recent import Kept, RecentRows

    kept = Kept("inc", _rows(10, 9, 8, 7), _rows(1), last_seq=10)
    on_top = kept.on_top(_rows(12, 11), down_to=8, choice=None)
    assert [m.seq for m in on_top.newest] == [12, 11, 10, 9, 8]
    assert (on_top.top, on_top.bottom, on_top.lead, on_top.incarnation) == (12, 8, kept.lead, "inc")
    # The same run a full check makes of those rows.
    again = Kept("inc", [*_rows(12, 11), *kept.newest][:5], kept.lead, last_seq=12)
    assert (again.newest, again.top) == (on_top.newest, on_top.top)
    assert [m.seq for m in kept.on_top([], down_to=10, choice=None).newest] == [10]
    for fresh in (_rows(13, 12), _rows(11, 12), _rows(12)):  # a gap, upside down, a gap
        with pytest.raises(ValueError, match="lineage"):
            kept.on_top(fresh, down_to=8, choice=None)
    recent = RecentRows(max_rows=24)
    recent.put("t", "inc", kept.newest, kept.lead, last_seq=10)
    assert len(recent) == 5
    recent.replace("t", on_top)
    assert len(recent) == 6 and recent.get("t", "inc") is on_top
    recent.replace("t", Kept("inc", _rows(*range(40, 33, -1)), last_seq=40))  # over 24 // 4
    assert len(recent) == 0 and recent.get("t", "inc") is None


def test_a_window_read_while_the_thread_is_deleted_keeps_nothing(
    store_url: URL, counter: TokenCounter
) -> None:
    # The read began before the delete (on SQLite its snapshot still holds the thread) and
    # ends after it: the rows it read must not be kept again once the delete forgot them.
    import threading

    from convkit.errors import ThreadNotFoundError

    with Store(store_url, counter=counter) as store:
        tid = store.create_thread().id
        store.append_many(tid, said("my secret", "ok"))
        reading, go = threading.Event(), threading.Event()
        original = store._base._recount

        def slow(stored: StoredMessage) -> StoredMessage:
            reading.set()
            assert go.wait(10)
            return original(stored)

        store._base._recount = slow  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def read() -> None:
            try:
                store.window(tid, 1_000)
            except BaseException as exc:  # a read may also see the delete
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert reading.wait(10)
        store._base._recount = original  # type: ignore[method-assign]
        store.delete_thread(tid)
        go.set()
        reader.join(10)
        assert not reader.is_alive()
        assert all(isinstance(e, ThreadNotFoundError) for e in errors), errors
        assert store._base.recent.peek(tid) is None
        assert len(store._base.recent) == 0


def test_a_thread_deleted_through_another_store_is_forgotten_when_found_missing(
    store_url: URL, counter: TokenCounter
) -> None:
    from convkit.errors import ThreadNotFoundError

    with Store(store_url, counter=counter) as store, Store(store_url, counter=counter) as other:
        tid = store.create_thread().id
        store.append_many(tid, said("my secret", "ok"))
        store.window(tid, 1_000)
        assert store._base.recent.peek(tid) is not None
        other.delete_thread(tid)
        with pytest.raises(ThreadNotFoundError):
            store.window(tid, 1_000)
        assert store._base.recent.peek(tid) is None
        assert len(store._base.recent) == 0


@pytest.mark.anyio
async def test_a_failed_delete_still_forgets_what_was_kept(
    store_url: URL, counter: TokenCounter
) -> None:
    from convkit.errors import ThreadNotFoundError

    async with AsyncStore(store_url, counter=counter) as store:
        tid = (await store.create_thread()).id
        await store.append_many(tid, said("q", "a"))
        await store.window(tid, 1_000)
        with Store(store_url, counter=counter) as other:
            other.delete_thread(tid)  # gone behind this store's back
        with pytest.raises(ThreadNotFoundError):
            await store.delete_thread(tid)
        assert store._base.recent.peek(tid) is None
