"""Streaming throughput: convkit vs raw httpx + json.loads (the floor) vs the openai SDK.

The loopback FakeChatServer runs in a child process (so it never competes with the clients for
the GIL) and streams the same reply to every client: 20,000 small content chunks (4 characters
each) plus the role, finish and usage chunks, each event framed as its own HTTP chunk as real
servers do, written 64 events per socket write so the server is never the bottleneck.

Each client is created once, outside the timed region (so connection pools and TLS setup cost
nothing); a round times one whole stream: the request, the headers and every chunk parsed.
Each client parses every chunk:

* floor   — ``httpx.Client.stream`` + ``iter_lines`` + ``json.loads`` of each ``data:`` line
            (no objects, no accumulation: the least work any client can do);
* convkit — ``ChatClient.stream``: SSE decoding, ``ChatChunk`` values and the accumulated
            ``ChatResponse``;
* openai  — the official SDK's ``chat.completions.create(stream=True)``.

Run from the repository root::

    .bench-venv/bin/python benchmarks/bench_stream.py [--chunks 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "stream please"}]


def _serve(conn: Any, chunks: int, events_per_write: int) -> None:
    from convkit.testing import FakeChatServer, Reply

    text = "tok " * chunks

    def responder(request: Any) -> Any:
        return Reply.text(text, chunk_size=4, events_per_write=events_per_write)

    with FakeChatServer(default_responder=responder) as server:
        conn.send(server.base_url)
        conn.recv()  # block until the parent says stop


def make_floor(base_url: str) -> tuple[Callable[[], tuple[int, str]], Callable[[], None]]:
    import httpx

    http = httpx.Client(timeout=60)
    body = {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def run() -> tuple[int, str]:
        n = 0
        parts = []
        with http.stream("POST", base_url + "/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    if data == "[DONE]":
                        break
                    obj = json.loads(data)
                    n += 1
                    if obj["choices"]:
                        parts.append(obj["choices"][0]["delta"].get("content") or "")
        return n, "".join(parts)

    return run, http.close


def make_convkit(base_url: str) -> tuple[Callable[[], tuple[int, str]], Callable[[], None]]:
    from convkit.client import ChatClient

    client = ChatClient(base_url=base_url, api_key="sk-bench", timeout=60)

    def run() -> tuple[int, str]:
        n = 0
        with client.stream(model=MODEL, messages=MESSAGES) as stream:
            for _ in stream:
                n += 1
        return n, stream.response.text  # the accumulated response, as a caller would use it

    return run, client.close


def make_openai(base_url: str) -> tuple[Callable[[], tuple[int, str]], Callable[[], None]]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=60)

    def run() -> tuple[int, str]:
        n = 0
        parts = []
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            for chunk in stream:
                n += 1
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
        return n, "".join(parts)

    return run, client.close


FACTORIES = {"floor": make_floor, "convkit": make_convkit, "openai": make_openai}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=20_000, help="content chunks per stream")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per client")
    parser.add_argument(
        "--events-per-write", type=int, default=64, help="server events per socket write"
    )
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, args.chunks, args.events_per_write), daemon=True)
    proc.start()
    try:
        base_url = parent.recv()
        made = {name: make(base_url) for name, make in FACTORIES.items()}
        runners = {name: run for name, (run, _close) in made.items()}
        expected = "tok " * args.chunks
        for name, run in runners.items():  # warm-up, and check every client got the whole text
            n, text = run()
            if text != expected:
                raise SystemExit(f"{name} returned the wrong text ({len(text)} chars)")
        times: dict[str, list[float]] = {name: [] for name in runners}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits all alike
            for name, run in runners.items():
                t0 = time.perf_counter()
                n, _text = run()
                times[name].append(time.perf_counter() - t0)
                counts[name] = n
        for _run, close in made.values():
            close()
    finally:
        parent.send("stop")
        proc.join(10)

    floor = statistics.median(times["floor"])
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{args.chunks} content chunks per stream, {args.rounds} rounds, median (best) per client"
    )
    print(
        f"{'client':<9} {'chunks':>7} {'median s':>9} {'chunks/s':>10} {'best chunks/s':>14} {'vs floor':>9}"
    )
    for name in FACTORIES:
        med = statistics.median(times[name])
        best = min(times[name])
        n = counts[name]
        print(
            f"{name:<9} {n:>7} {med:>9.3f} {n / med:>10,.0f} {n / best:>14,.0f} {floor / med:>8.2f}x"
        )
    ck = statistics.median(times["convkit"])
    sdk = statistics.median(times["openai"])
    print(f"convkit / floor throughput: {floor / ck:.2f}x (target >= 0.80x)")
    print(f"convkit / openai throughput: {sdk / ck:.2f}x (target > 1x)")


if __name__ == "__main__":
    main()
