"""A whole turn on a long stored thread: convkit's overhead over the raw HTTP floor, vs peers.

One turn is ``conv.send(text)`` (non-streamed) on a thread of 100, 10,000 or 100,000 stored
messages, against convkit's loopback OpenAI-protocol server (``FakeChatServer``, real HTTP on
127.0.0.1, in a child process so it never competes with the clients for the GIL). Every
contender keeps its history in the same kind of database (a SQLite file; a PostgreSQL database
on 127.0.0.1) and fits it to the same budget: 8,000 prompt tokens for gpt-4o.

* floor   — the same HTTP round trip with httpx alone: POST the body convkit sent in this cell
            (same size) to the same server and parse the JSON answer;
* convkit — ``Conversation(store=Store(url), policy=TrimOldest(max_prompt_tokens=8000))``;
            **overhead = turn time - floor**, which should stay flat with the thread's size;
* LangChain — ``RunnableWithMessageHistory`` (deprecated since langchain-core 1.3.3 in favour
            of LangGraph persistence, which has no ``SQLChatMessageHistory``; still shipped)
            over ``SQLChatMessageHistory`` (langchain-community) on a shared SQLAlchemy engine,
            a prompt with the system message, ``trim_messages(max_tokens=8000,
            token_counter=llm, strategy="last", start_on="human", include_system=True)`` and a
            ``ChatOpenAI`` pointed at the loopback server;
* Agents SDK — ``Runner.run_sync`` with an ``OpenAIChatCompletionsModel`` pointed at the
            loopback server, on ``SQLiteSession`` (SQLite) or ``SQLAlchemySession``
            (PostgreSQL). The SDK has no token-based trimming; its own bound is
            ``SessionSettings(limit=N)`` (the N newest items), so N is set to the number of
            history messages convkit's window held in the same cell (tracing disabled).

Threads alternate user/assistant turns, a quarter of them with a two-call tool round; they are
filled in bulk first (convkit ``Store.append_many`` with precomputed counts; LangChain
``add_messages``; Agents SDK ``add_items``), every size in the same database. Each turn adds
two messages. Contenders take turns, round by round, so a noisy machine slows them alike;
medians over ``--turns`` turns per cell after two warm-up turns. A cell stops once its turns
(warm-up included) have taken ``--cap`` seconds, and is reported as capped. Every body a
contender sent in a timed turn is checked outside the timing: its prompt tokens by convkit's
count (over 8,000 is over budget) and orphaned tool messages (a result without its call, or a
call without its results: the API rejects such a request).

Run from the repository root, in the benchmark environment::

    .bench-venv/bin/python benchmarks/bench_turn.py                      # everything
    .bench-venv/bin/python benchmarks/bench_turn.py --only convkit --sizes 100,100000
    .bench-venv/bin/python benchmarks/bench_turn.py --backends sqlite --turns 5 --cap 20

PostgreSQL: fresh databases on $CONVKIT_BENCH_POSTGRES_URL (default: the local test server),
dropped at the end; skipped with a note if the server is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import table

warnings.filterwarnings("ignore")  # peers' deprecation and tool-counting warnings

MODEL = "gpt-4o"
BUDGET = 8_000
SYSTEM = "You are a helpful assistant for an online shop. Answer briefly."
API_KEY = "sk-bench-not-a-real-key"
REPLY = (
    "Your order shipped yesterday from the Lyon warehouse and should arrive within three "
    "working days; the tracking link is in the confirmation email we sent you."
)
# fmt: off
WORDS = [
    "order", "refund", "parcel", "delivery", "invoice", "address", "warehouse", "tracking", "the",
    "a", "of", "and", "to", "is", "when", "where", "please", "thanks", "arrived", "late",
    "damaged", "replacement", "colour", "size", "blue", "lamp", "table", "chair", "shipping",
    "12", "euros", "tomorrow", "Monday", "Lyon", "Paris", "account", "password",
]
# fmt: on


# --------------------------------------------------------------------------- the server


def _serve(conn: Any) -> None:
    """Child process: a FakeChatServer answering every request with the same short reply."""
    from convkit.testing import FakeChatServer, Reply

    with FakeChatServer(default_responder=lambda _request: Reply.text(REPLY)) as server:
        conn.send(server.base_url)
        while True:
            command = conn.recv()
            if command == "last":
                reqs = server.requests
                conn.send(reqs[-1].raw if reqs else b"")
            elif command == "reset":
                server.reset()
                conn.send(None)
            else:
                return


class Server:
    """The loopback server in a child process, and a pipe to ask it for the last request."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            raise SystemExit("the loopback server did not start")
        self.base_url: str = self._conn.recv()

    def last_body(self) -> bytes:
        self._conn.send("last")
        body: bytes = self._conn.recv()
        return body

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


class Floor:
    """The raw round trip: the same body POSTed with httpx alone, the answer parsed."""

    name = "floor (httpx alone)"

    def __init__(self, base_url: str) -> None:
        import httpx

        self.http = httpx.Client(timeout=60)
        self.url = base_url + "/chat/completions"
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
        self.body = b""

    def turn(self, _text: str) -> str:
        r = self.http.post(self.url, content=self.body, headers=self.headers)
        r.raise_for_status()
        text: str = r.json()["choices"][0]["message"]["content"]
        return text

    def close(self) -> None:
        self.http.close()


# --------------------------------------------------------------------------- threads


def thread(n: int, seed: int) -> list[dict[str, Any]]:
    """Exactly ``n`` wire messages: user/assistant turns, a quarter with a two-call tool round."""
    rnd = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rnd.choices(WORDS, k=rnd.randint(lo, hi)))

    msgs: list[dict[str, Any]] = []
    call = 0
    while n - len(msgs) >= 2:
        msgs.append({"role": "user", "content": text(8, 50)})
        if n - len(msgs) >= 4 and rnd.random() < 0.25:
            calls = []
            for city in ("Paris", "Lyon"):
                call += 1
                calls.append(
                    {
                        "id": f"call_{seed}_{call}",
                        "type": "function",
                        "function": {
                            "name": "track_parcel",
                            "arguments": json.dumps({"hub": city}),
                        },
                    }
                )
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            for c in calls:
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": text(10, 60)})
        msgs.append({"role": "assistant", "content": text(15, 90)})
    if len(msgs) < n:
        msgs.append({"role": "assistant", "content": text(15, 90)})
    return msgs


def user_text(i: int) -> str:
    return f"Question {i}: where is my parcel with the blue lamp, and when will it arrive?"


def batches(items: list[Any], size: int = 1000) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- contenders


class Convkit:
    name = "convkit Conversation"

    def __init__(self, url: str, base_url: str) -> None:
        from convkit.client import ChatClient
        from convkit.store import Store
        from convkit.tokens import TokenCounter

        self.counter = TokenCounter(MODEL)
        self.store = Store(url, create_tables=True, model=MODEL, counter=self.counter)
        self.client = ChatClient(base_url=base_url, api_key=API_KEY, timeout=60)
        self.threads: dict[int, str] = {}
        self.conv: Any = None
        self.window_messages = 0  # history messages the last request carried

    def fill(self, size: int, msgs: list[dict[str, Any]]) -> None:
        from convkit.store import NewMessage

        tid = self.store.create_thread().id
        cache: dict[str, int] = {}
        for chunk in batches(msgs):
            items = []
            for m in chunk:
                key = json.dumps(m, sort_keys=True) if m["role"] != "user" else m["content"]
                if key not in cache:
                    cache[key] = self.counter.count_message(m)
                items.append(NewMessage(message=m, tokens=cache[key]))
            self.store.append_many(tid, items)
        self.threads[size] = tid

    def start(self, size: int) -> None:
        from convkit import Conversation, TrimOldest

        self.conv = Conversation(
            MODEL,
            store=self.store,
            thread=self.threads[size],
            system=SYSTEM,
            policy=TrimOldest(MODEL, max_prompt_tokens=BUDGET, counter=self.counter),
            client=self.client,
        )

    def turn(self, text: str) -> str:
        reply = self.conv.send(text)
        self.window_messages = reply.window.messages - 1  # less the system prompt
        out: str = reply.text
        return out

    def close(self) -> None:
        self.client.close()
        self.store.close()


class LangChain:
    name = "LangChain RunnableWithMessageHistory"

    def __init__(self, url: str, base_url: str) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import trim_messages
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
        from langchain_core.runnables.history import RunnableWithMessageHistory
        from langchain_openai import ChatOpenAI
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self._history_cls = SQLChatMessageHistory
        llm = ChatOpenAI(model=MODEL, base_url=base_url, api_key=API_KEY, max_retries=0)
        trimmer = trim_messages(
            max_tokens=BUDGET,
            strategy="last",
            token_counter=llm,
            include_system=True,
            start_on="human",
            allow_partial=False,
        )
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        self.chain = RunnableWithMessageHistory(
            prompt | trimmer | llm,
            self.history,
            input_messages_key="input",
            history_messages_key="history",
        )
        self.threads: dict[int, str] = {}
        self.session = ""

    def history(self, session_id: str) -> Any:
        return self._history_cls(session_id=session_id, connection=self.engine)

    def fill(self, size: int, msgs: list[dict[str, Any]]) -> None:
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        def convert(m: dict[str, Any]) -> Any:
            if m["role"] == "user":
                return HumanMessage(content=m["content"])
            if m["role"] == "tool":
                return ToolMessage(content=m["content"], tool_call_id=m["tool_call_id"])
            calls = [
                {
                    "name": c["function"]["name"],
                    "args": json.loads(c["function"]["arguments"]),
                    "id": c["id"],
                    "type": "tool_call",
                }
                for c in m.get("tool_calls") or []
            ]
            return AIMessage(content=m["content"] or "", tool_calls=calls)

        sid = uuid.uuid4().hex
        history = self.history(sid)
        for chunk in batches(msgs):
            history.add_messages([convert(m) for m in chunk])
        self.threads[size] = sid

    def start(self, size: int) -> None:
        self.session = self.threads[size]

    def turn(self, text: str) -> str:
        config = {"configurable": {"session_id": self.session}}
        out: str = self.chain.invoke({"input": text}, config=config).content
        return out

    def close(self) -> None:
        self.engine.dispose()


class AgentsSDK:
    name = "Agents SDK Runner + session"

    def __init__(self, url: str, base_url: str) -> None:
        from agents import Agent, OpenAIChatCompletionsModel, set_tracing_disabled
        from openai import AsyncOpenAI

        set_tracing_disabled(True)
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.engine: Any = None
        if not self.sqlite:
            from sqlalchemy.ext.asyncio import create_async_engine

            self.engine = create_async_engine(url)
        client = AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
        self.agent = Agent(
            name="shop",
            instructions=SYSTEM,
            model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
        )
        self.threads: dict[int, str] = {}
        self.session: Any = None
        self.limit = 100  # replaced by the size of convkit's window in the same cell

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # Runner.run_sync runs on the thread's default loop; the sessions must use it too.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return asyncio.get_event_loop_policy().get_event_loop()

    def _session(self, sid: str, limit: int | None) -> Any:
        from agents import SQLiteSession
        from agents.memory import SessionSettings

        settings = SessionSettings(limit=limit)
        if self.sqlite:
            return SQLiteSession(
                sid, self.url.removeprefix("sqlite:///"), session_settings=settings
            )
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

        return SQLAlchemySession(
            sid, engine=self.engine, create_tables=True, session_settings=settings
        )

    def fill(self, size: int, msgs: list[dict[str, Any]]) -> None:
        def convert(m: dict[str, Any]) -> list[dict[str, Any]]:
            if m["role"] == "tool":
                return [
                    {
                        "type": "function_call_output",
                        "call_id": m["tool_call_id"],
                        "output": m["content"],
                    }
                ]
            if m.get("tool_calls"):
                return [
                    {
                        "type": "function_call",
                        "call_id": c["id"],
                        "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"],
                    }
                    for c in m["tool_calls"]
                ]
            return [{"role": m["role"], "content": m["content"]}]

        sid = uuid.uuid4().hex
        session = self._session(sid, None)
        for chunk in batches(msgs):
            self.loop.run_until_complete(session.add_items([i for m in chunk for i in convert(m)]))
        if self.sqlite:
            session.close()
        self.threads[size] = sid

    def start(self, size: int) -> None:
        if self.session is not None and self.sqlite:
            self.session.close()
        self.session = self._session(self.threads[size], self.limit)

    def turn(self, text: str) -> str:
        from agents import Runner

        out: str = Runner.run_sync(self.agent, text, session=self.session).final_output
        return out

    def close(self) -> None:
        if self.session is not None and self.sqlite:
            self.session.close()
        if self.engine is not None:
            self.loop.run_until_complete(self.engine.dispose())


CONTENDERS: dict[str, Callable[[str, str], Any]] = {
    "convkit": Convkit,
    "langchain": LangChain,
    "agents": AgentsSDK,
}


# --------------------------------------------------------------------------- databases


def postgres_admin() -> tuple[Any, str] | None:
    from sqlalchemy import create_engine, text

    url = os.environ.get(
        "CONVKIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(f"PostgreSQL not reachable ({str(exc).splitlines()[0]}): skipped", file=sys.stderr)
        return None
    return admin, url


class Databases:
    """One database per contender on a backend (a SQLite file, or a PostgreSQL database)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tmp = Path(tempfile.mkdtemp(prefix="convkit-bench-turn-"))
        self.created: list[str] = []
        self.admin: Any = None
        if backend == "postgresql":
            found = postgres_admin()
            if found is None:
                raise LookupError("no PostgreSQL")
            self.admin, self.admin_url = found

    def new(self, key: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / key}.sqlite3"
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = f"convkit_bench_turn_{os.getpid()}_{key}"
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.admin is not None:
            from sqlalchemy import text

            with self.admin.connect() as conn:
                for name in self.created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.admin.dispose()


# --------------------------------------------------------------------------- running


def check(body: bytes) -> tuple[int, int, bool]:
    """(messages, prompt tokens by convkit's count, orphaned tool messages?) of a request."""
    from convkit import count_tokens

    messages = json.loads(body)["messages"] if body else []
    called: set[str] = set()
    orphan = False
    for m in messages:
        if m.get("role") == "tool" and m.get("tool_call_id") not in called:
            orphan = True  # a result without its call: the API rejects the request
        called.update(c["id"] for c in m.get("tool_calls") or [])
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    orphan = orphan or bool(called - answered)
    return len(messages), count_tokens(messages, model=MODEL) if messages else 0, orphan


def bench_backend(
    backend: str, names: list[str], sizes: list[int], turns: int, cap: float, server: Server
) -> dict[tuple[str, int], dict[str, Any]]:
    dbs = Databases(backend)
    libs: dict[str, Any] = {}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    floor = Floor(server.base_url)
    try:
        for name in names:
            libs[name] = CONTENDERS[name](dbs.new(name), server.base_url)
        for size in sizes:  # every size is in the database before any is measured
            msgs = thread(size, seed=size)
            for name, lib in libs.items():
                t0 = time.perf_counter()
                lib.fill(size, msgs)
                print(
                    f"  {backend}: filled {size:,} for {name} in {time.perf_counter() - t0:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        for size in sizes:
            cells = {name: {"times": [], "spent": 0.0, "capped": False} for name in libs}
            cells["floor"] = {"times": [], "spent": 0.0, "capped": False}
            order = list(libs)
            for name in order:  # warm-up: two turns each, convkit first (it sets the floor body)
                if name == "agents" and "convkit" in libs:
                    libs[name].limit = libs["convkit"].window_messages
                libs[name].start(size)
                for w in range(2):
                    t0 = time.perf_counter()
                    libs[name].turn(user_text(-1 - w))
                    cells[name]["spent"] += time.perf_counter() - t0
                if name == "convkit":
                    floor.body = server.last_body()
            if not floor.body:  # convkit not run: a body of the same shape, built here
                shape = [
                    {"role": "system", "content": SYSTEM},
                    *thread(120, seed=size)[-100:],
                    {"role": "user", "content": user_text(0)},
                ]
                floor.body = json.dumps({"model": MODEL, "messages": shape}).encode()
            floor.turn("")
            contenders: dict[str, Any] = {"floor": floor, **libs}
            gc.collect()
            gc.disable()  # as in bench_fit: no full collection lands inside a timed turn
            try:
                for r in range(turns):
                    keys = list(contenders)
                    keys = keys[r % len(keys) :] + keys[: r % len(keys)]
                    for name in keys:
                        cell = cells[name]
                        if cell["spent"] > cap:
                            cell["capped"] = True
                            continue
                        t0 = time.perf_counter()
                        contenders[name].turn(user_text(r))
                        took = time.perf_counter() - t0
                        cell["spent"] += took
                        cell["times"].append(took)
                        if name != "floor":  # what it sent, checked outside the timing
                            cell.setdefault("checks", []).append(check(server.last_body()))
            finally:
                gc.enable()
                gc.collect()
            server.reset()
            for name, cell in cells.items():
                checks = cell.get("checks") or [check(floor.body if name == "floor" else b"")]
                results[(name, size)] = {
                    "median": statistics.median(cell["times"]) if cell["times"] else None,
                    "turns": len(cell["times"]),
                    "capped": cell["capped"],
                    "spent": cell["spent"],
                    "messages": checks[-1][0],
                    "tokens": max(c[1] for c in checks),
                    "over": sum(c[1] > BUDGET for c in checks),
                    "orphans": sum(c[2] for c in checks),
                    "checked": len(checks) if "checks" in cell else 0,
                }
                med = results[(name, size)]["median"]
                print(
                    f"  {backend} @ {size:,}: {name}: "
                    + (f"{med * 1e3:.2f} ms" if med is not None else "no timed turn")
                    + f" ({len(cell['times'])} turns{', capped' if cell['capped'] else ''})",
                    file=sys.stderr,
                    flush=True,
                )
            floor.body = b""
    finally:
        floor.close()
        for lib in libs.values():
            lib.close()
        dbs.drop_all()
    return results


def report(
    backend: str, res: dict[tuple[str, int], dict[str, Any]], names: list[str], sizes: list[int]
) -> str:
    labels = {"floor": Floor.name, **{k: CONTENDERS[k].name for k in names}}  # type: ignore[attr-defined]
    rows = []
    for size in sizes:
        fl = res[("floor", size)]["median"]
        ck = res.get(("convkit", size), {}).get("median")
        for name in ["floor", *names]:
            r = res[(name, size)]
            med = r["median"]
            over = "-" if med is None or name == "floor" else f"{(med - fl) * 1e3:,.2f}"
            vs = "-" if med is None or ck is None or name == "floor" else f"{med / ck:,.1f}x"
            turns = f"{r['turns']}" + (f" (capped at {r['spent']:.0f}s)" if r["capped"] else "")
            rows.append(
                [
                    labels[name],
                    f"{size:,}",
                    turns,
                    "-" if med is None else f"{med * 1e3:,.2f}",
                    over,
                    vs,
                    f"{r['messages']:,}",
                    f"{r['tokens']:,}",
                    "-" if not r["checked"] else f"{r['over']}/{r['checked']}",
                    "-" if not r["checked"] else f"{r['orphans']}/{r['checked']}",
                ]
            )
    header = [
        "contender",
        "thread",
        "turns",
        "median ms/turn",
        "minus floor (ms)",
        "vs convkit",
        "messages sent",
        "max prompt tokens",
        "over budget",
        "orphaned tools",
    ]
    out = [f"### {backend}", "", table(rows, header), ""]
    if "convkit" in names:
        ov = {s: res[("convkit", s)]["median"] - res[("floor", s)]["median"] for s in sizes}
        small, big = sizes[0], sizes[-1]
        out.append(
            f"- convkit overhead {big:,} vs {small:,} messages: {ov[big] * 1e3:.2f} / "
            f"{ov[small] * 1e3:.2f} ms = **{ov[big] / ov[small]:.2f}x** (target: within 1.5x)"
        )
        for name in names:
            if name == "convkit":
                continue
            ratios = []
            for s in sizes:
                m = res[(name, s)]["median"]
                ratios.append(
                    f"{s:,}: {m / res[('convkit', s)]['median']:,.1f}x" if m else f"{s:,}: -"
                )
            out.append(f"- {labels[name]} turn / convkit turn: " + ", ".join(ratios))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,10000,100000", help="thread sizes, comma-separated")
    ap.add_argument("--turns", type=int, default=20, help="timed turns per cell (after 2 warm-up)")
    ap.add_argument("--cap", type=float, default=60.0, help="seconds of turns per cell, at most")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument(
        "--only", default="", help="comma-separated contenders: convkit,langchain,agents"
    )
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    names = list(CONTENDERS)
    if args.only:
        wanted = [w.strip().lower() for w in args.only.split(",")]
        names = [n for n in names if any(n.startswith(w) for w in wanted)]
    started = time.perf_counter()
    print(
        f"# convkit turn benchmark (python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{MODEL}, {BUDGET:,}-token budget, {args.turns} turns per cell, cap {args.cap:.0f}s)\n"
    )
    server = Server()
    try:
        for backend in args.backends.split(","):
            try:
                res = bench_backend(backend, names, sizes, args.turns, args.cap, server)
            except LookupError:
                continue
            print(report(backend, res, names, sizes) + "\n", flush=True)
    finally:
        server.stop()
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
