"""Around real turns: a secret typed by the user never reaches the server (summaries and tool
follow-ups included), and what the user sees and what is stored are the originals — sync and
async, streamed and not, with placeholders split at every chunk boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from convkit import AsyncConversation, Conversation, Summarize
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, RecordedRequest, Reply

import convkit_redact
from convkit_redact import Redact

MODEL = "gpt-4o"
FAKE_KEY = "fake-key-for-tests"
EMAIL = "ann.lee@example.org"
CARD = "4111 1111 1111 1111"
API_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789"
SECRETS = (EMAIL, CARD, API_KEY, "4111111111111111")
TYPED = f"I am {EMAIL}, card {CARD}, key {API_KEY}."


def leaked(server: FakeChatServer) -> list[str]:
    """Every secret found in any request body the server received (raw bytes)."""
    return [s for r in server.requests for s in SECRETS if s.encode() in r.raw]


def conversation(server: FakeChatServer, store: Store, **kw: Any) -> Conversation:
    kw.setdefault("plugins", [convkit_redact])
    return Conversation(MODEL, store=store, base_url=server.base_url, api_key=FAKE_KEY, **kw)


def say(conv: Conversation, text: str, streaming: bool) -> tuple[str, Any]:
    if not streaming:
        reply = conv.send(text)
        return reply.text, reply
    stream = conv.stream(text)
    seen = "".join(stream)
    return seen, stream.reply


@pytest.fixture(params=[False, True], ids=["send", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_the_secret_is_masked_and_the_echoed_reply_restored(
    server: FakeChatServer, store: Store, streaming: bool
) -> None:
    with conversation(server, store) as conv:
        seen, reply = say(conv, TYPED, streaming)
        sent = server.requests[-1].body["messages"][-1]["content"]
        assert sent == "I am [EMAIL_1], card [CARD_1], key [API_KEY_1]."
        assert leaked(server) == []
        assert seen == TYPED and reply.text == TYPED  # the echo of placeholders, restored
        stored = [m.message.text for m in store.messages(conv.thread_id)]
        assert stored == [TYPED, TYPED]  # what the user typed and saw
        # the same value keeps its placeholder on the next call
        say(conv, f"again {EMAIL}", streaming)
        assert server.requests[-1].body["messages"][-1]["content"] == "again [EMAIL_1]"
        assert server.requests[-1].body["messages"][0]["content"] == sent


def echo_in(size: int) -> Callable[[RecordedRequest], Reply]:
    def respond(request: RecordedRequest) -> Reply:
        text = request.messages[-1]["content"]
        return Reply.text(f"Sure, {text}!", chunk_size=size)

    return respond


@pytest.mark.parametrize("size", range(1, len("[API_KEY_1]") + 2))
def test_a_streamed_placeholder_split_at_every_boundary_is_restored(
    store: Store, size: int
) -> None:
    with (
        FakeChatServer(default_responder=echo_in(size)) as server,
        conversation(server, store) as conv,
    ):
        stream = conv.stream(f"key {API_KEY}")
        deltas = list(stream)
        assert "".join(deltas) == f"Sure, key {API_KEY}!"
        assert all("[" not in d for d in deltas)  # no placeholder fragment reached the user
        assert store.messages(conv.thread_id)[-1].message.text == f"Sure, key {API_KEY}!"
        assert leaked(server) == []


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
async def test_async_send_and_stream(db_url: str, size: int) -> None:
    with FakeChatServer(default_responder=echo_in(size)) as server:
        async with (
            AsyncStore(db_url) as store,
            AsyncConversation(
                MODEL, store=store, base_url=server.base_url, api_key=FAKE_KEY, plugins=[Redact()]
            ) as conv,
        ):
            reply = await conv.send(f"mail {EMAIL}")
            assert reply.text == f"Sure, mail {EMAIL}!"
            stream = conv.stream(f"card {CARD} and {EMAIL}")
            seen = "".join([d async for d in stream])
            assert seen == f"Sure, card {CARD} and {EMAIL}!"
            assert (
                server.requests[-1].body["messages"][-1]["content"] == "card [CARD_1] and [EMAIL_1]"
            )
            assert leaked(server) == []
            stored = [m.message.text for m in await store.messages(conv.thread_id)]
            assert stored[-2:] == [f"card {CARD} and {EMAIL}", seen]


def test_summaries_are_masked_too_and_stored_with_the_originals(
    server: FakeChatServer, store: Store
) -> None:
    policy = Summarize(MODEL, max_prompt_tokens=300, max_summary_tokens=60)
    with conversation(server, store, policy=policy) as conv:
        conv.send(f"My email is {EMAIL} and my card is {CARD}.")
        for i in range(12):
            conv.send(f"question {i}: " + "tell me about lamps " * 6)
        summary_calls = [r for r in server.requests if "Summary so far" in r.raw.decode()]
        assert summary_calls  # the policy did summarize, through the server
        assert any(b"[EMAIL_1]" in r.raw for r in summary_calls)  # the secret went masked
        assert leaked(server) == []
        summary = store.get_summary(conv.thread_id)
        assert summary is not None and EMAIL in summary.text and "[EMAIL_1]" not in summary.text


def test_tool_arguments_are_restored_for_the_handler_and_results_masked(
    server: FakeChatServer, store: Store
) -> None:
    got: list[dict[str, Any]] = []

    def lookup(arguments: dict[str, Any]) -> str:
        got.append(arguments)
        return f"account of {arguments['email']}: card {CARD}"

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    server.enqueue(
        Reply.tool_calls([{"name": "lookup", "arguments": {"email": "[EMAIL_1]"}}]),
        Reply.text("Your card is [CARD_1].", chunk_size=3),
    )
    with conversation(server, store, tools=tools, tool_handlers={"lookup": lookup}) as conv:
        seen, _ = say(conv, f"look up {EMAIL}", True)
    assert got == [{"email": EMAIL}]  # the handler got the original
    assert seen == f"Your card is {CARD}."
    followup = server.requests[-1].body["messages"]
    assert (
        followup[-1]["role"] == "tool"
        and followup[-1]["content"] == "account of [EMAIL_1]: card [CARD_1]"
    )
    assert json.loads(followup[-2]["tool_calls"][0]["function"]["arguments"]) == {
        "email": "[EMAIL_1]"
    }
    assert leaked(server) == []
    stored_call = store.messages(conv.thread_id)[1].message.tool_calls
    assert stored_call and json.loads(stored_call[0].arguments) == {"email": EMAIL}


def test_plugin_settings_disable_and_add_patterns(server: FakeChatServer, store: Store) -> None:
    settings = {"redact": {"disable": ["email"], "patterns": {"ticket": r"TCK-\d{5}"}}}
    with conversation(server, store, plugin_settings=settings) as conv:
        reply = conv.send(f"{EMAIL} about TCK-12345, card {CARD}")
    assert (
        server.requests[-1].body["messages"][-1]["content"]
        == f"{EMAIL} about [TICKET_1], card [CARD_1]"
    )
    assert reply.text == f"{EMAIL} about TCK-12345, card {CARD}"
    with conversation(server, store, plugin_settings={"redact": {"enabled": False}}) as off:
        off.send(f"plain {EMAIL}")
    assert server.requests[-1].body["messages"][-1]["content"] == f"plain {EMAIL}"


def test_a_bad_setting_fails_the_call_naming_the_plugin(
    server: FakeChatServer, store: Store
) -> None:
    from convkit import PluginError

    with (
        conversation(server, store, plugin_settings={"redact": {"disable": ["nope"]}}) as conv,
        pytest.raises(PluginError, match="no detector named nope"),
    ):
        conv.send("hello")
    assert server.requests == []  # nothing was sent


def test_placeholders_are_per_conversation(server: FakeChatServer, store: Store) -> None:
    with conversation(server, store) as one, conversation(server, store) as two:
        one.send("a@example.org and b@example.org")
        two.send("b@example.org")
    assert server.requests[-1].body["messages"][-1]["content"] == "[EMAIL_1]"


def test_the_entry_point_loads_the_plugin(server: FakeChatServer, db_url: str) -> None:
    script = (
        "import sys\n"
        "from convkit import Conversation\n"
        f"with Conversation({MODEL!r}, store={db_url!r}, base_url={server.base_url!r},"
        f" api_key={FAKE_KEY!r}) as conv:\n"
        "    print(conv.send(sys.argv[1]).text)\n"
    )
    env = {**os.environ, "CONVKIT_PLUGINS": "redact"}
    done = subprocess.run(
        [sys.executable, "-c", script, f"mail {EMAIL}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == f"mail {EMAIL}"
    assert server.requests[-1].body["messages"][-1]["content"] == "mail [EMAIL_1]"
