"""Counting a 1,000-message conversation: convkit vs raw tiktoken vs LangChain vs LiteLLM.

Run (not part of CI):

    python3 -m venv .bench-venv && .bench-venv/bin/pip install -e . -r benchmarks/requirements.txt
    .bench-venv/bin/python benchmarks/bench_count.py

Every contender counts the same messages for gpt-4o in one process; times are medians,
ratios are against raw tiktoken (the cookbook loop over one encoding object: the floor).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import best_of, table

import convkit
from convkit import Message, TokenCounter

MODEL = "gpt-4o"
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards", "quietly", "judge", "boxing", "matches", "in", "Zürich,", "2024:", "tokens,", "café,", "naïve,", "東京,", "emoji", "🎉", "and", "code", "like", "print(x)", "or", "{'a':", "1}"]


def conversation(n: int = 1000, seed: int = 7) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(n - 1):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": " ".join(rnd.choices(WORDS, k=rnd.randint(10, 120)))})
    return msgs


def main() -> None:
    msgs = conversation()
    import tiktoken

    enc = tiktoken.get_encoding("o200k_base")

    def raw_tiktoken() -> int:
        n = 3
        for m in msgs:
            n += 3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"]))
        return n

    def raw_tiktoken_ordinary() -> int:
        n = 3
        for m in msgs:
            n += 3 + len(enc.encode_ordinary(m["role"])) + len(enc.encode_ordinary(m["content"]))
        return n

    def convkit_dicts() -> int:
        return convkit.count_tokens(msgs, model=MODEL)

    values = [Message.from_openai(m) for m in msgs]

    def convkit_messages_fresh() -> int:
        return TokenCounter(MODEL).count(values)  # a new counter: nothing cached

    cached = TokenCounter(MODEL)
    cached.count(values)

    def convkit_messages_cached() -> int:
        return cached.count(values)

    contenders = [
        ("raw tiktoken (floor)", raw_tiktoken),
        ("raw tiktoken, encode_ordinary", raw_tiktoken_ordinary),
        ("convkit count_tokens(dicts)", convkit_dicts),
        ("convkit TokenCounter, fresh (Messages)", convkit_messages_fresh),
        ("convkit TokenCounter, cached (Messages)", convkit_messages_cached),
    ]
    try:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        from langchain_openai import ChatOpenAI

        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        lc_msgs = [kinds[m["role"]](content=m["content"]) for m in msgs]
        llm = ChatOpenAI(model=MODEL, api_key="sk-bench")
        contenders.append(
            ("LangChain get_num_tokens_from_messages", lambda: llm.get_num_tokens_from_messages(lc_msgs))
        )
    except ImportError as exc:
        print(f"LangChain not available: {exc}")
    try:
        import litellm

        contenders.append(("LiteLLM token_counter", lambda: litellm.token_counter(model=MODEL, messages=msgs)))
    except ImportError as exc:
        print(f"LiteLLM not available: {exc}")

    rows = []
    floor = None
    for name, fn in contenders:
        count = fn()
        t = best_of(fn, repeat=9)
        floor = floor or t
        rows.append([name, str(count), f"{t * 1e3:.2f}", f"{t / floor:.2f}x"])
    print(f"Counting {len(msgs)} messages for {MODEL} (median of 9 runs)\n")
    print(table(rows, ["contender", "tokens", "ms", "vs raw tiktoken"]))


if __name__ == "__main__":
    main()
