"""Per-turn cost of fitting a long thread into an 8,000-token window for gpt-4o.

Each turn appends one message and fits the thread to 8,000 prompt tokens. convkit uses a
TrimOldest policy over messages whose counts were cached when they entered (as the store keeps
them); the peers are LangChain ``trim_messages`` (ChatOpenAI's tiktoken counter), LiteLLM
``trim_messages`` and LlamaIndex ``ChatMemoryBuffer`` (tiktoken tokenizer). Same threads, one
process. Every window is checked: over budget (by convkit's exact count) and orphaned tool
messages (a result without its call, or a call without its results).

    .bench-venv/bin/python benchmarks/bench_fit.py [--turns 20]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import table

from convkit import Message, TokenCounter, count_tokens
from convkit.context import Counted, TrimOldest

MODEL = "gpt-4o"
BUDGET = 8_000
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "weather",
    "Paris",
    "Rome",
    "forecast",
    "sunny",
    "rain",
    "12",
    "degrees",
    "and",
    "the",
    "a",
    "of",
]


def thread(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """A thread of about ``n`` messages: chat turns with a tool-call group every few turns."""
    rnd = random.Random(seed)
    text = lambda k: " ".join(rnd.choices(WORDS, k=k))  # noqa: E731
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    call = 0
    while len(msgs) < n:
        msgs.append({"role": "user", "content": text(rnd.randint(10, 60))})
        if rnd.random() < 0.25:
            ids = []
            calls = []
            for _ in range(2):
                call += 1
                ids.append(f"call_{call}")
                calls.append(
                    {
                        "id": f"call_{call}",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                )
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            for cid in ids:
                msgs.append(
                    {"role": "tool", "tool_call_id": cid, "content": text(rnd.randint(20, 200))}
                )
        msgs.append({"role": "assistant", "content": text(rnd.randint(20, 120))})
    return msgs[:n]


def new_message(i: int) -> dict[str, Any]:
    return {
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"turn {i}: " + "more words " * 20,
    }


def check(window: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(over budget, has an orphan) for a window of wire dicts."""
    over = count_tokens(window, model=MODEL) > BUDGET
    called: set[str] = set()
    orphan = False
    for m in window:
        if m.get("role") == "tool" and m.get("tool_call_id") not in called:
            orphan = True
        for c in m.get("tool_calls") or []:
            called.add(c["id"])
    answered = {m.get("tool_call_id") for m in window if m.get("role") == "tool"}
    if called - answered:
        orphan = True
    return over, orphan


# ---- contenders: each returns (setup(thread) -> state, turn(state, msg) -> window dicts)


def convkit_policy() -> tuple[Callable[..., Any], Callable[..., Any]]:
    counter = TokenCounter(MODEL)
    policy = TrimOldest(MODEL, max_prompt_tokens=BUDGET, counter=counter)

    def setup(msgs: list[dict[str, Any]]) -> Any:
        system = [Message.from_openai(msgs[0])]
        hist = []
        for i, d in enumerate(msgs[1:], start=1):
            m = Message.from_openai(d)
            hist.append(Counted(message=m, tokens=counter.count_message(m), seq=i))
        return system, hist

    def turn(state: Any, d: dict[str, Any]) -> list[dict[str, Any]]:
        system, hist = state
        m = Message.from_openai(d)  # what enters is counted once, as the store does
        hist.append(Counted(message=m, tokens=counter.count_message(m), seq=len(hist) + 1))
        w = policy.fit(hist, system=system)
        return [m.to_openai() for m in w.messages]

    return setup, turn


def langchain() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from langchain_core.messages import (
        convert_to_messages,
        convert_to_openai_messages,
        trim_messages,
    )
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, api_key="sk-bench")

    def setup(msgs: list[dict[str, Any]]) -> Any:
        return list(convert_to_messages(msgs))

    def turn(state: Any, d: dict[str, Any]) -> list[dict[str, Any]]:
        state.extend(convert_to_messages([d]))
        w = trim_messages(
            state,
            max_tokens=BUDGET,
            token_counter=llm,
            strategy="last",
            include_system=True,
            start_on="human",
            allow_partial=False,
        )
        return list(convert_to_openai_messages(w))

    return setup, turn


def litellm_trim() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from litellm.utils import trim_messages as lt

    def setup(msgs: list[dict[str, Any]]) -> Any:
        return [dict(m) for m in msgs]

    def turn(state: Any, d: dict[str, Any]) -> list[dict[str, Any]]:
        state.append(d)
        out = lt(state, model=MODEL, max_tokens=BUDGET)
        return out if isinstance(out, list) else out[0]

    return setup, turn


def llamaindex() -> tuple[Callable[..., Any], Callable[..., Any]]:
    import tiktoken
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    enc = tiktoken.get_encoding("o200k_base")

    def to_li(d: dict[str, Any]) -> ChatMessage:
        extra = {k: v for k, v in d.items() if k in ("tool_calls", "tool_call_id")}
        return ChatMessage(role=d["role"], content=d.get("content"), additional_kwargs=extra)

    def to_wire(m: ChatMessage) -> dict[str, Any]:
        d: dict[str, Any] = {"role": m.role.value, "content": m.content}
        d.update(m.additional_kwargs)
        return d

    def setup(msgs: list[dict[str, Any]]) -> Any:
        mem = ChatMemoryBuffer.from_defaults(token_limit=BUDGET, tokenizer_fn=enc.encode)
        mem.set([to_li(d) for d in msgs])
        return mem

    def turn(mem: Any, d: dict[str, Any]) -> list[dict[str, Any]]:
        mem.put(to_li(d))
        return [to_wire(m) for m in mem.get()]

    return setup, turn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--only", default="", help="comma-separated name prefixes of contenders to run")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="stop a cell after this much fitting time (at least 1 turn runs)",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    contenders = {
        "convkit TrimOldest": convkit_policy,
        "LangChain trim_messages": langchain,
        "LiteLLM trim_messages": litellm_trim,
        "LlamaIndex ChatMemoryBuffer": llamaindex,
    }
    if args.only:
        wanted = [w.strip().lower() for w in args.only.split(",")]
        contenders = {
            n: f for n, f in contenders.items() if any(n.lower().startswith(w) for w in wanted)
        }
    results: dict[tuple[str, int], tuple[float, int, int, int]] = {}
    for size in sizes:
        msgs = thread(size)
        for name, make in contenders.items():
            try:
                setup, turn = make()
            except ImportError as exc:
                print(f"skip {name}: {exc}")
                continue
            state = setup(msgs)
            turn(state, new_message(-1))  # warm-up
            # The cycle collector stays out of the timed turns, for every contender alike: a
            # full collection over a big heap would land in whichever turn triggered it (and a
            # collection between turns would leave each turn with cold caches). Reference
            # counting still frees each turn's garbage; cycles are collected after the cell.
            gc.collect()
            gc.disable()
            over = orphan = 0
            elapsed = 0.0
            done = 0
            times: list[float] = []
            for i in range(args.turns):
                if done >= 1 and elapsed > args.max_seconds:
                    break
                d = new_message(i)
                t0 = time.perf_counter()
                window = turn(state, d)
                took = time.perf_counter() - t0
                elapsed += took
                times.append(took)
                o, p = check(window)
                over += o
                orphan += p
                done += 1
            gc.enable()
            del state
            gc.collect()
            median = statistics.median(times)
            results[(name, size)] = (median, over, orphan, done)
            print(
                f"  {name} @ {size}: {median * 1e3:.3f} ms/turn median ({done} turns)", flush=True
            )

    rows = []
    for (name, size), (t, over, orphan, turns) in results.items():
        ck = results.get(("convkit TrimOldest", size))
        ratio = f"{t / ck[0]:.1f}x" if ck else "-"
        rows.append(
            [name, str(size), f"{t * 1e3:.3f}", ratio, f"{over}/{turns}", f"{orphan}/{turns}"]
        )
    print(
        f"\nPer-turn fitting to {BUDGET} tokens for {MODEL} (up to {args.turns} turns per cell)\n"
    )
    print(
        table(
            rows,
            [
                "contender",
                "thread",
                "median ms/turn",
                "vs convkit",
                "over budget",
                "orphaned tools",
            ],
        )
    )
    ck = {
        s: results[("convkit TrimOldest", s)][0]
        for s in sizes
        if ("convkit TrimOldest", s) in results
    }
    if 100 in ck and 10000 in ck:
        print(f"\nconvkit 10,000 vs 100 messages: {ck[10000] / ck[100]:.2f}x")
    if 1000 in ck:
        peers = [
            results[(n, 1000)][0]
            for n in contenders
            if n != "convkit TrimOldest" and (n, 1000) in results
        ]
        if peers:
            print(f"fastest peer vs convkit at 1,000 messages: {min(peers) / ck[1000]:.1f}x")


if __name__ == "__main__":
    main()
