"""Fuzzing the parsers with hypothesis: arbitrary input ends in a value or a typed error.

Each test states how many examples it runs (``max_examples``); together they take seconds.

=====================================  ========  ==============================================
input class                            examples  outcome
=====================================  ========  ==============================================
JSON-ish dicts -> Message.from_openai  500       a Message that round-trips, or InvalidMessageError
non-JSON values in a message           300       InvalidMessageError
arbitrary bytes -> ChatEventDecoder    1,000     chunks, then done or a TransportError; no raise
event-stream grammar, random splits    500       same events whatever the split; chunks merge or
                                                 raise ResponseFormatError
arbitrary lines -> import_thread       300       StoreValueError, nothing written
mutated valid exports -> import        150       a thread, or StoreValueError
count_tokens(arbitrary messages)       500       an int, or InvalidMessageError
count_tokens(arbitrary tools)          300       an int, or InvalidRequestError
=====================================  ========  ==============================================
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convkit import InvalidMessageError, InvalidRequestError, Message, count_tokens
from convkit._sse import ChatEventDecoder
from convkit.chat import StreamAccumulator
from convkit.errors import ResponseFormatError, TransportError
from convkit.store import Store, StoreValueError

FAST = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

_keys = st.sampled_from(
    ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "type", "text",
     "image_url", "url", "detail", "function", "arguments", "id", "input_audio", "data",
     "format", "file", "custom", "input", "audio", "function_call", "x_vendor"]
) | st.text(max_size=8)  # fmt: skip
_roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | _roles
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)


@st.composite
def _message_like(draw: st.DrawFn) -> dict[str, Any]:
    """A dict shaped roughly like a message: the right keys, any values."""
    d = draw(st.dictionaries(_keys, _json, max_size=6))
    if draw(st.booleans()):
        d["role"] = draw(_roles)
    if draw(st.booleans()):
        d["content"] = draw(
            st.text(max_size=30)
            | st.lists(st.dictionaries(_keys, _json, max_size=4), max_size=3)
            | _json
        )
    return d


# --------------------------------------------------------------------------- message parsing


@settings(max_examples=500, **FAST)
@given(_message_like())
def test_message_parsing_gives_a_message_or_invalid_message_error(d: dict[str, Any]) -> None:
    try:
        m = Message.from_openai(d)
    except InvalidMessageError:
        return
    wire = m.to_openai()
    text = json.dumps(wire, sort_keys=True)  # compared as text: nan is unequal to itself
    assert json.dumps(json.loads(text), sort_keys=True) == text
    again = Message.from_openai(json.loads(text))
    assert json.dumps(again.to_openai(), sort_keys=True) == text


class _Opaque:
    pass


@settings(max_examples=300, **FAST)
@given(
    base=_message_like(),
    bad=st.sampled_from([{1, 2}, _Opaque(), b"bytes", frozenset({"a"}), {3: "int key"}]),
    where=st.sampled_from(["extra", "part", "image_url", "tool_call"]),
)
def test_non_json_values_are_refused_on_entry(base: dict[str, Any], bad: Any, where: str) -> None:
    wire: dict[str, Any]
    if where == "extra":
        wire = {"role": "user", "content": "x", "meta": {"v": bad}}
    elif where == "part":
        wire = {"role": "user", "content": [{"type": "mystery", "v": [bad]}]}
    elif where == "image_url":
        wire = {"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "https://x/a.png", "v": bad}}]}  # fmt: skip
    else:
        wire = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{}"}, "v": bad}]}  # fmt: skip
    with pytest.raises(InvalidMessageError):
        Message.from_openai({**base, **wire})


# --------------------------------------------------------------------------- SSE decoder


def _decode(pieces: list[bytes]) -> tuple[list[dict[str, Any]], ChatEventDecoder]:
    d = ChatEventDecoder()
    out: list[dict[str, Any]] = []
    for p in pieces:
        out.extend(d.feed(p))
    out.extend(d.close())
    return out, d


def _accumulate(objs: list[dict[str, Any]]) -> None:
    acc = StreamAccumulator()
    for obj in objs:
        with contextlib.suppress(ResponseFormatError):  # the chunks before it stay merged
            acc.feed_openai(obj)
    acc.response().message.to_openai()  # what arrived is always a valid message


@settings(max_examples=1_000, **FAST)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_the_sse_decoder_ends_every_byte_stream_in_chunks_or_a_typed_error(
    pieces: list[bytes],
) -> None:
    objs, d = _decode(pieces)
    assert all(type(o) is dict for o in objs)
    assert d.done or isinstance(d.failure, TransportError)
    _accumulate(objs)


_chunk_json = st.builds(
    lambda delta, finish: json.dumps(
        {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    ),
    st.dictionaries(_keys, _json, max_size=3),
    st.none() | st.sampled_from(["stop", "length"]) | _json,
)
_line = st.one_of(
    st.builds(lambda j: f"data: {j}", _chunk_json),
    st.builds(lambda j: f"data: {j}", st.text(max_size=20)),
    st.just("data: [DONE]"),
    st.just(""),
    st.builds(lambda t: f": {t}", st.text(max_size=10)),
    st.builds(lambda t: f"event: {t}", st.sampled_from(["message", "error", "ping"])),
    st.builds(lambda t: f"id: {t}", st.text(max_size=5)),
    st.builds(lambda t: f"retry: {t}", st.text(max_size=5)),
)


def _split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    last = 0
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        yield data[last:c]
        last = c
    yield data[last:]


@settings(max_examples=500, **FAST)
@given(
    lines=st.lists(_line, max_size=15),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_an_event_stream_decodes_the_same_however_it_is_split(
    lines: list[str], newline: str, cuts: list[int]
) -> None:
    data = newline.join(lines).encode()
    whole, d1 = _decode([data])
    split, d2 = _decode(list(_split(data, cuts)))
    assert split == whole
    assert (d1.done, type(d1.failure)) == (d2.done, type(d2.failure))
    assert d1.done or isinstance(d1.failure, TransportError)
    _accumulate(whole)


# --------------------------------------------------------------------------- JSONL import


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with Store("sqlite:///:memory:", create_tables=True) as s:
        yield s


def _export(store: Store) -> list[str]:
    thread = store.create_thread(title="t", metadata={"k": "v"})
    store.append(thread.id, Message.user("hi"))
    store.append(
        thread.id,
        Message.assistant(tool_calls=[{"id": "c1", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]),
    )  # fmt: skip
    store.append(thread.id, Message.tool("22C", tool_call_id="c1"))
    store.append(thread.id, Message.assistant("done"))
    out = io.StringIO()
    store.export_thread(thread.id, out)
    return out.getvalue().splitlines()


def _threads(store: Store) -> int:
    return len(store.list_threads(limit=100_000))


@settings(max_examples=300, **FAST)
@given(lines=st.lists(st.text(max_size=60) | st.builds(json.dumps, _json), max_size=6))
def test_importing_arbitrary_lines_raises_only_store_value_error(
    store: Store, lines: list[str]
) -> None:
    before = _threads(store)
    with pytest.raises(StoreValueError):
        store.import_thread(lines)
    assert _threads(store) == before


@settings(max_examples=150, **FAST)
@given(
    which=st.integers(0, 10),
    key=_keys,
    value=_json,
    drop=st.booleans(),
)
def test_importing_a_mutated_export_gives_a_thread_or_store_value_error(
    store: Store, which: int, key: str, value: Any, drop: bool
) -> None:
    lines = _export(store)
    i = which % len(lines)
    record = json.loads(lines[i])
    target = record["message"] if "message" in record and which % 2 else record
    if drop and key in target:
        del target[key]
    else:
        target[key] = value
    lines[i] = json.dumps(record)
    before = _threads(store)
    try:
        thread = store.import_thread(lines)
    except StoreValueError:
        assert _threads(store) == before
        return
    assert _threads(store) == before + 1
    store.messages(thread.id)  # what was imported loads back


# --------------------------------------------------------------------------- count_tokens

_messages_arg = st.one_of(
    st.lists(_message_like() | _json, max_size=4),
    _json,
    st.builds(lambda m: [Message.user("ok"), m], _message_like()),
)


@settings(max_examples=500, **FAST)
@given(_messages_arg)
def test_count_tokens_gives_an_int_or_invalid_message_error(messages: Any) -> None:
    try:
        n = count_tokens(messages, model="gpt-4o")
    except InvalidMessageError:
        return
    assert type(n) is int and n >= 0


@settings(max_examples=300, **FAST)
@given(
    tools=st.none() | _json | st.lists(st.dictionaries(_keys, _json, max_size=4), max_size=3),
    tool_choice=st.none() | _json,
)
def test_count_tokens_with_arbitrary_tools_gives_an_int_or_a_typed_error(
    tools: Any, tool_choice: Any
) -> None:
    try:
        n = count_tokens(
            [{"role": "user", "content": "hi"}],
            model="gpt-4o",
            tools=tools,
            tool_choice=tool_choice,
        )
    except InvalidRequestError:
        return
    assert type(n) is int and n > 0
