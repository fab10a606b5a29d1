"""``ChatClient`` and ``AsyncChatClient``: the chat-completions call over httpx.

Both clients are thin shells. Everything that decides — request building, error mapping, retry
decisions, key redaction — is I/O-free and written once:

* :mod:`convkit.client._config`: the default endpoint, :class:`Timeouts`,
  :class:`ResponseLimits`, headers and the API key checked, TLS;
* :mod:`convkit.client._redact`: the API key kept out of everything built from server data;
* :mod:`convkit.client._errors`: failures mapped to convkit's error tree;
* :mod:`convkit.client._attempt`: the attempt loop (send, classify, retry or raise) as
  generators yielding effects, and the sync and async drivers that run them;
* :mod:`convkit.client._stream`: a stream's state and decisions across attempts;
* :mod:`convkit.client._drain`: the bounded read of a body's end after ``[DONE]``;
* :mod:`convkit.client._sync` and :mod:`convkit.client._async`: the shells over httpx.

Stream parsing and accumulation live in the sans-IO modules :mod:`convkit._sse` and
:mod:`convkit.chat`.

Example::

    from convkit import ChatClient

    with ChatClient(base_url="http://127.0.0.1:8000/v1", api_key="sk-...") as client:
        reply = client.complete(model="gpt-4o-mini",
                                messages=[{"role": "user", "content": "Hello"}])
        print(reply.text)
        with client.stream(model="gpt-4o-mini", messages=[...]) as stream:
            for chunk in stream:
                print(chunk.text, end="")
        print(stream.response.usage)
"""

from __future__ import annotations

from convkit._retry import Backoff
from convkit.client._async import AsyncChatClient, AsyncChatStream
from convkit.client._base import BaseChatClient
from convkit.client._config import DEFAULT_BASE_URL, MAX_TIMEOUT, ResponseLimits, Timeouts
from convkit.client._drain import DONE_DRAIN_SECONDS
from convkit.client._sync import ChatClient, ChatStream

__all__ = [
    "DEFAULT_BASE_URL",
    "DONE_DRAIN_SECONDS",
    "MAX_TIMEOUT",
    "AsyncChatClient",
    "AsyncChatStream",
    "Backoff",
    "BaseChatClient",
    "ChatClient",
    "ChatStream",
    "ResponseLimits",
    "Timeouts",
]
