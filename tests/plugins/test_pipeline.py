"""The stream pipeline: transform, drop, hold back, inject, flush, nesting order, failures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from convkit.chat import ChatChunk, ChatRequest
from convkit.errors import PluginError
from convkit.hookspecs import CallContext, StreamMiddleware, hookimpl
from convkit.plugins import PluginHost, StreamPipeline, response_from_chunks, text_chunk, with_text
from convkit.testing.plugins import run_middleware, run_middleware_text, text_chunks

CTX = CallContext(thread_id=None, model="m")
REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


class Upper:
    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        return [with_text(chunk, chunk.text.upper())]

    def close(self) -> list[ChatChunk]:
        return []


class DropDigits:
    """Drops every chunk whose text is all digits."""

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        return [] if chunk.text.isdigit() else [chunk]

    def close(self) -> list[ChatChunk]:
        return []


class Restore:
    """Replaces placeholders like <<P1>> with their values, even when split across chunks."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.held = ""
        self.sizes: list[str] = []

    def _restore(self, text: str) -> str:
        for placeholder, value in self.table.items():
            text = text.replace(placeholder, value)
        return text

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        text = self.held + chunk.text
        start = text.rfind("<<")
        if start == -1 and text.endswith("<"):
            start = len(text) - 1
        if start != -1 and ">>" not in text[start:]:
            text, self.held = text[:start], text[start:]
        else:
            self.held = ""
        return [with_text(chunk, self._restore(text))] if text else []

    def close(self) -> list[ChatChunk]:
        held, self.held = self.held, ""
        return [text_chunk(self._restore(held))] if held else []


class Banner:
    """Injects a chunk before the first one and another after the last."""

    def __init__(self) -> None:
        self.started = False

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        if self.started:
            return [chunk]
        self.started = True
        return [text_chunk("[begin] "), chunk]

    def close(self) -> list[ChatChunk]:
        return [text_chunk(" [end]")]


class Buffer:
    """Holds everything back and releases it, joined, at the end of the stream."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        self.parts.append(chunk.text)
        return []

    def close(self) -> list[ChatChunk]:
        return [text_chunk("".join(self.parts))]


class Spy:
    """Passes everything on and records what it saw."""

    def __init__(self, log: list[str], label: str) -> None:
        self.log, self.label = log, label

    def feed(self, chunk: ChatChunk) -> Iterable[ChatChunk]:
        self.log.append(f"{self.label}:{chunk.text}")
        yield chunk  # a generator is a fine iterable of chunks

    def close(self) -> Iterable[ChatChunk]:
        self.log.append(f"{self.label}:close")
        return ()


def test_an_empty_pipeline_passes_chunks_through_unchanged() -> None:
    chunk = text_chunk("x")
    pipeline = StreamPipeline()
    assert pipeline.feed(chunk) == [chunk] and pipeline.close() == []
    assert len(pipeline) == 0


def test_a_middleware_transforms_chunks() -> None:
    out = run_middleware(Upper(), ["he", "llo"])
    assert [c.text for c in out] == ["HE", "LLO"]
    assert all(c.id == "chatcmpl-test" for c in out)  # everything but the text is kept


def test_a_middleware_drops_chunks() -> None:
    assert run_middleware_text(DropDigits(), ["a", "12", "b", "3"]) == "ab"


@pytest.mark.parametrize(
    "pieces",
    [
        ["Write to <<P1>> today"],
        ["Write to <<P", "1>> today"],
        ["Write to <", "<P1", ">", "> today"],
        ["Write to <<P1>", "> today"],
        list("Write to <<P1>> today"),
    ],
)
def test_a_middleware_holds_back_a_placeholder_split_across_chunks(pieces: list[str]) -> None:
    out = run_middleware(Restore({"<<P1>>": "ann@example.com"}), pieces)
    assert "".join(c.text for c in out) == "Write to ann@example.com today"
    assert not any("<" in c.text for c in out)  # no fragment of a placeholder ever leaks


def test_held_back_text_is_flushed_at_the_end_of_the_stream() -> None:
    restore = Restore({"<<P1>>": "x"})
    pipeline = StreamPipeline([restore])
    assert [c.text for c in pipeline.feed(text_chunk("a <<P"))] == ["a "]
    assert [c.text for c in pipeline.close()] == ["<<P"]  # never completed: flushed as it was
    assert pipeline.closed and pipeline.close() == []


def test_a_middleware_injects_chunks() -> None:
    assert run_middleware_text(Banner(), ["a", "b"]) == "[begin] ab [end]"


def test_what_a_middleware_flushes_at_close_goes_through_the_later_ones() -> None:
    log: list[str] = []
    out = run_middleware([Buffer(), Upper(), Spy(log, "spy")], ["ab", "cd"])
    assert [c.text for c in out] == ["ABCD"]
    assert log == ["spy:ABCD", "spy:close"]


def test_the_first_middleware_sees_the_raw_chunks_and_feeds_the_next() -> None:
    log: list[str] = []
    restore = Restore({"<<P1>>": "secret"})
    run_middleware([Spy(log, "outer"), restore, Spy(log, "inner"), Upper()], ["<<P", "1>>!"])
    assert log == ["outer:<<P", "outer:1>>!", "inner:secret!", "outer:close", "inner:close"]


def test_a_middleware_raising_in_feed_or_close_is_named() -> None:
    class FailsOnX:
        def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
            if "x" in chunk.text:
                raise ValueError("no x")
            return [chunk]

        def close(self) -> list[ChatChunk]:
            raise RuntimeError("cannot finish")

    pipeline = StreamPipeline([("upper", Upper()), ("strict", FailsOnX())])
    assert [c.text for c in pipeline.feed(text_chunk("x"))] == ["X"]  # upper ran first
    pipeline = StreamPipeline([("strict", FailsOnX()), ("upper", Upper())])
    with pytest.raises(PluginError) as caught:
        pipeline.feed(text_chunk("x"))
    assert (caught.value.plugin, caught.value.hook) == ("strict", "wrap_stream")
    assert isinstance(caught.value.__cause__, ValueError)
    assert pipeline.closed
    with pytest.raises(RuntimeError, match="closed"):
        pipeline.feed(text_chunk("y"))
    pipeline = StreamPipeline([("strict", FailsOnX())])
    with pytest.raises(PluginError, match="cannot finish") as caught:
        pipeline.close()
    assert caught.value.plugin == "strict"


def test_a_middleware_returning_something_else_than_chunks_is_named() -> None:
    class Strings:
        def feed(self, chunk: ChatChunk) -> list[Any]:
            return [chunk.text]

        def close(self) -> list[ChatChunk]:
            return []

    with pytest.raises(PluginError, match="returned a str, not a ChatChunk") as caught:
        run_middleware(Strings(), ["a"])
    assert caught.value.plugin == "Strings"
    with pytest.raises(PluginError, match="no feed"):
        StreamPipeline([("odd", object())])  # type: ignore[list-item]


def test_what_comes_out_accumulates_into_the_stored_response() -> None:
    chunks = text_chunks(["Hi <<P", "1>>", "!"])
    response = response_from_chunks(run_middleware(Restore({"<<P1>>": "Ann"}), chunks))
    assert response.text == "Hi Ann!"


# --------------------------------------------------------------------------- from the hook


class Plugin:
    def __init__(self, name: str, middleware: StreamMiddleware | None) -> None:
        self.__name__ = name
        self.middleware = middleware

    @hookimpl
    def wrap_stream(self, request: ChatRequest, context: CallContext) -> StreamMiddleware | None:
        return self.middleware


class TryFirstPlugin(Plugin):
    @hookimpl(tryfirst=True)
    def wrap_stream(self, request: ChatRequest, context: CallContext) -> StreamMiddleware | None:
        return self.middleware


def test_the_host_nests_middleware_in_call_order_tryfirst_seeing_raw_chunks() -> None:
    log: list[str] = []
    host = PluginHost(
        [
            Plugin("upper", Upper()),
            Plugin("none", None),
            TryFirstPlugin("restore", Restore({"<<P1>>": "ann"})),
            Plugin("spy", Spy(log, "spy")),
        ]
    )
    pipeline = host.middleware(request=REQUEST, context=CTX)
    assert pipeline.names == ["restore", "spy", "upper"]
    out = [c for piece in ["hi <<P", "1>>"] for c in pipeline.feed(text_chunk(piece))]
    assert "".join(c.text for c in out + pipeline.close()) == "HI ANN"
    assert log == ["spy:hi ", "spy:ann", "spy:close"]


def test_a_raising_middleware_from_a_host_is_named_after_its_plugin() -> None:
    class Bad:
        def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
            raise ValueError("broken middleware")

        def close(self) -> list[ChatChunk]:
            return []

    pipeline = PluginHost([Plugin("guardrail", Bad())]).middleware(request=REQUEST, context=CTX)
    with pytest.raises(PluginError) as caught:
        pipeline.feed(text_chunk("x"))
    assert (caught.value.plugin, caught.value.hook) == ("guardrail", "wrap_stream")


@pytest.mark.anyio
async def test_the_async_host_awaits_an_async_wrap_stream() -> None:
    class AsyncPlugin:
        @hookimpl
        async def wrap_stream(self) -> StreamMiddleware:
            return Upper()

    pipeline = await PluginHost([AsyncPlugin()]).amiddleware(request=REQUEST, context=CTX)
    assert [c.text for c in pipeline.feed(text_chunk("a"))] == ["A"]
    with pytest.raises(PluginError, match="asynchronously"):
        PluginHost([AsyncPlugin()]).middleware(request=REQUEST, context=CTX)


# --------------------------------------------------------------------------- what is stored


class PassThrough:
    def feed(self, chunk: ChatChunk) -> tuple[ChatChunk, ...]:
        return (chunk,)

    def close(self) -> tuple[ChatChunk, ...]:
        return ()


def _upstream(chunks: list[ChatChunk]) -> Any:
    return response_from_chunks(chunks)


def test_response_with_no_middleware_is_the_upstream_one() -> None:
    chunks = text_chunks(["a", "b", "c"])
    upstream = _upstream(chunks)
    assert StreamPipeline().response(upstream) is upstream
    with pytest.raises(RuntimeError, match="does not accumulate"):
        StreamPipeline().response()
    with pytest.raises(RuntimeError, match="does not accumulate"):
        StreamPipeline([PassThrough()], accumulate=False).response(upstream)


@pytest.mark.parametrize(
    ("middleware", "pieces", "expected"),
    [
        ([PassThrough(), PassThrough()], ["a", "b", "c"], "abc"),  # passes everything
        ([PassThrough(), Upper()], ["a", "b", "c"], "ABC"),  # changes every chunk
        ([DropDigits()], ["a", "7", "b"], "ab"),  # drops one chunk after passing one
        ([Restore({"<<P1>>": "ann"})], ["a <<P", "1>> b"], "a ann b"),  # holds back
        ([PassThrough(), Banner()], ["a", "b"], "[begin] ab [end]"),  # injects, flushes
        ([Buffer()], ["a", "b"], "ab"),  # everything comes out at close
    ],
)
def test_response_adds_up_what_came_out(
    middleware: list[Any], pieces: list[str], expected: str
) -> None:
    chunks = text_chunks(pieces)
    pipeline = StreamPipeline(middleware)
    out = [o for c in chunks for o in pipeline.feed(c)] + pipeline.close()
    final = pipeline.response(_upstream(chunks))
    assert final.text == expected == "".join(c.text for c in out)
    assert final == response_from_chunks(out)


def test_a_malformed_chunk_from_the_middleware_is_reported() -> None:
    class Breaks:
        def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
            bad = dict(chunk.raw)
            bad["choices"] = [{"index": 0, "delta": {"content": 42}}]
            return [ChatChunk(bad)]

        def close(self) -> list[ChatChunk]:
            return []

    pipeline = StreamPipeline([("breaks", Breaks())])
    with pytest.raises(PluginError, match=r"stream middleware \(breaks\) returned is malformed"):
        pipeline.feed(text_chunk("x"))
    assert pipeline.closed
