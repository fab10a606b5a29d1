"""Many processes appending to one thread; a process killed mid-append."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections import Counter

import pytest
from sqlalchemy.engine import URL

from convkit import Message
from convkit.store import Store

from . import workers

pytestmark = pytest.mark.slow

PROCESSES = 8
APPENDS = 200

# spawn, not fork: a child must not inherit the parent's pooled connections or threads.
ctx = multiprocessing.get_context("spawn")


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.mark.reliability
def test_concurrent_appends_lose_nothing(store_url: URL) -> None:
    with Store(store_url) as store:
        thread = store.create_thread()
    start = ctx.Event()
    procs = [
        ctx.Process(
            target=workers.append_loop, args=(_url_text(store_url), thread.id, w, APPENDS, start)
        )
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    with Store(store_url) as store:
        messages = store.messages(thread.id)
        assert store.get_thread(thread.id).last_seq == PROCESSES * APPENDS
    assert [m.seq for m in messages] == list(range(1, PROCESSES * APPENDS + 1))
    tags = Counter(m.message.text for m in messages)
    assert len(tags) == PROCESSES * APPENDS  # nothing duplicated
    assert set(tags) == {f"w{w}-{i}" for w in range(PROCESSES) for i in range(APPENDS)}
    # each worker's own appends keep their order
    for w in range(PROCESSES):
        order = [m.metadata["i"] for m in messages if m.metadata["worker"] == w]
        assert order == list(range(APPENDS))


@pytest.mark.parametrize("moment", ["inside-transaction", "anywhere"])
@pytest.mark.reliability
def test_sigkill_mid_append_leaves_a_consistent_database(
    store_url: URL, backend: str, moment: str
) -> None:
    with Store(store_url) as store:
        thread = store.create_thread()
    progress = ctx.Value("i", 0)
    inside = ctx.Event()
    kill_at = 25 if moment == "inside-transaction" else 10**9
    proc = ctx.Process(
        target=workers.crash_loop, args=(_url_text(store_url), thread.id, kill_at, progress, inside)
    )
    proc.start()
    try:
        if moment == "inside-transaction":
            # the child has executed the INSERT of message 25 and not committed
            assert inside.wait(timeout=60), "child never reached the append to interrupt"
        else:
            deadline = time.monotonic() + 120
            while progress.value < 30 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert progress.value >= 30
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    done = progress.value

    if backend == "sqlite":
        path = store_url.database
        assert path is not None
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            raw.close()
    with Store(store_url) as store:
        stored = store.messages(thread.id)
        last_seq = store.get_thread(thread.id).last_seq
        n = len(stored)
        if moment == "inside-transaction":
            assert n == done == kill_at - 1  # the interrupted append left no trace
        else:
            assert n in (done, done + 1)  # killed before or after its COMMIT landed
        assert last_seq == n
        assert [m.seq for m in stored] == list(range(1, n + 1))
        for m in stored:  # every stored message is whole
            assert m.message.text == f"m{m.seq}" + "x" * 2000
        # the thread takes appends again, right after the last whole message
        assert store.append(thread.id, Message.user("after the crash")).seq == n + 1
