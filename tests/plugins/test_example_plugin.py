"""Tests of the example plugin (docs/plugins.md shows this file)."""

from __future__ import annotations

from collections.abc import Callable

from convkit.chat import ChatRequest
from convkit.hookspecs import CallContext, OutgoingRequest
from convkit.messages import Message
from convkit.plugins import PluginHost
from convkit.testing.plugins import run_middleware, run_middleware_text
from tests.plugins import example_plugin
from tests.plugins.example_plugin import Unmask


def test_addresses_are_masked_in_what_is_sent() -> None:
    context = CallContext(thread_id="t1", model="gpt-4o-mini")
    request = OutgoingRequest(
        model="gpt-4o-mini",
        messages=[Message.system("Be brief."), Message.user("Mail ann@example.com and bob@ex.org")],
    )
    example_plugin.finalize_request(request=request, context=context)
    assert request.messages[1].text == "Mail <<EMAIL1>> and <<EMAIL2>>"
    assert context.state["mask-emails"] == {
        "<<EMAIL1>>": "ann@example.com",
        "<<EMAIL2>>": "bob@ex.org",
    }


def test_a_placeholder_split_across_chunks_is_restored() -> None:
    unmask = Unmask({"<<EMAIL1>>": "ann@example.com"})
    out = run_middleware(unmask, ["Write to <<EM", "AIL1", ">> today"])
    assert [c.text for c in out] == ["Write to ", "ann@example.com today"]


def test_text_held_back_at_the_end_comes_out() -> None:
    assert run_middleware_text(Unmask({"<<EMAIL1>>": "x"}), ["a <", "<EM"]) == "a <<EM"


def test_through_the_host(register_plugin: Callable[..., str]) -> None:
    register_plugin(example_plugin, name="mask-emails")
    host = PluginHost()
    context = CallContext(thread_id="t1", model="m")
    request = OutgoingRequest(model="m", messages=[Message.user("I am ann@example.com")])
    assert host.first_answer("finalize_request", request=request, context=context) is None
    sent = ChatRequest(model="m", messages=request.messages)
    pipeline = host.middleware(request=sent, context=context)
    assert pipeline.names == ["mask-emails"]
    assert run_middleware_text(pipeline, ["Hello <<EMAIL", "1>>!"]) == "Hello ann@example.com!"
