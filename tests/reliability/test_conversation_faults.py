"""The fault matrix: faults x sync/async x send/stream through a real conversation.

Each case scripts the loopback server, runs one turn ("hello") through a ``Conversation`` or an
``AsyncConversation`` with a real client, and checks the documented outcome and that nothing is
lost: the user message stored once, a reply stored complete (success) or incomplete (exactly
what the caller saw of a broken stream), nothing stored for a reply that never came, and as many
requests as the retry rules allow — each carrying the user message once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from convkit import AsyncConversation, Conversation
from convkit.client import AsyncChatClient, ChatClient, ResponseLimits, Timeouts
from convkit.errors import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
    UnprocessableEntityError,
)
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, Reply

from ._faults import FAST, KEY, chunk, event, http

TEXT = "the quick brown fox jumps over the lazy dog"
PAST_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
FAR_DATE = "Fri, 31 Dec 99999999999 23:59:59 GMT"


@attrs.frozen
class Case:
    """One fault in one mode, and what it must come to."""

    id: str
    mode: str  # "send" or "stream"
    replies: Callable[[], list[Reply]]
    error: type[BaseException] | None  # None: the turn succeeds with TEXT
    requests: int | None  # None: not counted (nothing reaches the server)
    stored: str | None  # the assistant row: "complete", "incomplete" or None
    client: dict[str, Any] = attrs.field(factory=dict)
    refused: bool = False


def ok() -> Reply:
    return Reply.text(TEXT, chunk_size=5)


def both(name: str, replies: Callable[[], list[Reply]], error: Any, requests: int | None,
         stored: str | None, **kw: Any) -> list[Case]:  # fmt: skip
    return [Case(name, mode, replies, error, requests, stored, **kw) for mode in ("send", "stream")]


def cut_json() -> Reply:
    body = b'{"id": "c1", "choices": [{"index": 0, "message": {"content": "the qu'
    return Reply.raw_http(
        http(
            b"HTTP/1.1 200 OK", {"Content-Type": "application/json", "Content-Length": "400"}, body
        )
    )


def keepalives_only() -> Reply:
    return Reply.raw_stream([event(chunk("the "))] + [b": keep-alive\n\n"] * 200, piece_delay=0.01)


STATUS_CLASSES = [
    (400, BadRequestError, False),
    (401, AuthenticationError, False),
    (403, PermissionDeniedError, False),
    (404, NotFoundError, False),
    (422, UnprocessableEntityError, False),
    (408, APIStatusError, True),
    (409, ConflictError, True),
    (429, RateLimitError, True),
    (500, InternalServerError, True),
    (502, InternalServerError, True),
    (503, InternalServerError, True),
]

CASES: list[Case] = []
for status, cls, retryable in STATUS_CLASSES:
    if retryable:
        # Retried: two failures then the answer; and given up after max_retries (2).
        CASES += both(f"{status}-then-ok", lambda s=status: [Reply.error(s), Reply.error(s), ok()],
                      None, 3, "complete")  # fmt: skip
        CASES += both(f"{status}-thrice", lambda s=status: [Reply.error(s)] * 3, cls, 3, None)
    else:
        CASES += both(f"{status}", lambda s=status: [Reply.error(s), ok()], cls, 1, None)

CASES += both(
    "503-x-should-retry-false",
    lambda: [Reply.error(503, headers={"x-should-retry": "false"}), ok()],
    InternalServerError,
    1,
    None,
)
# Retry-After forms: honoured when short, given up at once when too long or unreadable-far.
CASES += both("retry-after-seconds", lambda: [Reply.error(429, retry_after=0), ok()],
              None, 2, "complete")  # fmt: skip
CASES += both("retry-after-past-date", lambda: [Reply.error(503, retry_after=PAST_DATE), ok()],
              None, 2, "complete")  # fmt: skip
CASES += both("retry-after-ms", lambda: [Reply.error(429, retry_after_ms=1), ok()],
              None, 2, "complete")  # fmt: skip
CASES += both("retry-after-garbage", lambda: [Reply.error(503, retry_after="soon"), ok()],
              None, 2, "complete")  # fmt: skip
CASES += both("retry-after-too-long", lambda: [Reply.error(429, retry_after=3600), ok()],
              RateLimitError, 1, None)  # fmt: skip
CASES += both("retry-after-far-date", lambda: [Reply.error(503, retry_after=FAR_DATE), ok()],
              InternalServerError, 1, None)  # fmt: skip
# The connection.
CASES += both("refused", lambda: [], ConnectError, None, None, refused=True)
CASES += both("reset-before-first-byte", lambda: [Reply.raw_http(b""), ok()], None, 2, "complete")
CASES += both("reset-before-first-byte-thrice", lambda: [Reply.raw_http(b"")] * 3,
              ConnectError, 3, None)  # fmt: skip
CASES += both("garbage-status-line", lambda: [Reply.raw_http(b"garbage\r\n\r\n"), ok()],
              TransportError, 1, None)  # fmt: skip
# Mid-answer faults: a stream keeps exactly what the caller saw; a whole answer keeps nothing.
CASES += [
    Case("reset-mid-stream", "stream", lambda: [ok().with_options(drop_after_chunks=3), ok()],
         StreamError, 1, "incomplete"),
    Case("reset-before-first-chunk", "stream",
         lambda: [ok().with_options(drop_after_chunks=0), ok()], None, 2, "complete"),
    Case("cut-whole-body", "send", lambda: [cut_json(), ok()], TransportError, 1, None),
    Case("stall-mid-stream", "stream",
         lambda: [ok().with_options(stall_after_chunks=2, stall_seconds=5), ok()],
         APITimeoutError, 1, "incomplete", client={"timeout": Timeouts(read=5, stream_idle=0.3)}),
    Case("stall-whole", "send", lambda: [ok().with_options(stall_after_chunks=0, stall_seconds=5),
         ok()], APITimeoutError, 1, None, client={"timeout": Timeouts(read=0.3)}),
    Case("malformed-chunk", "stream", lambda: [ok().with_options(malformed_chunk_at=3), ok()],
         StreamError, 1, "incomplete"),
    Case("malformed-body", "send", lambda: [ok().with_options(malformed_chunk_at=0), ok()],
         TransportError, 1, None),
    Case("no-done", "stream", lambda: [ok().with_options(omit_done=True), ok()],
         StreamError, 1, "incomplete"),
    Case("error-event-mid-stream", "stream", lambda: [ok().with_options(event_error_at=3), ok()],
         InternalServerError, 1, "incomplete"),
    Case("error-event-before-first-chunk", "stream",
         lambda: [ok().with_options(event_error_at=0), ok()], None, 2, "complete"),
    Case("oversized-stream", "stream", lambda: [ok().with_options(chunk_size=1), ok()],
         ResponseTooLargeError, 1, "incomplete",
         client={"limits": ResponseLimits(max_stream_bytes=2048)}),
    Case("oversized-body", "send", lambda: [Reply.text(TEXT * 100), ok()],
         ResponseTooLargeError, 1, None, client={"limits": ResponseLimits(max_body_bytes=1024)}),
    Case("keepalives-forever", "stream", lambda: [keepalives_only(), ok()],
         APITimeoutError, 1, "incomplete",
         client={"timeout": Timeouts(read=5, stream_idle=1, total=0.3)}),
    Case("slow-drip-whole", "send",
         lambda: [Reply.raw_http([b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n"] + [b" "] * 300,
                                 piece_delay=0.01), ok()],
         APITimeoutError, 1, None, client={"timeout": Timeouts(read=0.3)}),
]  # fmt: skip


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
    Store(url, create_tables=True).close()
    return url


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as s:
        yield s


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@attrs.define
class Turn:
    error: BaseException | None
    seen: str
    rows: list[tuple[str, str, str]]


def client_kwargs(case: Case, server: FakeChatServer) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "base_url": closed_port_url() if case.refused else server.base_url,
        "api_key": KEY,
        "backoff": FAST,
        "timeout": 5.0,
        "max_retries": 2,
    }
    kwargs.update(case.client)
    return kwargs


def rows_of(messages: Any) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.message.text) for m in messages]


def run_sync(case: Case, server: FakeChatServer, db_url: str) -> Turn:
    seen: list[str] = []
    error: BaseException | None = None
    with Store(db_url) as store, ChatClient(**client_kwargs(case, server)) as client:
        client._sleep = lambda _s: None
        with Conversation("gpt-4o", store=store, client=client) as conv:
            try:
                if case.mode == "send":
                    seen.append(conv.send("hello").text)
                else:
                    for delta in conv.stream("hello"):
                        seen.append(delta)
            except Exception as exc:
                error = exc
            return Turn(error, "".join(seen), rows_of(store.messages(conv.thread_id)))


def run_async(case: Case, server: FakeChatServer, db_url: str) -> Turn:
    async def run() -> Turn:
        seen: list[str] = []
        error: BaseException | None = None
        async with (
            AsyncStore(db_url) as store,
            AsyncChatClient(**client_kwargs(case, server)) as client,
        ):

            async def no_sleep(_s: float) -> None:
                return None

            client._sleep = no_sleep
            async with AsyncConversation("gpt-4o", store=store, client=client) as conv:
                try:
                    if case.mode == "send":
                        seen.append((await conv.send("hello")).text)
                    else:
                        async for delta in conv.stream("hello"):
                            seen.append(delta)
                except Exception as exc:
                    error = exc
                return Turn(error, "".join(seen), rows_of(await store.messages(conv.thread_id)))

    return anyio.run(run)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{c.mode}" for c in CASES])
def test_fault(case: Case, kind: str, server: FakeChatServer, db_url: str) -> None:
    server.enqueue(*case.replies())
    turn = (run_sync if kind == "sync" else run_async)(case, server, db_url)

    # The documented outcome.
    if case.error is None:
        assert turn.error is None, f"{type(turn.error).__name__}: {turn.error}"
        assert turn.seen == TEXT
    else:
        assert type(turn.error) is case.error, f"{type(turn.error).__name__}: {turn.error}"
        assert KEY[:8] not in str(turn.error)

    # Nothing lost, nothing twice.
    user = ("user", "complete", "hello")
    if case.stored == "complete":
        assert turn.rows == [user, ("assistant", "complete", TEXT)]
    elif case.stored == "incomplete":
        assert turn.seen, "the caller saw part of the reply"
        assert turn.rows == [user, ("assistant", "incomplete", turn.seen)]
    else:
        assert turn.rows == [user]

    if case.requests is not None:
        assert len(server.requests) == case.requests
    for request in server.requests:
        users = [m for m in request.messages if m.get("role") == "user"]
        assert [m.get("content") for m in users] == ["hello"]
