"""Worker threads that run blocking calls for an event loop: one hand-off each way.

:class:`~convkit.store.AsyncStore` runs each SQLite operation on one of these threads. A
``ThreadPoolExecutor`` behind ``run_in_executor`` does the same with more on the way: a
``concurrent.futures.Future`` with its lock and condition, the work item, the chaining of that
future to an asyncio one through callbacks on both sides. Here a call is a queue entry and a
``call_soon_threadsafe`` that settles the awaiting future: measured on a 2-core machine, about
30 us less per operation, of the 60-110 us the two thread wake-ups cost anyway.

What the executor guaranteed still holds: a call cancelled before a worker takes it up never
runs; one that started finishes (its result is dropped); :meth:`Workers.close` lets the queued
calls finish; at interpreter exit the workers finish what they hold before it goes on.
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

_live: weakref.WeakSet[Workers] = weakref.WeakSet()


class Workers:
    """Up to ``size`` threads (started when needed) running calls for asyncio code."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._queue: SimpleQueue[_Item | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a worker waiting for its next call
        self._threads: list[threading.Thread] = []
        self._closed = False

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a worker thread; return its result or raise its exception."""
        if self._closed:
            raise RuntimeError(f"{self.name} workers are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        if not self._idle.acquire(blocking=False):
            self._grow()
        return await future

    def _grow(self) -> None:
        with self._lock:
            if self._closed or len(self._threads) >= self.size:
                return  # every worker is busy: the call waits for the first one free
            thread = threading.Thread(
                target=self._work,
                args=(self._queue, self._idle),
                name=f"{self.name}-{len(self._threads)}",
                daemon=True,  # joined at exit by _finish (see there)
            )
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _work(queue: SimpleQueue[_Item | None], idle: threading.Semaphore) -> None:
        while True:
            item = queue.get()
            if item is None:
                return
            fn, future, loop = item
            del item
            if future.cancelled():  # a call cancelled before it started does not run
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

    def close(self, *, wait: bool = False) -> None:
        """Let the workers finish the calls they hold, then end; ``wait`` joins them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._threads)}/{self.size} threads"
        return f"Workers({self.name!r}, {state})"


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the call ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _finish() -> None:
    # Interpreter exit: atexit runs before daemon threads are stopped, so a write that was
    # handed to a worker ends (committed or rolled back) rather than being cut off mid-call,
    # as a ThreadPoolExecutor's join at exit ensured.
    for workers in list(_live):
        workers.close(wait=True)


def _after_fork() -> None:
    # The child has none of the parent's threads: start afresh (the lock may be held).
    for workers in list(_live):
        workers._lock = threading.Lock()
        workers._reset()


atexit.register(_finish)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
