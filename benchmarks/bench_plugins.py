"""Plugin overhead: stream middleware per chunk, and hook dispatch per call.

1. Middleware. A 20,000-chunk stream (4-character content chunks, plus role, finish and usage
   chunks) read through ``ChatClient.stream`` over an ``httpx.MockTransport`` that hands the
   server-sent events over 64 at a time, so every round does the client's real per-chunk work
   (SSE decoding, ``ChatChunk`` values, accumulation) without a socket. Contenders, timed in
   interleaved rounds in one process:

   * none          — iterate the stream and take its response (no middleware);
   * 3 pass        — each chunk also goes through a ``StreamPipeline`` of three pass-through
                     middleware (``return (chunk,)``), ``accumulate=False``: the pipeline's
                     own cost, what a host pays if it accumulates once, after the pipeline;
   * 3 pass + acc  — as ``3 pass`` with the pipeline accumulating its output (the default),
                     beside the client's own accumulator: the response from
                     ``pipeline.response()``;
   * 3, 1 edit     — as ``3 pass + acc``, the last middleware rewriting every chunk
                     (``with_text``);
   * 3 pass, turn  — what a conversation's streamed turn does with middleware: the client
                     stream opened with ``accumulate=False`` and the pipeline accumulating
                     its output (one accumulation in all, as with no middleware).

2. Dispatch. The cost of one hook call through ``PluginHost`` with no plugins and with ten
   no-op plugins, for each way the conversation calls hooks, next to pluggy's own
   ``pm.hook.<name>(...)`` with the same ten plugins; and a turn's worth of calls
   (prepare_request, window_fitted, finalize_request, wrap_stream, process_response,
   turn_stored).

Run from the repository root::

    .venv/bin/python benchmarks/bench_plugins.py [--chunks 20000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pluggy

from convkit import hookspecs
from convkit.chat import ChatChunk, ChatRequest, ChatResponse
from convkit.client import ChatClient
from convkit.hookspecs import CallContext, OutgoingRequest, RequestDraft, hookimpl
from convkit.messages import Message
from convkit.plugins import PluginHost, StreamPipeline, with_text

# No installed plugin in the figures: entry points are skipped as in convkit's tests.
sys._called_from_test = True  # type: ignore[attr-defined]

MODEL = "bench-model"


def _events(chunks: int) -> list[bytes]:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    objs: list[dict[str, Any]] = [
        {
            **head,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    objs += [
        {**head, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}
        for _ in range(chunks)
    ]
    objs.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    objs.append(
        {
            **head,
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": chunks, "total_tokens": chunks + 3},
        }
    )
    lines = [b"data: " + json.dumps(o, separators=(",", ":")).encode() + b"\n\n" for o in objs]
    lines.append(b"data: [DONE]\n\n")
    return [b"".join(lines[i : i + 64]) for i in range(0, len(lines), 64)]


def _client(chunks: int) -> ChatClient:
    writes = _events(chunks)

    def handler(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield from writes

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://bench.invalid/v1")
    return ChatClient(base_url="http://bench.invalid/v1", api_key="sk-bench", http_client=http)


class PassThrough:
    def feed(self, chunk: ChatChunk) -> tuple[ChatChunk, ...]:
        return (chunk,)

    def close(self) -> tuple[ChatChunk, ...]:
        return ()


MESSAGES = [{"role": "user", "content": "stream please"}]


def run_none(client: ChatClient) -> str:
    n = 0
    with client.stream(model=MODEL, messages=MESSAGES) as stream:
        for _chunk in stream:
            n += 1
        return stream.response.text


class Rewrite:
    def feed(self, chunk: ChatChunk) -> tuple[ChatChunk, ...]:
        return (with_text(chunk, chunk.text),)

    def close(self) -> tuple[ChatChunk, ...]:
        return ()


def run_pipeline(client: ChatClient, last: Any, accumulate: bool = True) -> str:
    pipeline = StreamPipeline([PassThrough(), PassThrough(), last], accumulate=accumulate)
    feed = pipeline.feed
    n = 0
    with client.stream(model=MODEL, messages=MESSAGES) as stream:
        for chunk in stream:
            for _out in feed(chunk):
                n += 1
        for _out in pipeline.close():
            n += 1
        return pipeline.response().text if accumulate else stream.response.text


def run_as_a_turn(client: ChatClient) -> str:
    from convkit.chat import ChatRequest

    pipeline = StreamPipeline([PassThrough(), PassThrough(), PassThrough()])
    feed = pipeline.feed
    n = 0
    request = ChatRequest(model=MODEL, messages=MESSAGES, params={"stream": True})
    with client.stream_request(request, accumulate=False) as stream:
        for chunk in stream:
            for _out in feed(chunk):
                n += 1
        for _out in pipeline.close():
            n += 1
        return pipeline.response().text


def bench_middleware(chunks: int, rounds: int) -> None:
    client = _client(chunks)
    contenders: dict[str, Callable[[], str]] = {
        "none": lambda: run_none(client),
        "3 pass": lambda: run_pipeline(client, PassThrough(), accumulate=False),
        "3 pass + acc": lambda: run_pipeline(client, PassThrough()),
        "3, 1 edit": lambda: run_pipeline(client, Rewrite()),
        "3 pass, turn": lambda: run_as_a_turn(client),
    }
    expected = "tok " * chunks
    for fn in contenders.values():  # warm up, and check every contender sees the whole reply
        assert fn() == expected
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    print(
        f"\n## Stream middleware: {chunks:,} chunks through ChatClient.stream, median of {rounds}\n"
    )
    print("| contender | ms per stream | µs per chunk | vs none |")
    print("| --- | --- | --- | --- |")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.1f} | {med / chunks * 1e6:.2f} | {med / base:.2f}x |")
    client.close()


# --------------------------------------------------------------------------- dispatch


class NoOp:
    """Implements every hook a turn calls, doing nothing."""

    def __init__(self, i: int) -> None:
        self.__name__ = f"noop-{i}"

    @hookimpl
    def prepare_request(self, draft: Any, context: Any) -> None:
        return None

    @hookimpl
    def finalize_request(self, request: Any, context: Any) -> None:
        return None

    @hookimpl
    def window_fitted(self, window: Any, context: Any) -> None:
        return None

    @hookimpl
    def wrap_stream(self, request: Any, context: Any) -> None:
        return None

    @hookimpl
    def process_response(self, response: Any, request: Any, context: Any) -> None:
        return None

    @hookimpl
    def turn_stored(self, messages: Any, usage: Any, context: Any) -> None:
        return None


def _per_call(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def bench_dispatch(calls: int) -> None:
    ctx = CallContext(thread_id="t", model=MODEL)
    draft = RequestDraft(model=MODEL)
    out = OutgoingRequest(model=MODEL, messages=[Message.user("hi")])
    req = ChatRequest(model=MODEL, messages=MESSAGES)
    resp = ChatResponse(id="r", model=MODEL, created=None, message=Message.assistant("ok"))
    none = PluginHost(global_plugins=False)
    ten = PluginHost([NoOp(i) for i in range(10)], global_plugins=False)
    raw = pluggy.PluginManager("convkit")
    raw.add_hookspecs(hookspecs)
    for i in range(10):
        raw.register(NoOp(i), name=f"noop-{i}")

    def turn(host: PluginHost) -> None:
        host.first_answer("prepare_request", draft=draft, context=ctx)
        host.notify("window_fitted", window=None, context=ctx)
        host.first_answer("finalize_request", request=out, context=ctx)
        host.middleware(request=req, context=ctx)
        host.process_response(response=resp, request=req, context=ctx)
        host.notify("turn_stored", messages=(), usage=None, context=ctx)

    def pluggy_turn() -> None:
        h = raw.hook
        h.prepare_request(draft=draft, context=ctx)
        h.window_fitted(window=None, context=ctx)
        h.finalize_request(request=out, context=ctx)
        h.wrap_stream(request=req, context=ctx)
        h.process_response(response=resp, request=req, context=ctx)
        h.turn_stored(messages=(), usage=None, context=ctx)

    rows: list[tuple[str, Callable[[PluginHost], Any], Callable[[], Any] | None]] = [
        (
            "first_answer(prepare_request)",
            lambda h: h.first_answer("prepare_request", draft=draft, context=ctx),
            lambda: raw.hook.prepare_request(draft=draft, context=ctx),
        ),
        (
            "notify(turn_stored)",
            lambda h: h.notify("turn_stored", messages=(), usage=None, context=ctx),
            lambda: raw.hook.turn_stored(messages=(), usage=None, context=ctx),
        ),
        (
            "process_response (chained)",
            lambda h: h.process_response(response=resp, request=req, context=ctx),
            lambda: raw.hook.process_response(response=resp, request=req, context=ctx),
        ),
        (
            "middleware(wrap_stream)",
            lambda h: h.middleware(request=req, context=ctx),
            lambda: raw.hook.wrap_stream(request=req, context=ctx),
        ),
        ("a turn's six hook calls", turn, pluggy_turn),
    ]
    print(f"\n## Hook dispatch: best of 5 x {calls:,} calls\n")
    print("| call | no plugins µs | 10 no-op plugins µs | pluggy pm.hook, 10 plugins µs |")
    print("| --- | --- | --- | --- |")
    for label, call, direct in rows:
        a = _per_call(lambda c=call: c(none), calls)  # type: ignore[misc]
        b = _per_call(lambda c=call: c(ten), calls)  # type: ignore[misc]
        c = _per_call(direct, calls) if direct is not None else float("nan")
        print(f"| {label} | {a * 1e6:.2f} | {b * 1e6:.2f} | {c * 1e6:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, pluggy {pluggy.__version__}"
    )
    bench_middleware(args.chunks, args.rounds)
    bench_dispatch(args.calls)


if __name__ == "__main__":
    main()
