"""convkit: conversations with any OpenAI-compatible chat completions endpoint.

The public API lives here. Light modules (messages, errors, models, tokens) are imported
eagerly; the HTTP client and the database store are imported on first use, so ``import convkit``
does not pull in httpx or SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convkit.context import (
    ContextPolicy,
    Counted,
    Summarize,
    Summary,
    SummaryLike,
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
    RateLimitError,
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
from convkit.models import ModelInfo, ModelRegistry
from convkit.tokens import TokenCounter, count_tokens

if TYPE_CHECKING:  # pragma: no cover - names resolved lazily at run time
    from convkit._retry import Backoff
    from convkit.chat import (
        ChatChunk,
        ChatRequest,
        ChatResponse,
        Choice,
        ChoiceDelta,
        StreamAccumulator,
        ToolCallDelta,
        validate_params,
    )
    from convkit.client import AsyncChatClient, AsyncChatStream, ChatClient, ChatStream, Timeouts
    from convkit.store import AsyncStore, NewMessage, Store, StoredMessage, Thread, ThreadPage

from convkit._version import __version__ as __version__

# Public names served from modules that are imported only when first asked for.
_LAZY: dict[str, str] = {
    "AsyncStore": "convkit.store",
    "NewMessage": "convkit.store",
    "Store": "convkit.store",
    "StoredMessage": "convkit.store",
    "Thread": "convkit.store",
    "ThreadPage": "convkit.store",
    "AsyncChatClient": "convkit.client",
    "AsyncChatStream": "convkit.client",
    "Backoff": "convkit._retry",
    "ChatChunk": "convkit.chat",
    "ChatClient": "convkit.client",
    "ChatRequest": "convkit.chat",
    "ChatResponse": "convkit.chat",
    "ChatStream": "convkit.client",
    "Choice": "convkit.chat",
    "ChoiceDelta": "convkit.chat",
    "StreamAccumulator": "convkit.chat",
    "Timeouts": "convkit.client",
    "ToolCallDelta": "convkit.chat",
    "validate_params": "convkit.chat",
    # Deprecated alias of APITimeoutError (convkit.errors warns when it is looked up).
    "TimeoutError": "convkit.errors",
}

__all__ = [
    "APIStatusError",
    "APITimeoutError",
    "AsyncChatClient",
    "AsyncChatStream",
    "AsyncStore",
    "AudioPart",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "ChatChunk",
    "ChatClient",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "Choice",
    "ChoiceDelta",
    "ConflictError",
    "ConnectError",
    "ContentPart",
    "ContextLengthExceededError",
    "ContextOverflowError",
    "ContextPolicy",
    "ConvkitError",
    "Counted",
    "EncodingUnavailableError",
    "FilePart",
    "ImagePart",
    "InternalServerError",
    "InvalidMessageError",
    "InvalidRequestError",
    "Message",
    "MessageLike",
    "ModelInfo",
    "ModelRegistry",
    "NewMessage",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RawPart",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreValueError",
    "StoredMessage",
    "StreamAccumulator",
    "StreamError",
    "SummarizationError",
    "Summarize",
    "Summary",
    "SummaryLike",
    "SummaryRequest",
    "TextPart",
    "Thread",
    "ThreadNotFoundError",
    "ThreadPage",
    "Timeouts",
    "TokenCounter",
    "ToolCall",
    "ToolCallDelta",
    "TransportError",
    "TrimOldest",
    "UnknownModelError",
    "UnprocessableEntityError",
    "Usage",
    "Window",
    "count_tokens",
    "trim_messages",
    "validate_params",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'convkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
