"""Message values: exact wire round trip, validation with clear errors."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convkit import ImagePart, InvalidMessageError, Message, TextPart, ToolCall, Usage
from convkit.messages import as_messages

# ---- generators of valid wire messages

_text = st.text(max_size=40)
_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ident, inner, max_size=3),
    max_leaves=6,
)
_vendor = st.dictionaries(
    st.sampled_from(["reasoning_content", "cache_control", "x_vendor", "annotations"]),
    _json,
    max_size=2,
)


@st.composite
def _text_part(draw: st.DrawFn) -> dict[str, Any]:
    return {"type": "text", "text": draw(_text), **draw(_vendor)}


@st.composite
def _image_part(draw: st.DrawFn) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": draw(st.sampled_from(["https://x.test/a.png", "data:,"]))}
    if draw(st.booleans()):
        inner["detail"] = draw(st.sampled_from(["auto", "low", "high"]))
    return {"type": "image_url", "image_url": inner}


_audio_part = st.fixed_dictionaries(
    {
        "type": st.just("input_audio"),
        "input_audio": st.fixed_dictionaries(
            {"data": _text, "format": st.sampled_from(["wav", "mp3"])}
        ),
    }
)
_file_part = st.fixed_dictionaries(
    {"type": st.just("file"), "file": st.fixed_dictionaries({"file_id": _ident})}
)


@st.composite
def _tool_call(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "id": "call_" + draw(_ident),
        "type": "function",
        "function": {"name": draw(_ident), "arguments": draw(_text)},
    }


@st.composite
def wire_messages(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    d: dict[str, Any] = {"role": role}
    if role in ("system", "developer"):
        d["content"] = draw(_text | st.lists(_text_part(), min_size=1, max_size=3))
    elif role == "user":
        parts = _text_part() | _image_part() | _audio_part | _file_part
        d["content"] = draw(_text | st.lists(parts, min_size=1, max_size=4))
    elif role == "tool":
        d["content"] = draw(_text)
        d["tool_call_id"] = "call_" + draw(_ident)
    else:
        calls = draw(st.lists(_tool_call(), max_size=3))
        if calls:
            d["tool_calls"] = calls
            d["content"] = draw(st.none() | _text)
        else:
            d["content"] = draw(_text)
        if draw(st.booleans()):
            d["refusal"] = draw(st.none() | _text)
    if role != "tool" and draw(st.booleans()):
        d["name"] = draw(_ident)
    d.update(draw(_vendor))
    return d


@given(wire_messages())
@settings(max_examples=300)
def test_round_trip_is_exact(d: dict[str, Any]) -> None:
    m = Message.from_openai(d)
    assert m.to_openai() == d
    assert Message.from_openai(m.to_openai()) == m


@given(st.dictionaries(st.text(max_size=12), _json, max_size=6))
@settings(max_examples=300)
def test_arbitrary_dicts_only_raise_invalid_message(d: dict[str, Any]) -> None:
    try:
        m = Message.from_openai(d)
    except InvalidMessageError:
        return
    assert m.to_openai() == d


@given(
    wire_messages(),
    st.sampled_from(["role", "content", "tool_call_id", "tool_calls", "name"]),
    _json,
)
@settings(max_examples=300)
def test_corrupted_messages_only_raise_invalid_message(
    d: dict[str, Any], key: str, value: Any
) -> None:
    d[key] = value
    try:
        m = Message.from_openai(d)
    except InvalidMessageError as exc:
        assert exc.reason
        return
    assert m.to_openai() == d


def test_vendor_fields_are_kept() -> None:
    d = {"role": "assistant", "content": "4", "reasoning_content": "2+2=4"}
    m = Message.from_openai(d)
    assert m.extra["reasoning_content"] == "2+2=4"
    assert m.to_openai() == d


def test_explicit_nulls_round_trip() -> None:
    d = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert Message.from_openai(d).to_openai() == d


def test_to_openai_returns_fresh_objects() -> None:
    m = Message.from_openai({"role": "user", "content": "x", "meta": {"a": [1]}})
    out = m.to_openai()
    out["meta"]["a"].append(2)
    assert m.to_openai()["meta"] == {"a": [1]}


def test_messages_are_frozen() -> None:
    m = Message.user("hi")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.content = "changed"  # type: ignore[misc]
    assert attrs.evolve(m, content="changed").content == "changed"


def test_helpers_build_valid_messages() -> None:
    assert Message.system("s").to_openai() == {"role": "system", "content": "s"}
    assert Message.developer("d").role == "developer"
    user = Message.user(["look", ImagePart(url="https://x.test/i.png", detail="low")])
    assert user.to_openai()["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/i.png", "detail": "low"},
    }
    call = ToolCall(id="c1", name="f", arguments="{}")
    a = Message.assistant(tool_calls=[call])
    assert a.is_tool_call
    assert Message.tool("ok", tool_call_id="c1").to_openai() == {
        "role": "tool",
        "content": "ok",
        "tool_call_id": "c1",
    }
    assert user.text == "look"


@pytest.mark.parametrize(
    ("d", "field", "words"),
    [
        ({"role": "robot", "content": "x"}, "role", "unknown role"),
        ({"content": "x"}, "role", "role"),
        ({"role": "user", "content": 5}, "content", "content must be"),
        ({"role": "user"}, "content", "needs content"),
        ({"role": "tool", "content": "x"}, "tool_call_id", "tool_call_id"),
        ({"role": "assistant"}, "content", "content, tool_calls or a refusal"),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": {"a": 1}},
                    }
                ],
            },
            "tool_calls[0].function.arguments",
            "must be a string",
        ),
        ({"role": "user", "content": [{"type": "text"}]}, "content[0].text", "string"),
        ({"role": "user", "content": [{"text": "x"}]}, "content[0].type", "type"),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}],
            },
            "content[0].image_url.detail",
            "detail",
        ),
        (
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
            "content[0]",
            "must be text",
        ),
        ({"role": "user", "content": "x", "tool_calls": []}, "tool_calls", "cannot carry"),
        ({"role": "user", "content": "x", "name": 3}, "name", "string"),
        ({"role": "function", "content": "x"}, "name", "needs a name"),
    ],
)
def test_invalid_messages_name_the_field(d: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidMessageError, match=words) as info:
        Message.from_openai(d)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_list_errors_name_the_index() -> None:
    with pytest.raises(InvalidMessageError) as info:
        as_messages([{"role": "user", "content": "ok"}, {"role": "tool", "content": "x"}])
    assert info.value.index == 1
    assert str(info.value).startswith("message 1, field 'tool_call_id'")


def test_a_single_dict_is_not_a_list() -> None:
    with pytest.raises(InvalidMessageError, match="list of messages"):
        as_messages({"role": "user", "content": "x"})  # type: ignore[arg-type]


def test_text_part_keeps_cache_control() -> None:
    d = {
        "role": "user",
        "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
    }
    m = Message.from_openai(d)
    assert isinstance(m.content, tuple)
    part = m.content[0]
    assert isinstance(part, TextPart)
    assert part.extra["cache_control"] == {"type": "ephemeral"}
    assert m.to_openai() == d


def test_usage_round_trip() -> None:
    d = {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    u = Usage.from_openai(d)
    assert u.prompt_tokens == 5
    assert u.to_openai() == d


@pytest.mark.parametrize("detail", [["high"], {"a": 1}, 3])
def test_ill_typed_detail_is_an_invalid_message(detail: Any) -> None:
    d = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "u", "detail": detail}}],
    }
    with pytest.raises(InvalidMessageError) as info:
        Message.from_openai(d)
    assert info.value.field == "content[0].image_url.detail"


def test_tool_call_without_type_round_trips_without_an_in_band_marker() -> None:
    bare = {"id": "c", "function": {"name": "f", "arguments": "{}"}}
    call = ToolCall.from_openai(bare)
    assert call.to_openai() == bare
    assert dict(call.extra) == {}
    assert call == ToolCall(id="c", name="f", arguments="{}")
    odd = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
        "__no_type__": True,
    }
    assert ToolCall.from_openai(odd).to_openai() == odd


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt_tokens": [1]},
        {"prompt_tokens": float("inf")},
        {"total_tokens": 1.5},
        {"completion_tokens": -1},
        {"prompt_tokens": True},
        {"prompt_tokens": "12"},
    ],
)
def test_usage_rejects_counts_that_are_not_whole_numbers(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="usage"):
        Usage.from_openai(bad)


def test_usage_accepts_whole_floats_and_missing_counts() -> None:
    assert Usage.from_openai({"prompt_tokens": 12.0}).prompt_tokens == 12
    assert Usage.from_openai({}).total_tokens == 0
