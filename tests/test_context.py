"""Context fitting: every window fits, is valid for the API, and keeps what must be kept."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convkit
from convkit import ContextOverflowError, Message, count_tokens
from convkit.context import (
    Counted,
    Summarize,
    Summary,
    SummaryRequest,
    TrimOldest,
    default_reply_reserve,
    trim_messages,
)

MODEL = "gpt-4o"


def _png(w: int, h: int) -> str:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    raw = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(raw).decode()


# ---- a generator of realistic, messy conversations (wire dicts)

_words = st.lists(
    st.sampled_from(["alpha", "beta", "gamma", "delta", "épsilon", "42", "the", "weather", "🎉"]),
    min_size=1,
    max_size=30,
).map(" ".join)
_huge = st.integers(min_value=500, max_value=3000).map(lambda n: "lorem ipsum " * n)


@st.composite
def _user(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "text", "parts", "huge"]))
    d: dict[str, Any] = {"role": "user"}
    if kind == "text":
        d["content"] = draw(_words)
    elif kind == "huge":
        d["content"] = draw(_huge)
    else:
        parts: list[dict[str, Any]] = [{"type": "text", "text": draw(_words)}]
        if draw(st.booleans()):
            size = draw(st.sampled_from([(64, 64), (1024, 1024), (300, 2000)]))
            detail = draw(st.sampled_from(["low", "high", "auto"]))
            parts.append({"type": "image_url", "image_url": {"url": _png(*size), "detail": detail}})
        parts.append({"type": "text", "text": draw(_words)})
        d["content"] = parts
    if draw(st.integers(0, 4)) == 0:
        d["name"] = draw(st.sampled_from(["ann", "bob"]))
    return d


@st.composite
def _tool_group(draw: st.DrawFn, counter: list[int]) -> list[dict[str, Any]]:
    n_calls = draw(st.integers(1, 3))
    ids = []
    calls = []
    for _ in range(n_calls):
        counter[0] += 1
        cid = f"call_{counter[0]}"
        ids.append(cid)
        calls.append(
            {
                "id": cid,
                "type": "function",
                "function": {"name": "lookup", "arguments": draw(_words)},
            }
        )
    out: list[dict[str, Any]] = [
        {"role": "assistant", "content": draw(st.none() | _words), "tool_calls": calls}
    ]
    aborted = draw(st.integers(0, 5)) == 0
    answered = ids[: draw(st.integers(0, len(ids)))] if aborted else ids
    if draw(st.integers(0, 6)) == 0:
        out.append({"role": "assistant", "content": draw(_words)})  # text between call and result
    for cid in answered:
        for _ in range(draw(st.integers(1, 2))):  # sometimes several results per call
            out.append({"role": "tool", "tool_call_id": cid, "content": draw(_words | _huge)})
    return out


def _call(cid: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


@st.composite
def _messy_group(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Shapes real threads end up with: ids reused after an aborted call, a result stored
    before its call, two groups interleaved."""
    shape = draw(st.sampled_from(["reused", "result_first", "interleaved"]))
    if shape == "reused":
        return [
            {"role": "assistant", "content": None, "tool_calls": [_call("call_0")]},
            {"role": "user", "content": "hello? try again"},
            {"role": "assistant", "content": None, "tool_calls": [_call("call_0")]},
            {"role": "tool", "tool_call_id": "call_0", "content": draw(_words)},
        ]
    if shape == "result_first":
        return [
            {"role": "tool", "tool_call_id": "call_rf", "content": draw(_words)},
            {
                "role": "assistant",
                "content": draw(st.none() | _words),
                "tool_calls": [_call("call_rf")],
            },
        ]
    return [
        {"role": "assistant", "content": None, "tool_calls": [_call("call_x")]},
        {"role": "assistant", "content": None, "tool_calls": [_call("call_y")]},
        {"role": "tool", "tool_call_id": "call_y", "content": draw(_words)},
        {"role": "tool", "tool_call_id": "call_x", "content": draw(_words)},
    ]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        role = draw(st.sampled_from(["system", "developer"]))
        msgs.append({"role": role, "content": draw(_words)})
    counter = [0]
    for _ in range(draw(st.integers(1, 8))):
        msgs.append(draw(_user()))
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.integers(0, 9))
            if kind < 4:
                msgs.extend(draw(_tool_group(counter)))
            elif kind == 4:
                msgs.extend(draw(_messy_group()))
            else:
                msgs.append({"role": "assistant", "content": draw(_words)})
    if draw(st.integers(0, 6)) == 0:
        # a stray result whose call was never sent
        msgs.append({"role": "tool", "tool_call_id": "call_missing", "content": "x"})
    return msgs


# ---- invariants


def check_window(
    original: Sequence[dict[str, Any]],
    window: Sequence[dict[str, Any]],
    budget: int,
    *,
    tools: list[dict[str, Any]] | None = None,
    truncated_ok: bool = False,
) -> None:
    assert count_tokens(window, model=MODEL, tools=tools) <= budget
    # the leading system/developer prompt is kept, identically
    k = 0
    while k < len(original) and original[k]["role"] in ("system", "developer"):
        k += 1
    assert list(window[:k]) == list(original[:k])
    rest = list(window[k:])
    # starts on a user turn
    if rest:
        assert rest[0]["role"] == "user"
    # the newest user message is present
    last_user = max(i for i, m in enumerate(original) if m["role"] == "user")
    if truncated_ok:
        assert any(m["role"] == "user" for m in rest)
    else:
        assert any(m is original[last_user] for m in rest)
    # no orphans in either direction, by the API's rule: the results of an assistant
    # message's tool calls follow it directly, and answer every one of its calls
    i = 0
    while i < len(rest):
        m = rest[i]
        assert m["role"] != "tool", "tool result not directly after its call"
        i += 1
        if m.get("tool_calls"):
            ids = {c["id"] for c in m["tool_calls"]}
            answered = set()
            while i < len(rest) and rest[i]["role"] == "tool":
                assert rest[i]["tool_call_id"] in ids, "tool result for another call"
                answered.add(rest[i]["tool_call_id"])
                i += 1
            assert answered == ids, "tool call without its result"
    # order preserved: unchanged messages appear in their original relative order
    positions = [next((i for i, o in enumerate(original) if o is m), None) for m in window]
    known = [p for p in positions if p is not None]
    assert known == sorted(known)


@given(conversations(), st.integers(min_value=60, max_value=4000))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_trimmed_windows_are_valid_and_fit(convo: list[dict[str, Any]], budget: int) -> None:
    try:
        window = trim_messages(convo, model=MODEL, max_prompt_tokens=budget)
    except ContextOverflowError as exc:
        assert exc.needed > exc.available == budget
        # the error's figure is the real minimum: with that budget the trim succeeds
        window = trim_messages(convo, model=MODEL, max_prompt_tokens=exc.needed)
        check_window(convo, window, exc.needed)
        return
    check_window(convo, window, budget)


@given(conversations(), st.integers(min_value=150, max_value=4000))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_truncation_fits_when_the_prefix_does(convo: list[dict[str, Any]], budget: int) -> None:
    try:
        window = trim_messages(convo, model=MODEL, max_prompt_tokens=budget, truncate=True)
    except ContextOverflowError as exc:
        assert exc.needed > exc.available
        return
    check_window(convo, window, budget, truncated_ok=True)


@given(conversations(), st.integers(min_value=300, max_value=4000))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tools_count_against_the_budget(convo: list[dict[str, Any]], budget: int) -> None:
    from tests.cookbook import TOOLS

    try:
        window = trim_messages(convo, model=MODEL, max_prompt_tokens=budget, tools=TOOLS)
    except ContextOverflowError:
        return
    check_window(convo, window, budget, tools=TOOLS)


def test_messages_in_messages_out() -> None:
    convo = [
        Message.system("Be brief."),
        Message.user("one"),
        Message.assistant("1"),
        Message.user("two " * 200),
        Message.assistant("2"),
        Message.user("three"),
    ]
    out = trim_messages(convo, model=MODEL, max_prompt_tokens=60)
    assert all(isinstance(m, Message) for m in out)
    assert [m.text for m in out] == ["Be brief.", "three"]


def test_dicts_in_dicts_out_and_untouched() -> None:
    convo = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    out = trim_messages(convo, model=MODEL)
    assert out == convo
    assert all(a is b for a, b in zip(out, convo, strict=True))


def test_default_budget_reserves_the_reply() -> None:
    info = convkit.models.get("gpt-4")
    assert default_reply_reserve(info.context_window, info.max_output_tokens) == 2048
    big = [
        {"role": "user", "content": "word " * 3500},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "word " * 3500},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "last"},
    ]
    out = trim_messages(big, model="gpt-4")
    assert count_tokens(out, model="gpt-4") <= 8192 - 2048
    assert out[-1]["content"] == "last"
    out2 = trim_messages(big, model="gpt-4", max_tokens=100)
    assert len(out2) > len(out)
    assert count_tokens(out2, model="gpt-4") <= 8192 - 100


def test_overflow_error_carries_the_numbers() -> None:
    convo = [{"role": "system", "content": "x " * 500}, {"role": "user", "content": "y " * 500}]
    with pytest.raises(ContextOverflowError) as info:
        trim_messages(convo, model=MODEL, max_prompt_tokens=300)
    assert info.value.available == 300
    assert info.value.needed == count_tokens(convo, model=MODEL)


def test_truncate_cuts_the_newest_message_to_fit() -> None:
    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "y " * 2000}]
    out = trim_messages(convo, model=MODEL, max_prompt_tokens=300, truncate=True)
    assert count_tokens(out, model=MODEL) <= 300
    assert count_tokens(out, model=MODEL) >= 290  # cut to fit, not emptied
    assert out[1]["content"].endswith("…")


def test_aborted_tool_group_loses_only_the_unanswered_call() -> None:
    convo = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
    ]
    out = trim_messages(convo, model=MODEL)
    assert [c["id"] for c in out[1]["tool_calls"]] == ["a"]
    assert out[2] is convo[2]


# ---- stateful policies: cached counts, summaries


def _history(n: int, words: int = 40) -> list[Counted]:
    counter = convkit.TokenCounter(MODEL)
    out = []
    for i in range(1, n + 1):
        m = (
            Message.user(f"question {i} " + "text " * words)
            if i % 2
            else Message.assistant(f"answer {i} " + "text " * words)
        )
        out.append(Counted(message=m, tokens=counter.count_message(m), seq=i))
    return out


def test_policies_read_cached_counts_and_never_reencode(monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history(2000)
    policy = TrimOldest(MODEL, max_prompt_tokens=8000)
    system = [Message.system("s")]
    policy.fit(history[-10:], system=system)  # warm the role/system caches
    calls: list[int] = []
    real = policy.counter.count_text
    monkeypatch.setattr(policy.counter, "count_text", lambda t: calls.append(len(t)) or real(t))
    window = policy.fit(history, system=system)
    assert calls == []  # nothing re-encoded
    assert window.prompt_tokens <= 8000
    assert window.first_seq is not None
    assert window.first_seq > 1000  # the oldest turns were left out
    assert all(seq < window.first_seq for seq in window.dropped)
    assert window.messages[1].role == "user"
    assert window.prompt_tokens == count_tokens(window.messages, model=MODEL)


class ScriptedSummarizer:
    """Records every request; answers with a short summary naming what it covered."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.requests: list[SummaryRequest] = []
        self.fail_on = fail_on or set()

    def __call__(self, req: SummaryRequest) -> str:
        self.requests.append(req)
        if len(self.requests) in self.fail_on:
            raise RuntimeError("summarizer down")
        return f"summary #{len(self.requests)}: {len(req.messages)} more messages"


def _run_thread(policy: Summarize, turns: int) -> tuple[list[Counted], Summary | None, list[Any]]:
    counter = policy.counter
    history: list[Counted] = []
    summary: Summary | None = None
    windows = []
    for i in range(1, turns + 1):
        for m in (
            Message.user(f"turn {i} " + "blah " * 30),
            Message.assistant(f"reply {i} " + "ok " * 30),
        ):
            history.append(
                Counted(message=m, tokens=counter.count_message(m), seq=len(history) + 1)
            )
        window = policy.fit(history, system=[Message.system("Be helpful.")], summary=summary)
        assert window.prompt_tokens <= window.budget
        assert window.prompt_tokens == count_tokens(window.messages, model=MODEL)
        if window.error is None:
            summary = window.summary
        windows.append(window)
    return history, summary, windows


def test_summaries_are_incremental_and_bounded_over_500_turns() -> None:
    summarizer = ScriptedSummarizer()
    policy = Summarize(MODEL, summarizer=summarizer, max_prompt_tokens=4000, max_summary_tokens=200)
    _, summary, windows = _run_thread(policy, 500)
    # incremental: no message is ever handed to the summarizer twice
    seen: list[Message] = [m for r in summarizer.requests for m in r.messages]
    assert len({id(m) for m in seen}) == len(seen)
    # every request after the first extends the previous summary
    assert summarizer.requests[0].previous is None
    for req in summarizer.requests[1:]:
        assert req.previous is not None
        assert req.previous.startswith("summary #")
    # hysteresis: 500 turns x ~70 tokens each = ~35k tokens; trigger 0.9 and target 0.6 of
    # 4000 means one call per ~1k new tokens at most, so far fewer calls than turns
    assert 10 <= len(summarizer.requests) <= 60, len(summarizer.requests)
    assert policy.calls == len(summarizer.requests)
    assert summary is not None
    assert summary.covers_through_seq > 900
    # the final window: system, summary, then a user turn
    last = windows[-1]
    assert last.messages[1].text.startswith("Summary of the earlier conversation")
    assert last.messages[2].role == "user"


def test_summarizer_failure_falls_back_to_trimming_and_is_reported() -> None:
    summarizer = ScriptedSummarizer(fail_on={2})
    policy = Summarize(MODEL, summarizer=summarizer, max_prompt_tokens=3000, max_summary_tokens=200)
    _, _, windows = _run_thread(policy, 120)
    failed = [w for w in windows if w.error is not None]
    assert len(failed) == 1
    w = failed[0]
    assert isinstance(w.error, convkit.SummarizationError)
    assert "summarizer down" in str(w.error)
    assert w.prompt_tokens <= w.budget
    assert len(summarizer.requests) > 2  # later turns summarize again


def test_a_summarizer_that_always_fails_still_gives_fitting_windows() -> None:
    summarizer = ScriptedSummarizer(fail_on=set(range(1, 10_000)))
    policy = Summarize(MODEL, summarizer=summarizer, max_prompt_tokens=3000, max_summary_tokens=200)
    _, summary, windows = _run_thread(policy, 120)
    assert summary is None
    assert windows[-1].first_seq is not None
    assert windows[-1].first_seq > 1  # trimming took over once the thread outgrew the budget
    assert all(w.error is not None for w in windows[-50:])
    assert all(w.prompt_tokens <= w.budget for w in windows)


def test_summarizer_input_is_capped() -> None:
    summarizer = ScriptedSummarizer()
    policy = Summarize(
        MODEL,
        summarizer=summarizer,
        max_prompt_tokens=20_000,
        max_summarizer_input_tokens=1_000,
        max_summary_tokens=100,
    )
    history = _history(400)
    policy.fit(history)
    counter = policy.counter
    assert len(summarizer.requests) > 1
    for req in summarizer.requests:
        assert sum(counter.count_message(m) for m in req.messages) <= 1_000


def test_summary_output_is_capped() -> None:
    policy = Summarize(
        MODEL, summarizer=lambda req: "long " * 5000, max_prompt_tokens=4000, max_summary_tokens=150
    )
    window = policy.fit(_history(200))
    assert window.summary is not None
    assert policy.counter.count_text(window.summary.text) <= 150


@pytest.mark.anyio
async def test_async_summarizer() -> None:
    async def summarize(req: SummaryRequest) -> str:
        return f"async summary of {len(req.messages)}"

    policy = Summarize(MODEL, summarizer=summarize, max_prompt_tokens=3000)
    window = await policy.afit(_history(200))
    assert window.summary is not None
    assert window.summary.text.startswith("async summary")
    assert window.prompt_tokens <= 3000
    # the sync entry point reports an async summarizer instead of hanging or crashing
    sync_window = Summarize(MODEL, summarizer=summarize, max_prompt_tokens=3000).fit(_history(200))
    assert isinstance(sync_window.error, convkit.SummarizationError)
    assert sync_window.prompt_tokens <= 3000


def test_summary_request_renders_chat_messages() -> None:
    req = SummaryRequest(
        previous="before", messages=(Message.user("hi"),), prompt="P", model=None, max_tokens=100
    )
    msgs = req.as_messages()
    assert msgs[0].text == "P"
    assert "before" in msgs[1].text
    assert "user: hi" in msgs[1].text


def test_invalid_thresholds_are_rejected() -> None:
    with pytest.raises(ValueError, match="target < trigger"):
        Summarize(MODEL, summarizer=lambda r: "", trigger=0.5, target=0.6)


class CountingSeq(Sequence[Counted]):
    """A history that records which positions a policy reads."""

    def __init__(self, items: list[Counted]) -> None:
        self.items = items
        self.reads: set[int] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        self.reads.add(i)
        return self.items[i]


@pytest.mark.parametrize("policy_kind", ["trim", "summarize"])
def test_a_turn_reads_the_window_not_the_thread(policy_kind: str) -> None:
    small = CountingSeq(_history(100))
    large = CountingSeq(_history(20_000, words=10))
    for hist in (small, large):
        if policy_kind == "trim":
            policy: Any = TrimOldest(MODEL, max_prompt_tokens=2000)
        else:
            policy = Summarize(MODEL, summarizer=lambda r: "s", max_prompt_tokens=2000)
            # a summary already covers all but the recent tail, as in steady state
            n = len(hist)
            summary = Summary(text="s", covers_through_seq=n - 40, tokens=10)
            window = policy.fit(hist, summary=summary)
            assert window.prompt_tokens <= 2000
            assert window.messages[1].role == "user"
            continue
        window = policy.fit(hist)
        assert window.prompt_tokens <= 2000
    # the large thread is 200x longer; the turn reads about as much of it as of the small one
    assert len(small.reads) > 10
    assert len(large.reads) <= 2 * len(small.reads) + 50


@given(conversations(), st.integers(min_value=60, max_value=4000))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_policy_windows_are_valid_and_fit(convo: list[dict[str, Any]], budget: int) -> None:
    k = 0
    while k < len(convo) and convo[k]["role"] in ("system", "developer"):
        k += 1
    policy = TrimOldest(MODEL, max_prompt_tokens=budget)
    try:
        window = policy.fit(convo[k:], system=convo[:k])
    except ContextOverflowError as exc:
        assert exc.needed > exc.available == budget
        roomy = TrimOldest(MODEL, max_prompt_tokens=exc.needed).fit(convo[k:], system=convo[:k])
        assert roomy.prompt_tokens <= exc.needed
        return
    sent = [m.to_openai() for m in window.messages]
    assert window.prompt_tokens == count_tokens(sent, model=MODEL)
    # compare by value: the policy hands back Message values, not the input dicts
    # (match from the end: windows keep the newest of equal messages)
    by_value: list[dict[str, Any]] = []
    pos = len(convo) - 1
    for m in reversed(sent):
        j = next((j for j in range(pos, -1, -1) if convo[j] == m), None)
        if j is None:
            by_value.append(m)  # a repaired message (an unanswered call removed)
        else:
            by_value.append(convo[j])
            pos = j - 1
    by_value.reverse()
    check_window(convo, by_value, budget)


# ---- regressions from review


def test_the_newest_turn_is_kept_whole_or_refused() -> None:
    def call(cid: str) -> dict[str, Any]:
        return {"id": cid, "type": "function", "function": {"name": "f", "arguments": "{}"}}

    h = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call("a")]},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "assistant", "content": "x " * 500},
        {"role": "assistant", "content": None, "tool_calls": [call("b")]},
        {"role": "tool", "tool_call_id": "b", "content": "B"},
    ]
    with pytest.raises(ContextOverflowError):
        trim_messages(h, model=MODEL, max_prompt_tokens=80)
    assert trim_messages(h, model=MODEL, max_prompt_tokens=1000) == h


def test_a_reused_call_id_does_not_borrow_a_later_result() -> None:
    def call(cid: str) -> dict[str, Any]:
        return {"id": cid, "type": "function", "function": {"name": "f", "arguments": "{}"}}

    convo = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_0")]},  # aborted
        {"role": "user", "content": "hello? try again"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_0")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
    ]
    out = trim_messages(convo, model=MODEL)
    assert [m["role"] for m in out] == ["system", "user", "user", "assistant", "tool"]
    check_window(convo, out, 10_000)


def test_a_summary_that_does_not_fit_falls_back_to_trimming() -> None:
    policy = Summarize(
        MODEL, summarizer=lambda r: "long " * 5000, max_prompt_tokens=1000, max_summary_tokens=900
    )
    history = _history(60, words=10)
    big = Message.user("question " + "text " * 200)
    history.append(Counted(message=big, tokens=policy.counter.count_message(big), seq=61))
    window = policy.fit(history)
    assert isinstance(window.error, convkit.SummarizationError)
    assert "does not fit" in str(window.error)
    assert window.summary is None
    assert window.prompt_tokens <= 1000


def test_a_reply_reserve_larger_than_the_window_is_refused() -> None:
    with pytest.raises(convkit.InvalidRequestError, match="no room"):
        trim_messages([{"role": "user", "content": "x"}], model="gpt-4", max_tokens=10_000)


def test_no_user_message_means_no_overflow_from_what_is_dropped_anyway() -> None:
    convo = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "x " * 500}]
    assert trim_messages(convo, model=MODEL, max_prompt_tokens=100) == convo[:1]
