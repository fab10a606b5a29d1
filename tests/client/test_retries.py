"""Retry decisions (pure) and retries end to end, for plain calls and streams."""

from __future__ import annotations

import email.utils
import logging

import pytest

from convkit import (
    BadRequestError,
    ConnectError,
    InternalServerError,
    RateLimitError,
    StreamError,
)
from convkit._retry import Backoff, is_retryable_status, retry_after_seconds
from convkit.client import ChatClient, Timeouts
from convkit.testing import FakeChatServer, Reply

from .conftest import FAKE_API_KEY, MESSAGES, Driver

# --------------------------------------------------------------------------- pure decisions


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    assert not is_retryable_status(status)


def test_server_hint_can_only_hold_a_retry_back() -> None:
    assert not is_retryable_status(503, {"x-should-retry": "false"})
    assert not is_retryable_status(429, {"x-should-retry": " False "})
    assert is_retryable_status(503, {"x-should-retry": "true"})
    assert is_retryable_status(503, {"x-should-retry": "maybe"})


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_should_retry_true_does_not_make_other_4xx_retryable(status: int) -> None:
    assert not is_retryable_status(status, {"x-should-retry": "true"})


def test_exponential_backoff_is_capped() -> None:
    b = Backoff(initial=0.5, maximum=3.0, multiplier=2.0, random=lambda: 1.0)
    assert [b.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_full_jitter_scales_the_cap() -> None:
    b = Backoff(initial=1.0, maximum=8.0, random=lambda: 0.25)
    assert [b.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert Backoff(random=lambda: 0.0).delay(3) == 0.0


def test_default_jitter_stays_within_bounds() -> None:
    b = Backoff(initial=0.1, maximum=1.0)
    delays = [b.delay(3) for _ in range(200)]
    assert all(0 <= d <= 0.8 for d in delays)
    assert len(set(delays)) > 100  # really random


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    # milliseconds win over seconds
    assert retry_after_seconds({"retry-after-ms": "100", "retry-after": "9"}) == 0.1
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=lambda: 1_000_000.0) == 30.0
    past = email.utils.formatdate(999_000, usegmt=True)
    assert retry_after_seconds({"retry-after": past}, now=lambda: 1_000_000.0) == 0.0
    for junk in ({"retry-after": "soon"}, {"retry-after": "-4"}, {"retry-after-ms": "nan"}, {}):
        assert retry_after_seconds(junk) is None
    assert retry_after_seconds({"retry-after-ms": "x", "retry-after": "2"}) == 2.0


def test_backoff_honours_and_bounds_the_server_wait() -> None:
    b = Backoff(random=lambda: 1.0, max_retry_after=10)
    assert b.delay(0, {"retry-after": "4"}) == 4.0
    assert b.delay(5, {"retry-after": "0"}) == 0.0
    assert b.delay(0, {"retry-after": "11"}) is None  # longer than we are willing to wait
    assert b.delay(0, {"other": "1"}) == 0.5


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=-1)
    with pytest.raises(ValueError, match="maximum"):
        Backoff(maximum=float("nan"))


# --------------------------------------------------------------------------- end to end


def test_429_then_success_honours_retry_after(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(429, retry_after=2), Reply.text("finally"))
    assert driver.complete().text == "finally"
    assert len(driver.server.requests) == 2
    assert driver.sleeps == [2.0]


def test_retry_after_ms_wins(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(503, retry_after_ms=1500, retry_after=30), Reply.text("ok"))
    assert driver.complete().text == "ok"
    assert driver.sleeps == [1.5]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_retryable_statuses_are_retried_up_to_max_retries(driver: Driver, status: int) -> None:
    driver.server.enqueue(*[Reply.error(status) for _ in range(4)])
    with pytest.raises(Exception) as info:
        driver.complete(client={"max_retries": 2})
    assert getattr(info.value, "status_code", None) == status
    assert len(driver.server.requests) == 3  # the first try and two retries
    assert len(driver.sleeps) == 2
    driver.server.reset()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_not_retried(driver: Driver, status: int) -> None:
    driver.server.enqueue(Reply.error(status), Reply.text("never"))
    with pytest.raises(Exception) as info:
        driver.complete(client={"max_retries": 5})
    assert getattr(info.value, "status_code", None) == status
    assert len(driver.server.requests) == 1 and driver.sleeps == []
    driver.server.reset()


def test_x_should_retry_false_stops_retries(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(503, headers={"x-should-retry": "false"}), Reply.text("x"))
    with pytest.raises(InternalServerError):
        driver.complete()
    assert len(driver.server.requests) == 1
    driver.server.reset()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_x_should_retry_true_does_not_retry_other_4xx(driver: Driver, status: int) -> None:
    driver.server.enqueue(
        Reply.error(status, headers={"x-should-retry": "true"}), Reply.text("never")
    )
    with pytest.raises(Exception) as info:
        driver.complete(client={"max_retries": 3})
    assert getattr(info.value, "status_code", None) == status
    assert len(driver.server.requests) == 1 and driver.sleeps == []
    driver.server.reset()


def test_x_should_retry_true_keeps_5xx_retried(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.error(503, headers={"x-should-retry": "true"}), Reply.text("second")
    )
    assert driver.complete().text == "second"
    assert len(driver.server.requests) == 2


def test_stream_x_should_retry_true_does_not_retry_a_400(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(400, headers={"x-should-retry": "true"}), Reply.text("x"))
    res = driver.stream(client={"max_retries": 3})
    assert isinstance(res.error, BadRequestError)
    assert len(driver.server.requests) == 1
    driver.server.reset()


def test_too_long_retry_after_raises_at_once(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(429, retry_after=3600), Reply.text("never"))
    with pytest.raises(RateLimitError):
        driver.complete()
    assert len(driver.server.requests) == 1 and driver.sleeps == []
    driver.server.reset()


def test_max_retries_zero_disables_retries(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(500), Reply.text("never"))
    with pytest.raises(InternalServerError):
        driver.complete(client={"max_retries": 0})
    assert len(driver.server.requests) == 1
    driver.server.reset()


def test_dropped_connection_is_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("x", drop_after_chunks=0), Reply.text("second try"))
    assert driver.complete().text == "second try"
    assert len(driver.server.requests) == 2 and len(driver.sleeps) == 1


def test_connection_errors_give_up_after_max_retries(driver: Driver) -> None:
    with FakeChatServer() as other:
        url = other.base_url
    with pytest.raises(ConnectError):
        driver.complete(client={"base_url": url, "max_retries": 3})
    assert len(driver.sleeps) == 3


def test_backoff_grows_between_retries(driver: Driver) -> None:
    driver.server.enqueue(*[Reply.error(500) for _ in range(3)], Reply.text("ok"))
    backoff = Backoff(initial=0.1, maximum=0.3, random=lambda: 1.0)
    assert driver.complete(client={"max_retries": 3, "backoff": backoff}).text == "ok"
    assert driver.sleeps == [0.1, 0.2, 0.3]


def test_real_sleeps_are_bounded_and_logged(
    chat_server: FakeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convkit.client")
    chat_server.enqueue(Reply.error(429, retry_after_ms=20), Reply.text("ok"))
    with ChatClient(base_url=chat_server.base_url, api_key=FAKE_API_KEY) as client:
        assert client.complete(model="m", messages=MESSAGES).text == "ok"
    [record] = [r for r in caplog.records if r.name == "convkit.client"]
    assert "RateLimitError 429" in record.getMessage()
    assert "retry 1 of 2" in record.getMessage()
    assert FAKE_API_KEY not in caplog.text


# --------------------------------------------------------------------------- streams


def test_stream_open_is_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(503, retry_after=1), Reply.text("streamed"))
    res = driver.stream()
    assert res.text == "streamed" and res.error is None
    assert len(driver.server.requests) == 2 and driver.sleeps == [1.0]


def test_stream_dropped_before_any_chunk_is_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("lost", drop_after_chunks=0), Reply.text("again"))
    res = driver.stream()
    assert res.error is None and res.text == "again"
    assert len(driver.server.requests) == 2


def test_stream_error_event_before_any_chunk_is_retried(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.text("x", event_error_at=0, event_error={"error": {"message": "busy", "code": 429}}),
        Reply.text("ok"),
    )
    res = driver.stream()
    assert res.error is None and res.text == "ok"
    assert len(driver.server.requests) == 2


def test_stream_is_not_retried_once_a_chunk_reached_the_caller(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.text("abcdefgh", chunk_size=2, drop_after_chunks=2), Reply.text("x")
    )
    res = driver.stream(client={"max_retries": 5})
    assert isinstance(res.error, StreamError)
    assert res.text == "ab"  # what the caller saw is never shown twice
    assert res.error.partial is not None and res.error.partial.text == "ab"
    assert len(driver.server.requests) == 1 and driver.sleeps == []
    driver.server.reset()


def test_stream_4xx_is_not_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.error(400), Reply.text("never"))
    res = driver.stream()
    assert isinstance(res.error, BadRequestError)
    assert len(driver.server.requests) == 1
    driver.server.reset()


def test_stream_malformed_chunk_is_not_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("abc", malformed_chunk_at=0), Reply.text("never"))
    res = driver.stream()
    assert isinstance(res.error, StreamError) and "malformed" in str(res.error)
    assert len(driver.server.requests) == 1
    driver.server.reset()


def test_stream_retries_share_one_budget(driver: Driver) -> None:
    driver.server.enqueue(
        Reply.error(500),
        Reply.text("x", drop_after_chunks=0),
        Reply.error(502),
        Reply.text("never"),
    )
    res = driver.stream(client={"max_retries": 2})
    assert isinstance(res.error, InternalServerError) and res.error.status_code == 502
    assert len(driver.server.requests) == 3
    driver.server.reset()


def test_idle_timeout_before_first_chunk_is_not_retried(driver: Driver) -> None:
    driver.server.enqueue(Reply.text("x", stall_after_chunks=0, stall_seconds=5), Reply.text("y"))
    res = driver.stream(client={"timeout": Timeouts(stream_idle=0.2)})
    assert res.error is not None and type(res.error).__name__ == "APITimeoutError"
    assert len(driver.server.requests) == 1
    driver.server.reset()
