"""Counting: a 1,000-message conversation, then tools and tool-call history, vs the peers.

Run (not part of CI):

    python3 -m venv .bench-venv && .bench-venv/bin/pip install -e . -r benchmarks/requirements.txt
    .bench-venv/bin/python benchmarks/bench_count.py            # everything
    .bench-venv/bin/python benchmarks/bench_count.py tools      # the tools part only

Part 1: every contender counts the same messages for gpt-4o in one process; times are medians,
ratios are against raw tiktoken (the cookbook loop over one encoding object: the floor).

Part 2: 100 tool definitions and a 1,000-message history in which 20% of the messages are tool
exchanges (assistant tool calls, some parallel, and their results), counted by convkit and by
LiteLLM's ``token_counter`` with the same ``tools`` and ``tool_choice``; then how many of the
published API-reported figures (``tests/tool_vectors.py``, ``tests/cookbook.py``) each
reproduces exactly and how many it under-counts.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _common import best_of, table

import convkit
from convkit import Message, TokenCounter

MODEL = "gpt-4o"
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "in",
    "Zürich,",
    "2024:",
    "tokens,",
    "café,",
    "naïve,",
    "東京,",
    "emoji",
    "🎉",
    "and",
    "code",
    "like",
    "print(x)",
    "or",
    "{'a':",
    "1}",
]


def conversation(n: int = 1000, seed: int = 7) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(n - 1):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": " ".join(rnd.choices(WORDS, k=rnd.randint(10, 120)))})
    return msgs


def main() -> None:
    if sys.argv[1:] != ["tools"]:
        plain()
        print()
    tools_part()


def plain() -> None:
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
            (
                "LangChain get_num_tokens_from_messages",
                lambda: llm.get_num_tokens_from_messages(lc_msgs),
            )
        )
    except ImportError as exc:
        print(f"LangChain not available: {exc}")
    try:
        import litellm

        contenders.append(
            ("LiteLLM token_counter", lambda: litellm.token_counter(model=MODEL, messages=msgs))
        )
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


# ---- part 2: tools


def tool_definitions(n: int = 100, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` function tools of mixed shapes: flat, enums, arrays, nested objects."""
    rnd = random.Random(seed)
    tools = []
    for i in range(n):
        props: dict[str, Any] = {}
        for j in range(rnd.randint(1, 6)):
            kind = rnd.choice(["string", "integer", "boolean", "enum", "array", "object"])
            desc = " ".join(rnd.choices(WORDS[:20], k=rnd.randint(0, 12)))
            if kind == "enum":
                spec: dict[str, Any] = {"type": "string", "enum": rnd.sample(WORDS[:12], 3)}
            elif kind == "array":
                spec = {"type": "array", "items": {"type": "string"}}
            elif kind == "object":
                spec = {
                    "type": "object",
                    "properties": {"inner": {"type": "number"}, "flag": {"type": "boolean"}},
                }
            else:
                spec = {"type": kind}
            if desc:
                spec["description"] = desc
            props[f"p{j}_{kind}"] = spec
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i}",
                    "description": " ".join(rnd.choices(WORDS[:20], k=rnd.randint(3, 15))),
                    "parameters": {
                        "type": "object",
                        "properties": props,
                        "required": [k for k in props if rnd.random() < 0.5],
                    },
                },
            }
        )
    return tools


def tool_history(n: int = 1000, seed: int = 5) -> list[dict[str, Any]]:
    """``n`` messages, 20% of them tool exchanges (calls and results), a quarter of calls parallel."""
    rnd = random.Random(seed)
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    call = tool_msgs = 0
    while len(msgs) < n:
        if tool_msgs < 0.2 * len(msgs) and msgs[-1]["role"] == "user":
            k = 2 if rnd.random() < 0.25 else 1
            calls = []
            for _ in range(k):
                call += 1
                args = json.dumps({"query": " ".join(rnd.choices(WORDS, k=5)), "n": call})
                calls.append(
                    {
                        "id": f"call_{call:024d}",
                        "type": "function",
                        "function": {"name": f"tool_{call % 100}", "arguments": args},
                    }
                )
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            for c in calls:
                result = " ".join(rnd.choices(WORDS, k=rnd.randint(10, 60)))
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": result})
            tool_msgs += 1 + k
        else:
            role = "user" if msgs[-1]["role"] != "user" else "assistant"
            msgs.append(
                {"role": role, "content": " ".join(rnd.choices(WORDS, k=rnd.randint(10, 120)))}
            )
    while msgs[-1].get("tool_calls"):  # never end on a call without its results
        msgs.pop()
    return msgs


def _litellm_tools(v: Any) -> tuple[Any, Any]:
    """A vector's tools and choice as LiteLLM takes them (it has no legacy parameters)."""
    tools = v.tools or (
        [{"type": "function", "function": f} for f in v.functions] if v.functions else None
    )
    choice = v.tool_choice
    if v.function_call is not None:
        fc = v.function_call
        choice = {"type": "function", "function": fc} if isinstance(fc, dict) else fc
    return tools, choice


def tools_part() -> None:
    from tests import cookbook, tool_vectors

    tools = tool_definitions()
    msgs = tool_history()
    choice = {"type": "function", "function": {"name": "tool_7"}}
    exchanges = sum(1 for m in msgs if m["role"] == "tool" or m.get("tool_calls"))
    values = [Message.from_openai(m) for m in msgs]
    cached = TokenCounter(MODEL)
    cached.count(values, tools=tools, tool_choice=choice)

    contenders = [
        (
            "convkit count_tokens(dicts)",
            lambda: convkit.count_tokens(msgs, model=MODEL, tools=tools, tool_choice=choice),
        ),
        (
            "convkit TokenCounter, fresh (Messages)",
            lambda: TokenCounter(MODEL).count(values, tools=tools, tool_choice=choice),
        ),
        (
            "convkit TokenCounter, cached (Messages)",
            lambda: cached.count(values, tools=tools, tool_choice=choice),
        ),
        (
            "convkit count_tools (definitions + choice only)",
            lambda: TokenCounter(MODEL).count_tools(tools, choice),
        ),
    ]
    try:
        import litellm

        contenders.append(
            (
                "LiteLLM token_counter",
                lambda: litellm.token_counter(
                    model=MODEL, messages=msgs, tools=tools, tool_choice=choice
                ),
            )
        )
    except ImportError as exc:
        litellm = None
        print(f"LiteLLM not available: {exc}")

    rows = []
    base = None
    for name, fn in contenders:
        count = fn()
        t = best_of(fn, repeat=7)
        base = base or t
        rows.append([name, f"{count:,}", f"{t * 1e3:.2f}", f"{t / base:.2f}x"])
    print(
        f"Counting {len(tools)} tool definitions + {len(msgs)} messages ({exchanges} tool-exchange "
        f"messages, {exchanges / len(msgs):.0%}) with a named tool_choice for {MODEL} (median of 7)\n"
    )
    print(table(rows, ["contender", "tokens", "ms", "vs convkit count_tokens"]))
    est = cached.measure(values, tools=tools, tool_choice=choice)
    print(f"\nconvkit flags the count exact={est.exact}: {'; '.join(est.reasons)}")

    # ---- agreement with the published figures
    cook = [
        tool_vectors.Vector(
            name=f"cookbook {m}",
            model=m,
            messages=cookbook.TOOL_MESSAGES,
            tools=cookbook.TOOLS,
            expected=e,
        )
        for m, e in sorted(cookbook.API_TOOL_FIGURES.items())
    ]
    hmarr = [
        v
        for v in tool_vectors.HMARR
        if v.functions
        or v.function_call
        or any(m["role"] == "function" or "function_call" in m for m in v.messages)
    ]
    groups = [
        ("cookbook tool example", cook, None),
        ("hmarr 2023 functions", hmarr, "2023"),
        ("pamelafox 2024 tools", tool_vectors.PAMELAFOX, None),
        ("tool-call history (community)", tool_vectors.HISTORY, None),
    ]
    rows = []
    for label, vectors, profile in groups:
        counts: dict[str, list[int]] = {
            "convkit": [],
            "convkit, default profile": [],
            "LiteLLM": [],
        }
        for v in vectors:
            kw = {
                "tools": v.tools,
                "tool_choice": v.tool_choice,
                "functions": v.functions,
                "function_call": v.function_call,
            }
            counts["convkit"].append(
                TokenCounter(v.model, tool_profile=profile).count(v.messages, **kw) - v.expected
            )
            counts["convkit, default profile"].append(
                TokenCounter(v.model).count(v.messages, **kw) - v.expected
            )
            if litellm is not None:
                lt, lc = _litellm_tools(v)
                model = v.model.replace("gpt-35", "gpt-3.5")  # LiteLLM knows OpenAI's names
                try:
                    got = litellm.token_counter(
                        model=model, messages=v.messages, tools=lt, tool_choice=lc
                    )
                    counts["LiteLLM"].append(got - v.expected)
                except Exception as exc:
                    print(f"LiteLLM failed on {v.name!r}: {type(exc).__name__}: {exc}")
        for who, diffs in counts.items():
            if who == "convkit, default profile" and profile is None:
                continue
            if not diffs:
                continue
            rows.append(
                [
                    label,
                    who,
                    str(len(vectors)),
                    str(sum(d == 0 for d in diffs)),
                    str(sum(d < 0 for d in diffs)),
                    f"{min(diffs):+d} .. {max(diffs):+d}",
                ]
            )
    print("\nAgreement with published API-reported figures\n")
    print(table(rows, ["vectors", "counter", "n", "exact", "under", "error range"]))


if __name__ == "__main__":
    main()
