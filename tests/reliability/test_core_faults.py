"""Core defects from the hardening review (issue 15: items 1, 3, 5, 6, 8, 10, 11, 18), each pinned.

Every test fails without its fix; each defect is tested through the shared rule that fixes it,
with its siblings beside it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convkit
from convkit import (
    ChatChunk,
    ChatResponse,
    InvalidMessageError,
    InvalidRequestError,
    Message,
    Summarize,
    TrimOldest,
    count_tokens,
    trim_messages,
)
from convkit.chat import Choice, StreamAccumulator
from convkit.context import Summary, prompt_budget
from convkit.errors import ResponseFormatError
from convkit.messages import ImagePart, RawPart, TextPart, ToolCall, Usage
from convkit.models import ModelRegistry, registry
from convkit.store import Store
from convkit.tokens import TokenCounter, image_tokens

MODEL = "gpt-4o"


def _chunk(delta: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": delta}], **top}


def _deep(levels: int) -> Any:
    """``levels`` nested containers, objects and arrays in turn, around one string."""
    value: Any = "leaf"
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


# --------------------------------------------------------------------------- 1: modeled keys


@pytest.mark.parametrize("key", ["role", "content", "name", "tool_calls", "tool_call_id"])
def test_an_extra_never_holds_a_key_the_message_models(key: str) -> None:
    with pytest.raises(InvalidMessageError, match="field of its own") as info:
        Message(role="user", content="hi", extra={key: "system"})
    assert info.value.field == f"extra.{key}"


def test_a_user_message_cannot_be_sent_as_system() -> None:
    with pytest.raises(InvalidMessageError):
        Message(role="user", content="hi", extra={"role": "system"})
    # through evolve too: the converter runs on every construction
    with pytest.raises(InvalidMessageError):
        attrs.evolve(Message.user("hi"), extra={"role": "system"})


@pytest.mark.parametrize(
    "build",
    [
        lambda: TextPart(text="a", extra={"text": "b"}),
        lambda: ImagePart(url="https://x/a.png", image_url_extra={"url": "https://x/b.png"}),
        lambda: ImagePart(url="https://x/a.png", extra={"type": "text"}),
        lambda: ToolCall(id="c", name="f", extra={"id": "other"}),
        lambda: ToolCall(id="c", name="f", inner_extra={"arguments": "{}"}),
        lambda: ToolCall(id="c", name="f", type="custom", inner_extra={"input": "x"}),
        lambda: Usage(prompt_tokens=1, extra={"prompt_tokens": 99}),
    ],
)
def test_no_value_lets_an_extra_replace_one_of_its_fields(build: Any) -> None:
    with pytest.raises(ValueError, match="field of its own"):
        build()


def test_response_extras_cannot_replace_fields() -> None:
    msg = Message.assistant("hi")
    with pytest.raises(ResponseFormatError, match="field of its own"):
        Choice(index=0, message=msg, extra={"message": {"role": "user", "content": "x"}})
    with pytest.raises(ResponseFormatError, match="field of its own"):
        ChatResponse(id="r", model=MODEL, created=None, message=msg, extra={"choices": []})


def test_a_streamed_tool_call_id_is_refused_like_the_same_body_non_streamed() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x",
                                                  "tool_call_id": "call_1"}}]}  # fmt: skip
    with pytest.raises(ResponseFormatError):
        ChatResponse.from_openai(body)
    acc = StreamAccumulator()
    acc.feed_openai(_chunk({"role": "assistant", "content": "x"}))
    with pytest.raises(ResponseFormatError, match="tool_call_id") as info:
        acc.feed_openai(_chunk({"tool_call_id": "call_1"}))
    assert info.value.field == "delta.tool_call_id"
    with pytest.raises(ResponseFormatError):
        ChatChunk.from_openai(_chunk({"content": "y", "tool_call_id": "call_1"}))
    # what arrived before the bad chunk is still a valid, storable message
    assert acc.response().message.to_openai() == {"role": "assistant", "content": "x"}


def test_a_streamed_name_becomes_the_messages_name_and_the_thread_loads(tmp_path: Path) -> None:
    acc = StreamAccumulator()
    for delta in ({"role": "assistant", "name": "bot"}, {"content": "hi"}, {"name": "bot"}):
        acc.feed_openai(_chunk(delta))
    message = acc.response().message
    assert message.name == "bot"
    assert "name" not in message.extra
    with Store(f"sqlite:///{tmp_path / 'a.db'}", create_tables=True) as store:
        thread = store.create_thread()
        store.append(thread.id, Message.user("hello"))
        store.append(thread.id, message)
        loaded = [m.message for m in store.messages(thread.id)]
    assert loaded[-1] == message


def test_a_streamed_name_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ResponseFormatError, match="name"):
        StreamAccumulator().feed_openai(_chunk({"name": 7}))


# --------------------------------------------------------------------------- 3: leading system


def _turns(n: int) -> list[Message]:
    out: list[Message] = []
    for i in range(n):
        out += [Message.user(f"question {i} " * 5), Message.assistant(f"answer {i} " * 5)]
    return out


@pytest.mark.parametrize("role", ["system", "developer"])
def test_policies_keep_a_leading_system_message_of_the_history(role: str) -> None:
    history = [Message(role=role, content="Be brief."), *_turns(3)]
    expected = trim_messages(history, model=MODEL, max_prompt_tokens=10_000)
    assert expected == history
    assert list(TrimOldest(MODEL, max_prompt_tokens=10_000).fit(history).messages) == history
    policy = Summarize(MODEL, summarizer=lambda r: "s", max_prompt_tokens=10_000)
    assert list(policy.fit(history).messages) == history


def test_a_leading_system_message_stays_when_old_turns_are_trimmed() -> None:
    history = [Message.system("Be brief."), *_turns(40)]
    budget = 300
    window = TrimOldest(MODEL, max_prompt_tokens=budget).fit(history)
    assert window.messages[0] == history[0]
    assert window.messages[1].role == "user"
    assert 0 < len(window.messages) < len(history)
    assert window.prompt_tokens == count_tokens(window.messages, model=MODEL) <= budget
    assert list(window.messages) == trim_messages(history, model=MODEL, max_prompt_tokens=budget)


def test_a_leading_system_message_is_never_summarized() -> None:
    seen: list[tuple[str, ...]] = []

    def summarizer(request: Any) -> str:
        seen.append(tuple(m.role for m in request.messages))
        return "earlier turns"

    history = [Message.system("Be brief."), *_turns(60)]
    policy = Summarize(MODEL, summarizer=summarizer, max_prompt_tokens=1_500, max_summary_tokens=50)
    window = policy.fit(history)
    assert seen and all("system" not in roles for roles in seen)
    assert window.summary is not None
    assert window.messages[0] == history[0]
    assert window.prompt_tokens == count_tokens(window.messages, model=MODEL) <= 1_500


# --------------------------------------------------------------------------- 5: summarizer caps


def _long(i: int, words: int) -> Message:
    return (
        Message.user(f"m{i} " + "word " * words)
        if i % 2 == 0
        else Message.assistant(f"m{i} " + "word " * words)
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 3_000), min_size=4, max_size=40),
    cap=st.integers(64, 1_500),
    batches=st.integers(1, 3),
)
def test_summarize_never_exceeds_its_caps(sizes: list[int], cap: int, batches: int) -> None:
    # 40 generated histories: messages up to 3,000 words, some larger than the input cap
    requests: list[Any] = []

    def summarizer(request: Any) -> str:
        requests.append(request)
        return "summary so far"

    history = [_long(i, n) for i, n in enumerate(sizes)]
    policy = Summarize(
        MODEL,
        summarizer=summarizer,
        max_prompt_tokens=4_000,
        max_summary_tokens=100,
        max_summarizer_input_tokens=cap,
        max_batches_per_turn=batches,
    )
    counter = TokenCounter(MODEL)
    try:
        window = policy.fit(history)
    except convkit.ContextOverflowError:
        return  # the newest turn alone is over budget: nothing to check
    assert len(requests) <= batches
    for request in requests:
        assert sum(counter.count_message(m) for m in request.messages) <= cap
    assert window.prompt_tokens <= 4_000


def test_a_message_larger_than_the_input_cap_is_cut_for_the_summary() -> None:
    requests: list[Any] = []

    def summarizer(request: Any) -> str:
        requests.append(request)
        return "summary"

    # Six times the input cap, within what the turn reads (the budget's room plus what four
    # batches carry): the store's window of the thread holds it too.
    huge = Message.user("start " + "word " * 1_200)
    history = [huge, Message.assistant("ok"), *_turns(3)]
    policy = Summarize(
        MODEL,
        summarizer=summarizer,
        max_prompt_tokens=1_000,
        max_summary_tokens=50,
        max_summarizer_input_tokens=200,
    )
    assert TokenCounter(MODEL).count_message(huge) > 6 * 200
    window = policy.fit(history)
    assert requests
    first = requests[0].messages[0]
    assert first.text.startswith("start word") and first.text.endswith("…")
    assert TokenCounter(MODEL).count_message(first) <= 200
    assert window.summary is not None and window.summary.covers_through_seq >= 1


# --------------------------------------------------------------------------- 6: images


@pytest.mark.parametrize(
    ("model", "width", "height"),
    [
        ("gpt-4o", 1, 2**32 - 1),
        ("gpt-4o", 2**32 - 1, 1),
        ("gpt-4o", 1, 10_000),
        ("gpt-4.1-mini", 1, 100_000),
        ("gpt-4.1-mini", 100_000, 1),
        ("gpt-4.1-mini", 1, 2**32 - 1),
    ],
)
def test_extreme_aspect_ratios_cost_at_least_one_row_of_tiles(
    model: str, width: int, height: int
) -> None:
    cost = registry.resolve(model).image_cost
    n = image_tokens(cost, width, height, "high")
    low_bound = getattr(cost, "base", 0) + getattr(cost, "tile", 0)
    assert n >= max(1, low_bound)
    # never more than the most a high-detail image can cost on this model
    if hasattr(cost, "max_patches"):
        assert n == math.ceil(cost.max_patches * cost.multiplier)
    else:
        assert n <= image_tokens(cost, 2048, 768, "high")


# --------------------------------------------------------------------------- 8: budgets, nulls


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1.5, 100.0, True, 0, -5, "100"])
def test_every_budget_entry_point_refuses_a_non_whole_budget(bad: Any) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequestError):
        trim_messages(msgs, model=MODEL, max_prompt_tokens=bad)
    with pytest.raises(InvalidRequestError):
        prompt_budget(TokenCounter(MODEL), max_prompt_tokens=bad)
    with pytest.raises(ValueError):
        TrimOldest(MODEL, max_prompt_tokens=bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1, 2.5, True])
def test_a_read_plan_handed_to_a_store_is_a_whole_number(bad: Any) -> None:
    from convkit.context import ReadPlan

    with pytest.raises(InvalidRequestError):
        ReadPlan(budget=bad)
    with pytest.raises(InvalidRequestError):
        ReadPlan(budget=10, after_seq=bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1, 2.5])
def test_a_reply_reserve_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        trim_messages([{"role": "user", "content": "hi"}], model=MODEL, max_tokens=bad)


@pytest.mark.parametrize(
    "wire",
    [
        {"role": "user", "content": [{"type": "image_url",
                                      "image_url": {"url": "https://x/a.png", "detail": None}}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "f"}}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom",
                                              "custom": {"name": "f"}}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f",
                                                                      "arguments": ""}}]},
    ],
)  # fmt: skip
def test_the_wire_round_trip_keeps_explicit_nulls_and_absent_keys(wire: dict[str, Any]) -> None:
    assert Message.from_openai(wire).to_openai() == wire


# --------------------------------------------------------------------------- 10: deep values


DEPTH = 500


def test_deep_values_round_trip_without_recursion_errors(tmp_path: Path) -> None:
    wire = {"role": "user", "content": "hi", "meta": _deep(DEPTH)}
    message = Message.from_openai(wire)
    assert message.to_openai() == wire
    body = {"id": "r", "model": MODEL, "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "ok"}, "finish_reason": "stop", "vendor": _deep(DEPTH)}],
            "trace": _deep(DEPTH)}  # fmt: skip
    assert ChatResponse.from_openai(body).to_openai()["trace"] == body["trace"]
    acc = StreamAccumulator()
    acc.feed_openai(_chunk({"content": "x"}, trace=_deep(DEPTH)))
    acc.feed_openai(_chunk({"reasoning": _deep(DEPTH)}))
    final = acc.response()
    assert final.to_openai()["trace"] == _deep(DEPTH)
    assert final.message.extra["reasoning"] == _deep(DEPTH)
    with Store(f"sqlite:///{tmp_path / 'deep.db'}", create_tables=True) as store:
        thread = store.create_thread()
        store.append(thread.id, message)
        assert store.messages(thread.id)[0].message == message


def test_values_deeper_than_the_limit_are_refused_with_a_typed_error() -> None:
    with pytest.raises(InvalidMessageError, match="nested deeper"):
        Message(role="user", content="x", extra={"meta": _deep(5_000)})
    with pytest.raises(ResponseFormatError, match="nested deeper"):
        StreamAccumulator().feed_openai(_chunk({"reasoning": _deep(5_000)}))


# --------------------------------------------------------------------------- 11: count_tokens


def _cyclic() -> dict[str, Any]:
    part: dict[str, Any] = {"type": "mystery"}
    part["self"] = part
    return part


@pytest.mark.parametrize(
    "messages",
    [
        None,
        5,
        "hello",
        {"role": "user", "content": "x"},
        [None],
        [{"role": ["user"], "content": "x"}],
        [{"role": {"a": 1}, "content": "x", "name": "n"}],
        [{"role": "user", "content": [{"type": "mystery", "x": {1, 2}}]}],
        [{"role": "user", "content": [_cyclic()]}],
        [{"role": "user", "content": [{"type": "mystery", "x": _deep(3_000)}]}],
        [{"role": "user", "content": "x", "meta": {"when": object()}}],
        [Message.user("ok"), {"role": "assistant", "function_call": {"name": {1}}}],
    ],
)
def test_count_tokens_raises_only_invalid_message_error(messages: Any) -> None:
    with pytest.raises(InvalidMessageError):
        count_tokens(messages, model=MODEL)


def test_direct_construction_is_held_to_the_same_types() -> None:
    with pytest.raises(InvalidMessageError):
        Message(role=["user"], content="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError):
        Message(role="assistant", content=None, refusal=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError):
        ToolCall(id="c", name=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError):
        RawPart(data={"x": 1})


@pytest.mark.parametrize(
    ("tools", "tool_choice"),
    [
        ([1], None),
        (["f"], None),
        (5, None),
        ({"type": "function"}, None),
        ([{"type": "function", "function": {"name": "f", "parameters": {"x": {1}}}}], None),
        ([{"type": "function", "function": {"name": "f"}}], {"type": {1}}),
        ([{"type": "function", "function": {"name": "f", "parameters": _deep(3_000)}}], None),
    ],
)
def test_bad_tools_raise_invalid_request_error(tools: Any, tool_choice: Any) -> None:
    with pytest.raises(InvalidRequestError):
        count_tokens([{"role": "user", "content": "x"}], model=MODEL, tools=tools,
                     tool_choice=tool_choice)  # fmt: skip


# --------------------------------------------------------------------------- 18: models file


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "convkit.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_models_file_does_not_break_import_or_help(tmp_path: Path) -> None:
    env = {"CONVKIT_MODELS": str(tmp_path / "nonexistent.json")}
    assert _run(["--help"], env).returncode == 0
    messages = tmp_path / "m.json"
    messages.write_text('[{"role": "user", "content": "hi"}]')
    done = _run(["count", "--model", "gpt-4o", str(messages)], env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CONVKIT_MODELS=" in lines[0] and "cannot be read" in lines[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "is not JSON"),
        ('{"m": 5}', "expected model objects"),
        ('[{"name": "m", "context_window": -1}]', r"entry 0 \(m\)"),
        ('"a string"', "expected a JSON list"),
    ],
)
def test_a_broken_models_file_raises_a_typed_error_at_first_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, reason: str
) -> None:
    from convkit import models
    from convkit.errors import ModelsFileError

    path = tmp_path / "models.json"
    path.write_text(text)
    monkeypatch.setenv("CONVKIT_MODELS", str(path))
    reg = ModelRegistry(registry)
    reg._defer(models._load_env_file)
    for _ in range(2):  # every lookup until the file is fixed
        with pytest.raises(ModelsFileError, match=reason) as info:
            reg.resolve("gpt-4o")
        assert info.value.path == str(path)
    path.write_text('[{"name": "my-model", "context_window": 1000, "max_output_tokens": 100}]')
    assert reg.resolve("my-model").context_window == 1000


def test_a_models_file_is_loaded_before_run_time_registrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convkit import models

    path = tmp_path / "models.json"
    path.write_text('[{"name": "m", "context_window": 1000, "max_output_tokens": 100}]')
    monkeypatch.setenv("CONVKIT_MODELS", str(path))
    reg = ModelRegistry(registry)
    reg._defer(models._load_env_file)
    reg.register("m", context_window=2000)  # the file loads first; the caller's figure wins
    assert reg.resolve("m").context_window == 2000
    assert reg.resolve("m").max_output_tokens == 100


def test_summary_carrier_is_unaffected_by_the_extra_rule() -> None:
    # A summary's carrier message is built by convkit itself: it must pass the rule.
    carrier = Summary(text="so far", covers_through_seq=3).as_message("system")
    assert carrier.to_openai()["role"] == "system"


def test_a_policy_recounts_rows_counted_under_other_overheads() -> None:
    """A row counted for gpt-4 (3 tokens a message) fitted for gpt-3.5-turbo-0301 (4)."""
    from datetime import datetime, timezone

    from convkit import Message, TrimOldest
    from convkit.store import StoredMessage
    from convkit.tokens import TokenCounter

    old = TokenCounter("gpt-4")
    msg = Message.user("hello there")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def row(counted_with: str | None) -> StoredMessage:
        return StoredMessage(
            thread_id="t", seq=1, message=msg, tokens=old.count_message(msg),
            encoding="cl100k_base", counted_with=counted_with, created_at=now,
        )  # fmt: skip

    policy = TrimOldest("gpt-3.5-turbo-0301")
    right = policy.counter.count_message(msg)
    assert right != old.count_message(msg)  # same encoding, other overheads
    from convkit.context import counting_key

    for stored in (row(None), row(counting_key(old))):
        window = policy.fit([stored])
        assert window.prompt_tokens == policy.counter.info.reply_priming + right
