"""The test kit for plugin authors: throwaway registrations and a stream-middleware runner.

The ``register_plugin`` pytest fixture (from :mod:`convkit.testing.pytest_plugin`) registers a
plugin for one test and removes it afterwards; :func:`run_middleware` runs chunks (or plain
strings) through a middleware and returns what comes out, end of stream included.

Example::

    from convkit.testing.plugins import run_middleware_text

    def test_upper():
        assert run_middleware_text(Upper(), ["he", "llo"]) == "HELLO"

    def test_with_a_conversation(register_plugin):
        register_plugin(MyPlugin(), name="mine")
        ...  # every conversation made in this test calls it
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Union

from convkit._replay import text_chunk
from convkit.chat import ChatChunk
from convkit.hookspecs import StreamMiddleware
from convkit.plugins import StreamPipeline, register_plugin, unregister_plugin

__all__ = [
    "PluginRegistrations",
    "run_middleware",
    "run_middleware_text",
    "text_chunks",
]

ChunkOrText = Union[ChatChunk, str]
MiddlewareLike = Union[StreamMiddleware, StreamPipeline, Sequence[StreamMiddleware]]


def text_chunks(texts: Iterable[str], *, id: str = "chatcmpl-test") -> list[ChatChunk]:  # noqa: A002
    """One content chunk per string, as a server streaming those pieces would send them."""
    return [text_chunk(t, id=id, model="test-model") for t in texts]


def _pipeline(middleware: MiddlewareLike) -> StreamPipeline:
    if isinstance(middleware, StreamPipeline):
        return middleware
    if isinstance(middleware, (list, tuple)):
        return StreamPipeline(middleware)
    return StreamPipeline([middleware])  # type: ignore[list-item]


def run_middleware(
    middleware: MiddlewareLike, chunks_or_texts: Iterable[ChunkOrText], *, close: bool = True
) -> list[ChatChunk]:
    """Feed chunks (a string stands for a content chunk) through middleware; return the output.

    ``middleware`` is one middleware, a list of them (nested in list order: the first sees the
    input first) or a :class:`~convkit.plugins.StreamPipeline`. With ``close=True`` (the
    default) the end of the stream is signalled too, so held-back text comes out.

    Raises:
        PluginError: a middleware raised (named after its class).
    """
    pipeline = _pipeline(middleware)
    out: list[ChatChunk] = []
    for item in chunks_or_texts:
        chunk = (
            text_chunk(item, id="chatcmpl-test", model="test-model")
            if isinstance(item, str)
            else item
        )
        out.extend(pipeline.feed(chunk))
    if close:
        out.extend(pipeline.close())
    return out


def run_middleware_text(middleware: MiddlewareLike, chunks_or_texts: Iterable[ChunkOrText]) -> str:
    """:func:`run_middleware` and join the text of what comes out."""
    return "".join(c.text for c in run_middleware(middleware, chunks_or_texts))


class PluginRegistrations:
    """Plugins registered globally until :meth:`close` (what the ``register_plugin`` fixture uses).

    Example::

        with PluginRegistrations() as plugins:
            plugins.register(MyPlugin(), name="mine")
            ...
    """

    def __init__(self) -> None:
        self._names: list[str] = []

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register ``plugin`` for every conversation (:func:`convkit.plugins.register_plugin`)."""
        registered = register_plugin(plugin, name=name)
        self._names.append(registered)
        return registered

    def close(self) -> None:
        """Unregister everything registered through this object, newest first."""
        while self._names:
            name = self._names.pop()
            with contextlib.suppress(ValueError):  # the test removed it itself
                unregister_plugin(name)

    def __enter__(self) -> PluginRegistrations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
