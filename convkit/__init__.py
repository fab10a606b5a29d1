"""convkit: conversations with any OpenAI-compatible chat completions endpoint.

The top level holds what an application uses: messages, counting, fitting, the client, the
store and the errors it catches. Everything else lives in the module it belongs to, documented
there: wire values (:mod:`convkit.chat`), the fitting building blocks (:mod:`convkit.context`),
the model registry (:mod:`convkit.models`), store values (:mod:`convkit.store`), the loopback
server (:mod:`convkit.testing`).

Light modules (messages, errors, models, tokens, context) are imported eagerly; the HTTP client
and the database store are imported on first use, so ``import convkit`` does not pull in httpx
or SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convkit._version import __version__ as __version__
from convkit.context import (
    ContextPolicy,
    ReadPlan,
    Summarize,
    Summary,
    SummaryRequest,
    TrimOldest,
    Window,
    trim_messages,
)
from convkit.errors import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectError,
    ContextLengthExceededError,
    ContextOverflowError,
    ConvkitError,
    EncodingUnavailableError,
    InternalServerError,
    InvalidMessageError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    RateLimitError,
    ResponseTooLargeError,
    SchemaVersionError,
    StoreError,
    StoreValueError,
    StreamError,
    SummarizationError,
    ThreadNotFoundError,
    TransportError,
    UnknownModelError,
    UnprocessableEntityError,
)
from convkit.hookspecs import hookimpl
from convkit.messages import (
    AudioPart,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    MessageLike,
    RawPart,
    TextPart,
    ToolCall,
    Usage,
)
from convkit.models import ModelInfo
from convkit.tokens import TokenCounter, count_tokens

if TYPE_CHECKING:  # pragma: no cover - names resolved lazily at run time
    from convkit.chat import ChatChunk, ChatResponse
    from convkit.client import (
        AsyncChatClient,
        AsyncChatStream,
        Backoff,
        ChatClient,
        ChatStream,
        ResponseLimits,
        Timeouts,
    )
    from convkit.conversation import AsyncConversation, Conversation
    from convkit.store import AsyncStore, Store, StoredMessage, Thread
    from convkit.turn import Reply

# Public names served from modules that are imported only when first asked for.
_LAZY: dict[str, str] = {
    "AsyncChatClient": "convkit.client",
    "AsyncConversation": "convkit.conversation",
    "Conversation": "convkit.conversation",
    "Reply": "convkit.turn",
    "ResponseLimits": "convkit.client",
    "AsyncChatStream": "convkit.client",
    "AsyncStore": "convkit.store",
    "Backoff": "convkit.client",
    "ChatChunk": "convkit.chat",
    "ChatClient": "convkit.client",
    "ChatResponse": "convkit.chat",
    "ChatStream": "convkit.client",
    "Store": "convkit.store",
    "StoredMessage": "convkit.store",
    "Thread": "convkit.store",
    "Timeouts": "convkit.client",
}

# Deprecated names: looked up on every access (not cached), so each use warns.
_DEPRECATED: dict[str, str] = {"TimeoutError": "convkit.errors"}

__all__ = [
    "APIStatusError",
    "APITimeoutError",
    "AsyncChatClient",
    "AsyncChatStream",
    "AsyncConversation",
    "AsyncStore",
    "AudioPart",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "ChatChunk",
    "ChatClient",
    "ChatResponse",
    "ChatStream",
    "ConflictError",
    "ConnectError",
    "ContentPart",
    "ContextLengthExceededError",
    "ContextOverflowError",
    "ContextPolicy",
    "Conversation",
    "ConvkitError",
    "EncodingUnavailableError",
    "FilePart",
    "ImagePart",
    "InternalServerError",
    "InvalidMessageError",
    "InvalidRequestError",
    "Message",
    "MessageLike",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "RateLimitError",
    "RawPart",
    "ReadPlan",
    "Reply",
    "ResponseLimits",
    "ResponseTooLargeError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreValueError",
    "StoredMessage",
    "StreamError",
    "SummarizationError",
    "Summarize",
    "Summary",
    "SummaryRequest",
    "TextPart",
    "Thread",
    "ThreadNotFoundError",
    "Timeouts",
    "TokenCounter",
    "ToolCall",
    "TransportError",
    "TrimOldest",
    "UnknownModelError",
    "UnprocessableEntityError",
    "Usage",
    "Window",
    "__version__",
    "count_tokens",
    "hookimpl",
    "trim_messages",
]


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        return getattr(importlib.import_module(_DEPRECATED[name]), name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'convkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
