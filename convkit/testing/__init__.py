"""Test helpers for convkit and its plugins: a loopback OpenAI-protocol server and fixtures.

``import convkit.testing`` is cheap: the reply DSL (:mod:`convkit.testing._replies`) and the
server (:mod:`convkit.testing.server`, standard library and attrs only) load on first use, and
the pytest fixtures live in :mod:`convkit.testing.pytest_plugin`, registered
through the ``pytest11`` entry point.

Example::

    from convkit.testing import FakeChatServer, Reply

    with FakeChatServer() as server:
        server.enqueue(Reply.text("Hello!"))
        ...  # point a client at server.base_url
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from convkit.testing._guard import ContextWindowGuard
    from convkit.testing._replies import (
        RecordedRequest,
        Reply,
        UnconsumedRepliesError,
        UnexpectedRequestError,
        approx_prompt_tokens,
        echo_responder,
    )
    from convkit.testing.server import FakeChatServer

# Where each public name lives: the reply DSL apart from the HTTP server.
_HOME = {
    "ContextWindowGuard": "convkit.testing._guard",
    "FakeChatServer": "convkit.testing.server",
    "RecordedRequest": "convkit.testing._replies",
    "Reply": "convkit.testing._replies",
    "UnconsumedRepliesError": "convkit.testing._replies",
    "UnexpectedRequestError": "convkit.testing._replies",
    "approx_prompt_tokens": "convkit.testing._replies",
    "echo_responder": "convkit.testing._replies",
}

__all__ = [
    "ContextWindowGuard",
    "FakeChatServer",
    "RecordedRequest",
    "Reply",
    "UnconsumedRepliesError",
    "UnexpectedRequestError",
    "approx_prompt_tokens",
    "echo_responder",
]


def __getattr__(name: str) -> Any:
    # Loaded lazily so that ``python -m convkit.testing.server`` runs the module only once.
    home = _HOME.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convkit.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
