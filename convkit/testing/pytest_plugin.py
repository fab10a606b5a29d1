"""pytest fixtures shipped with convkit (registered through the ``pytest11`` entry point).

* ``chat_server`` — a started :class:`~convkit.testing.FakeChatServer`, stopped after the
  test. If a request arrived that nothing was scripted for, teardown fails with
  :class:`~convkit.testing.UnexpectedRequestError` (call ``chat_server.reset()`` in a test that
  provokes one on purpose).
* ``chat_client`` — a :class:`~convkit.ChatClient` bound to ``chat_server``, with a fake key and
  millisecond backoff so retry tests stay fast.
* ``async_chat_client`` — the :class:`~convkit.AsyncChatClient` twin; an async fixture, so the
  test must run under an async plugin (``@pytest.mark.anyio`` with anyio's plugin).
* ``register_plugin`` — a factory registering a throwaway plugin (``register_plugin(obj,
  name=...)``) for every conversation of one test; unregistered afterwards (see
  :mod:`convkit.testing.plugins`).

Example::

    from convkit.testing import Reply

    def test_my_plugin(chat_server, chat_client):
        chat_server.enqueue(Reply.text("Paris"))
        assert chat_client.complete(model="m", messages=[...]).text == "Paris"
        assert chat_server.requests[0].body["model"] == "m"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from convkit.testing.server import FakeChatServer

if TYPE_CHECKING:  # pragma: no cover
    from convkit.client import AsyncChatClient, ChatClient

__all__ = ["FAKE_API_KEY", "async_chat_client", "chat_client", "chat_server", "register_plugin"]

#: The API key the client fixtures send (recognisable in assertions that it never leaks).
FAKE_API_KEY = "sk-convkit-fake-key-0123456789"


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    """A running FakeChatServer on 127.0.0.1, stopped after the test."""
    server = FakeChatServer()
    server.start()
    try:
        yield server
        unexpected = server.unexpected_requests
    finally:
        server.stop()
    if unexpected:
        from convkit.testing.server import UnexpectedRequestError

        raise UnexpectedRequestError(
            f"{len(unexpected)} request(s) reached chat_server with nothing scripted "
            f"(first: {unexpected[0].method} {unexpected[0].path}); enqueue a Reply for each"
        )


@pytest.fixture
def chat_client(chat_server: FakeChatServer) -> Iterator[ChatClient]:
    """A ChatClient bound to ``chat_server`` (fake key, fast backoff), closed after the test."""
    from convkit.client import ChatClient

    with ChatClient(**_client_options(chat_server)) as client:
        yield client


@pytest.fixture
async def async_chat_client(chat_server: FakeChatServer) -> AsyncIterator[AsyncChatClient]:
    """An AsyncChatClient bound to ``chat_server`` (fake key, fast backoff), closed after."""
    from convkit.client import AsyncChatClient

    async with AsyncChatClient(**_client_options(chat_server)) as client:
        yield client


def _client_options(server: FakeChatServer) -> dict[str, Any]:
    """What both client fixtures are built with: the server, a fake key, a fast backoff."""
    from convkit._retry import Backoff

    return {
        "base_url": server.base_url,
        "api_key": FAKE_API_KEY,
        "backoff": Backoff(initial=0.001, maximum=0.01),
        "timeout": 10.0,
    }


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., str]]:
    """Register plugins for one test: ``register_plugin(obj, name=None) -> name``.

    Every plugin registered through it is unregistered after the test. Plugins registered this
    way are global: every conversation the test makes calls them.
    """
    from convkit.testing.plugins import PluginRegistrations

    registrations = PluginRegistrations()
    try:
        yield registrations.register
    finally:
        registrations.close()
