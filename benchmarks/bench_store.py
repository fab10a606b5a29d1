"""Persistence benchmark: convkit's Store and AsyncStore against the Agents SDK and LangChain.

Run from the repository root, in the benchmark environment (peers installed):

    .bench-venv/bin/python benchmarks/bench_store.py            # SQLite and PostgreSQL
    .bench-venv/bin/python benchmarks/bench_store.py --quick    # smaller sizes, a smoke run

Workloads, identical for every library and backend:

1. *append*: a fresh thread; messages appended one by one, each in its own transaction
   (convkit ``Store.append`` / ``AsyncStore.append``, which also count tokens; Agents SDK
   ``add_items([item])``; LangChain ``add_message``). Libraries take turns in ten rounds; the
   rate is each library's best round. Every library runs with its own defaults: convkit's SQLite
   is ``synchronous=FULL`` (a commit survives a power cut), as is the Agents SDK's SQLite
   (SQLite's default in WAL mode); a row shows convkit's opt-in ``?synchronous=normal``.
2. *last 50*, *window 8k* on threads of 1,000, 10,000 and 100,000 messages (filled in bulk),
   and *all* (the whole thread) at 10,000. convkit reads stored counts
   (``messages(last=50)``, ``window(budget=8000)``, ``messages()``). The peers store no counts:
   their window loads the thread and the same ``TokenCounter`` counts newest-first until the
   budget is met; LangChain has no "last N" and loads the thread for it too. convkit's stores
   run with ``keep_rows=0`` here, so a repeated window builds every row again, as the peers do. Best of 15 samples
   (3 for reads over 0.3 s); libraries and sizes alternate. Async libraries are timed inside
   the event loop.

PostgreSQL: one fresh database per library on $CONVKIT_BENCH_POSTGRES_URL (default: the local
test server), dropped at the end. Autovacuum is switched off on every table before it is
filled, so the first read pass runs on tables *never analyzed*; then ``ANALYZE`` runs and the
reads are measured again. convkit also runs through PgBouncer (transaction pooling) on
$CONVKIT_BENCH_PGBOUNCER_PORT (default 6432), beside the direct figures; skipped with a note if
a server is not reachable.

*turn* (``--backends turn``): the store-backed turn — ``append`` the new message, read its
``window`` by the policy's ``read_plan``, ``TrimOldest.fit`` it — against the same policy fitting
in-memory messages whose counts were made on entry, on SQLite, per turn. The stores run with
their defaults (the rows of the last window kept, so a turn builds only the new rows), and once
with ``keep_rows=0`` (every window built from the database).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from convkit.store import AsyncStore, NewMessage, Store  # noqa: E402
from convkit.tokens import TokenCounter  # noqa: E402

BUDGET = 8000
LAST = 50
WHOLE = 10_000  # the thread size the whole-thread read is measured at
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
#
# Each library: new_thread(), append_chunk(tid, msgs) (one transaction per message), fill(tid,
# msgs) (bulk), and measure(kind, tid) -> seconds for kind in "last", "window", "all".


class SyncLib:
    name = ""

    def measure(self, kind: str, tid: str) -> float:
        fn = {"last": self.last, "window": self.window, "all": self.all}[kind]
        t0 = time.perf_counter()
        got = fn(tid)
        took = time.perf_counter() - t0
        del got  # freed after the clock stops, as the async libraries' results are
        return took

    def last(self, tid: str) -> Any: ...
    def window(self, tid: str) -> Any: ...
    def all(self, tid: str) -> Any: ...


class Convkit(SyncLib):
    def __init__(self, url: str, name: str = "convkit Store") -> None:
        self.name = name
        # keep_rows=0: every read builds its rows from the database, as the peers' do (the
        # same window read again would otherwise reuse the rows kept from the last one; the
        # turn benchmark measures that).
        self.store = Store(url, create_tables=True, counter=COUNTER, keep_rows=0)

    def new_thread(self) -> str:
        return self.store.create_thread().id

    def append_chunk(self, tid: str, msgs: list[dict[str, str]]) -> None:
        for m in msgs:
            self.store.append(tid, m)

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self.store.append_many(tid, [NewMessage(message=m) for m in messages[i : i + 1000]])

    def last(self, tid: str) -> Any:
        return self.store.messages(tid, last=LAST)

    def window(self, tid: str) -> Any:
        return self.store.window(tid, BUDGET)

    def all(self, tid: str) -> Any:
        return self.store.messages(tid)

    def close(self) -> None:
        self.store.close()


class AsyncLib:
    """Runs an async library on its own loop; reads are timed inside the loop."""

    name = ""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def measure(self, kind: str, tid: str) -> float:
        fn = {"last": self.last, "window": self.window, "all": self.all}[kind]

        async def timed() -> float:
            t0 = time.perf_counter()
            got = await fn(tid)
            took = time.perf_counter() - t0
            del got  # (the event loop may hold the result a little longer anyway)
            return took

        return float(self.run(timed()))

    async def last(self, tid: str) -> Any: ...
    async def window(self, tid: str) -> Any: ...
    async def all(self, tid: str) -> Any: ...


class ConvkitAsync(AsyncLib):
    def __init__(self, url: str, name: str = "convkit AsyncStore") -> None:
        super().__init__()
        self.name = name
        self.store = AsyncStore(url, create_tables=True, counter=COUNTER, keep_rows=0)

    def new_thread(self) -> str:
        return str(self.run(self.store.create_thread()).id)

    def append_chunk(self, tid: str, msgs: list[dict[str, str]]) -> None:
        async def go() -> None:
            for m in msgs:
                await self.store.append(tid, m)

        self.run(go())

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        async def go() -> None:
            for i in range(0, len(messages), 1000):
                chunk = [NewMessage(message=m) for m in messages[i : i + 1000]]
                await self.store.append_many(tid, chunk)

        self.run(go())

    async def last(self, tid: str) -> Any:
        return await self.store.messages(tid, last=LAST)

    async def window(self, tid: str) -> Any:
        return await self.store.window(tid, BUDGET)

    async def all(self, tid: str) -> Any:
        return await self.store.messages(tid)

    def close(self) -> None:
        self.run(self.store.aclose())
        self.loop.close()


class AgentsSession(AsyncLib):
    """What the Agents SDK's sessions share: ``add_items`` and ``get_items``."""

    sessions: dict[str, Any]

    def append_chunk(self, tid: str, msgs: list[dict[str, str]]) -> None:
        async def go() -> None:
            for m in msgs:
                await self.sessions[tid].add_items([dict(m)])

        self.run(go())

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self.run(self.sessions[tid].add_items([dict(m) for m in messages[i : i + 1000]]))

    async def last(self, tid: str) -> Any:
        return await self.sessions[tid].get_items(limit=LAST)

    async def window(self, tid: str) -> Any:
        return fit_newest_first(await self.sessions[tid].get_items(), BUDGET)

    async def all(self, tid: str) -> Any:
        return await self.sessions[tid].get_items()


class AgentsSQLite(AgentsSession):
    name = "Agents SDK SQLiteSession"

    def __init__(self, path: str) -> None:
        super().__init__()
        from agents.memory import SQLiteSession

        self._cls = SQLiteSession
        self.path = path
        self.sessions: dict[str, Any] = {}

    def new_thread(self) -> str:
        tid = uuid.uuid4().hex
        self.sessions[tid] = self._cls(tid, self.path)
        return tid

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()
        self.loop.close()


class AgentsSQLAlchemy(AgentsSession):
    name = "Agents SDK SQLAlchemySession"

    def __init__(self, url: str) -> None:
        super().__init__()
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        u = make_url(url)
        if u.drivername == "sqlite":
            u = u.set(drivername="sqlite+aiosqlite")
        self._cls = SQLAlchemySession
        self.engine = create_async_engine(u)
        self.sessions: dict[str, Any] = {}

    def new_thread(self) -> str:
        tid = uuid.uuid4().hex
        self.sessions[tid] = self._cls(tid, engine=self.engine, create_tables=True)
        self.run(self.sessions[tid].get_items(limit=1))  # creates the tables
        return tid

    def close(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


class LangChain(SyncLib):
    name = "LangChain SQLChatMessageHistory"

    def __init__(self, url: str) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import AIMessage, HumanMessage

        self._cls = SQLChatMessageHistory
        self._types = {"user": HumanMessage, "assistant": AIMessage}
        self.engine = create_engine(url)
        self.histories: dict[str, Any] = {}

    def new_thread(self) -> str:
        tid = uuid.uuid4().hex
        self.histories[tid] = self._cls(session_id=tid, connection=self.engine)
        return tid

    def _msg(self, m: dict[str, str]) -> Any:
        return self._types[m["role"]](content=m["content"])

    def append_chunk(self, tid: str, msgs: list[dict[str, str]]) -> None:
        for m in msgs:
            self.histories[tid].add_message(self._msg(m))

    def fill(self, tid: str, messages: list[dict[str, str]]) -> None:
        for i in range(0, len(messages), 1000):
            self.histories[tid].add_messages([self._msg(m) for m in messages[i : i + 1000]])

    def _wire(self, tid: str) -> list[dict[str, str]]:
        roles = {"human": "user", "ai": "assistant"}
        return [{"role": roles[m.type], "content": m.content} for m in self.histories[tid].messages]

    def last(self, tid: str) -> Any:
        return self._wire(tid)[-LAST:]  # no "last N" query: the whole thread is loaded

    def window(self, tid: str) -> Any:
        return fit_newest_first(self._wire(tid), BUDGET)

    def all(self, tid: str) -> Any:
        return self._wire(tid)

    def close(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------- running


def append_rates(libs: list[Any], appends: int) -> list[float]:
    """Appends per second of each library: its best of ten rounds, libraries taking turns.

    The best round, not the mean: on a shared machine other processes' disk syncs and CPU
    bursts land on whichever library is running; the best round is the library's own cost.
    """
    tids = [lib.new_thread() for lib in libs]
    msgs = list(conversation(appends, seed=1))
    rounds = 10
    per = max(1, appends // rounds)
    best = [float("inf")] * len(libs)
    for r in range(rounds):
        chunk = msgs[r * per : (r + 1) * per]
        order = list(range(len(libs)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for k in order:
            t0 = time.perf_counter()
            libs[k].append_chunk(tids[k], chunk)
            best[k] = min(best[k], time.perf_counter() - t0)
    return [per / b for b in best]


def fill_threads(libs: list[Any], sizes: list[int]) -> list[dict[int, str]]:
    threads = []
    for lib in libs:
        by_size = {}
        for n in sizes:
            tid = lib.new_thread()
            lib.fill(tid, list(conversation(n)))
            by_size[n] = tid
        threads.append(by_size)
    return threads


def read_times(
    libs: list[Any], threads: list[dict[int, str]], sizes: list[int], repeat: int
) -> list[dict[str, float]]:
    """Best (minimum) seconds of each (kind, size) per library; slow reads get fewer samples.

    The minimum, as ``timeit`` reports: what a read costs when nothing else runs; on a shared
    machine medians mostly measured the neighbours.
    """
    samples: dict[tuple[int, str, int], list[float]] = {}
    jobs = [("last", n) for n in sizes] + [("window", n) for n in sizes]
    jobs += [("all", n) for n in sizes if n == WHOLE]
    for k, lib in enumerate(libs):  # warm-up
        for kind, n in jobs:
            lib.measure(kind, threads[k][n])
    for r in range(repeat):
        for k, lib in enumerate(libs):
            for kind, n in jobs if r % 2 == 0 else jobs[::-1]:
                got = samples.setdefault((k, kind, n), [])
                if r >= 3 and min(got) > 0.3:
                    continue  # a whole-thread load each time: three samples are plenty
                gc.collect()
                got.append(lib.measure(kind, threads[k][n]))
    out: list[dict[str, float]] = [{} for _ in libs]
    for (k, kind, n), values in samples.items():
        out[k][f"{kind}_{n}"] = min(values)
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1e3:,.2f}"


def report_reads(
    title: str, names: list[str], reads: list[dict[str, float]], sizes: list[int]
) -> str:
    small, big = sizes[0], sizes[-1]
    header = ["library"]
    for kind in ("last 50", "window 8k"):
        header += [f"{kind} @{n:,} ms" for n in sizes] + [f"@{big:,}/@{small:,}"]
    if WHOLE in sizes:
        header.append(f"all @{WHOLE:,} ms")
    rows = []
    for name, r in zip(names, reads, strict=True):
        row = [name]
        for kind in ("last", "window"):
            row += [_ms(r.get(f"{kind}_{n}")) for n in sizes]
            row.append(f"{r[f'{kind}_{big}'] / r[f'{kind}_{small}']:.2f}x")
        if WHOLE in sizes:
            row.append(_ms(r.get(f"all_{WHOLE}")))
        rows.append(row)
    return f"#### {title}\n\n" + _table(header, rows)


def report_appends(names: list[str], rates: list[float]) -> str:
    return _table(
        ["library", "appends/s"], [[n, f"{r:,.0f}"] for n, r in zip(names, rates, strict=True)]
    )


def ratio_lines(pairs: list[tuple[str, float, float]]) -> str:
    return "\n".join(f"- {label}: **{a / b:.2f}x**" for label, a, b in pairs)


# --------------------------------------------------------------------------- SQLite


def run_sqlite(appends: int, sizes: list[int], repeat: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-"))

    def url(name: str, query: str = "") -> str:
        return f"sqlite:///{tmp / name}.sqlite3{query}"

    libs: list[Any] = [
        Convkit(url("convkit")),
        ConvkitAsync(url("convkit_async")),
        Convkit(url("convkit_normal", "?synchronous=normal"), "convkit Store, synchronous=normal"),
        AgentsSQLite(str(tmp / "agents.sqlite3")),
        AgentsSQLAlchemy(url("agents_sa")),
        LangChain(url("langchain")),
    ]
    names = [lib.name for lib in libs]
    try:
        rates = append_rates(libs, appends)
        print("  sqlite: appends done", file=sys.stderr)
        readers = [libs[0], libs[1], libs[3], libs[4], libs[5]]
        threads = fill_threads(readers, sizes)
        print("  sqlite: filled", file=sys.stderr)
        reads = read_times(readers, threads, sizes, repeat)
    finally:
        for lib in libs:
            lib.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    store, astore, agents = reads[0], reads[1], reads[2]
    big = sizes[-1]
    pairs = [
        (
            f"convkit last 50 @{big:,} vs Agents SDK SQLiteSession get_items(limit=50)",
            store[f"last_{big}"],
            agents[f"last_{big}"],
        ),
    ]
    if WHOLE in sizes:
        pairs.append(
            (
                f"convkit whole thread @{WHOLE:,} vs Agents SDK SQLiteSession get_items()",
                store[f"all_{WHOLE}"],
                agents[f"all_{WHOLE}"],
            )
        )
    pairs += [
        ("convkit appends/s (durable default) vs Agents SDK SQLiteSession", rates[0], rates[3]),
        ("AsyncStore vs Store, append (time per append)", rates[0], rates[1]),
        (f"AsyncStore vs Store, last 50 @{big:,}", astore[f"last_{big}"], store[f"last_{big}"]),
        (f"AsyncStore vs Store, window @{big:,}", astore[f"window_{big}"], store[f"window_{big}"]),
    ]
    for kind in ("last", "window"):
        pairs.append(
            (
                f"convkit {kind} @{big:,} vs @{sizes[0]:,}",
                store[f"{kind}_{big}"],
                store[f"{kind}_{sizes[0]}"],
            )
        )
    return "\n\n".join(
        [
            "### SQLite",
            report_appends(names, rates),
            report_reads("reads", [lib.name for lib in readers], reads, sizes),
            ratio_lines(pairs),
        ]
    )


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def new(self) -> str:
        name = f"convkit_bench_{os.getpid()}_{len(self.created)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def each_db(self, fn: Callable[[Any], None]) -> None:
        for name in self.created:
            engine = create_engine(
                make_url(self.admin_url).set(database=name), isolation_level="AUTOCOMMIT"
            )
            try:
                with engine.connect() as conn:
                    fn(conn)
            finally:
                engine.dispose()

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def _no_autovacuum(conn: Any) -> None:
    for (table,) in conn.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ):
        conn.execute(text(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)'))


def _never_analyzed(conn: Any) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                "OR last_autoanalyze IS NOT NULL"
            )
        )
    ]


def run_postgres(appends: int, sizes: list[int], repeat: int) -> str:
    admin = os.environ.get(
        "CONVKIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    try:
        pg = Postgres(admin)
        with pg.admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"### PostgreSQL\n\nnot reachable ({str(exc).splitlines()[0]}): skipped"
    bouncer_port = int(os.environ.get("CONVKIT_BENCH_PGBOUNCER_PORT", "6432"))
    try:
        direct, adirect = pg.new(), pg.new()
        libs: list[Any] = [Convkit(direct), ConvkitAsync(adirect)]
        try:
            bounced = make_url(direct).set(port=bouncer_port).render_as_string(hide_password=False)
            abounced = (
                make_url(adirect).set(port=bouncer_port).render_as_string(hide_password=False)
            )
            probe = create_engine(bounced, connect_args={"prepare_threshold": None})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
            libs += [
                Convkit(bounced, "convkit Store via PgBouncer"),
                ConvkitAsync(abounced, "convkit AsyncStore via PgBouncer"),
            ]
        except Exception as exc:
            print(f"PgBouncer not reachable on {bouncer_port}: {exc}", file=sys.stderr)
        # LangChain loads the whole thread for every read (seconds at 100,000 messages, as on
        # SQLite): left out here to keep the run short; it adds nothing to the PostgreSQL story.
        libs += [AgentsSQLAlchemy(pg.new())]
        names = [lib.name for lib in libs]
        try:
            for lib in libs:
                lib.new_thread()  # every library has created its tables
            pg.each_db(_no_autovacuum)
            rates = append_rates(libs, appends)
            print("  postgresql: appends done", file=sys.stderr)
            threads = fill_threads(libs, sizes)
            print("  postgresql: filled", file=sys.stderr)
            analyzed: list[str] = []
            pg.each_db(lambda c: analyzed.extend(_never_analyzed(c)))
            fresh = read_times(libs, threads, sizes, repeat)
            pg.each_db(lambda c: analyzed.extend(_never_analyzed(c)))
            pg.each_db(lambda c: c.execute(text("ANALYZE")))
            after = read_times(libs, threads, sizes, repeat)
        finally:
            for lib in libs:
                lib.close()
    finally:
        pg.drop_all()
    big, small = sizes[-1], sizes[0]
    pairs = []
    for label, reads in (("before ANALYZE", fresh), ("after ANALYZE", after)):
        for k in range(len(names)):
            if not names[k].startswith("convkit"):
                continue
            for kind in ("last", "window"):
                pairs.append(
                    (
                        f"{names[k]}, {kind} @{big:,} vs @{small:,}, {label}",
                        reads[k][f"{kind}_{big}"],
                        reads[k][f"{kind}_{small}"],
                    )
                )
    pairs += [
        ("AsyncStore vs Store, append (time per append)", rates[0], rates[1]),
        (
            f"AsyncStore vs Store, last 50 @{big:,} (analyzed)",
            after[1][f"last_{big}"],
            after[0][f"last_{big}"],
        ),
        (
            f"AsyncStore vs Store, window @{big:,} (analyzed)",
            after[1][f"window_{big}"],
            after[0][f"window_{big}"],
        ),
    ]
    note = "tables analyzed during the first pass: " + (", ".join(analyzed) or "none")
    return "\n\n".join(
        [
            "### PostgreSQL",
            report_appends(names, rates),
            report_reads("reads on tables never analyzed (autovacuum off)", names, fresh, sizes),
            report_reads("reads after ANALYZE", names, after, sizes),
            note,
            ratio_lines(pairs),
        ]
    )


def run_hops(appends: int, sizes: list[int], repeat: int) -> str:
    """What a statement costs through aiosqlite, against one thread hop (why AsyncStore on
    SQLite runs each operation on a worker thread instead)."""
    import sqlite3

    import aiosqlite

    tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-"))
    path = str(tmp / "hops.sqlite3")
    n = 3000

    async def through_aiosqlite() -> float:
        async with aiosqlite.connect(path) as conn:
            t0 = time.perf_counter()
            for _ in range(n):
                cur = await conn.execute("SELECT 1")
                await cur.fetchall()
                await cur.close()
            return (time.perf_counter() - t0) / n

    raw = sqlite3.connect(path, check_same_thread=False)

    def statement() -> list[Any]:
        cur = raw.execute("SELECT 1")
        rows = cur.fetchall()
        cur.close()
        return rows

    async def one_hop() -> float:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        for _ in range(n):
            await loop.run_in_executor(None, statement)
        return (time.perf_counter() - t0) / n

    from convkit.store._workers import Workers

    workers = Workers(4, "bench")

    async def convkit_hop() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await workers.run(statement)
        return (time.perf_counter() - t0) / n

    t0 = time.perf_counter()
    for _ in range(n):
        statement()
    direct = (time.perf_counter() - t0) / n
    via_aiosqlite = min(asyncio.run(through_aiosqlite()) for _ in range(3))
    hops: dict[str, list[float]] = {"executor": [], "workers": []}
    for _ in range(5):  # alternating: the machine's noise falls on both
        hops["executor"].append(asyncio.run(one_hop()))
        hops["workers"].append(asyncio.run(convkit_hop()))
    workers.close(wait=True)
    via_hop, via_workers = min(hops["executor"]), min(hops["workers"])
    raw.close()
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    rows = [
        ["sqlite3, in the calling thread", f"{direct * 1e6:.1f}"],
        ["aiosqlite (execute, fetchall, close: three hops)", f"{via_aiosqlite * 1e6:.1f}"],
        ["sqlite3 in a worker thread (one hop, `run_in_executor`)", f"{via_hop * 1e6:.1f}"],
        ["sqlite3 on AsyncStore's worker threads (one hop)", f"{via_workers * 1e6:.1f}"],
    ]
    return "### aiosqlite\n\n" + _table(["`SELECT 1`", "µs per statement"], rows)


def run_whole(appends: int, sizes: list[int], repeat: int) -> str:
    """Where a whole-thread read's time goes (10,000 rows), step by step, beside the SDK's.

    convkit's steps are the ones ``Store.messages()`` takes on SQLite (the same statement
    text, ``json.loads`` of the page, ``messages_from_rows``); the SDK's are what
    ``SQLiteSession.get_items()`` does (one column, ``json.loads`` per row). Best of
    ``max(repeat, 15)`` each, steps alternating.
    """
    import json
    import sqlite3

    from convkit.store._raw import RawRunner
    from convkit.store._rows import messages_from_rows
    from convkit.store._sql import _RANGE_ASC

    tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-"))
    rounds = max(repeat, 15)
    try:
        lib = Convkit(f"sqlite:///{tmp / 'convkit'}.sqlite3")
        agents = AgentsSQLite(str(tmp / "agents.sqlite3"))
        history = list(conversation(WHOLE))
        tid, sid = lib.new_thread(), agents.new_thread()
        lib.fill(tid, history)
        agents.fill(sid, history)
        plan = RawRunner(lib.store.engine)._plan(_RANGE_ASC, {"tid": tid, "lo": 0, "hi": WHOLE})
        args = plan.args({"tid": tid, "lo": 0, "hi": WHOLE})
        ours = sqlite3.connect(str(tmp / "convkit.sqlite3"))
        theirs = sqlite3.connect(str(tmp / "agents.sqlite3"))
        sdk_sql = "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id ASC"
        rows = ours.execute(plan.sql, args).fetchall()
        payloads = json.loads("[" + ",".join([r[1] for r in rows]) + "]")
        their_rows = theirs.execute(sdk_sql, (sid,)).fetchall()
        steps: dict[str, Callable[[], Any]] = {
            "convkit: fetch the 10 columns": lambda: ours.execute(plan.sql, args).fetchall(),
            "convkit: json.loads of the page": lambda: json.loads(
                "[" + ",".join([r[1] for r in rows]) + "]"
            ),
            "convkit: build Message + StoredMessage values": lambda: messages_from_rows(rows, tid),
            "convkit: Store.messages() whole": lambda: lib.store.messages(tid),
            "SDK: fetch message_data": lambda: theirs.execute(sdk_sql, (sid,)).fetchall(),
            "SDK: json.loads per row": lambda: [json.loads(r[0]) for r in their_rows],
            "SDK: get_items() whole": lambda: agents.run(agents.sessions[sid].get_items()),
        }
        assert len(payloads) == len(their_rows) == WHOLE
        best = {name: float("inf") for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                gc.collect()
                t0 = time.perf_counter()
                got = step()
                best[name] = min(best[name], time.perf_counter() - t0)
                del got  # freed after the clock stops, for every step
        ours.close()
        theirs.close()
        lib.close()
        agents.close()
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    whole = best["SDK: get_items() whole"]
    table = _table(
        ["step (10,000 rows)", "ms", "vs SDK get_items()"],
        [[name, f"{t * 1e3:.2f}", f"{t / whole:.2f}x"] for name, t in best.items()],
    )
    return "### Whole-thread read, step by step (SQLite)\n\n" + table


_ASLEEP = "synchronous=normal, 0.2 ms asleep after the append"
_FLOOR = "sqlite3 alone: one synced insert a turn (the disk's floor)"


def run_turn(appends: int, sizes: list[int], repeat: int) -> str:
    """The store-backed turn (append, window, fit) against the same fit over in-memory messages.

    Both keep counts made once on entry; the store's turn also commits the message (durable by
    default) and reads exactly its window back. Threads of each size, 50 turns a round, best of
    ``repeat`` rounds (alternating), per turn. The ratios are paired too: each round's store
    turn against the same round's in-memory turn (the median and range over the rounds), which
    a burst of noise on this shared machine moves less than a ratio of two best rounds. A last
    row times the durable commit alone (plain sqlite3, one row a turn): the part of a durable
    turn no store code can take away on this disk.
    """
    import json
    import sqlite3
    import statistics

    from convkit import Message
    from convkit.context import Counted, TrimOldest

    policy = TrimOldest("gpt-4o", max_prompt_tokens=BUDGET, counter=COUNTER)
    system = [Message.system("You are a helpful assistant.")]
    tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-"))
    rows = []
    turns = 50
    try:
        for n in sizes:
            history = list(conversation(n))
            stores = {
                "durable default": Store(
                    f"sqlite:///{tmp / f'turn{n}'}.sqlite3", create_tables=True, counter=COUNTER
                ),
                "synchronous=normal": Store(
                    f"sqlite:///{tmp / f'turn{n}n'}.sqlite3?synchronous=normal",
                    create_tables=True,
                    counter=COUNTER,
                ),
                "durable, keep_rows=0": Store(
                    f"sqlite:///{tmp / f'turn{n}k'}.sqlite3",
                    create_tables=True,
                    counter=COUNTER,
                    keep_rows=0,
                ),
                # What sleeping through a sync costs the work after it: the same store as
                # synchronous=normal, 0.2 ms asleep (outside the clock) after each append.
                _ASLEEP: Store(
                    f"sqlite:///{tmp / f'turn{n}s'}.sqlite3?synchronous=normal",
                    create_tables=True,
                    counter=COUNTER,
                ),
            }
            tids = {}
            for label, store in stores.items():
                tids[label] = store.create_thread().id
                for i in range(0, n, 1000):
                    store.append_many(tids[label], history[i : i + 1000])
            # The disk's floor: the durable commit alone, one row a turn on a plain sqlite3
            # connection (WAL, synchronous=FULL, autocommit), no convkit at all.
            floor = sqlite3.connect(str(tmp / f"floor{n}.sqlite3"), isolation_level=None)
            floor.execute("PRAGMA journal_mode=WAL")
            floor.execute("PRAGMA synchronous=FULL")
            floor.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            memory: list[Counted] = []
            for i, d in enumerate(history, start=1):
                m = Message.from_openai(d)
                memory.append(Counted(message=m, tokens=COUNTER.count_message(m), seq=i))
            extra = list(conversation(turns * (repeat + 1), seed=5))
            # per label: (turn, append, window + fit) of its best round, seconds per turn
            best: dict[str, tuple[float, float, float]] = {}
            paired: dict[str, list[float]] = {label: [] for label in (*stores, _FLOOR)}
            k = 0
            for r in range(repeat + 1):  # the first round warms up
                batch = extra[k : k + turns]
                k += turns
                gc.collect()
                t0 = time.perf_counter()
                for d in batch:
                    m = Message.from_openai(d)
                    memory.append(
                        Counted(message=m, tokens=COUNTER.count_message(m), seq=len(memory) + 1)
                    )
                    policy.fit(memory, system=system)
                t = (time.perf_counter() - t0) / turns
                took = {"in memory": (t, 0.0, t)}
                for label, store in stores.items():
                    gc.collect()
                    appending = reading = 0.0
                    for d in batch:
                        t0 = time.perf_counter()
                        store.append(tids[label], d)
                        t1 = time.perf_counter()
                        if label == _ASLEEP:
                            time.sleep(0.0002)
                            t0 += time.perf_counter() - t1  # the sleep is not the turn's
                            t1 = time.perf_counter()
                        window = store.window(tids[label], policy.read_plan(system=system))
                        policy.fit(window, system=system)
                        t2 = time.perf_counter()
                        appending += t1 - t0
                        reading += t2 - t1
                    took[label] = (
                        (appending + reading) / turns,
                        appending / turns,
                        reading / turns,
                    )
                gc.collect()
                t0 = time.perf_counter()
                for d in batch:
                    floor.execute("INSERT INTO m (body) VALUES (?)", (json.dumps(d),))
                t = (time.perf_counter() - t0) / turns
                took[_FLOOR] = (t, t, 0.0)
                if r:
                    for label, times in took.items():
                        if label not in best or times[0] < best[label][0]:
                            best[label] = times
                        if label in paired:
                            paired[label].append(times[0] / took["in memory"][0])
            for store in stores.values():
                store.close()
            floor.close()
            base = best["in memory"][0]
            for label in ("in memory", *stores, _FLOOR):
                turn, appending, reading = best[label]
                ratios = paired.get(label)
                rows.append(
                    [
                        f"{n:,}",
                        label,
                        _ms(turn),
                        _ms(appending) if label != "in memory" else "-",
                        _ms(reading) if label != _FLOOR else "-",
                        f"{turn / base:.2f}x",
                        f"{reading / base:.2f}x" if label != _FLOOR else "-",
                        (
                            f"{statistics.median(ratios):.2f}x "
                            f"({min(ratios):.2f} to {max(ratios):.2f})"
                            if ratios
                            else "-"
                        ),
                    ]
                )
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return "### Store-backed turn (SQLite)\n\n" + _table(
        [
            "messages",
            "turn",
            "ms per turn",
            "append (commit included) ms",
            "window + fit ms",
            "turn vs in memory",
            "window + fit vs in memory",
            "turn vs in memory, paired rounds: median (range)",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="thread sizes, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=15, help="samples per read measurement")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql,hops,turn",
        help="sqlite, postgresql, hops, turn and/or whole",
    )
    parser.add_argument(
        "--quick", action="store_true", help="--appends 500 --sizes 1000,10000 --repeat 5"
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="run the whole benchmark (every thread it starts) on this one CPU (Linux)",
    )
    args = parser.parse_args(argv)
    if args.cpu is not None:
        # Before any thread starts: the threads started later inherit the main thread's CPU.
        os.sched_setaffinity(0, {args.cpu})
    if args.quick:
        args.appends, args.sizes, args.repeat = 500, "1000,10000", 5
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started = time.perf_counter()
    on = "" if args.cpu is None else f", pinned to CPU {args.cpu}"
    print(
        f"# convkit store benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs{on})\n"
    )
    for backend in args.backends.split(","):
        run = {
            "sqlite": run_sqlite,
            "postgresql": run_postgres,
            "hops": run_hops,
            "turn": run_turn,
            "whole": run_whole,
        }[backend]
        print(run(args.appends, sizes, args.repeat) + "\n", flush=True)
        print(f"  done: {backend} ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
