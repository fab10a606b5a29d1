"""The effects a turn yields, and the exception thrown in when its caller leaves a stream."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from attrs import field, frozen

from convkit.chat import ChatRequest
from convkit.context import SummaryRequest

__all__ = [
    "CloseStream",
    "Complete",
    "Emit",
    "HookCall",
    "NextChunk",
    "OpenStream",
    "RunTool",
    "StoreCall",
    "StreamAbandoned",
    "StreamResult",
    "Summarize",
]


@frozen
class StoreCall:
    """Call ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(factory=dict)


@frozen
class HookCall:
    """Call the plugin hook ``name`` with keyword arguments, through the plugin host.

    ``mode`` picks the host method: ``"all"`` (every non-None result), ``"first"`` (the first
    non-None result, or None), ``"observe"`` (every implementation runs; a failing observer is
    logged, never fails the turn: the data is already safe), ``"chain"`` (``process_response``:
    each non-None result replaces the response), ``"middleware"`` (``wrap_stream``, nested into
    a :class:`~convkit.plugins.StreamPipeline`).
    """

    name: str
    kwargs: Mapping[str, Any]
    mode: Literal["all", "first", "observe", "chain", "middleware"] = "all"


@frozen
class Complete:
    """Send ``request`` and return the whole :class:`~convkit.chat.ChatResponse`."""

    request: ChatRequest


@frozen
class OpenStream:
    """Open a stream for ``request``; the result is an opaque handle.

    ``accumulate=False`` when the turn accumulates the middleware's output itself, so the
    stream need not merge its chunks too.
    """

    request: ChatRequest
    accumulate: bool = True


@frozen
class StreamResult:
    """What the stream has accumulated so far (its whole response once it ended)."""

    handle: Any


@frozen
class NextChunk:
    """The stream's next chunk, or None at its end."""

    handle: Any


@frozen
class CloseStream:
    """Close the stream (releases the connection; idempotent)."""

    handle: Any


@frozen
class Emit:
    """A text delta for the caller of a streaming turn."""

    text: str


@frozen
class RunTool:
    """Run ``handler(arguments)``; an async handler is awaited by the async shell."""

    handler: Callable[[dict[str, Any]], Any]
    arguments: dict[str, Any]


@frozen
class Summarize:
    """Run ``summarizer(request)`` (sync or async) and return its text."""

    summarizer: Callable[[SummaryRequest], Any]
    request: SummaryRequest


class StreamAbandoned(BaseException):
    """Thrown into a streaming turn when its caller left early; the turn stores what arrived."""
