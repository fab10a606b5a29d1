"""The client's faults from the hardening review (issue 15: items 7, 9, 12, 15, 16, 17).

Each test pins one defect, or its class, through a real loopback server, sync and async.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Iterator

import httpx
import pytest

from convkit._retry import Backoff, retry_after_seconds
from convkit._sse import SSEDecoder
from convkit.client import ChatClient, ResponseLimits, Timeouts
from convkit.errors import (
    APIStatusError,
    APITimeoutError,
    ConnectError,
    InternalServerError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
)
from convkit.testing import FakeChatServer, Reply

from ._faults import KEY, chunk, event, gzipped, http, run_call

KINDS = ["sync", "async"]


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as s:
        yield s


def shows_key(exc: BaseException) -> bool:
    """Whether the key, or the start of it, shows anywhere in the exception as printed."""
    text = "".join(traceback.format_exception(exc))
    return KEY[:8] in text or KEY[:8] in repr(exc)


COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}


# ---- 7. an answer that began is never sent again


@pytest.mark.parametrize("kind", KINDS)
def test_a_200_cut_mid_body_is_not_resent(kind: str, server: FakeChatServer) -> None:
    body = json.dumps(COMPLETION).encode()
    cut = http(
        b"HTTP/1.1 200 OK",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        body[:20],
    )
    server.enqueue(*[Reply.raw_http(cut)] * 3)
    out = run_call(kind, server, stream=False, max_retries=2)
    assert isinstance(out.error, TransportError)
    assert not isinstance(out.error, ConnectError)
    assert "truncated" in str(out.error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    "garbage",
    [b"garbage\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"],
    ids=["status-line", "bad-status", "bad-header"],
)
def test_a_garbage_answer_is_not_resent(
    kind: str, stream: bool, garbage: bytes, server: FakeChatServer
) -> None:
    server.enqueue(*[Reply.raw_http(garbage)] * 3)
    out = run_call(kind, server, stream=stream, max_retries=2)
    assert type(out.error) is TransportError
    assert "malformed HTTP response" in str(out.error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_closed_before_any_answer_is_still_retried(
    kind: str, server: FakeChatServer
) -> None:
    # The sibling the fix must not catch: nothing came back, so the request may be sent again.
    server.enqueue(Reply.raw_http(b""), Reply.raw_http(b""), Reply.text("ok"))
    out = run_call(kind, server, stream=False, max_retries=2)
    assert out.response is not None and out.response.text == "ok"
    assert len(server.requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_retryable_status_whose_body_is_cut_is_still_retried(
    kind: str, server: FakeChatServer
) -> None:
    cut = http(b"HTTP/1.1 503 Busy", {"Content-Length": "100"}, b'{"error": ')
    server.enqueue(Reply.raw_http(cut), Reply.text("ok"))
    out = run_call(kind, server, stream=False, max_retries=2)
    assert out.response is not None and out.response.text == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_answered_by_a_cut_json_body_is_not_resent(
    kind: str, server: FakeChatServer
) -> None:
    cut = http(
        b"HTTP/1.1 200 OK", {"Content-Type": "application/json", "Content-Length": "100"}, b"{"
    )
    server.enqueue(*[Reply.raw_http(cut)] * 3)
    out = run_call(kind, server, stream=True, max_retries=2)
    assert isinstance(out.error, TransportError)
    assert len(server.requests) == 1


# ---- 9. a chunk rejected as malformed leaves nothing behind


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "bad",
    [
        chunk(" LEAKED", finish=5),
        chunk(" LEAKED", tool_calls="not a list"),
        {"id": "c1", "choices": {"0": {"delta": {"content": " LEAKED"}}}},
        '{"choices": [{"delta": {"content": " LEAKED"',
    ],
    ids=["finish-reason", "tool-calls", "choices", "not-json"],
)
def test_a_malformed_chunk_is_not_in_the_partial(
    kind: str, bad: object, server: FakeChatServer
) -> None:
    server.enqueue(Reply.raw_stream([event(chunk("Hello")), event(bad), event("[DONE]")]))
    out = run_call(kind, server, stream=True, max_retries=2)
    assert isinstance(out.error, StreamError)
    assert out.seen == "Hello"
    assert out.partial is not None and out.partial.text == "Hello"
    assert out.error.partial is not None and out.error.partial.text == "Hello"
    assert len(server.requests) == 1


# ---- 12. extreme values are refused when given, or read as "too long"


def test_a_retry_after_date_past_the_calendar_reads_as_too_long() -> None:
    far = {"retry-after": "Fri, 31 Dec 99999999999 23:59:59 GMT"}
    assert retry_after_seconds(far) == math.inf
    assert Backoff().delay(0, far) is None  # longer than max_retry_after: give up


@pytest.mark.parametrize("kind", KINDS)
def test_a_far_retry_after_date_gives_up_with_the_status_error(
    kind: str, server: FakeChatServer
) -> None:
    server.enqueue(Reply.error(503, retry_after="Fri, 31 Dec 99999999999 23:59:59 GMT"))
    out = run_call(kind, server, stream=False, max_retries=2)
    assert isinstance(out.error, InternalServerError)
    assert len(server.requests) == 1


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e300, 10_000_000.0, -1.0, 0.0])
@pytest.mark.parametrize("field", ["connect", "read", "write", "pool", "stream_idle", "total"])
def test_timeouts_refuse_what_no_socket_takes(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})


@pytest.mark.parametrize("value", [math.inf, 1e300, math.nan])
def test_a_client_timeout_number_is_checked_when_the_client_is_made(value: float) -> None:
    with pytest.raises(ValueError, match="Timeouts"):
        ChatClient(base_url="http://127.0.0.1:9/v1", timeout=value)


@pytest.mark.parametrize("field", ["initial", "maximum", "multiplier", "max_retry_after"])
def test_backoff_refuses_infinite_waits(field: str) -> None:
    with pytest.raises(ValueError, match=f"Backoff.{field}"):
        Backoff(**{field: math.inf})


@pytest.mark.parametrize("attempt", [1023, 1024, 1025, 10**6])
def test_the_backoff_cap_never_overflows(attempt: int) -> None:
    b = Backoff(initial=0.5, maximum=8.0, random=lambda: 1.0)
    assert b.delay(attempt) == 8.0
    assert Backoff(initial=0.5, multiplier=0.5, random=lambda: 1.0).delay(attempt) <= 0.5


@pytest.mark.parametrize(
    "key",
    [KEY + "é", KEY + "\n", KEY + " ", " " + KEY, KEY[:10] + "\x00" + KEY[10:], KEY + "\r\n"],
    ids=["non-ascii", "newline", "space", "leading-space", "nul", "crlf"],
)
def test_an_unsendable_key_is_refused_when_the_client_is_made_and_never_shown(
    key: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for source in ("argument", "environment") if "\x00" not in key else ("argument",):
        kwargs: dict[str, str] = {"base_url": "http://127.0.0.1:9/v1"}
        if source == "argument":
            kwargs["api_key"] = key
        else:
            monkeypatch.setenv("OPENAI_API_KEY", key)
        with pytest.raises(ValueError, match="api_key") as info:
            ChatClient(**kwargs)  # type: ignore[arg-type]
        assert not shows_key(info.value)
        assert info.value.__cause__ is None and info.value.__context__ is None
    assert KEY[:8] not in caplog.text


def test_a_header_value_that_cannot_be_sent_is_refused_unshown() -> None:
    with pytest.raises(ValueError, match="X-Token") as info:
        ChatClient(base_url="http://127.0.0.1:9/v1", headers={"X-Token": KEY + "\n"})
    assert not shows_key(info.value)


# ---- 15. the key is cut out of every attribute and the whole chain


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_key_echoed_in_the_request_id_is_redacted(
    kind: str, stream: bool, server: FakeChatServer
) -> None:
    server.enqueue(Reply.error(400, headers={"x-request-id": f"req-{KEY}"}))
    out = run_call(kind, server, stream=stream, max_retries=0)
    assert isinstance(out.error, APIStatusError)
    assert out.error.request_id is not None and "req-[redacted]" in out.error.request_id
    assert not shows_key(out.error)


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_echoed_in_a_streams_request_id_is_redacted(
    kind: str, server: FakeChatServer
) -> None:
    server.enqueue(Reply.text("hi", headers={"x-request-id": KEY}, omit_done=True))
    out = run_call(kind, server, stream=True, max_retries=0)
    assert isinstance(out.error, StreamError)
    assert out.request_id is not None and "[redacted]" in out.request_id
    assert KEY[:8] not in out.request_id
    assert out.error.request_id is None or KEY[:8] not in out.error.request_id
    assert not shows_key(out.error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_key_quoted_by_httpx_is_cut_out_of_the_whole_chain(
    kind: str, stream: bool, server: FakeChatServer
) -> None:
    # A server echoing the key in a broken status line: h11, httpcore and httpx all quote it.
    server.enqueue(Reply.raw_http(f"HTTP/1.1 2OO Bearer {KEY}\r\n\r\n"))
    out = run_call(kind, server, stream=stream, max_retries=0)
    assert isinstance(out.error, TransportError)
    assert out.error.__cause__ is not None
    assert "[redacted]" in "".join(traceback.format_exception(out.error))
    assert not shows_key(out.error)


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_quoted_by_a_dropped_stream_is_cut_out_of_the_chain(
    kind: str, server: FakeChatServer
) -> None:
    cut = http(
        b"HTTP/1.1 200 OK",
        {"Content-Type": "text/event-stream", "Content-Length": "500", "X-Echo": KEY},
        event(chunk(f"answer {KEY}")),
    )
    server.enqueue(Reply.raw_http(cut))
    out = run_call(kind, server, stream=True, max_retries=0)
    assert isinstance(out.error, StreamError)
    assert not shows_key(out.error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_key_echoed_by_the_server_stays_out_of_httpx_and_httpcore_logs(
    kind: str, stream: bool, server: FakeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx logs the reason phrase at INFO; httpcore logs response headers and the exceptions
    # it meets at DEBUG. A server echoing the key in any of them must not put it in a log line.
    echo = http(f"HTTP/1.1 500 Bearer {KEY}".encode(), {"X-Echo": KEY, "Content-Length": "0"}, b"")
    garbage = f"HTTP/1.1 2OO {KEY}\r\n\r\n".encode()
    server.enqueue(Reply.raw_http(echo), Reply.raw_http(garbage))
    with caplog.at_level(logging.DEBUG):
        out = run_call(kind, server, stream=stream, max_retries=1)
    assert isinstance(out.error, TransportError)
    assert "HTTP Request" in caplog.text and "receive_response_headers" in caplog.text
    assert KEY[:8] not in caplog.text
    assert "[redacted]" in caplog.text


# ---- 16. the event-stream decoder is linear and bounded


def test_a_line_in_many_pieces_is_held_not_copied_on_every_feed() -> None:
    d = SSEDecoder()
    piece = b"x" * 4096
    assert d.feed(b"data: ") == []
    for _ in range(1024):  # 4 MiB in one line
        assert d.feed(piece) == []
    # The pieces are held as they came: none was joined to the line so far (that copy, on
    # every feed, made a long line quadratic).
    assert len(d._held) == 1 + 1024
    [ev] = d.feed(b"\n\n")
    assert len(ev.data) == 4096 * 1024
    assert d._held == []


@pytest.mark.parametrize("split", [1, 7, 4096])
def test_the_decoder_gives_the_same_events_however_a_long_line_is_split(split: int) -> None:
    payload = ("é" * 3000 + "x" * 5000).encode()
    data = b"data: " + payload + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    d = SSEDecoder()
    events = []
    for i in range(0, len(data), split):
        events += d.feed(data[i : i + split])
    events += d.close()
    assert [e.data for e in events] == [payload.decode(), "[DONE]"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "shape",
    ["one-line", "many-data-lines", "no-line-end"],
)
def test_an_event_past_max_event_chars_fails_typed_and_is_not_retried(
    kind: str, shape: str, server: FakeChatServer
) -> None:
    first = event(chunk("Hello"))
    if shape == "one-line":
        body = [first, b"data: " + b"x" * 3000, b"x" * 3000 + b"\n\n"]
    elif shape == "many-data-lines":
        body = [first] + [b"data: " + b"y" * 100 + b"\n"] * 80
    else:
        body = [first, b"data: " + b"z" * 5000]
    server.enqueue(*[Reply.raw_stream(body)] * 3)
    out = run_call(
        kind, server, stream=True, max_retries=2, limits=ResponseLimits(max_event_chars=4096)
    )
    assert isinstance(out.error, ResponseTooLargeError)
    assert out.error.limit == "max_event_chars"
    assert out.partial is not None and out.partial.text == "Hello"
    assert len(server.requests) == 1


# ---- 17. memory and time are bounded, with typed errors


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [200, 500])
def test_a_compression_bomb_stops_at_max_body_bytes(
    kind: str, status: int, server: FakeChatServer
) -> None:
    bomb = gzipped(b" " * (8 * 1024 * 1024))  # 8 MiB of spaces in a few kB
    answer = http(
        f"HTTP/1.1 {status} X".encode(),
        {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(bomb)),
        },
        bomb,
    )
    server.enqueue(*[Reply.raw_http(answer)] * 3)
    limits = ResponseLimits(max_body_bytes=256 * 1024)
    out = run_call(kind, server, stream=False, max_retries=2, limits=limits)
    assert isinstance(out.error, ResponseTooLargeError)
    assert out.error.limit == "max_body_bytes" and out.error.size == 256 * 1024
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_oversized_json_body_stops_at_max_body_bytes(
    kind: str, stream: bool, server: FakeChatServer
) -> None:
    big = dict(COMPLETION, padding="p" * 200_000)
    server.enqueue(Reply.json(big))
    out = run_call(kind, server, stream=stream, limits=ResponseLimits(max_body_bytes=64 * 1024))
    assert isinstance(out.error, ResponseTooLargeError)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
def test_valid_chunks_without_end_stop_at_max_stream_bytes(
    kind: str, gzip_it: bool, server: FakeChatServer
) -> None:
    body = b"".join(event(chunk("word ")) for _ in range(2000)) + event("[DONE]")
    if gzip_it:
        data = http(
            b"HTTP/1.1 200 OK",
            {
                "Content-Type": "text/event-stream",
                "Content-Encoding": "gzip",
                "Content-Length": str(len(gzipped(body))),
            },
            gzipped(body),
        )
        reply = Reply.raw_http(data)
    else:
        reply = Reply.raw_stream([body[i : i + 4096] for i in range(0, len(body), 4096)])
    server.enqueue(*[reply] * 3)
    limits = ResponseLimits(max_stream_bytes=32 * 1024)
    out = run_call(kind, server, stream=True, max_retries=2, limits=limits)
    assert isinstance(out.error, ResponseTooLargeError)
    assert out.error.limit == "max_stream_bytes"
    assert out.partial is not None and out.partial.text.startswith("word word")
    assert out.partial.text == out.seen  # what the caller saw is what is kept
    assert out.error.partial is not None and out.error.partial.text == out.seen
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_keep_alives_alone_end_at_the_total_deadline(kind: str, server: FakeChatServer) -> None:
    server.enqueue(
        Reply.raw_stream([event(chunk("thinking"))] + [b": keep-alive\n\n"] * 200, piece_delay=0.01)
    )
    timeout = Timeouts(read=5, stream_idle=1, total=0.3)
    out = run_call(kind, server, stream=True, max_retries=2, timeout=timeout)
    assert isinstance(out.error, APITimeoutError)
    assert "did not end within 0.3 s" in str(out.error)
    assert out.partial is not None and out.partial.text == "thinking"
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_keep_alives_still_count_as_activity_for_the_idle_timer(
    kind: str, server: FakeChatServer
) -> None:
    pieces = [b": keep-alive\n\n"] * 8 + [event(chunk("done", finish="stop")), event("[DONE]")]
    server.enqueue(Reply.raw_stream(pieces, piece_delay=0.05))
    out = run_call(kind, server, stream=True, timeout=Timeouts(stream_idle=0.2))
    assert out.error is None
    assert out.response is not None and out.response.text == "done"


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_drip_of_a_whole_answer_is_bounded_by_read(
    kind: str, server: FakeChatServer
) -> None:
    body = json.dumps(COMPLETION).encode()
    answer = http(
        b"HTTP/1.1 200 OK",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        body,
    )
    head, rest = answer[: -len(body)], body
    drip = [head] + [rest[i : i + 2] for i in range(0, len(rest), 2)]
    server.enqueue(*[Reply.raw_http(drip, piece_delay=0.02)] * 3)
    out = run_call(kind, server, stream=False, max_retries=2, timeout=Timeouts(read=0.4))
    assert isinstance(out.error, APITimeoutError)
    assert "did not end within 0.4 s" in str(out.error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_slow_drip_of_headers_is_bounded(mode: str, stream: bool, server: FakeChatServer) -> None:
    # Each piece comes well within the read timeout; the whole wait is what is bounded (async:
    # a cancel scope; sync: its reads are given a timeout no later than the deadline).
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: y\r\n" % i for i in range(100))
    drip = [head[i : i + 4] for i in range(0, len(head), 4)]  # ~330 pieces, ~3.3 s in all
    server.enqueue(*[Reply.raw_http(drip, piece_delay=0.01)] * 3)
    timeout = Timeouts(read=0.3, total=0.3)
    started = time.monotonic()
    out = run_call(mode, server, stream=stream, max_retries=2, timeout=timeout)
    assert isinstance(out.error, APITimeoutError)
    assert len(server.requests) == 1
    assert time.monotonic() - started < 2.5  # gave up near 0.3 s, not at the drip's end


def test_the_header_deadline_is_only_on_convkits_own_http_client() -> None:
    from convkit.client._deadline import installed

    with ChatClient(base_url="http://127.0.0.1:9/v1", api_key="sk-test") as client:
        assert installed(client._http)
    with httpx.Client() as own, ChatClient(
        base_url="http://127.0.0.1:9/v1", api_key="sk-test", http_client=own
    ) as client:
        assert not installed(client._http)  # the caller's client keeps its own reads
