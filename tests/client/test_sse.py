"""The sans-IO event-stream decoder: every shape a server sends, split at any byte."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convkit import (
    APIStatusError,
    BadRequestError,
    ContextLengthExceededError,
    InternalServerError,
    RateLimitError,
    StreamError,
)
from convkit._sse import ChatEventDecoder, ServerSentEvent, SSEDecoder, error_from_event


def decode(*pieces: bytes, close: bool = False) -> list[ServerSentEvent]:
    d = SSEDecoder()
    out: list[ServerSentEvent] = []
    for p in pieces:
        out.extend(d.feed(p))
    if close:
        out.extend(d.close())
    return out


def datas(events: list[ServerSentEvent]) -> list[str]:
    return [e.data for e in events]


# --------------------------------------------------------------------------- shapes


def test_single_event_and_its_fields() -> None:
    [ev] = decode(b"event: delta\nid: 7\nretry: 1500\ndata: hello\n\n")
    assert ev == ServerSentEvent("hello", "delta", "7", 1500)


def test_data_with_and_without_space() -> None:
    assert datas(decode(b"data:a\n\ndata: b\n\ndata:  c\n\n")) == ["a", "b", " c"]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    raw = b"data: one" + eol + eol + b"data: two" + eol + b"data: more" + eol + eol
    assert datas(decode(raw)) == ["one", "two\nmore"]


def test_mixed_line_endings_in_one_stream() -> None:
    raw = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n"
    assert datas(decode(raw)) == ["a", "b", "c", "d"]


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    # If the LF after a trailing CR were read as a second line end, this would dispatch early.
    events = decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert datas(events) == ["a\nb"]


def test_comments_and_keep_alives_are_ignored() -> None:
    raw = b": keep-alive\n\n:\n\ndata: x\n: inside an event\ndata: y\n\n: bye\n\n"
    assert datas(decode(raw)) == ["x\ny"]


def test_blank_lines_between_events_dispatch_nothing() -> None:
    assert datas(decode(b"\n\n\n\ndata: a\n\n\n\n\ndata: b\n\n\n")) == ["a", "b"]


def test_multi_line_data_is_joined_with_newlines() -> None:
    raw = b'data: {"a":\ndata: 1}\n\n'
    [ev] = decode(raw)
    assert ev.data == '{"a":\n1}'
    assert json.loads(ev.data) == {"a": 1}


def test_empty_data_line_is_an_event_with_empty_data() -> None:
    assert datas(decode(b"data:\n\ndata\n\n")) == ["", ""]


def test_event_without_data_is_not_dispatched_and_resets_its_type() -> None:
    events = decode(b"event: ping\n\ndata: x\n\n")
    assert events == [ServerSentEvent("x", None, None, None)]


def test_unknown_fields_and_field_without_colon_are_ignored() -> None:
    assert datas(decode(b"foo: bar\nbaz\ndata: x\n\n")) == ["x"]


def test_id_persists_and_id_with_nul_is_ignored() -> None:
    events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", "1"]


def test_byte_order_mark_at_start_is_dropped() -> None:
    assert datas(decode(b"\xef\xbb\xbfdata: x\n\n")) == ["x"]


def test_utf8_character_split_at_every_byte() -> None:
    text = "data: h\u00e9llo \u20ac \U0001f600 \u4e16\u754c\n\n"
    raw = text.encode()
    for i in range(1, len(raw)):
        assert datas(decode(raw[:i], raw[i:])) == [text[6:-2]], i


def test_byte_by_byte_feeding() -> None:
    raw = "data: caf\u00e9\r\n: c\r\nevent: e\r\ndata: \U0001f600\r\n\r\n".encode()
    events = decode(*(raw[i : i + 1] for i in range(len(raw))))
    assert events == [ServerSentEvent("caf\u00e9\n\U0001f600", "e", None, None)]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert datas(decode(b"data: a\xffb\n\ndata: ok\n\n")) == ["a\ufffdb", "ok"]


def test_close_delivers_a_final_event_without_its_blank_line() -> None:
    assert datas(decode(b"data: a\n\ndata: [DONE]\n", close=True)) == ["a", "[DONE]"]
    assert datas(decode(b"data: [DONE]", close=True)) == ["[DONE]"]
    assert decode(b": only a comment", close=True) == []


def test_nothing_is_dispatched_before_the_blank_line() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    assert d.feed(b"data: b\n") == []
    assert datas(d.feed(b"\n")) == ["a\nb"]


# --------------------------------------------------------------------------- splitting


def reference(raw: bytes) -> list[ServerSentEvent]:
    """A literal reading of the WHATWG rules, on the whole input at once."""
    text = raw.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the unterminated remainder
    events, data, etype, last_id, retry = [], [], None, None, None
    for line in lines:
        if line == "":
            if data:
                events.append(ServerSentEvent("\n".join(data), etype, last_id, retry))
            data, etype = [], None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            etype = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
    return events


_line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12
)
_line = st.one_of(
    st.builds(lambda v: "data: " + v, _line_text),
    st.builds(lambda v: "data:" + v, _line_text),
    st.just("data"),
    st.builds(lambda v: ": " + v, _line_text),  # comment
    st.builds(lambda v: "event: " + v, _line_text),
    st.builds(lambda v: "id: " + v, _line_text),
    st.builds(lambda v: "retry: " + v, st.from_regex(r"[0-9]{1,4}", fullmatch=True)),
    st.builds(lambda v: "x-unknown: " + v, _line_text),
    st.just(""),  # blank line: dispatch
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(_line, max_size=25))
    eols = draw(
        st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines))
    )
    bom = draw(st.booleans())
    text = ("\ufeff" if bom else "") + "".join(
        line + eol for line, eol in zip(lines, eols, strict=True)
    )
    raw = text.encode("utf-8")
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    return raw, cuts


@settings(max_examples=300, deadline=None)
@given(streams())
def test_any_split_yields_the_same_events_as_the_reference(case: tuple[bytes, list[int]]) -> None:
    raw, cuts = case
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    expected = reference(raw)
    assert decode(*pieces) == expected
    assert decode(raw) == expected
    assert decode(*(raw[i : i + 1] for i in range(len(raw)))) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(max_size=30), min_size=1, max_size=8),
    st.data(),
)
def test_json_chunks_survive_any_split(payloads: list[str], data: st.DataObject) -> None:
    raw = (
        b"".join(
            b"data: " + json.dumps({"choices": [], "t": p}, ensure_ascii=False).encode() + b"\n\n"
            for p in payloads
        )
        + b"data: [DONE]\n\n"
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    bounds = [0, *cuts, len(raw)]
    d = ChatEventDecoder()
    out = []
    for a, b in itertools.pairwise(bounds):
        out.extend(d.feed(raw[a:b]))
    assert d.done and d.failure is None
    assert [o["t"] for o in out] == payloads


# --------------------------------------------------------------------------- chat dialect


def test_done_ends_the_stream_and_later_bytes_are_ignored() -> None:
    d = ChatEventDecoder()
    assert d.feed(b'data: {"choices":[]}\n\ndata: [DONE]\n\ndata: {"x": 1}\n\n') == [
        {"choices": []}
    ]
    assert d.done
    assert d.feed(b"data: garbage\n\n") == []
    assert d.close() == [] and d.failure is None


def test_done_without_trailing_blank_line_counts_at_eof() -> None:
    d = ChatEventDecoder()
    d.feed(b'data: {"choices":[]}\n\ndata: [DONE]\n')
    assert not d.done
    assert d.close() == []
    assert d.done and d.failure is None


def test_eof_without_done_is_a_truncation() -> None:
    d = ChatEventDecoder()
    assert d.feed(b'data: {"choices":[]}\n\n') == [{"choices": []}]
    d.close()
    assert isinstance(d.failure, StreamError) and d.truncated
    assert "truncated" in str(d.failure)


def test_eof_inside_an_event_is_a_truncation() -> None:
    d = ChatEventDecoder()
    d.feed(b'data: {"choices": [{"ind')
    d.close()
    assert isinstance(d.failure, StreamError) and d.truncated


def test_malformed_chunk_fails_after_delivering_earlier_chunks() -> None:
    d = ChatEventDecoder()
    out = d.feed(b'data: {"a":1}\n\ndata: {not json\n\ndata: {"b":2}\n\n')
    assert out == [{"a": 1}]
    assert isinstance(d.failure, StreamError) and not d.truncated
    assert "malformed" in str(d.failure)
    assert d.feed(b'data: {"c":3}\n\n') == []


def test_json_that_is_not_an_object_is_malformed() -> None:
    d = ChatEventDecoder()
    d.feed(b"data: [1, 2]\n\n")
    assert isinstance(d.failure, StreamError)


def test_event_error_fails_with_status_from_body() -> None:
    d = ChatEventDecoder(request_id="req_1")
    body = {"error": {"message": "slow down", "type": "rate_limit", "code": 429}}
    d.feed(b'data: {"choices":[]}\n\nevent: error\ndata: ' + json.dumps(body).encode() + b"\n\n")
    err = d.failure
    assert isinstance(err, RateLimitError)
    assert err.status_code == 429 and err.body == body and err.request_id == "req_1"
    assert "slow down" in str(err)


def test_error_object_in_data_without_choices_fails() -> None:
    d = ChatEventDecoder()
    d.feed(b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n')
    assert isinstance(d.failure, InternalServerError)
    assert d.failure.status_code == 500


def test_error_from_event_picks_class_by_body() -> None:
    err = error_from_event(
        json.dumps({"error": {"message": "maximum context length is 8192", "code": "400"}})
    )
    assert isinstance(err, ContextLengthExceededError) and isinstance(err, BadRequestError)
    plain = error_from_event("not json at all")
    assert type(plain) is InternalServerError and plain.body == "not json at all"
    odd = error_from_event(json.dumps({"error": "overloaded", "status_code": 503}))
    assert odd.status_code == 503 and "overloaded" in str(odd)
    assert isinstance(odd, APIStatusError)
