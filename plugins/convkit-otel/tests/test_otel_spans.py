"""Spans and metrics for every completions call, following the GenAI semantic conventions,
checked with the SDK's in-memory exporters: sync and async, streamed and not, tool follow-ups,
summaries, errors, calls answered by a plugin, content off by default and on when asked."""

from __future__ import annotations

import json
from typing import Any

import convkit_otel
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from convkit import (
    AsyncConversation,
    Conversation,
    Message,
    RateLimitError,
    Summarize,
    TransportError,
    hookimpl,
)
from convkit.chat import ChatResponse
from convkit.store import AsyncStore, Store
from convkit.testing import FakeChatServer, Reply

from .conftest import Telemetry

KEY = "sk-otel-test"
USAGE = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}


@pytest.fixture(params=[False, True], ids=["send", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def conversation(server: FakeChatServer, **kw: Any) -> Conversation:
    return Conversation(
        kw.pop("model", "gpt-4o"),
        store=kw.pop("store", None) or Store("sqlite://", create_tables=True),
        base_url=server.base_url,
        api_key=KEY,
        plugins=[convkit_otel, *kw.pop("plugins", [])],
        **kw,
    )


def send(conv: Conversation, text: str, streaming: bool) -> Any:
    if not streaming:
        return conv.send(text)
    stream = conv.stream(text)
    "".join(stream)
    return stream.reply


def test_a_turn_is_one_client_span_named_after_the_model(
    server: FakeChatServer, telemetry: Telemetry, streaming: bool
) -> None:
    server.enqueue(Reply.text("Hello there", usage=USAGE, model="gpt-4o-2024-08-06"))
    with conversation(server, temperature=0.2, max_tokens=64, top_p=0.9) as conv:
        reply = send(conv, "hi", streaming)
    [span] = telemetry.spans()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    a = dict(span.attributes)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"].startswith("chatcmpl")
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens == 42
    assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens == 7
    assert a["gen_ai.conversation.id"] == reply.thread_id
    assert a["convkit.purpose"] == "turn"
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == server.port
    assert "error.type" not in a
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time > span.start_time
    # content is off by default
    assert "gen_ai.input.messages" not in a
    assert "gen_ai.output.messages" not in a


def test_metrics_follow_the_conventions(
    server: FakeChatServer, telemetry: Telemetry, streaming: bool
) -> None:
    server.enqueue(Reply.text("Hello there", usage=USAGE, chunk_size=2))
    with conversation(server) as conv:
        send(conv, "hi", streaming)
    [duration] = telemetry.points("gen_ai.client.operation.duration")
    assert telemetry.unit("gen_ai.client.operation.duration") == "s"
    assert duration.count == 1
    assert duration.sum > 0
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert telemetry.unit("gen_ai.client.token.usage") == "{token}"
    assert (tokens["input"].sum, tokens["output"].sum) == (42, 7)
    assert tokens["input"].explicit_bounds[:3] == (1, 4, 16)
    first = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    if streaming:
        [point] = first
        assert point.count == 1
        assert 0 < point.sum <= duration.sum
    else:
        assert first == []  # streaming calls only


@pytest.mark.anyio
async def test_async_turns_get_the_same_spans(
    server: FakeChatServer, telemetry: Telemetry, streaming: bool
) -> None:
    server.enqueue(Reply.text("one", usage=USAGE), Reply.text("two", usage=USAGE))
    async with AsyncStore("sqlite+aiosqlite://", create_tables=True) as store:
        conv = AsyncConversation(
            "gpt-4o-mini",
            store=store,
            base_url=server.base_url,
            api_key=KEY,
            plugins=[convkit_otel],
        )
        async with conv:
            for text in ("a", "b"):
                if streaming:
                    stream = conv.stream(text)
                    async for _ in stream:
                        pass
                else:
                    await conv.send(text)
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 2
    assert all(s.attributes["gen_ai.usage.input_tokens"] == 42 for s in spans)
    points = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert sum(p.count for p in points) == (2 if streaming else 0)


def test_the_span_has_the_callers_span_as_parent(
    server: FakeChatServer, telemetry: Telemetry
) -> None:
    server.enqueue(Reply.text("hi"))
    tracer = telemetry.tracer_provider.get_tracer("app")
    with conversation(server) as conv, tracer.start_as_current_span("handle-request") as outer:
        conv.send("hi")
    chat = next(s for s in telemetry.spans() if s.name.startswith("chat"))
    assert chat.parent is not None
    assert chat.parent.span_id == outer.get_span_context().span_id
    assert chat.context.trace_id == outer.get_span_context().trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_tool_follow_ups_and_summaries_get_spans(
    server: FakeChatServer, telemetry: Telemetry
) -> None:
    server.default_responder = lambda request: Reply.text(
        "Summary: lamps." if request.body.get("max_tokens") == 40 else "ok", usage=USAGE
    )
    server.enqueue(
        Reply.tool_calls([{"name": "lookup", "arguments": {"q": "lamp"}}]),
        Reply.text("found it"),
    )
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    policy = Summarize("gpt-4o", max_prompt_tokens=300, max_summary_tokens=40)
    with conversation(
        server, tools=tools, tool_handlers={"lookup": lambda a: "a lamp"}, policy=policy
    ) as conv:
        conv.send("find a lamp")
        for i in range(10):
            conv.send(f"question {i} " + "lamp " * 25)
    spans = telemetry.spans()
    purposes = [s.attributes["convkit.purpose"] for s in spans]
    assert len(spans) == len(server.requests)
    assert purposes[:2] == ["turn", "tool_followup"]
    assert "summary" in purposes
    summary = spans[purposes.index("summary")]
    assert summary.name == "chat gpt-4o"
    assert summary.attributes["gen_ai.request.max_tokens"] == 40
    assert spans[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_a_failed_call_has_an_error_type(server: FakeChatServer, telemetry: Telemetry) -> None:
    server.enqueue(*[Reply.error(429, retry_after=0)] * 3)
    with conversation(server) as conv:
        conv.client.max_retries = 0
        with pytest.raises(RateLimitError):
            conv.send("hi")
    [span] = telemetry.spans()
    assert span.attributes["error.type"] == "RateLimitError"
    assert span.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in span.attributes
    [duration] = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "RateLimitError"
    assert telemetry.points("gen_ai.client.token.usage") == []
    server.reset()


def test_a_broken_stream_ends_its_span_with_the_error(
    server: FakeChatServer, telemetry: Telemetry
) -> None:
    server.enqueue(Reply.text("a long answer that breaks", drop_after_chunks=2))
    with conversation(server) as conv, pytest.raises(TransportError) as caught:
        "".join(conv.stream("hi"))
    [span] = telemetry.spans()
    assert span.attributes["error.type"] == type(caught.value).__name__ == "StreamError"
    assert len(telemetry.points("gen_ai.client.operation.time_to_first_chunk")) == 1


def test_an_abandoned_stream_is_ended_by_the_next_call(
    server: FakeChatServer, telemetry: Telemetry
) -> None:
    server.enqueue(Reply.text("word " * 50, chunk_size=5), Reply.text("next"))
    with conversation(server) as conv:
        stream = conv.stream("hi")
        next(iter(stream))
        stream.close()
        assert telemetry.spans() == []  # not ended yet: nothing says the call is over
        conv.send("again")
    first, second = telemetry.spans()
    assert first.attributes["error.type"] == "StreamAbandoned"
    assert "error.type" not in second.attributes
    assert first.end_time <= second.start_time


class AnswersBeforeFitting:
    @hookimpl
    def prepare_request(self, draft: Any) -> ChatResponse:
        return ChatResponse(
            id="local",
            model="gpt-4o",
            created=0,
            message=Message.assistant("local"),
            finish_reason="stop",
        )


class AnswersAfterFitting:
    @hookimpl(trylast=True)
    def finalize_request(self, request: Any) -> ChatResponse:
        return ChatResponse(
            id="cache",
            model="gpt-4o",
            created=0,
            message=Message.assistant("cached"),
            finish_reason="stop",
        )


@pytest.mark.parametrize("plugin", [AnswersBeforeFitting, AnswersAfterFitting])
def test_a_call_a_plugin_answers_gets_no_span(
    server: FakeChatServer, telemetry: Telemetry, streaming: bool, plugin: type
) -> None:
    with conversation(server, plugins=[plugin()]) as conv:
        send(conv, "hi", streaming)
        send(conv, "again", streaming)
    assert telemetry.spans() == []
    assert telemetry.points("gen_ai.client.operation.duration") == []
    assert server.requests == []


# ---- content


def test_content_is_recorded_when_the_conversation_opts_in(
    server: FakeChatServer, telemetry: Telemetry, streaming: bool
) -> None:
    server.enqueue(Reply.text("Paris is the capital.", usage=USAGE))
    settings = {"otel": {"capture_content": True}}
    with conversation(server, system="Be brief.", plugin_settings=settings) as conv:
        send(conv, "Capital of France?", streaming)
    [span] = telemetry.spans()
    sent = json.loads(span.attributes["gen_ai.input.messages"])
    assert sent == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]},
    ]
    answered = json.loads(span.attributes["gen_ai.output.messages"])
    assert answered == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Paris is the capital."}],
            "finish_reason": "stop",
        }
    ]


def test_content_capture_from_the_environment_and_configure(
    server: FakeChatServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.enqueue(Reply.text("one"), Reply.text("two"), Reply.text("three"))
    monkeypatch.setenv(convkit_otel.CAPTURE_ENV, "true")
    with conversation(server) as conv:
        conv.send("secret one")
    convkit_otel.configure(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        capture_content=False,
    )
    with conversation(server) as conv:
        conv.send("secret two")
        # a conversation's own setting wins over configure()
    with conversation(server, plugin_settings={"otel": {"capture_content": True}}) as conv:
        conv.send("secret three")
    first, second, third = telemetry.spans()
    assert "secret one" in first.attributes["gen_ai.input.messages"]
    assert not any("secret" in str(v) for v in second.attributes.values())
    assert "secret three" in third.attributes["gen_ai.input.messages"]


def test_the_stream_is_passed_through_unchanged(
    server: FakeChatServer, telemetry: Telemetry
) -> None:
    text = "exactly these words, unchanged"
    server.enqueue(Reply.text(text, chunk_size=3))
    with conversation(server) as conv:
        deltas = list(conv.stream("hi"))
    assert "".join(deltas) == text
    assert len(deltas) == len(range(0, len(text), 3))


def test_no_sdk_means_no_op(server: FakeChatServer) -> None:
    convkit_otel.configure()  # the global providers: the API's no-op ones in this process
    server.enqueue(Reply.text("hi"))
    with conversation(server) as conv:
        assert conv.send("hi").text == "hi"
