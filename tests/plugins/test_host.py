"""Calling hooks through a PluginHost: naming failures, sync/async, ordering, the call kinds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pluggy
import pytest

from convkit.chat import ChatRequest, ChatResponse
from convkit.context import SummaryRequest
from convkit.errors import ConvkitError, PluginError
from convkit.hookspecs import CallContext, OutgoingRequest, RequestDraft, hookimpl
from convkit.messages import Message
from convkit.plugins import PluginHost

Register = Callable[..., str]

CTX = CallContext(thread_id="t1", model="m")
REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


def _response(text: str) -> ChatResponse:
    msg = Message.assistant(text)
    return ChatResponse(id="r", model="m", created=None, message=msg, finish_reason="stop")


def _prepare(host: PluginHost) -> tuple[Any, RequestDraft]:
    draft = RequestDraft(model="m")
    return host.first_answer("prepare_request", draft=draft, context=CTX), draft


class Recorder:
    """prepare_request appends this plugin's label to draft.params['order']."""

    def __init__(self, label: str) -> None:
        self.__name__ = label

    @hookimpl
    def prepare_request(self, draft: RequestDraft) -> None:
        draft.params.setdefault("order", []).append(self.__name__)


class First(Recorder):
    @hookimpl(tryfirst=True)
    def prepare_request(self, draft: RequestDraft) -> None:
        draft.params.setdefault("order", []).append(self.__name__)


class Last(Recorder):
    @hookimpl(trylast=True)
    def prepare_request(self, draft: RequestDraft) -> None:
        draft.params.setdefault("order", []).append(self.__name__)


class Boom:
    def __init__(self, name: str = "boom") -> None:
        self.__name__ = name

    @hookimpl
    def prepare_request(self, draft: RequestDraft) -> None:
        raise ValueError("no draft for you")


# --------------------------------------------------------------------------- failures


def test_a_raising_plugin_is_named_with_the_hook_and_cause() -> None:
    host = PluginHost([Recorder("a"), Boom("boom"), Recorder("c")])
    with pytest.raises(PluginError) as caught:
        _prepare(host)
    err = caught.value
    assert (err.plugin, err.hook) == ("boom", "prepare_request")
    assert isinstance(err.cause, ValueError) and err.__cause__ is err.cause
    assert (
        str(err) == "plugin 'boom' failed in hook 'prepare_request': ValueError: no draft for you"
    )
    assert isinstance(err, ConvkitError)


def test_the_failing_plugin_is_found_among_global_and_own_plugins(
    register_plugin: Register,
) -> None:
    register_plugin(Recorder("g1"), name="g1")
    register_plugin(Boom(), name="global-boom")
    host = PluginHost([Recorder("own")])
    with pytest.raises(PluginError) as caught:
        _prepare(host)
    assert caught.value.plugin == "global-boom"


def test_a_plugin_that_raises_a_plugin_error_for_another_hook_is_still_named() -> None:
    class Relay:
        @hookimpl
        def prepare_request(self) -> None:
            raise PluginError("elsewhere", "count_tokens")

    with pytest.raises(PluginError) as caught:
        _prepare(PluginHost([Relay()]))
    assert (caught.value.plugin, caught.value.hook) == ("Relay", "prepare_request")
    assert isinstance(caught.value.cause, PluginError)


# --------------------------------------------------------------------------- sync and async


class AsyncCounter:
    def __init__(self, answer: int | None) -> None:
        self.answer = answer
        self.coroutines: list[Coroutine[Any, Any, Any]] = []
        self.__name__ = f"async-{answer}"

    @hookimpl
    def count_tokens(self, model: str) -> Coroutine[Any, Any, int | None]:
        async def count() -> int | None:
            await asyncio.sleep(0)
            return self.answer

        coro = count()
        self.coroutines.append(coro)
        return coro


def test_the_sync_host_refuses_an_async_implementation_naming_plugin_and_hook() -> None:
    plugin = AsyncCounter(7)
    host = PluginHost([plugin])
    with pytest.raises(PluginError) as caught:
        host.first_answer("count_tokens", model="m", messages=[], tools=None)
    assert (caught.value.plugin, caught.value.hook) == ("async-7", "count_tokens")
    assert "asynchronously" in str(caught.value) and "AsyncConversation" in str(caught.value)
    (coro,) = plugin.coroutines
    assert coro.cr_frame is None  # closed: it can never warn that it was not awaited


def test_the_sync_host_refuses_an_async_def_observer_but_runs_the_others() -> None:
    seen: list[str] = []

    class AsyncObserver:
        @hookimpl
        async def window_fitted(self, window: Any) -> None:
            seen.append("async")

    class SyncObserver:
        @hookimpl
        def window_fitted(self, window: Any) -> None:
            seen.append("sync")

    errors = PluginHost([SyncObserver(), AsyncObserver()]).notify(
        "window_fitted", window=None, context=CTX
    )
    assert [(e.plugin, e.hook) for e in errors] == [("AsyncObserver", "window_fitted")]
    assert seen == ["sync"]


@pytest.mark.anyio
async def test_the_async_host_awaits_async_implementations_in_call_order() -> None:
    order: list[str] = []

    class SlowAppend:
        @hookimpl(tryfirst=True)
        async def prepare_request(self, draft: RequestDraft) -> None:
            await asyncio.sleep(0.001)
            order.append("async tryfirst")
            draft.params["x"] = 1

    class PlainAppend:
        @hookimpl
        def prepare_request(self, draft: RequestDraft) -> None:
            order.append(f"sync sees x={draft.params.get('x')}")

    draft = RequestDraft(model="m")
    host = PluginHost([PlainAppend(), SlowAppend()])
    assert await host.afirst_answer("prepare_request", draft=draft, context=CTX) is None
    assert order == ["async tryfirst", "sync sees x=1"]


@pytest.mark.anyio
async def test_an_async_firstresult_implementation_that_answers_none_does_not_stop_the_chain() -> (
    None
):
    host = PluginHost([AsyncCounter(42), AsyncCounter(None)])  # async-None is called first
    assert await host.afirst_answer("count_tokens", model="m", messages=[], tools=None) == 42
    assert await host.acall("count_tokens", model="m", messages=[], tools=None) == [42]


@pytest.mark.anyio
async def test_an_async_implementation_that_raises_is_named() -> None:
    class AsyncBoom:
        @hookimpl
        async def process_response(self, response: ChatResponse) -> None:
            await asyncio.sleep(0)
            raise KeyError("missing")

    host = PluginHost([AsyncBoom()])
    with pytest.raises(PluginError) as caught:
        await host.aprocess_response(response=_response("x"), request=REQUEST, context=CTX)
    assert (caught.value.plugin, caught.value.hook) == ("AsyncBoom", "process_response")
    assert isinstance(caught.value.__cause__, KeyError)


# --------------------------------------------------------------------------- ordering


def test_tryfirst_and_trylast_order_global_and_own_plugins(register_plugin: Register) -> None:
    register_plugin(Last("global-last"), name="global-last")
    register_plugin(Recorder("global-1"), name="global-1")
    register_plugin(First("global-first"), name="global-first")
    register_plugin(Recorder("global-2"), name="global-2")
    host = PluginHost([Recorder("own-1"), Last("own-last"), First("own-first"), Recorder("own-2")])
    _, draft = _prepare(host)
    assert draft.params["order"] == [
        "own-first", "global-first",              # tryfirst: later-registered first
        "own-2", "own-1", "global-2", "global-1",  # plain: later-registered first, as pluggy
        "global-last", "own-last",                 # trylast: earlier-registered first, as pluggy
    ]  # fmt: skip


def test_the_order_matches_pluggys_for_global_plugins(register_plugin: Register) -> None:
    plugins = [Recorder("a"), First("b"), Last("c"), Recorder("d"), First("e")]
    for p in plugins:
        register_plugin(p, name=p.__name__)
    _, draft = _prepare(PluginHost())
    pluggy_draft = RequestDraft(model="m")
    from convkit.plugins import pm

    pm.hook.prepare_request(draft=pluggy_draft, context=CTX)
    assert draft.params["order"] == pluggy_draft.params["order"] == ["e", "b", "d", "a", "c"]


def test_global_plugins_registered_after_the_host_was_built_are_called(
    register_plugin: Register,
) -> None:
    host = PluginHost([Recorder("own")])
    assert _prepare(host)[1].params["order"] == ["own"]
    register_plugin(Recorder("late"), name="late")
    assert _prepare(host)[1].params["order"] == ["own", "late"]


def test_global_plugins_false_calls_only_the_hosts_own(register_plugin: Register) -> None:
    register_plugin(Recorder("global"), name="global")
    host = PluginHost([Recorder("own")], global_plugins=False)
    assert _prepare(host)[1].params["order"] == ["own"]
    assert [name for name, _ in host.plugins] == ["own"]


def test_own_plugins_with_the_same_name_are_told_apart() -> None:
    host = PluginHost([Recorder("same"), Recorder("same")])
    assert [name for name, _ in host.plugins] == ["same", "same#2"]


# --------------------------------------------------------------------------- call kinds


def test_first_answer_stops_at_the_first_response() -> None:
    class Cache:
        @hookimpl(trylast=True)
        def finalize_request(self, request: OutgoingRequest) -> ChatResponse:
            return _response(f"cached for {request.messages[-1].text}")

    class Mask:
        @hookimpl
        def finalize_request(self, request: OutgoingRequest) -> None:
            request.messages[-1] = Message.user("masked")

    class Never:
        @hookimpl(trylast=True)
        def finalize_request(self, request: OutgoingRequest) -> ChatResponse:
            raise AssertionError("called after an answer")

    host = PluginHost([Cache(), Never(), Mask()])  # of two trylast, the earlier runs first
    request = OutgoingRequest(model="m", messages=[Message.user("secret")])
    answer = host.first_answer("finalize_request", request=request, context=CTX)
    assert answer.text == "cached for masked"


def test_process_response_chains_replacements() -> None:
    class Exclaim:
        @hookimpl(tryfirst=True)
        def process_response(self, response: ChatResponse) -> ChatResponse:
            return _response(response.text + "!")

    class Keep:
        @hookimpl
        def process_response(self, response: ChatResponse) -> None:
            assert response.text == "hi!"

    class Upper:
        @hookimpl(trylast=True)
        def process_response(self, response: ChatResponse, request: ChatRequest) -> ChatResponse:
            return _response(response.text.upper() + f" ({request.model})")

    host = PluginHost([Upper(), Keep(), Exclaim()])
    out = host.process_response(response=_response("hi"), request=REQUEST, context=CTX)
    assert out.text == "HI! (m)"
    original = _response("same")
    assert (
        PluginHost().process_response(response=original, request=REQUEST, context=CTX) is original
    )


def test_notify_runs_every_observer_and_returns_the_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    class Good:
        def __init__(self, label: str) -> None:
            self.__name__ = label

        @hookimpl
        def turn_stored(self, messages: Any, usage: Any) -> None:
            seen.append(self.__name__)

    class Broken:
        @hookimpl
        def turn_stored(self, context: CallContext) -> None:
            raise RuntimeError(f"cannot account {context.thread_id}")

    host = PluginHost([Good("a"), Broken(), Good("b")])
    with caplog.at_level(logging.ERROR, logger="convkit.plugins"):
        errors = host.notify("turn_stored", messages=[], usage=None, context=CTX)
    assert seen == ["b", "a"]
    assert [(e.plugin, str(e.cause)) for e in errors] == [("Broken", "cannot account t1")]
    assert "plugin 'Broken' failed in hook 'turn_stored'" in caplog.text


def test_call_collects_every_result_and_firstresult_hooks_give_one() -> None:
    class Counter:
        def __init__(self, n: int | None) -> None:
            self.n, self.__name__ = n, f"counter-{n}"

        @hookimpl
        def count_tokens(self) -> int | None:
            return self.n

    host = PluginHost([Counter(1), Counter(None), Counter(3)])
    assert host.call("count_tokens", model="m", messages=[], tools=None) == [3]
    assert host.first_answer("count_tokens", model="m", messages=[], tools=None) == 3
    assert PluginHost().call("count_tokens", model="m", messages=[], tools=None) == []


def test_the_summarizer_hook_replaces_the_summarizer() -> None:
    class Short:
        @hookimpl
        def summarizer(self, model: str, context: CallContext) -> Callable[[SummaryRequest], str]:
            return lambda request: f"{len(request.messages)} messages for {model}"

    summarize = PluginHost([Short()]).first_answer("summarizer", model="m", context=CTX)
    request = SummaryRequest(
        previous=None, messages=(Message.user("a"),), prompt="p", model="m", max_tokens=10
    )
    assert summarize(request) == "1 messages for m"
    assert PluginHost().first_answer("summarizer", model="m", context=CTX) is None


def test_a_per_conversation_plugin_registers_its_models_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convkit import models
    from convkit.models import ModelInfo

    monkeypatch.setattr(models, "registry", models.ModelRegistry(list(models.registry)))
    calls: list[int] = []

    class Models:
        @hookimpl
        def register_models(self, register: Callable[[ModelInfo], None]) -> None:
            calls.append(1)
            register(ModelInfo(name="own-model-x", context_window=999, max_output_tokens=99))

    plugin = Models()
    PluginHost([plugin])
    PluginHost([plugin])
    assert calls == [1]
    assert models.get("own-model-x").context_window == 999


def test_hosts_check_the_arguments_they_are_called_with() -> None:
    host = PluginHost([Recorder("a")])
    with pytest.raises(TypeError, match=r"without \['context'\] / with unknown \['extra'\]"):
        host.first_answer("prepare_request", draft=RequestDraft(model="m"), extra=1)
    with pytest.raises(AttributeError, match="no hook 'prepare_requests'"):
        host.call("prepare_requests", draft=None, context=CTX)


def test_has_says_whether_any_plugin_implements_a_hook(register_plugin: Register) -> None:
    host = PluginHost()
    assert not host.has("prepare_request")
    register_plugin(Recorder("late"), name="late")
    assert host.has("prepare_request") and not host.has("wrap_stream")


def test_a_mismatched_implementation_is_refused_at_registration() -> None:
    class Wrong:
        @hookimpl
        def prepare_request(self, draft: Any, conversation: Any) -> None: ...

    with pytest.raises(pluggy.PluginValidationError, match="conversation"):
        PluginHost([Wrong()])


# --------------------------------------------------------------------------- wrappers


def test_a_wrapper_sees_and_may_replace_the_result_of_the_others() -> None:
    class Timing:
        @hookimpl(wrapper=True)
        def process_response(
            self, response: ChatResponse
        ) -> Generator[None, ChatResponse, ChatResponse]:
            final = yield
            return _response(f"[{final.text}]")

    class Exclaim:
        @hookimpl(tryfirst=True)
        def process_response(self, response: ChatResponse) -> ChatResponse:
            return _response(response.text + "!")

    host = PluginHost([Exclaim(), Timing()])
    assert (
        host.process_response(response=_response("hi"), request=REQUEST, context=CTX).text
        == "[hi!]"
    )


def test_a_wrapper_sees_a_plugins_error_and_may_swallow_it() -> None:
    seen: list[BaseException] = []

    class Guard:
        @hookimpl(wrapper=True)
        def prepare_request(self) -> Generator[None, Any, Any]:
            try:
                return (yield)
            except PluginError as exc:
                seen.append(exc)
                return None

    host = PluginHost([Boom(), Guard()])
    assert _prepare(host)[0] is None
    assert [e.plugin for e in seen] == ["boom"]  # type: ignore[attr-defined]


def test_a_wrapper_that_raises_or_never_yields_is_named() -> None:
    class Raises:
        @hookimpl(wrapper=True)
        def prepare_request(self) -> Generator[None, Any, Any]:
            yield
            raise OSError("teardown failed")

    class NoYield:
        @hookimpl(wrapper=True)
        def prepare_request(self) -> Generator[None, Any, Any]:
            if False:
                yield
            return None

    with pytest.raises(PluginError) as caught:
        _prepare(PluginHost([Raises()]))
    assert caught.value.plugin == "Raises" and isinstance(caught.value.cause, OSError)
    with pytest.raises(PluginError, match="returned without yielding") as caught:
        _prepare(PluginHost([NoYield()]))
    assert caught.value.plugin == "NoYield"


def test_old_style_hookwrappers_are_refused() -> None:
    class Old:
        @hookimpl(hookwrapper=True)
        def prepare_request(self) -> Generator[None, Any, None]:
            yield

    host = PluginHost()
    with pytest.raises(PluginError, match=r"use @hookimpl\(wrapper=True\)"):
        host.register(Old())
    assert host.plugins == []


# --------------------------------------------------------------------------- context


def test_call_context_settings_and_state_per_plugin() -> None:
    ctx = CallContext(thread_id=None, model="m", settings={"redact": {"level": 2}, "odd": 3})
    assert ctx.settings_for("redact") == {"level": 2}
    assert ctx.settings_for("odd") == {} and ctx.settings_for("absent") == {}
    ctx.state_for("redact")["n"] = 1
    assert ctx.state == {"redact": {"n": 1}}
    assert ctx.state_for("redact") is ctx.state["redact"]


@pytest.mark.anyio
async def test_the_async_twins_match_the_sync_calls() -> None:
    seen: list[str] = []

    class Mixed:
        @hookimpl
        async def turn_stored(self, usage: Any) -> None:
            seen.append("async observer")
            raise ValueError("after seeing it")

        @hookimpl
        async def process_response(self, response: ChatResponse) -> ChatResponse:
            return _response(response.text + " (async)")

        @hookimpl
        def window_fitted(self) -> None:
            seen.append("sync observer")

    class Plain:
        @hookimpl(trylast=True)
        def process_response(self, response: ChatResponse) -> ChatResponse:
            return _response(response.text + " (sync)")

    host = PluginHost([Mixed(), Plain()])
    errors = await host.anotify("turn_stored", messages=[], usage=None, context=CTX)
    assert [(e.plugin, type(e.cause)) for e in errors] == [("Mixed", ValueError)]
    assert await host.anotify("window_fitted", window=None, context=CTX) == []
    out = await host.aprocess_response(response=_response("hi"), request=REQUEST, context=CTX)
    assert out.text == "hi (async) (sync)"
    assert seen == ["async observer", "sync observer"]
    assert await host.acall("window_fitted", window=None, context=CTX) == []
