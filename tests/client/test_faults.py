"""Every injected fault, through the real loopback server, for sync and async clients."""

from __future__ import annotations

import threading
import time

import pytest

import convkit
from convkit import (
    APIStatusError,
    ConnectError,
    RateLimitError,
    StreamError,
    TransportError,
)
from convkit.client import ChatClient, Timeouts
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY, MESSAGES, Driver

TEXT = "The quick brown fox jumps over the lazy dog"


# --------------------------------------------------------------------------- streamed


def test_drop_after_n_chunks(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, chunk_size=4, drop_after_chunks=4))
    res = driver.stream()
    assert isinstance(res.error, StreamError)
    assert "lost mid-stream" in str(res.error)
    # role chunk + 3 content chunks arrived before the connection went away
    assert res.text == TEXT[:12]
    assert res.error.partial is not None and res.error.partial.text == TEXT[:12]
    assert res.error.partial.finish_reason is None
    assert res.partial.text == TEXT[:12]


def test_malformed_chunk(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, chunk_size=4, malformed_chunk_at=3))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "malformed" in str(res.error)
    assert res.text == TEXT[:8]
    assert res.error.partial is not None and res.error.partial.text == TEXT[:8]


def test_stream_without_done(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, omit_done=True))
    res = driver.stream(client={"max_retries": 0})
    assert isinstance(res.error, StreamError) and "[DONE]" in str(res.error)
    assert res.text == TEXT  # everything arrived, but nobody said it was the end
    assert res.error.partial is not None
    assert res.error.partial.text == TEXT and res.error.partial.finish_reason == "stop"


def test_stall_is_detected_in_bounded_time(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, stall_after_chunks=3, stall_seconds=60))
    res = driver.stream(client={"timeout": Timeouts(read=30, stream_idle=0.3)})
    assert isinstance(res.error, convkit.APITimeoutError)
    assert "silent" in str(res.error)
    assert res.elapsed < 10  # bounded: far below the 30 s read timeout and the 60 s stall
    assert res.text == TEXT[:8] and res.partial.text == TEXT[:8]


def test_idle_timeout_does_not_limit_the_wait_for_headers(driver: Driver) -> None:
    # The first bytes may take long (prompt processing): only the read timeout applies there.
    driver.server.enqueue(Reply.text("slow start", latency=0.5))
    res = driver.stream(client={"timeout": Timeouts(read=10, stream_idle=0.2)})
    assert res.error is None and res.text == "slow start"


def test_a_short_stall_within_the_idle_timeout_is_fine(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, stall_after_chunks=2, stall_seconds=0.2))
    res = driver.stream(client={"timeout": Timeouts(stream_idle=5)})
    assert res.error is None and res.text == TEXT


def test_rate_limit_event_mid_stream_is_not_retried(driver: Driver) -> None:
    err = {"error": {"message": "Rate limit reached", "type": "rate_limit", "code": "429"}}
    driver.server.enqueue(Reply.text(TEXT, event_error_at=3, event_error=err), Reply.text("x"))
    res = driver.stream()
    assert isinstance(res.error, RateLimitError) and res.error.body == err
    assert len(driver.server.requests) == 1
    assert res.partial.text == TEXT[:8]
    driver.server.reset()


def test_error_status_with_retry_after_on_a_stream(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(429, retry_after=7, message="slow down"))
    res = driver.stream(client={"max_retries": 0})
    assert isinstance(res.error, RateLimitError)
    assert "slow down" in str(res.error) and res.error.request_id == "req_fake_1"


# --------------------------------------------------------------------------- not streamed


def test_plain_drop_is_a_connect_error(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, drop_after_chunks=0))
    with pytest.raises(ConnectError, match="lost"):
        driver.complete(client={"max_retries": 0})


def test_plain_malformed_body(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, malformed_chunk_at=0))
    with pytest.raises(TransportError, match="not JSON"):
        driver.complete()


def test_plain_stall_hits_the_read_timeout(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, stall_after_chunks=0, stall_seconds=60))
    t0 = time.monotonic()
    with pytest.raises(convkit.APITimeoutError):
        driver.complete(client={"timeout": Timeouts(read=0.3), "max_retries": 0})
    assert time.monotonic() - t0 < 10


def test_plain_error_event_body(driver: Driver) -> None:
    driver.server.enqueue(Reply.text(TEXT, event_error_at=0))
    with pytest.raises(APIStatusError) as info:
        driver.complete(client={"max_retries": 0})
    assert info.value.status_code == 500


# --------------------------------------------------------------------------- the server side


def test_stop_ends_a_stall_promptly_and_the_client_sees_a_truncation() -> None:
    server = FakeChatServer().start()
    server.enqueue(Reply.text(TEXT, stall_after_chunks=2, stall_seconds=120))
    got_first = threading.Event()
    outcome: list[BaseException | str] = []

    def consume() -> None:
        with ChatClient(base_url=server.base_url, api_key=FAKE_API_KEY, max_retries=0) as c:
            try:
                with c.stream(model="m", messages=MESSAGES) as s:
                    for chunk in s:
                        if chunk.text:
                            got_first.set()
                outcome.append("finished")
            except BaseException as exc:
                outcome.append(exc)
            finally:
                got_first.set()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert got_first.wait(10)
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 5
        thread.join(10)
        assert not thread.is_alive()
    finally:
        server.stop()
        thread.join(10)
    [result] = outcome
    assert isinstance(result, StreamError)
    assert result.partial is not None and result.partial.text == TEXT[:4]
