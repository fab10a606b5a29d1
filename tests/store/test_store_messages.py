"""Appending and reading messages: seq, token counts, status, usage, metadata, exact round trip."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convkit import InvalidMessageError, Message, ToolCall, Usage
from convkit.store import NewMessage, Store, StoreValueError
from convkit.tokens import TokenCounter

WIRE: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
    {
        "role": "assistant",
        "content": "It is 22C in Paris.",
        "reasoning_content": "vendor extra",
        "refusal": None,
    },
    {"role": "user", "content": "naïve café ☕ \u0000 nul is fine in content", "name": "ann"},
]


def test_append_assigns_seq_and_counts_tokens(store: Store, counter: TokenCounter) -> None:
    thread = store.create_thread()
    stored = [store.append(thread.id, m) for m in WIRE]
    assert [s.seq for s in stored] == list(range(1, len(WIRE) + 1))
    for s, wire in zip(stored, WIRE, strict=True):
        assert s.thread_id == thread.id
        assert s.tokens == counter.count_message(Message.from_openai(wire))
        assert s.encoding == counter.encoding_name == "o200k_base"
        assert s.status == "complete"
        assert s.to_openai() == wire
    assert store.get_thread(thread.id).last_seq == len(WIRE)
    # what append returned is exactly what reading gives back
    assert store.messages(thread.id) == stored


def test_append_records_status_usage_metadata_and_given_tokens(store: Store) -> None:
    thread = store.create_thread()
    usage = Usage(
        prompt_tokens=10,
        completion_tokens=3,
        total_tokens=13,
        extra={"prompt_tokens_details": {"cached_tokens": 4}},
    )
    stored = store.append(
        thread.id,
        Message.assistant("partial ans"),
        status="incomplete",
        usage=usage,
        metadata={"request_id": "req_1", "latency_ms": 12.5},
        tokens=99,
    )
    assert stored.tokens == 99
    (read,) = store.messages(thread.id)
    assert read == stored
    assert read.status == "incomplete"
    assert read.usage == usage
    assert dict(read.metadata) == {"request_id": "req_1", "latency_ms": 12.5}
    store.append(
        thread.id,
        Message.user("x"),
        usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    )
    assert store.messages(thread.id, last=1)[0].usage == Usage(
        prompt_tokens=1, completion_tokens=2, total_tokens=3
    )


def test_append_many_is_one_transaction(store: Store) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("first"))
    out = store.append_many(
        thread.id,
        [
            Message.user("a"),
            NewMessage(
                message={"role": "assistant", "content": "b"}, status="incomplete", tokens=7
            ),
        ],
    )
    assert [(m.seq, m.message.text, m.status) for m in out] == [
        (2, "a", "complete"),
        (3, "b", "incomplete"),
    ]
    assert out[1].tokens == 7
    # one bad message: nothing of the batch is written, and the error names its index
    with pytest.raises(InvalidMessageError) as info:
        store.append_many(thread.id, [Message.user("ok"), {"role": "tool", "content": "no id"}])
    assert info.value.index == 1
    with pytest.raises(StoreValueError, match=r"messages\[1\]\.metadata"):
        store.append_many(
            thread.id,
            [Message.user("ok"), NewMessage(message=Message.user("x"), metadata={"api_key": "k"})],
        )
    assert store.get_thread(thread.id).last_seq == 3
    assert [m.seq for m in store.messages(thread.id)] == [1, 2, 3]
    assert store.append_many(thread.id, []) == []


def test_messages_last_after_limit(store: Store) -> None:
    thread = store.create_thread()
    store.append_many(thread.id, [Message.user(str(i)) for i in range(1, 301)])

    def texts(**kw: Any) -> list[str]:
        return [m.message.text for m in store.messages(thread.id, **kw)]

    assert texts(last=3) == ["298", "299", "300"]
    assert texts(last=0) == []
    assert texts(last=1000) == [str(i) for i in range(1, 301)]
    assert texts(after_seq=297) == ["298", "299", "300"]
    assert texts(after_seq=10, limit=2) == ["11", "12"]
    assert texts(after_seq=295, last=2) == ["299", "300"]
    assert texts(after_seq=299, last=5) == ["300"]
    assert texts(after_seq=300) == []
    assert len(texts()) == 300
    with pytest.raises(StoreValueError, match="last"):
        store.messages(thread.id, last=-1)


def test_seq_keeps_counting_after_a_failed_append(store: Store) -> None:
    thread = store.create_thread()
    store.append(thread.id, Message.user("a"))
    with pytest.raises(StoreValueError):
        store.append(thread.id, Message.user("b"), metadata={"t": float("nan")})
    assert store.append(thread.id, Message.user("c")).seq == 2


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=20),
)
_meta_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)
_meta_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _meta_text),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def wire_messages(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["user", "assistant", "system", "tool"]))
    text = draw(st.text(max_size=60))
    msg: dict[str, Any] = {"role": role, "content": text}
    if role == "tool":
        msg["tool_call_id"] = draw(st.text(min_size=1, max_size=8))
    if role == "assistant" and draw(st.booleans()):
        msg["tool_calls"] = [
            ToolCall(
                id="c" + draw(st.text(max_size=5)), name="f", arguments=draw(st.text(max_size=20))
            ).to_openai()
        ]
    if draw(st.booleans()):
        msg["x_vendor"] = draw(
            st.dictionaries(st.sampled_from(["a", "b"]), _json_scalar, max_size=2)
        )
    return msg


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    msgs=st.lists(wire_messages(), min_size=1, max_size=4),
    meta=st.dictionaries(st.sampled_from(["k1", "k2", "tag"]), _meta_value, max_size=3),
)
def test_round_trip_is_exact(
    store: Store, msgs: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    thread = store.create_thread(metadata=meta)
    stored = store.append_many(thread.id, [NewMessage(message=m, metadata=meta) for m in msgs])
    read = store.messages(thread.id)
    assert [m.to_openai() for m in read] == msgs
    assert read == stored
    assert all(dict(m.metadata) == meta for m in read)
    assert dict(store.get_thread(thread.id).metadata) == meta
