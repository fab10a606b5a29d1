"""The fitting core alone: ``TrimOldest.fit`` over 1,000 cached-count messages, 8,000 tokens.

No store and no appends (``bench_fit.py`` has those): the median of 300 fits of the same
thread, gc off while timing. Run it against two checkouts to compare them::

    PYTHONPATH=/path/to/checkout .bench-venv/bin/python benchmarks/bench_fit_core.py LABEL
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_fit import thread

from convkit import Message, TokenCounter
from convkit.context import Counted, TrimOldest


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "convkit"
    counter = TokenCounter("gpt-4o")
    msgs = [Message.from_openai(d) for d in thread(1000)]
    hist = [
        Counted(message=m, tokens=counter.count_message(m), seq=i + 1) for i, m in enumerate(msgs)
    ]
    policy = TrimOldest("gpt-4o", max_prompt_tokens=8000, counter=counter)
    system = [Message.system("Be brief.")]
    for _ in range(20):
        policy.fit(hist, system=system)
    times = []
    gc.disable()
    for _ in range(300):
        t0 = time.perf_counter()
        policy.fit(hist, system=system)
        times.append(time.perf_counter() - t0)
    gc.enable()
    med, low = statistics.median(times) * 1e3, min(times) * 1e3
    print(f"{label}: median {med:.3f} ms, min {low:.3f} ms")


if __name__ == "__main__":
    main()
