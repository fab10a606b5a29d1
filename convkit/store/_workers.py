"""Worker threads that run blocking calls for an event loop: one hand-off each way.

:class:`~convkit.store.AsyncStore` runs each SQLite operation on one of these threads. A
``ThreadPoolExecutor`` behind ``run_in_executor`` does the same with more on the way: a
``concurrent.futures.Future`` with its lock and condition, the work item, the chaining of that
future to an asyncio one through callbacks on both sides. Here a call is a queue entry and a
``call_soon_threadsafe`` that settles the awaiting future: measured on a 2-core machine,
8-28 us less per operation (``benchmarks/bench_store.py --backends hops``), of the 25-58 us a
hand-off costs there in all.

What the executor guaranteed still holds: a call cancelled before a worker takes it up never
runs (and is let go at once); one that started finishes (its result is dropped);
:meth:`Workers.close` lets the queued calls finish, from any thread; a ``Workers`` dropped
without ``close()`` ends its idle threads; at interpreter exit every worker thread finishes
what it holds, whatever became of its ``Workers`` (after the ``atexit`` handlers registered
later, which may still use a store; a call after that raises ``RuntimeError``).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress
from queue import SimpleQueue
from typing import Any, TypeVar

__all__ = ["Workers"]

T = TypeVar("T")
_Item = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]

_live: weakref.WeakSet[Workers] = weakref.WeakSet()  # reset in a forked child
# Every worker thread alive, with the queue it takes calls from: joined at exit whatever became
# of its Workers (a store closed or dropped while one of its calls still ran).
_running: dict[threading.Thread, SimpleQueue[Any]] = {}
_running_lock = threading.Lock()
_exiting = False  # set by _finish: no call is taken any more


class Workers:
    """Up to ``size`` threads (started when needed) running calls for asyncio code."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._queue: SimpleQueue[_Item | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a worker waiting for its next call
        self._threads: list[threading.Thread] = []
        self._closed = False
        if self._finalizer is not None:
            self._finalizer.detach()
        # Dropped without close(): the idle workers are told to end (they hold no reference to
        # this object, only to its queue).
        self._finalizer = weakref.finalize(self, _stop, self._queue, self._threads)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a worker thread; return its result or raise its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:  # never queued behind the sentinels of a close() in another thread
            if self._closed or _exiting:
                raise RuntimeError(f"{self.name} workers are closed")
            self._queue.put((fn, future, loop))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.size:
                try:
                    self._start()  # else every worker is busy: the call waits for the first
                except BaseException:
                    future.cancel()  # queued, but refused: no worker may run it later
                    raise
        return await future

    def _start(self) -> None:
        thread = threading.Thread(
            target=_work,
            args=(self._queue, self._idle),
            name=f"{self.name}-{len(self._threads)}",
            daemon=True,  # joined at exit by _finish (see there)
        )
        thread.start()
        self._threads.append(thread)
        with _running_lock:  # after start: a thread that never started is never joined
            _running[thread] = self._queue

    def close(self, *, wait: bool = False) -> None:
        """Let the workers finish the calls they hold, then end; ``wait`` joins them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            _stop(self._queue, threads)
            if self._finalizer is not None:
                self._finalizer.detach()  # told to end already
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._threads)}/{self.size} threads"
        return f"Workers({self.name!r}, {state})"


def _work(queue: SimpleQueue[_Item | None], idle: threading.Semaphore) -> None:
    try:
        while True:
            item = queue.get()
            if item is None:
                return
            fn, future, loop = item
            del item
            if future.cancelled():  # a call cancelled before it started does not run
                del fn, future, loop
                idle.release()
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:
                error = exc
            # Idle before the caller hears back: the caller's next call finds this worker.
            idle.release()
            with suppress(RuntimeError):  # a closed loop: nobody awaits this call any more
                loop.call_soon_threadsafe(_settle, future, result, error)
            del fn, future, loop, result, error
    finally:
        with _running_lock:
            _running.pop(threading.current_thread(), None)


def _stop(queue: SimpleQueue[Any], threads: list[threading.Thread]) -> None:
    for _ in threads:  # one end-of-work mark a worker, after the calls already queued
        queue.put(None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the call ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _finish() -> None:
    # Interpreter exit (an atexit handler: after the non-daemon threads are joined and after
    # the handlers registered later, which may still use a store): a call handed to a worker
    # ends (committed or rolled back) rather than being cut off mid-call. From here on no call
    # is taken (run() raises), so none is queued where no worker will read it.
    global _exiting
    _exiting = True
    for workers in list(_live):
        with workers._lock:  # waits for a run() that is starting a thread
            workers._closed = True
    with _running_lock:
        running = list(_running.items())
    for _, queue in running:
        queue.put(None)
    for thread, _ in running:
        thread.join()


def _after_fork() -> None:
    # The child has none of the parent's threads: start afresh (the locks may be held).
    global _running_lock
    _running_lock = threading.Lock()
    _running.clear()
    for workers in list(_live):
        workers._lock = threading.Lock()
        workers._reset()


atexit.register(_finish)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
