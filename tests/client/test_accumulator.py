"""Chunks and the accumulator, on transcripts shaped like OpenAI's documented streams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convkit import Message, ToolCall, Usage
from convkit.chat import (
    ChatChunk,
    ChatResponse,
    ChoiceDelta,
    StreamAccumulator,
    ToolCallDelta,
)

ENVELOPE = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1694268190,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_44709d6fcb",
}


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0, **extra: Any
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return {**ENVELOPE, "choices": [choice], **extra}


def accumulate(objs: list[dict[str, Any]]) -> ChatResponse:
    acc = StreamAccumulator()
    for o in objs:
        acc.feed(ChatChunk.from_openai(o))
    return acc.response()


# The text stream from OpenAI's "streaming" reference, with the include_usage final chunk.
TEXT_STREAM = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hello"}),
    chunk({"content": "!"}),
    chunk({"content": " How can I help?"}),
    chunk({}, "stop"),
    {
        **ENVELOPE,
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 8,
            "total_tokens": 17,
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    },
]

# Function calling, streamed: id and name in the first fragment, arguments split mid-token.
TOOL_STREAM = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
            "refusal": None,
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "location"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '":"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "Paris, France"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}),
    chunk({}, "tool_calls"),
]

# Parallel tool calls: two calls, their fragments interleaved.
PARALLEL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
    chunk({}, "tool_calls"),
]


def test_text_stream_accumulates_to_a_response() -> None:
    r = accumulate(TEXT_STREAM)
    assert r.text == "Hello! How can I help?"
    assert r.finish_reason == "stop"
    assert (r.id, r.model, r.created) == ("chatcmpl-123", "gpt-4o-mini", 1694268190)
    assert r.usage == Usage(
        prompt_tokens=9,
        completion_tokens=8,
        total_tokens=17,
        extra={"completion_tokens_details": {"reasoning_tokens": 0}},
    )
    assert r.extra["system_fingerprint"] == "fp_44709d6fcb"
    assert "obfuscation" not in r.extra
    assert r.message == Message.assistant("Hello! How can I help?")


def test_tool_call_split_across_chunks() -> None:
    r = accumulate(TOOL_STREAM)
    assert r.finish_reason == "tool_calls"
    assert r.message.content is None
    assert r.tool_calls == (
        ToolCall(
            id="call_DdmO9pD3xa9XTPNJ32zg2hcA",
            name="get_weather",
            arguments='{"location":"Paris, France"}',
        ),
    )
    assert json.loads(r.tool_calls[0].arguments) == {"location": "Paris, France"}


def test_parallel_tool_calls_are_kept_apart() -> None:
    r = accumulate(PARALLEL_STREAM)
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", '{"tz": "CET"}'),
    ]


def test_streamed_and_complete_forms_agree() -> None:
    streamed = accumulate(TOOL_STREAM)
    body = streamed.to_openai()
    assert ChatResponse.from_openai(body) == streamed


def test_repeated_id_and_name_are_not_doubled() -> None:
    # Some gateways repeat id/name on every fragment.
    frag = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    r = accumulate(
        [
            chunk({"tool_calls": [{**frag, "function": {"name": "f", "arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{**frag, "function": {"name": "f", "arguments": ": 1}"}}]}),
        ]
    )
    assert r.tool_calls == (ToolCall(id="call_1", name="f", arguments='{"a": 1}'),)


def test_new_id_at_reused_index_starts_a_new_call() -> None:
    # Ollama numbers every call of a parallel batch 0.
    r = accumulate(
        [
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
                    ]
                }
            ),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c2", "function": {"name": "g", "arguments": "{}"}}
                    ]
                }
            ),
        ]
    )
    assert [(c.id, c.name) for c in r.tool_calls] == [("c1", "f"), ("c2", "g")]


def test_fragments_without_index_follow_the_latest_call() -> None:
    r = accumulate(
        [
            chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"x"'}}]}),
            chunk({"tool_calls": [{"function": {"arguments": ": 1}"}}]}),
            chunk({"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),
        ]
    )
    assert [(c.id, c.arguments) for c in r.tool_calls] == [("c1", '{"x": 1}'), ("c2", "{}")]


def test_refusal_deltas_concatenate() -> None:
    r = accumulate(
        [
            chunk({"role": "assistant", "content": None, "refusal": ""}),
            chunk({"refusal": "I can't "}),
            chunk({"refusal": "help with that."}),
            chunk({}, "stop"),
        ]
    )
    assert r.message.refusal == "I can't help with that."
    assert r.message.content is None and r.text == ""


def test_several_choices_interleaved() -> None:
    r = accumulate(
        [
            chunk({"role": "assistant", "content": ""}, index=0),
            chunk({"role": "assistant", "content": ""}, index=1),
            chunk({"content": "A1"}, index=1),
            chunk({"content": "A0"}, index=0),
            chunk({}, "length", index=1),
            chunk({}, "stop", index=0),
        ]
    )
    assert [(c.index, c.message.text, c.finish_reason) for c in r.choices] == [
        (0, "A0", "stop"),
        (1, "A1", "length"),
    ]
    assert r.text == "A0" and r.finish_reason == "stop"


def test_vendor_reasoning_deltas_concatenate_into_extra() -> None:
    r = accumulate(
        [
            chunk({"role": "assistant", "reasoning_content": "Let me "}),
            chunk({"reasoning_content": "think."}),
            chunk({"content": "42"}),
            chunk({}, "stop"),
        ]
    )
    assert r.text == "42"
    assert r.message.extra["reasoning_content"] == "Let me think."
    assert r.message.to_openai()["reasoning_content"] == "Let me think."


def test_logprobs_content_lists_concatenate() -> None:
    def lp(tok: str) -> dict[str, Any]:
        return {
            "content": [{"token": tok, "logprob": -0.1, "bytes": None, "top_logprobs": []}],
            "refusal": None,
        }

    objs = [chunk({"content": "a"}), chunk({"content": "b"})]
    objs[0]["choices"][0]["logprobs"] = lp("a")
    objs[1]["choices"][0]["logprobs"] = lp("b")
    r = accumulate(objs)
    assert [t["token"] for t in r.choices[0].extra["logprobs"]["content"]] == ["a", "b"]


def test_partial_response_is_available_at_any_time() -> None:
    acc = StreamAccumulator()
    empty = acc.response()
    assert empty.text == "" and empty.finish_reason is None and empty.usage is None
    for o in TEXT_STREAM[:3]:
        acc.feed(ChatChunk.from_openai(o))
    assert acc.response().text == "Hello!"
    assert acc.response().finish_reason is None
    assert acc.chunks == 3
    for o in TEXT_STREAM[3:]:
        acc.feed(ChatChunk.from_openai(o))
    assert acc.response().text == "Hello! How can I help?"


def test_partial_tool_call_arguments_are_kept_verbatim() -> None:
    r = accumulate(TOOL_STREAM[:3])
    assert r.tool_calls[0].arguments == '{"location'  # not valid JSON, and not rewritten


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"choices": {"index": 0}},
        {"choices": ["x"]},
        {"choices": [{"index": 0, "delta": "text"}]},
    ],
)
def test_misshapen_chunks_are_rejected(obj: Any) -> None:
    with pytest.raises(ValueError):  # the message varies by shape
        ChatChunk.from_openai(obj)
    acc = StreamAccumulator()
    with pytest.raises(ValueError):
        acc.feed_openai(obj)  # the clients' one-pass path checks the same
    with pytest.raises(ValueError):
        acc.feed(ChatChunk(obj))  # even a chunk built without from_openai


@pytest.mark.parametrize(
    "delta",
    [
        {"content": 5},
        {"refusal": ["no"]},
        {"role": 1},
        {"tool_calls": {"index": 0}},
        {"tool_calls": ["x"]},
        {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]},
    ],
)
def test_accumulator_rejects_ill_typed_deltas(delta: dict[str, Any]) -> None:
    acc = StreamAccumulator()
    acc.feed(ChatChunk.from_openai(chunk({"content": "ok"})))
    with pytest.raises(ValueError):
        acc.feed(ChatChunk.from_openai(chunk(delta)))
    assert acc.response().text == "ok"


def test_feed_openai_returns_the_chunk() -> None:
    acc = StreamAccumulator()
    chunks = [acc.feed_openai(o) for o in TEXT_STREAM]
    assert chunks == [ChatChunk.from_openai(o) for o in TEXT_STREAM]
    assert acc.response() == accumulate(TEXT_STREAM)


def test_chunk_views() -> None:
    c = ChatChunk.from_openai(TOOL_STREAM[0])
    assert (c.id, c.model, c.created, c.text, c.usage) == (
        "chatcmpl-123",
        "gpt-4o-mini",
        1694268190,
        "",
        None,
    )
    assert c.choices == (
        ChoiceDelta(
            index=0,
            role="assistant",
            tool_calls=(
                ToolCallDelta(
                    index=0,
                    id="call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    type="function",
                    name="get_weather",
                    arguments="",
                ),
            ),
        ),
    )
    text = ChatChunk.from_openai(TEXT_STREAM[1])
    assert text.text == "Hello" and text.choices[0].content == "Hello"
    usage = ChatChunk.from_openai(TEXT_STREAM[-1])
    assert usage.choices == () and usage.usage is not None and usage.usage.total_tokens == 17
    assert usage.text == ""
    assert ChatChunk.from_openai(TEXT_STREAM[1]) == text
    assert text != ChatChunk.from_openai(TEXT_STREAM[2])
    assert "Hello" in repr(text)
    with pytest.raises(TypeError):
        text.raw["id"] = "changed"  # type: ignore[index]
