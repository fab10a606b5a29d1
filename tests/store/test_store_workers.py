"""The worker threads AsyncStore runs its SQLite operations on (convkit.store._workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from convkit.store import AsyncStore
from convkit.store._workers import Workers

pytestmark = pytest.mark.anyio

_WAIT = 10.0  # seconds any wait in these tests is bounded by


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers(2, "test-workers")
    yield w
    w.close(wait=True)


async def test_result_and_exception_come_back(workers: Workers) -> None:
    assert await workers.run(lambda: threading.current_thread().name) == "test-workers-0"

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await workers.run(fail)
    assert await workers.run(lambda: 42) == 42  # the worker goes on after a failed call


async def test_no_more_threads_than_size(workers: Workers) -> None:
    both = threading.Barrier(2, timeout=_WAIT)  # passes only with two calls side by side
    started: list[str] = []

    def call() -> None:
        started.append(threading.current_thread().name)
        both.wait()

    await asyncio.gather(*(workers.run(call) for _ in range(6)))
    assert len(started) == 6
    assert set(started) == {"test-workers-0", "test-workers-1"}


async def test_an_idle_worker_is_reused(workers: Workers) -> None:
    for _ in range(5):
        await workers.run(lambda: None)
    assert repr(workers) == "Workers('test-workers', 1/2 threads)"


async def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    one = Workers(1, "one")
    release = threading.Event()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        release.wait(_WAIT)

    busy = asyncio.ensure_future(one.run(first))
    waiting = asyncio.ensure_future(one.run(lambda: ran.append("second")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await busy
    one.close(wait=True)
    assert ran == ["first"]


async def test_a_started_call_finishes_when_its_caller_is_cancelled(workers: Workers) -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def call() -> str:
        started.set()
        release.wait(_WAIT)
        done.set()
        return "dropped"

    task = asyncio.ensure_future(workers.run(call))
    assert await asyncio.to_thread(started.wait, _WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.to_thread(done.wait, _WAIT)
    assert await workers.run(lambda: "next") == "next"


def test_close_lets_queued_calls_finish_and_a_closed_loop_is_no_error() -> None:
    errors: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = errors.append
    try:
        w = Workers(1, "closing")
        release = threading.Event()
        ran: list[int] = []

        def call(i: int) -> None:
            release.wait(_WAIT)
            ran.append(i)

        loop = asyncio.new_event_loop()
        tasks = [loop.create_task(w.run(lambda i=i: call(i))) for i in range(3)]
        loop.run_until_complete(asyncio.sleep(0.05))  # all three queued, the first running
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()  # the worker's answer for the running call finds the loop closed
        release.set()
        w.close(wait=True)
        assert ran == [0]  # the two cancelled before they started did not run
        assert not any(t.is_alive() for t in threading.enumerate() if t.name == "closing-0")
    finally:
        threading.excepthook = previous
    assert errors == []


async def test_closed_workers_refuse_calls() -> None:
    w = Workers(1, "shut")
    w.close(wait=True)
    with pytest.raises(RuntimeError, match="closed"):
        await w.run(lambda: None)
    with pytest.raises(ValueError, match="at least 1"):
        Workers(0, "none")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_gets_workers_of_its_own(workers: Workers) -> None:
    assert asyncio.run(workers.run(lambda: 1)) == 1  # the parent's pool has a thread now
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here; a call must still run
        signal.alarm(int(_WAIT))  # a hung child ends instead of hanging the test
        ok = False
        try:
            ok = asyncio.run(workers.run(lambda: 2)) == 2
        finally:
            os._exit(0 if ok else 1)  # the child must never return into pytest
    deadline = time.monotonic() + _WAIT + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish")
    assert os.waitstatus_to_exitcode(status) == 0


async def test_async_store_runs_sqlite_operations_on_its_workers(tmp_path: Any) -> None:
    seen: list[str] = []
    async with AsyncStore(f"sqlite:///{tmp_path / 'w.db'}", create_tables=True) as store:
        assert store._threads is not None
        run = store._threads.run

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append(threading.current_thread().name)
            return run(*args, **kwargs)

        store._threads.run = spy  # type: ignore[method-assign]
        thread = await store.create_thread()
        await store.append(thread.id, {"role": "user", "content": "hi"})
        assert [m.message.text for m in await store.messages(thread.id)] == ["hi"]
    assert seen and all(name.startswith("convkit-sqlite-") for name in seen)
    # closed, the store still works (new workers, as it reconnects)
    assert [m.message.text for m in await store.messages(thread.id)] == ["hi"]
    assert len(seen) == 4
    await store.aclose()


_EXIT_SCRIPT = """
import asyncio, atexit, pathlib, sys, time
from convkit.store import _workers
from convkit.store._workers import Workers

done = pathlib.Path(sys.argv[1])

def write():
    time.sleep(0.3)
    done.write_text("written")

async def main():
    workers = Workers(1, "exiting")
    try:
        await asyncio.wait_for(workers.run(write), 0.05)  # the caller gives up; the call goes on
    except asyncio.TimeoutError:
        pass
    if sys.argv[2] == "close":
        workers.close()

later = Workers(1, "later")

def at_exit():  # registered after the import: runs before the workers are joined
    print("a later atexit handler's call:", asyncio.run(later.run(lambda: "ran")))
    _workers._finish()  # (what the module's own handler does next) and then no more calls
    try:
        asyncio.run(asyncio.wait_for(later.run(lambda: "ran"), 5))
    except RuntimeError as exc:
        print("after the join:", exc)

atexit.register(at_exit)
asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["close", "drop"])
def test_a_started_call_finishes_at_exit_when_its_workers_are_gone(tmp_path: Any, how: str) -> None:
    import subprocess

    done = tmp_path / "done.txt"
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(done), how],
        capture_output=True,
        text=True,
        timeout=_WAIT * 3,
        check=True,
    )
    assert done.read_text() == "written"  # the call the caller gave up on, finished at exit
    assert "a later atexit handler's call: ran" in out.stdout, out
    assert "after the join: later workers are closed" in out.stdout, out  # raised, not hung


def test_a_thread_that_cannot_start_leaves_no_call_behind(monkeypatch: Any) -> None:
    w = Workers(1, "unstartable")
    ran: list[str] = []

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="start new thread"):
            asyncio.run(w.run(lambda: ran.append("refused")))
    assert asyncio.run(w.run(lambda: ran.append("next") or "ok")) == "ok"
    w.close(wait=True)
    assert ran == ["next"]  # the refused call was not run by the thread started later


def test_dropped_workers_end_their_idle_threads() -> None:
    import gc

    def alive() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("dropped-")]

    w = Workers(3, "dropped")
    both = threading.Barrier(3, timeout=_WAIT)

    async def three(pool: Workers) -> None:
        await asyncio.gather(*(pool.run(both.wait) for _ in range(3)))

    asyncio.run(three(w))
    assert len(alive()) == 3
    del w
    gc.collect()
    deadline = time.monotonic() + _WAIT
    while alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert alive() == []


async def test_a_close_from_another_thread_never_strands_a_call() -> None:
    from queue import SimpleQueue

    w = Workers(1, "racing")
    closer: list[threading.Thread] = []

    class Queue:  # the pool's queue, with close() from another thread landing in a put
        def __init__(self) -> None:
            self.real: SimpleQueue[Any] = SimpleQueue()
            self.get = self.real.get

        def put(self, item: Any) -> None:
            if item is not None and not closer:
                closer.append(threading.Thread(target=w.close))
                closer[0].start()
                closer[0].join(0.05)  # it waits for run() to be done queueing
            self.real.put(item)

    w._queue = Queue()  # type: ignore[assignment]
    assert await asyncio.wait_for(w.run(lambda: "ran"), _WAIT) == "ran"
    closer[0].join(_WAIT)
    assert not closer[0].is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await w.run(lambda: None)


async def test_a_cancelled_call_is_let_go_at_once() -> None:
    import gc
    import weakref

    w = Workers(1, "letting-go")
    release = threading.Event()
    busy = asyncio.ensure_future(w.run(lambda: release.wait(_WAIT)))

    class Call:
        def __call__(self) -> None:
            raise AssertionError("a cancelled call ran")

    call = Call()
    gone = weakref.ref(call)
    waiting = asyncio.ensure_future(w.run(call))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.wait([waiting])
    assert waiting.cancelled()
    del call, waiting  # (the task's traceback would hold the call)
    release.set()
    await busy
    deadline = time.monotonic() + _WAIT
    while gone() is not None and time.monotonic() < deadline:  # the worker skips it
        gc.collect()
        await asyncio.sleep(0.01)
    assert gone() is None  # not held by the idle worker until some next call
    w.close(wait=True)
