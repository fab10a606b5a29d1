"""No part of the API key survives in an error, even where server text was cut to a length.

The event-stream decoder quotes bad data cut to 200 characters. Redacting after that cut
would miss a key the cut split in two and leave its first characters in the message, so the
decoder redacts first; and any run of the key's first 8+ characters is redacted as well, for
text something else cut before convkit saw it.
"""

from __future__ import annotations

import traceback

import pytest

import convkit
from convkit import APIStatusError, AuthenticationError, StreamError
from convkit._sse import ChatEventDecoder
from convkit.client._redact import Redactor
from convkit.testing import Reply

from .conftest import Driver

KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def exposed(exc: BaseException) -> str:
    """Everything a log or a crash report would show of ``exc``."""
    partial = getattr(exc, "partial", None)
    body = getattr(exc, "body", None)
    return "\n".join(
        [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(body), repr(partial)]
    )


def padded(before: int, prefix: bytes = b"data: {oops ") -> bytes:
    """An event whose data holds ``Bearer <KEY>`` starting ``before`` characters in."""
    filler = b"x" * (before - len(b"{oops ") - len(b"Bearer "))
    return prefix + filler + b"Bearer " + KEY.encode() + b" tail\n\n"


# The quoted data is cut at 200 characters: these put the cut inside the key, from keeping only
# its first character to keeping all but its last.
CUTS = [200 - n for n in (1, 7, 8, 12, 20, len(KEY) - 1)]


@pytest.mark.parametrize("start", CUTS)
def test_malformed_chunk_message_holds_no_piece_of_a_key_cut_by_the_limit(
    driver: Driver, start: int
) -> None:
    driver.server.enqueue(Reply.raw_stream(padded(start)))
    res = driver.stream(client={"api_key": KEY, "max_retries": 0})
    assert isinstance(res.error, StreamError) and "not JSON" in str(res.error)
    text = exposed(res.error)
    assert "sk-" not in text  # redacted before the cut: not even a short start is left
    assert "Bearer [" in str(res.error)  # the redaction starts where the key did


@pytest.mark.parametrize("start", CUTS)
def test_not_an_object_message_holds_no_piece_of_the_key(driver: Driver, start: int) -> None:
    event = b'data: "' + padded(start, prefix=b"")[:-2].replace(b"{oops ", b"") + b'"\n\n'
    driver.server.enqueue(Reply.raw_stream(event))
    res = driver.stream(client={"api_key": KEY, "max_retries": 0})
    assert isinstance(res.error, StreamError) and "not a JSON object" in str(res.error)
    assert "sk-" not in exposed(res.error)


@pytest.mark.parametrize("start", CUTS)
def test_error_event_detail_holds_no_piece_of_the_key(driver: Driver, start: int) -> None:
    # Not JSON, so the error's detail is the data itself, cut to 200 characters.
    driver.server.enqueue(Reply.raw_stream(b"event: error\n" + padded(start)))
    res = driver.stream(client={"api_key": KEY, "max_retries": 0})
    assert isinstance(res.error, APIStatusError) and res.error.status_code == 500
    assert "sk-" not in exposed(res.error)


def test_a_key_cut_by_the_server_is_redacted_from_a_status_error(driver: Driver) -> None:
    # A gateway that quotes the start of the key it refused.
    message = f"Incorrect API key provided: {KEY[:20]}... (see docs)"
    driver.server.enqueue(Reply.error(401, message=message))
    with pytest.raises(AuthenticationError) as info:
        driver.complete(client={"api_key": KEY})
    text = exposed(info.value)
    assert KEY[:8] not in text and "[redacted]... (see docs)" in str(info.value)
    assert info.value.body["error"]["message"].endswith("[redacted]... (see docs)")


def test_decoder_redacts_before_it_cuts() -> None:
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace(KEY, "[redacted]")

    d = ChatEventDecoder(redact=redact)
    assert d.feed(padded(195)) == []
    assert isinstance(d.failure, StreamError)
    assert "sk-" not in str(d.failure) and "[red" in str(d.failure)
    assert len(seen) == 1 and KEY in seen[0]  # it was handed the whole, uncut data
    # Without a redactor the decoder cuts as before (what the client used to scrub afterwards).
    d = ChatEventDecoder()
    d.feed(padded(195))
    assert KEY[:5] in str(d.failure) and KEY not in str(d.failure)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {KEY} end", "key [redacted] end"),
        (f"{KEY}{KEY}", "[redacted][redacted]"),
        (f"cut '{KEY[:8]}'", "cut '[redacted]'"),
        (f"cut '{KEY[:30]}", "cut '[redacted]"),
        (f"two {KEY[:9]} and {KEY[:12]}!", "two [redacted] and [redacted]!"),
        (f"short {KEY[:7]} stays", f"short {KEY[:7]} stays"),  # under 8: not a usable piece
        (f"{KEY[:10]}XYZ", "[redacted]XYZ"),
        ("nothing here", "nothing here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    redactor = Redactor(KEY)
    assert redactor.text(text) == expected
    assert redactor.value({"m": [text]}) == {"m": [expected]}
    err = redactor.error(convkit.TransportError(text))
    assert str(err) == expected


@pytest.mark.parametrize("key", ["abc", "abcd", "abcdefgh"])
def test_short_keys_are_redacted_whole_only(key: str) -> None:
    text = f"<{key}> <{key[:3]}>"
    # Keys under 4 characters are not redacted at all (documented); others only whole.
    expected = text if len(key) < 4 else f"<[redacted]> <{key[:3]}>"
    assert Redactor(key).text(text) == expected
