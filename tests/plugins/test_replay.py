"""Replaying a complete response as chunks, and accumulating it back."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convkit.chat import ChatChunk, ChatResponse, Choice
from convkit.messages import Message, ToolCall, Usage
from convkit.plugins import chunks_from_response, response_from_chunks, text_chunk, with_text

BODY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hi there, how can I help you today?",
                "refusal": None,
                "annotations": [],
                "reasoning_content": "The user greets me.",
            },
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]},
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "weather",
                            "arguments": '{"city": "Paris", "unit": "C"}',
                        },
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "time", "arguments": "{}"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
        },
        {
            "index": 2,
            "message": {"role": "assistant", "content": None, "refusal": "I can't."},
            "finish_reason": "stop",
        },
    ],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 0},
    },
}


def test_a_whole_response_survives_the_round_trip() -> None:
    response = ChatResponse.from_openai(BODY)
    for size in (1, 3, 32, 10_000):
        assert response_from_chunks(chunks_from_response(response, piece_size=size)) == response


def test_the_replay_looks_like_a_server_stream() -> None:
    response = ChatResponse.from_openai(BODY)
    chunks = chunks_from_response(response, piece_size=8)
    assert all(c.id == "chatcmpl-1" and c.model == "gpt-4o-mini" for c in chunks)
    assert chunks[0].raw["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0].raw["system_fingerprint"] == "fp_1"
    first_choice = [c for c in chunks if c.choices and c.choices[0].index == 0]
    assert [c.text for c in first_choice] == [
        "Hi there",
        ", how ca",
        "n I help",
        " you tod",
        "ay?",
        "",
    ]
    assert first_choice[-1].choices[0].finish_reason == "stop"
    calls = [d for c in chunks for ch in c.choices for d in ch.tool_calls]
    assert [(d.index, d.id, d.name) for d in calls if d.id] == [
        (0, "call_1", "weather"),
        (1, "call_2", "time"),
    ]
    assert chunks[-1].raw["choices"] == [] and chunks[-1].usage == response.usage


def test_a_response_without_choices_replays_its_message() -> None:
    response = ChatResponse(
        id="r", model="m", created=None, message=Message.assistant("ok"), finish_reason="length"
    )
    back = response_from_chunks(chunks_from_response(response))
    assert (back.text, back.finish_reason, back.usage) == ("ok", "length", None)


def test_piece_size_must_be_positive() -> None:
    response = ChatResponse.from_openai(BODY)
    with pytest.raises(ValueError, match="piece_size"):
        chunks_from_response(response, piece_size=0)


text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)


@st.composite
def responses(draw: st.DrawFn) -> ChatResponse:
    choices = []
    for index in range(draw(st.integers(1, 3))):
        calls = [
            ToolCall(
                id=f"call_{index}_{i}",
                name=draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
                arguments=draw(text),
            )
            for i in range(draw(st.integers(0, 3)))
        ]
        content = draw(text) if not calls or draw(st.booleans()) else None
        refusal = draw(st.none() | text)
        message = Message(
            role="assistant", content=content, tool_calls=calls or None, refusal=refusal
        )
        finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
        choices.append(Choice(index=index, message=message, finish_reason=finish))
    usage = draw(
        st.none()
        | st.builds(
            Usage,
            prompt_tokens=st.integers(0, 10**6),
            completion_tokens=st.integers(0, 10**6),
            total_tokens=st.integers(0, 10**6),
        )
    )
    return ChatResponse(
        id=draw(st.from_regex(r"[a-z0-9-]{0,20}", fullmatch=True)),
        model="m",
        created=draw(st.none() | st.integers(0, 2**31)),
        message=choices[0].message,
        finish_reason=choices[0].finish_reason,
        usage=usage,
        choices=tuple(choices),
    )


@given(responses(), st.integers(1, 40))
def test_any_response_survives_the_round_trip(response: ChatResponse, size: int) -> None:
    chunks = chunks_from_response(response, piece_size=size)
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert response_from_chunks(chunks) == response
    assert all(len(c.text) <= size for c in chunks)


def test_text_chunk_and_with_text() -> None:
    chunk = text_chunk("hello", id="c1", model="m", finish_reason="stop")
    assert (chunk.text, chunk.id, chunk.model, chunk.choices[0].finish_reason) == (
        "hello",
        "c1",
        "m",
        "stop",
    )
    changed = with_text(chunk, "bye")
    assert (changed.text, changed.id, changed.choices[0].finish_reason) == ("bye", "c1", "stop")
    assert chunk.text == "hello"  # the original is untouched
    usage_only = ChatChunk.from_openai(
        {
            "id": "c1",
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    added = with_text(usage_only, "tail")
    assert added.text == "tail" and added.usage == usage_only.usage
    second = ChatChunk.from_openai(
        {
            "id": "c",
            "choices": [
                {"index": 1, "delta": {"content": "b"}},
                {"index": 0, "delta": {"content": "a", "role": "assistant"}},
            ],
        }
    )
    out = with_text(second, "A")
    assert out.text == "A" and out.choices[0].content == "b" and out.choices[1].role == "assistant"
    assert attrs.has(ChatChunk)
