"""Shared set-up for the benchmarks: offline tiktoken caches for peers, timing, tables.

Import this module before any peer library: it fills a tiktoken cache directory from the
hash-verified files convkit uses, and points tiktoken (and LiteLLM, which overrides
``TIKTOKEN_CACHE_DIR`` at import) at it, so that peers run without a network.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convkit._encodings import KNOWN_ENCODINGS, load_verified_ranks, tiktoken_cache_key


def _fill_tiktoken_cache() -> str:
    cache = Path(tempfile.gettempdir()) / "convkit-bench-tiktoken"
    cache.mkdir(exist_ok=True)
    import base64

    for name, spec in KNOWN_ENCODINGS.items():
        target = cache / tiktoken_cache_key(name)
        if target.exists():
            continue
        ranks = load_verified_ranks(spec)
        assert ranks is not None, f"no local file for {name}"
        lines = [
            base64.b64encode(tok) + b" " + str(rank).encode()
            for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])
        ]
        target.write_bytes(b"\n".join(lines) + b"\n")
    return str(cache)


CACHE_DIR = _fill_tiktoken_cache()
os.environ["TIKTOKEN_CACHE_DIR"] = CACHE_DIR
os.environ["CUSTOM_TIKTOKEN_CACHE_DIR"] = CACHE_DIR
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")


def best_of(fn: Callable[[], Any], *, repeat: int = 7, number: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    fn()  # warm-up: imports, caches, lazy loading
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
