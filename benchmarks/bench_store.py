"""Persistence benchmark: convkit's Store against LangChain and the OpenAI Agents SDK.

Run from the repository root, in the benchmark environment (peers installed):

    .bench-venv/bin/python benchmarks/bench_store.py            # SQLite and PostgreSQL
    .bench-venv/bin/python benchmarks/bench_store.py --quick    # smaller sizes, a smoke run

Workloads, identical for every library and backend:

1. *append*: a fresh thread; 10,000 messages appended one by one, each in its own transaction
   (convkit ``Store.append``, which also counts tokens; LangChain ``add_message``; Agents SDK
   ``add_items([item])``). The libraries take turns, 1,000 appends each, ten rounds, so a
   noisy machine slows them alike. Reported as appends per second over all rounds.
2. *last 50* and *window 8k* on threads of 1,000 and 100,000 messages (filled in bulk first):
   the 50 newest messages, and the newest messages that fit 8,000 tokens. convkit reads stored
   counts (``messages(last=50)``, ``window(budget=8000)``). The peers store no counts: they load
   the history through their API (LangChain has no "last N" and loads the whole thread; the
   Agents SDK has ``get_items(limit=N)`` for the last 50 and loads the whole thread for a
   window, since it cannot know how many items fit), then the same convkit ``TokenCounter``
   counts newest-first until the budget is met. Medians of 15 samples (3 for a call that
   takes over half a second), libraries and sizes alternating.

SQLite: one temporary file per library. Each library uses its own connection settings, as a
user would get them (convkit and the Agents SDK turn on WAL; LangChain keeps SQLite's
defaults, so a fourth row shows LangChain on a WAL-configured engine too). PostgreSQL: one
fresh database per run on $CONVKIT_BENCH_POSTGRES_URL (default: the local test server),
dropped at the end; skipped with a note if the server is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from convkit.store import NewMessage, Store  # noqa: E402
from convkit.tokens import TokenCounter  # noqa: E402

BUDGET = 8000
LAST = 50
COUNTER = TokenCounter("gpt-4o")
_TEXT = (
    "the model answered with a short list of steps and then asked whether the user wanted "
    "more detail about configuring the database connection pool for production traffic"
)
_WORDS = _TEXT.split(" ")


def conversation(n: int, seed: int = 0) -> Iterator[dict[str, str]]:
    """``n`` alternating user/assistant messages of 20-90 words (deterministic)."""
    for i in range(n):
        k = 20 + (i * 37 + seed) % 70
        words = [_WORDS[(i + j * 7 + seed) % len(_WORDS)] for j in range(k)]
        yield {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: " + " ".join(words)}


def fit_newest_first(messages: list[dict[str, str]], budget: int) -> list[dict[str, str]]:
    """What the peers must do for a window: count newest-first until the budget is met."""
    used, kept = 0, []
    for m in reversed(messages):
        cost = COUNTER.count_message(m)
        if used + cost > budget:
            break
        used += cost
        kept.append(m)
    kept.reverse()
    return kept


# --------------------------------------------------------------------------- the libraries


class Convkit:
    name = "convkit Store"

    def __init__(self, url: str) -> None:
        self.store = Store(url, create_tables=True, counter=COUNTER)

    def new_thread(self) -> str:
        return self.store.create_thread().id

    def append_one(self, tid: str, m: dict[str, str]) -> None:
        self.store.append(tid, m)

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self.store.append_many(tid, [NewMessage(message=m) for m in messages[i : i + 1000]])

    def last(self, tid: str) -> int:
        return len(self.store.messages(tid, last=LAST))

    def window(self, tid: str) -> int:
        return len(self.store.window(tid, BUDGET))

    def close(self) -> None:
        self.store.close()


class LangChain:
    name = "LangChain SQLChatMessageHistory"

    def __init__(self, url: str, *, wal: bool = False) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import AIMessage, HumanMessage

        self._cls = SQLChatMessageHistory
        self._types = {"user": HumanMessage, "assistant": AIMessage}
        self.engine = create_engine(url)
        if wal:
            self.name += " (WAL engine)"

            @event.listens_for(self.engine, "connect")
            def _wal(dbapi: Any, _rec: Any) -> None:
                cur = dbapi.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        self.histories: dict[str, Any] = {}

    def new_thread(self) -> str:
        tid = uuid.uuid4().hex
        self.histories[tid] = self._cls(session_id=tid, connection=self.engine)
        return tid

    def _msg(self, m: dict[str, str]) -> Any:
        return self._types[m["role"]](content=m["content"])

    def append_one(self, tid: str, m: dict[str, str]) -> None:
        self.histories[tid].add_message(self._msg(m))

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self.histories[tid].add_messages([self._msg(m) for m in messages[i : i + 1000]])

    def _wire(self, tid: str) -> list[dict[str, str]]:
        roles = {"human": "user", "ai": "assistant"}
        return [{"role": roles[m.type], "content": m.content} for m in self.histories[tid].messages]

    def last(self, tid: str) -> int:
        return len(self._wire(tid)[-LAST:])  # no "last N" query: the whole thread is loaded

    def window(self, tid: str) -> int:
        return len(fit_newest_first(self._wire(tid), BUDGET))

    def close(self) -> None:
        self.engine.dispose()


class AgentsSDK:
    name = "Agents SDK SQLAlchemySession"

    def __init__(self, url: str) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        u = make_url(url)
        if u.drivername == "sqlite":
            u = u.set(drivername="sqlite+aiosqlite")
        self._cls = SQLAlchemySession
        self.engine = create_async_engine(u)
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[str, Any] = {}

    def _run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def new_thread(self) -> str:
        tid = uuid.uuid4().hex
        self.sessions[tid] = self._cls(tid, engine=self.engine, create_tables=True)
        return tid

    def append_one(self, tid: str, m: dict[str, str]) -> None:
        self._run(self.sessions[tid].add_items([dict(m)]))

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self._run(self.sessions[tid].add_items([dict(m) for m in messages[i : i + 1000]]))

    def last(self, tid: str) -> int:
        return len(self._run(self.sessions[tid].get_items(limit=LAST)))

    def window(self, tid: str) -> int:
        items = self._run(self.sessions[tid].get_items())
        return len(fit_newest_first(items, BUDGET))

    def close(self) -> None:
        self._run(self.engine.dispose())
        self.loop.close()


# --------------------------------------------------------------------------- running


def postgres_databases(admin_url: str) -> tuple[Callable[[], str], Callable[[], None]] | None:
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(f"PostgreSQL not reachable ({str(exc).splitlines()[0]}): skipped", file=sys.stderr)
        return None
    created: list[str] = []

    def new() -> str:
        name = f"convkit_bench_{os.getpid()}_{len(created)}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all() -> None:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return new, drop_all


def bench_backend(
    factories: list[Callable[[], Any]], appends: int, sizes: list[int], repeat: int
) -> list[dict[str, Any]]:
    """Run every workload for every library, interleaved so machine noise hits all alike.

    Appends run in rounds of ``appends // 10`` per library, libraries taking turns; the rate is
    the total over all rounds. Reads alternate libraries and thread sizes the same way.
    """
    libs = [f() for f in factories]
    out: list[dict[str, Any]] = [{"name": lib.name} for lib in libs]
    try:
        if appends:
            tids = [lib.new_thread() for lib in libs]
            msgs = list(conversation(appends, seed=1))
            rounds = 10
            per = appends // rounds
            spent = [0.0] * len(libs)
            for r in range(rounds):
                chunk = msgs[r * per : (r + 1) * per]
                order = list(range(len(libs)))
                order = order[r % len(order) :] + order[: r % len(order)]
                for k in order:
                    t0 = time.perf_counter()
                    for m in chunk:
                        libs[k].append_one(tids[k], m)
                    spent[k] += time.perf_counter() - t0
            for k in range(len(libs)):
                out[k]["appends_per_s"] = per * rounds / spent[k]
        threads = []
        for lib in libs:
            by_size = {}
            for n in sizes:
                tid = lib.new_thread()
                lib.fill(tid, list(conversation(n)))
                by_size[n] = tid
            threads.append(by_size)
        samples: dict[tuple[int, str, int], list[float]] = {}
        for k, lib in enumerate(libs):
            for n in sizes:  # warm-up, and the window size for the table
                lib.last(threads[k][n])
                out[k][f"window_len_{n}"] = lib.window(threads[k][n])
        for r in range(repeat):
            for k, lib in enumerate(libs):
                slow = any(samples.get((k, "last", n), [0])[-1] > 0.5 for n in sizes)
                if slow and r >= 3:
                    continue  # loading the whole thread each time: three samples are plenty
                for kind in ("last", "window"):
                    fn = lib.last if kind == "last" else lib.window
                    for n in sizes if r % 2 == 0 else sizes[::-1]:
                        gc.collect()
                        t0 = time.perf_counter()
                        fn(threads[k][n])
                        samples.setdefault((k, kind, n), []).append(time.perf_counter() - t0)
        for (k, kind, n), values in samples.items():
            out[k][f"{kind}_{n}"] = statistics.median(values)
    finally:
        for lib in libs:
            lib.close()
    return out


def report(backend: str, results: list[dict[str, Any]], sizes: list[int]) -> str:
    small, big = sizes[0], sizes[-1]
    header = ["library", "appends/s"]
    for kind in ("last 50", "window 8k"):
        header += [f"{kind} @{small:,} (ms)", f"{kind} @{big:,} (ms)", "ratio"]
    header.append("window size")
    rows = []
    for r in results:
        row = [r["name"], f"{r.get('appends_per_s', 0):,.0f}"]
        for kind in ("last", "window"):
            a, b = r[f"{kind}_{small}"] * 1e3, r[f"{kind}_{big}"] * 1e3
            row += [f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x"]
        row.append(str(r[f"window_len_{big}"]))
        rows.append(row)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [f"### {backend}", "", fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def setup(backend: str) -> tuple[list[Callable[[], Any]], Callable[[], None]]:
    """The library factories of a backend and how to clean up after them."""
    if backend == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-"))

        def url(name: str) -> str:
            return f"sqlite:///{tmp / name}.sqlite3"

        def remove() -> None:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()

        return [
            lambda: Convkit(url("convkit")),
            lambda: LangChain(url("langchain")),
            lambda: LangChain(url("langchain_wal"), wal=True),
            lambda: AgentsSDK(url("agents")),
        ], remove
    admin = os.environ.get(
        "CONVKIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    pg = postgres_databases(admin)
    if pg is None:
        return [], lambda: None
    new_db, drop_all = pg
    return [
        lambda: Convkit(new_db()),
        lambda: LangChain(new_db()),
        lambda: AgentsSDK(new_db()),
    ], drop_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=10_000)
    parser.add_argument("--sizes", default="1000,100000", help="thread sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=15, help="samples per read measurement")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="--appends 1000 --sizes 1000,10000")
    args = parser.parse_args(argv)
    if args.quick:
        args.appends, args.sizes = 1000, "1000,10000"
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    print(f"# convkit store benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    for backend in args.backends.split(","):
        factories, cleanup = setup(backend)
        if not factories:
            continue
        try:
            results = bench_backend(factories, args.appends, sizes, args.repeat)
            print(f"  done: {backend} ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
        finally:
            cleanup()
        print(report(backend, results, sizes) + "\n")
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
