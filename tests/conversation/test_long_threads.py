"""A long conversation in a small window, summaries shared across processes, two processes
taking turns on one thread (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import convkit.models
from convkit import Conversation, Summarize
from convkit.context import DEFAULT_SUMMARY_PROMPT, SUMMARY_HEADER
from convkit.store import Store
from convkit.testing import ContextWindowGuard, FakeChatServer, RecordedRequest, Reply

from .conftest import FAKE_API_KEY

# Child processes load no installed plugins: these tests are about the core.
_ENV = {**os.environ, "CONVKIT_PLUGINS": ""}
SMALL = "convkit-test-small-window"
WINDOW = 2_000
convkit.models.register(SMALL, context_window=WINDOW, max_output_tokens=256)


def _answer(request: RecordedRequest) -> Reply:
    messages = request.messages
    if messages and messages[0].get("content") == DEFAULT_SUMMARY_PROMPT:
        n = sum(1 for m in messages[1]["content"].splitlines() if m.startswith("user:"))
        return Reply.text(f"The user asked {n} more numbered questions about lamps.")
    last = messages[-1]["content"]
    return Reply.text(f"Noted: {last[:60]} — and a little more text to make replies weigh.")


def _policy() -> Summarize:
    return Summarize(SMALL, max_summary_tokens=120, max_summarizer_input_tokens=600)


@pytest.mark.slow
def test_300_turns_in_a_small_window_always_fit_and_the_summary_is_shared(db_url: str) -> None:
    guard = ContextWindowGuard(SMALL, context_window=WINDOW, reply=_answer)
    with FakeChatServer(default_responder=guard, prompt_tokens_fn=guard.prompt_tokens) as server:
        with Store(db_url) as store, Conversation(
            SMALL,
            store=store,
            system="You help with lamp orders.",
            policy=_policy(),
            base_url=server.base_url,
            api_key=FAKE_API_KEY,
            max_tokens=150,
        ) as conv:
            summarized_turns = 0
            for i in range(300):
                reply = conv.send(f"Question {i}: what about lamp model L-{i} in blue, and its price?")
                assert reply.window is not None
                assert reply.window.prompt_tokens + 150 <= WINDOW
                # predicted == what the server counted from the body it received
                assert reply.window.reported_prompt_tokens == reply.window.prompt_tokens
                summarized_turns += bool(reply.window.summarized)
            thread_id = conv.thread_id
            summary = store.get_summary(thread_id)
            assert summary is not None and summary.covers_through_seq > 400
            assert summarized_turns >= 3
        assert guard.rejected == 0, "a request over the window reached the server"
        assert guard.largest <= WINDOW
        summary_calls = [
            r for r in server.requests if r.messages[0].get("content") == DEFAULT_SUMMARY_PROMPT
        ]
        assert 3 <= len(summary_calls) <= 80  # incremental: far fewer than the 300 turns
        # every later request carries the stored summary, instead of the early turns
        last = server.requests[-1].messages
        assert last[1]["role"] == "system" and last[1]["content"].startswith(SUMMARY_HEADER)
        assert all("Question 0:" not in str(m.get("content")) for m in last)

        # A new process resumes the thread: it reuses the stored summary (no re-summarizing)
        before = len(server.requests)
        code = textwrap.dedent(
            f"""
            import convkit.models
            from convkit import Conversation, Summarize
            from convkit.store import Store
            convkit.models.register({SMALL!r}, context_window={WINDOW}, max_output_tokens=256)
            policy = Summarize({SMALL!r}, max_summary_tokens=120, max_summarizer_input_tokens=600)
            with Store({db_url!r}) as store, Conversation(
                {SMALL!r}, store=store, thread={thread_id!r}, policy=policy,
                base_url={server.base_url!r}, api_key="sk-test", max_tokens=150,
            ) as conv:
                reply = conv.send("One more question from another process.")
                print(reply.window.summary_through)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_ENV
        )
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip()) == summary.covers_through_seq
        sent = server.requests[before].messages
        assert sent[0]["content"] == "You help with lamp orders."  # kept with the thread
        assert sent[1]["content"] == f"{SUMMARY_HEADER}\n{summary.text}"
        assert guard.rejected == 0


_CHILD = """
import sys
from convkit import Conversation
from convkit.store import Store
url, thread_id, base_url, text = sys.argv[1:5]
with Store(url) as store, Conversation(
    "gpt-4o", store=store, thread=thread_id, base_url=base_url, api_key="sk-test"
) as conv:
    conv.send(text)
"""


@pytest.mark.slow
@pytest.mark.reliability
def test_two_processes_take_turns_on_one_thread(store_url: Any) -> None:
    url = store_url.render_as_string(hide_password=False)
    with FakeChatServer(default_responder=lambda r: Reply.text(f"re: {r.messages[-1]['content']}")) as server:
        with Store(url) as store, Conversation(
            "gpt-4o", store=store, system="shared", base_url=server.base_url, api_key="sk-test"
        ) as conv:
            for round_ in range(3):
                conv.send(f"parent {round_}")
                out = subprocess.run(
                    [sys.executable, "-c", _CHILD, url, conv.thread_id, server.base_url, f"child {round_}"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env=_ENV,
                )
                assert out.returncode == 0, out.stderr
            history = store.messages(conv.thread_id)
        expected = []
        for round_ in range(3):
            for who in ("parent", "child"):
                expected += [("user", f"{who} {round_}"), ("assistant", f"re: {who} {round_}")]
        assert [(m.role, m.message.text) for m in history] == expected
        assert [m.seq for m in history] == list(range(1, 13))
        # each process saw the other's turns (and the system prompt the parent stored)
        last = server.requests[-1].messages
        assert last[0] == {"role": "system", "content": "shared"}
        assert len(last) == 12
