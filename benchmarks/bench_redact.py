"""Per-chunk cost of convkit-redact's stream middleware on a 20,000-chunk stream, vs none.

The same 20,000 content chunks (4 characters each, made with
``convkit.testing.plugins.text_chunks``) go through a :class:`convkit.plugins.StreamPipeline`
without middleware and with the :class:`convkit_redact.Restorer` of a conversation that gave
out 50 placeholders, in one run. Two streams:

* ``plain``        — text without ``[``: the common case (one substring test per chunk);
* ``placeholders`` — a placeholder every ~60 characters, split across chunks, so the
                     middleware holds back, restores and rebuilds chunks.

Each round runs the whole stream; the figure is the median of the rounds, per chunk.

Run from the repository root::

    .venv/bin/python benchmarks/bench_redact.py [--chunks 20000] [--rounds 7]

(the test environment of the README, which installs convkit-redact).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from convkit_redact import Restorer

from convkit.chat import ChatChunk
from convkit.plugins import StreamPipeline
from convkit.testing.plugins import text_chunks

ORIGINALS = {f"[EMAIL_{i}]": f"user{i}@example.org" for i in range(1, 51)}


def stream_text(chunks: int, with_placeholders: bool) -> list[str]:
    sentence = "the quick brown fox jumps over the lazy dog, again and again. "
    if with_placeholders:
        sentence = "write to [EMAIL_7] about the brown fox and the dog again. "
    text = (sentence * (chunks * 4 // len(sentence) + 1))[: chunks * 4]
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def run(chunks: list[ChatChunk], middleware: list[Restorer]) -> tuple[float, str]:
    pipeline = StreamPipeline(middleware, accumulate=False)
    out: list[str] = []
    start = time.perf_counter()
    for chunk in chunks:
        for c in pipeline.feed(chunk):
            out.append(c.text)
    for c in pipeline.close():
        out.append(c.text)
    return time.perf_counter() - start, "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {args.chunks} chunks, median of {args.rounds}")
    for name, marked in (("plain", False), ("placeholders", True)):
        chunks = text_chunks(stream_text(args.chunks, marked))
        none, restored = [], []
        for _ in range(args.rounds):
            t0, text0 = run(chunks, [])
            t1, text1 = run(chunks, [Restorer(ORIGINALS)])
            none.append(t0)
            restored.append(t1)
        assert ("[EMAIL_7]" in text0) == marked
        assert "[EMAIL_7]" not in text1
        base = statistics.median(none) / args.chunks * 1e9
        mw = statistics.median(restored) / args.chunks * 1e9
        print(
            f"{name:13s} none {base:7.0f} ns/chunk   redact {mw:7.0f} ns/chunk   "
            f"ratio {mw / base:5.2f}x   (+{mw - base:.0f} ns/chunk)"
        )


if __name__ == "__main__":
    main()
