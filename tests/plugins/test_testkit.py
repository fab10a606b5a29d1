"""The plugin test kit: the register_plugin fixture and the middleware runner."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from convkit.chat import ChatChunk
from convkit.hookspecs import RequestDraft, hookimpl
from convkit.plugins import StreamPipeline, pm, text_chunk, with_text
from convkit.testing.plugins import (
    PluginRegistrations,
    run_middleware,
    run_middleware_text,
    text_chunks,
)


class Tag:
    @hookimpl
    def prepare_request(self, draft: RequestDraft) -> None:
        draft.params["tagged"] = True


class Upper:
    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        return [with_text(chunk, chunk.text.upper())]

    def close(self) -> list[ChatChunk]:
        return [text_chunk("!")]


def test_register_plugin_fixture_registers_for_the_test(
    register_plugin: Callable[..., str],
) -> None:
    assert register_plugin(Tag()) == "Tag"
    assert register_plugin(Tag(), name="tag-2") == "tag-2"
    assert pm.has_plugin("Tag") and pm.has_plugin("tag-2")


def test_the_previous_tests_plugins_are_gone() -> None:
    assert not pm.has_plugin("Tag") and not pm.has_plugin("tag-2")


def test_registrations_are_undone_on_close_even_if_the_test_removed_one() -> None:
    from convkit.plugins import unregister_plugin

    with PluginRegistrations() as plugins:
        plugins.register(Tag(), name="a")
        plugins.register(Tag(), name="b")
        unregister_plugin("a")
        assert pm.has_plugin("b")
    assert not pm.has_plugin("a") and not pm.has_plugin("b")
    with pytest.raises(ValueError, match="no plugin 'a'"):
        unregister_plugin("a")


def test_run_middleware_takes_texts_chunks_lists_and_pipelines() -> None:
    assert [c.text for c in run_middleware(Upper(), ["a", text_chunk("b")])] == ["A", "B", "!"]
    assert run_middleware_text([Upper(), Upper()], ["a"]) == "A!!"
    assert run_middleware_text(StreamPipeline([Upper()]), ["a"]) == "A!"
    assert [c.text for c in run_middleware(Upper(), ["a"], close=False)] == ["A"]
    assert [c.text for c in text_chunks(["x", "y"])] == ["x", "y"]
