"""Code run in child processes by the concurrency and crash tests (importable under spawn)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from convkit.messages import Message


def append_loop(url: str, thread_id: str, worker: int, count: int, start: Any) -> None:
    """Append ``count`` messages tagged with the worker number, one transaction each."""
    from convkit.store import Store

    with Store(url) as store:
        start.wait()  # all workers begin together, to collide as much as possible
        for i in range(count):
            store.append(
                thread_id,
                Message.user(f"w{worker}-{i}"),
                metadata={"worker": worker, "i": i},
            )


def crash_loop(url: str, thread_id: str, kill_at: int, progress: Any, inside: Any) -> None:
    """Append forever; at append ``kill_at``, signal from inside the open transaction and hang.

    The parent SIGKILLs the process at that moment, so the transaction that was writing message
    ``kill_at`` (its counter update and its row) is cut off before COMMIT.
    """
    from sqlalchemy import event

    from convkit.store import Store

    with Store(url) as store:

        @event.listens_for(store.engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            inserting = "INSERT INTO CONVKIT_MESSAGES" in statement.upper()
            if inserting and progress.value + 1 == kill_at:
                inside.set()
                time.sleep(60)  # never returns: the parent kills us here

        i = 0
        while True:
            i += 1
            store.append(thread_id, Message.user(f"m{i}" + "x" * 2000))
            progress.value = i


if __name__ == "__main__":  # pragma: no cover - manual use
    print(os.getpid(), sys.argv)
