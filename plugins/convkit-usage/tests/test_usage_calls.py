"""Every completions call is recorded with the usage the server reported: turns, tool
follow-ups and summaries, sync and async, streamed and not, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
from datetime import timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import convkit_usage
import pytest
from convkit_usage._schema import usage_table
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from convkit import AsyncConversation, Conversation, Message, Summarize, hookimpl
from convkit.chat import ChatResponse
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, RecordedRequest, Reply

KEY = "sk-usage-test"


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def rows(url: URL) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(usage_table).order_by(usage_table.c.id)).all())
    finally:
        engine.dispose()


def figures(row: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
    }


@pytest.fixture
def server() -> Any:
    with FakeChatServer() as s:
        yield s


@pytest.fixture(params=[False, True], ids=["send", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def conversation(server: FakeChatServer, store: Store, **kw: Any) -> Conversation:
    return Conversation(
        kw.pop("model", "gpt-5-mini"),
        store=store,
        base_url=server.base_url,
        api_key=KEY,
        plugins=[convkit_usage, *kw.pop("plugins", [])],
        **kw,
    )


def send(conv: Conversation, text_: str, streaming: bool) -> Any:
    if not streaming:
        return conv.send(text_)
    stream = conv.stream(text_)
    "".join(stream)
    return stream.reply


# ---- turns


def test_a_turn_records_what_the_server_reported(
    server: FakeChatServer, db_url: URL, streaming: bool
) -> None:
    server.enqueue(Reply.text("Hello there", usage=usage(120, 7, cached=64, reasoning=3)))
    with Store(db_url) as store, conversation(server, store) as conv:
        reply = send(conv, "hi", streaming)
    [row] = rows(db_url)
    assert reply.usage is not None
    assert (
        figures(row)
        == {
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "total_tokens": reply.usage.total_tokens,
        }
        == {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127}
    )
    assert (row.cached_tokens, row.reasoning_tokens) == (64, 3)
    assert (row.thread_id, row.purpose, row.model, row.status) == (
        reply.thread_id,
        "turn",
        "gpt-5-mini",
        "complete",
    )
    assert row.response_model == "gpt-5-mini"
    assert row.response_id
    created = row.created_at
    if created.tzinfo is not None:
        created = created.astimezone(timezone.utc)
    assert row.day == created.date().isoformat()
    # gpt-5-mini: $0.25 input, $0.025 cached input, $2.00 output per 1M tokens
    expected = (Decimal(56) * Decimal("0.25") + 64 * Decimal("0.025") + 7 * Decimal(2)) * 1000
    assert row.cost_nanousd == int(expected) == 29_600


@pytest.mark.anyio
async def test_an_async_turn_records_through_the_async_engine(
    server: FakeChatServer, db_url: URL, streaming: bool
) -> None:
    server.enqueue(Reply.text("one", usage=usage(40, 2)), Reply.text("two", usage=usage(50, 3)))
    async with AsyncStore(db_url) as store:
        conv = AsyncConversation(
            "gpt-5-nano",
            store=store,
            base_url=server.base_url,
            api_key=KEY,
            plugins=[convkit_usage],
        )
        async with conv:
            replies = []
            for text_ in ("a", "b"):
                if streaming:
                    stream = conv.stream(text_)
                    async for _ in stream:
                        pass
                    replies.append(stream.reply)
                else:
                    replies.append(await conv.send(text_))
    got = rows(db_url)
    assert [figures(r) for r in got] == [
        {
            "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens,
            "total_tokens": r.usage.total_tokens,
        }
        for r in replies
    ]
    assert [r.cost_nanousd for r in got] == [40 * 50 + 2 * 400, 50 * 50 + 3 * 400]


def test_tool_follow_ups_are_recorded_with_their_own_usage(
    server: FakeChatServer, db_url: URL, streaming: bool
) -> None:
    server.enqueue(
        Reply.tool_calls(
            [{"name": "weather", "arguments": {"city": "Oslo"}}], usage=usage(200, 12)
        ),
        Reply.text("It is sunny.", usage=usage(230, 5, cached=128)),
    )
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    with (
        Store(db_url) as store,
        conversation(
            server, store, tools=tools, tool_handlers={"weather": lambda args: "sunny"}
        ) as conv,
    ):
        reply = send(conv, "weather in Oslo?", streaming)
    got = rows(db_url)
    assert [r.purpose for r in got] == ["turn", "tool_followup"]
    assert [figures(r) for r in got] == [
        {"prompt_tokens": 200, "completion_tokens": 12, "total_tokens": 212},
        {
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "total_tokens": reply.usage.total_tokens,
        },
    ]
    assert got[1].cached_tokens == 128


class Scripted:
    """A default responder giving every request distinct usage figures, remembered in order."""

    def __init__(self) -> None:
        self.given: list[tuple[bool, dict[str, Any]]] = []
        self.n = itertools.count(1)

    def __call__(self, request: RecordedRequest) -> Reply:
        n = next(self.n)
        # Only the summary calls carry max_tokens (the policy's max_summary_tokens).
        is_summary = request.body.get("max_tokens") == 40
        figures_ = usage(100 + n, n, cached=n % 3)
        self.given.append((is_summary, figures_))
        text_ = "Summary: lamps were discussed." if is_summary else f"answer {n}"
        return Reply.text(text_, usage=figures_)


@pytest.mark.parametrize("after_reply", [True, False], ids=["after", "before"])
def test_summary_calls_are_recorded_with_the_usage_the_server_reported(
    db_url: URL, after_reply: bool
) -> None:
    responder = Scripted()
    with FakeChatServer(default_responder=responder) as server, Store(db_url) as store:
        policy = Summarize("gpt-5-mini", max_prompt_tokens=300, max_summary_tokens=40)
        with conversation(server, store, policy=policy, summarize_after_reply=after_reply) as conv:
            for i in range(14):
                conv.send(f"question {i} " + "lamp " * 25)
        bodies = [r.body for r in server.requests]
    got = rows(db_url)
    assert len(got) == len(bodies) == len(responder.given)
    sent = [f for _, f in responder.given]
    assert [figures(r) for r in got] == [
        {k: f[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} for f in sent
    ]
    assert [r.cached_tokens for r in got] == [
        f["prompt_tokens_details"]["cached_tokens"] for f in sent
    ]
    purposes = [r.purpose for r in got]
    assert purposes.count("summary") >= 1
    assert purposes.count("turn") == 14
    assert [p == "summary" for p in purposes] == [s for s, _ in responder.given]


# ---- calls that reach no API


class AnswersBeforeFitting:
    @hookimpl
    def prepare_request(self, draft: Any, context: Any) -> ChatResponse:
        return ChatResponse(
            id="local",
            model="gpt-5-mini",
            created=0,
            message=Message.assistant("from a plugin"),
            finish_reason="stop",
        )


class AnswersAfterFitting:
    @hookimpl(trylast=True)
    def finalize_request(self, request: Any, context: Any) -> ChatResponse | None:
        if context.purpose != "turn":
            return None
        return ChatResponse(
            id="cache",
            model="gpt-5-mini",
            created=0,
            message=Message.assistant("cached"),
            finish_reason="stop",
            usage=None,
        )


@pytest.mark.parametrize("plugin", [AnswersBeforeFitting, AnswersAfterFitting])
def test_a_call_a_plugin_answers_costs_nothing_and_is_not_recorded(
    server: FakeChatServer, sqlite_url: URL, streaming: bool, plugin: type
) -> None:
    server.enqueue(Reply.text("real", usage=usage(10, 1)))
    with Store(sqlite_url) as store:
        with conversation(server, store) as conv:
            send(conv, "first", streaming)  # sent: recorded
        with conversation(server, store, plugins=[plugin()]) as conv:
            assert send(conv, "second", streaming).text in ("from a plugin", "cached")
    assert [figures(r) for r in rows(sqlite_url)] == [
        {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    ]
    assert len(server.requests) == 1


def test_a_broken_stream_is_recorded_as_incomplete(server: FakeChatServer, sqlite_url: URL) -> None:
    server.enqueue(Reply.text("a long answer that breaks", drop_after_chunks=2))
    from convkit import TransportError

    with Store(sqlite_url) as store, conversation(server, store) as conv:
        stream = conv.stream("hi")
        with pytest.raises(TransportError):
            "".join(stream)
    [row] = rows(sqlite_url)
    assert (row.status, row.purpose, row.prompt_tokens, row.cost_nanousd) == (
        "incomplete",
        "turn",
        None,
        None,
    )


# ---- prices


def test_an_unknown_model_is_recorded_with_no_cost(server: FakeChatServer, sqlite_url: URL) -> None:
    server.enqueue(Reply.text("hi", usage=usage(10, 2), model="acme-70b"))
    with Store(sqlite_url) as store, conversation(server, store, model="acme-70b") as conv:
        conv.send("hi")
    [row] = rows(sqlite_url)
    assert row.prompt_tokens == 10
    assert row.cost_nanousd is None


def test_a_dated_snapshot_is_not_priced_by_guess(server: FakeChatServer, sqlite_url: URL) -> None:
    # Asked for an unpriced snapshot name, answered by it: no prefix matching onto gpt-5-mini.
    server.enqueue(Reply.text("hi", usage=usage(10, 2), model="gpt-5-mini-2031-01-01"))
    with (
        Store(sqlite_url) as store,
        conversation(server, store, model="gpt-5-mini-2031-01-01") as conv,
    ):
        conv.send("hi")
    assert rows(sqlite_url)[0].cost_nanousd is None


def test_prices_from_the_api_the_file_and_the_settings(
    server: FakeChatServer, sqlite_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({"acme-70b": {"input": 1, "output": 2}}))
    monkeypatch.setenv(convkit_usage.PRICES_ENV, str(price_file))
    server.enqueue(*[Reply.text("x", usage=usage(1000, 100), model="acme-70b")] * 3)
    with Store(sqlite_url) as store:
        with conversation(server, store, model="acme-70b") as conv:
            conv.send("file price")  # 1000*1 + 100*2 = $0.0012
        convkit_usage.set_prices({"acme-70b": {"input": "3", "cached_input": None, "output": 4}})
        with conversation(server, store, model="acme-70b") as conv:
            conv.send("api price")  # 3000 + 400 = $0.0034
        settings = {"usage": {"prices": {"acme-70b": {"input": 0.5, "output": 0.5}}}}
        with conversation(server, store, model="acme-70b", plugin_settings=settings) as conv:
            conv.send("settings price")  # 500 + 50 = $0.00055
    assert [r.cost_nanousd for r in rows(sqlite_url)] == [1_200_000, 3_400_000, 550_000]


def test_malformed_prices_are_refused() -> None:
    with pytest.raises(convkit_usage.PriceError, match="input"):
        convkit_usage.set_prices({"m": {"output": 1}})
    with pytest.raises(convkit_usage.PriceError, match=">= 0"):
        convkit_usage.set_prices({"m": {"input": -1, "output": 1}})
    with pytest.raises(convkit_usage.PriceError, match="unknown keys"):
        convkit_usage.set_prices({"m": {"input": 1, "output": 1, "cahced_input": 1}})
    assert "m" not in convkit_usage.prices()


def test_every_builtin_price_names_its_source() -> None:
    official: set[str] = set()
    for model, price in convkit_usage.BUILTIN_PRICES.items():
        assert "read 20" in price.source, model
        if price.source.startswith("https://developers.openai.com/api/docs/models/"):
            official.add(price.source)
        else:  # a secondary figure says which tables agree on it, and that it is secondary
            assert price.source.startswith("agreed by github.com/"), model
            assert " and github.com/" in price.source, model
            assert "not read on OpenAI's own pages" in price.source, model
        assert price.input > 0
        assert price.output > 0
        assert price.cached_input is None or price.cached_input < price.input, model
    assert len(official) == 3  # gpt-5-mini, gpt-5-nano, gpt-4 (snapshots share them)


def test_a_known_dated_snapshot_is_priced_as_its_alias(
    server: FakeChatServer, sqlite_url: URL
) -> None:
    # Asked for the alias, answered by a dated snapshot the table lists under it.
    server.enqueue(Reply.text("hi", usage=usage(1000, 100), model="gpt-4o-2024-08-06"))
    with Store(sqlite_url) as store, conversation(server, store, model="gpt-4o") as conv:
        conv.send("hi")
    [row] = rows(sqlite_url)
    assert row.response_model == "gpt-4o-2024-08-06"
    # gpt-4o: $2.50 input, $10 output per 1M tokens: 1000 * 2.5 + 100 * 10 = 3,500 nano-$ * 1000
    assert row.cost_nanousd == 3_500_000
    assert (
        convkit_usage.BUILTIN_PRICES["gpt-4o-2024-08-06"] == convkit_usage.BUILTIN_PRICES["gpt-4o"]
    )
    assert "gpt-4o-2024-05-13" not in convkit_usage.BUILTIN_PRICES  # priced differently


# ---- the migration


def test_the_table_has_its_own_version_table_and_migrating_is_idempotent(db_url: URL) -> None:
    assert convkit_usage.migrate(db_url) == (None, convkit_usage.HEAD_REVISION)
    assert convkit_usage.migrate(db_url) == (convkit_usage.HEAD_REVISION,) * 2
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            mine = conn.execute(text(f"SELECT version_num FROM {convkit_usage.VERSION_TABLE}"))
            assert mine.scalar_one() == convkit_usage.HEAD_REVISION
            theirs = conn.execute(text("SELECT version_num FROM alembic_version"))
            assert theirs.scalar_one() != convkit_usage.HEAD_REVISION  # convkit's, untouched
    finally:
        engine.dispose()
    from convkit.store import HEAD_REVISION, schema_revision

    assert schema_revision(db_url) == HEAD_REVISION
