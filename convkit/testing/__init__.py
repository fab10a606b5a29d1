"""Test helpers for convkit and its plugins: a loopback OpenAI-protocol server and fixtures.

``import convkit.testing`` uses only the standard library (and attrs); the pytest fixtures live
in :mod:`convkit.testing.pytest_plugin`, registered through the ``pytest11`` entry point.

Example::

    from convkit.testing import FakeChatServer, Reply

    with FakeChatServer() as server:
        server.enqueue(Reply.text("Hello!"))
        ...  # point a client at server.base_url
"""

from __future__ import annotations

from convkit.testing.server import (
    FakeChatServer,
    RecordedRequest,
    Reply,
    UnconsumedRepliesError,
    UnexpectedRequestError,
    approx_prompt_tokens,
    echo_responder,
)

__all__ = [
    "FakeChatServer",
    "RecordedRequest",
    "Reply",
    "UnconsumedRepliesError",
    "UnexpectedRequestError",
    "approx_prompt_tokens",
    "echo_responder",
]
