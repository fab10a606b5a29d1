"""Crashes in the middle of a turn, and a key that must leave no trace anywhere."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from convkit import Conversation, TransportError
from convkit.context import DEFAULT_SUMMARY_PROMPT
from convkit.store import Store
from convkit.testing import FakeChatServer, RecordedRequest, Reply

_ENV = {**os.environ, "CONVKIT_PLUGINS": ""}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'crash.sqlite3'}"
    Store(url, create_tables=True).close()
    return url

_CHILD = textwrap.dedent(
    """
    import sys
    from convkit import Conversation, Summarize
    from convkit.store import Store
    url, base_url, thread, mode = sys.argv[1:5]
    policy = Summarize("gpt-4o", max_prompt_tokens=400) if mode == "summary" else None
    with Store(url) as store, Conversation(
        "gpt-4o", store=store, thread=thread if thread != "-" else None, policy=policy,
        base_url=base_url, api_key="sk-test",
    ) as conv:
        print(conv.thread_id, flush=True)
        for i in range(40 if mode == "summary" else 1):
            for delta in conv.stream(f"question {i} " + "lamp " * 20):
                print(delta, end="", flush=True)
            print(flush=True)
    """
)


def _wait_for(predicate: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _resume_and_check(url: str, server: FakeChatServer, thread_id: str) -> None:
    with Store(url) as store:
        history = store.messages(thread_id)  # the thread loads whole
        assert history and history[0].role == "user"
        assert [m.seq for m in history] == list(range(1, len(history) + 1))
        server.enqueue(Reply.text("after the crash"))
        with Conversation(
            "gpt-4o", store=store, thread=thread_id, base_url=server.base_url, api_key="sk-test"
        ) as conv:
            assert conv.send("are you back?").text == "after the crash"
        sent = server.requests[-1].messages
        assert sent[-1]["content"] == "are you back?"
        assert sent[0]["role"] == "user"  # a valid window: it starts on a user turn


@pytest.mark.slow
def test_sigkill_during_a_streamed_turn_then_resume(db_url: str, tmp_path: Path) -> None:
    with FakeChatServer() as server:
        server.enqueue(Reply.text("a long answer " * 20, chunk_size=4, stall_after_chunks=5))
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, db_url, server.base_url, "-", "turn"],
            stdout=subprocess.PIPE,
            text=True,
            env=_ENV,
        )
        assert child.stdout is not None
        thread_id = child.stdout.readline().strip()
        _wait_for(lambda: len(server.requests) == 1)
        child.stdout.read(8)  # deltas reached the child: it is mid-stream
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        with Store(db_url) as store:
            rows = store.messages(thread_id)
        # the user's message was stored before the call; the cut reply died with the process
        assert rows[0].role == "user" and rows[0].message.text.startswith("question 0")
        assert all(m.status == "complete" for m in rows)
        _resume_and_check(db_url, server, thread_id)


@pytest.mark.slow
def test_sigkill_during_a_summary_then_resume(db_url: str) -> None:
    summary_started: list[RecordedRequest] = []

    def answer(request: RecordedRequest) -> Reply:
        if request.messages and request.messages[0].get("content") == DEFAULT_SUMMARY_PROMPT:
            summary_started.append(request)
            return Reply.text("summary", latency=30)  # still in flight when the kill comes
        return Reply.text("an answer " * 10)

    with FakeChatServer(default_responder=answer) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, db_url, server.base_url, "-", "summary"],
            stdout=subprocess.PIPE,
            text=True,
            env=_ENV,
        )
        assert child.stdout is not None
        thread_id = child.stdout.readline().strip()
        _wait_for(lambda: bool(summary_started), seconds=60)
        child.send_signal(signal.SIGKILL)  # the summary call is in flight
        child.wait(timeout=10)
        child.stdout.close()
        with Store(db_url) as store:
            rows = store.messages(thread_id)
            # the reply was stored before summarizing began: the newest row is an answer
            assert rows[-1].role == "assistant" and rows[-1].status == "complete"
            summary = store.get_summary(thread_id)
            assert summary is None or summary.covers_through_seq < rows[-1].seq
    with FakeChatServer(default_responder=lambda r: Reply.text("ok")) as fresh:
        _resume_and_check(db_url, fresh, thread_id)


KEY = "sk-proj-SECRETSECRETSECRET0123456789abcdef"


def test_a_key_used_through_a_whole_run_leaves_no_trace(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []

    def echoing(request: RecordedRequest) -> Reply:
        # a hostile server: it echoes the Authorization header back in ids and error text
        auth = request.headers.get("authorization", "")
        if "fail" in str(request.messages[-1].get("content")):
            return Reply.error(500, message=f"bad auth {auth}", headers={"x-request-id": auth})
        return Reply.text(f"hello {len(auth)}", headers={"x-request-id": auth})

    caplog.set_level(logging.DEBUG)
    with (
        FakeChatServer(default_responder=echoing) as server,
        Store(db_url) as store,
        Conversation(
            "gpt-4o", store=store, base_url=server.base_url, api_key=KEY, max_tokens=50
        ) as conv,
    ):
        conv.send("hello")
        list(conv.stream("stream please"))
        try:
            conv.send("now fail please")
        except TransportError as exc:
            errors.append(exc)
        reprs = [repr(conv), repr(conv.client), repr(store)]
    assert errors, "the failing turn must raise"
    chain: list[str] = []
    for err in errors:
        seen: BaseException | None = err
        while seen is not None:
            chain += [str(seen), repr(seen), repr(getattr(seen, "request_id", ""))]
            seen = seen.__cause__ or seen.__context__
    texts = [*chain, *reprs, caplog.text]
    assert all(KEY not in t and KEY[:12] not in t for t in texts)
    db = Path(db_url.removeprefix("sqlite:///"))
    for path in [db, *db.parent.glob(db.name + "-*")]:  # the file, its WAL and journal
        assert KEY.encode() not in path.read_bytes()
