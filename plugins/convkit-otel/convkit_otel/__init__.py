"""convkit-otel: OpenTelemetry spans and metrics for every completions call, GenAI conventions.

Each call a conversation sends to the API — user turns, tool follow-ups and summaries — gets
one ``CLIENT`` span named ``chat {model}`` and three histograms, as the OpenTelemetry semantic
conventions for generative AI define them (``gen_ai.*`` attributes,
``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and, for streams,
``gen_ai.client.operation.time_to_first_chunk``). Message content is recorded only when asked
for (:func:`configure`, ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` or the
conversation's ``plugin_settings={"otel": {"capture_content": True}}``).

Only ``opentelemetry-api`` is needed at run time: with no SDK configured, every span and
measurement is a no-op. Calls a plugin answers without the API (a cache hit) get no span.

How a call is followed (see "A turn, hook by hook" in convkit's plugin guide):

* ``finalize_request`` (a wrapper: it sees whether another plugin answered) starts the call's
  clock when the request is really going to be sent, with the request attributes;
* ``wrap_stream`` adds a pass-through middleware that only notes when the first chunk came;
* ``process_response`` ends it with the response attributes and usage; ``request_failed`` ends
  it with ``error.type``;
* a stream the caller abandoned (which ends in neither) is ended when the conversation makes
  its next call or is garbage-collected, with ``error.type`` ``"StreamAbandoned"``.

The span is emitted when the call ends, with its real start and end times and the context that
was current when it started as parent (it is not made current while the request runs: the
turn's effects are driven outside this plugin's control).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import weakref
from collections.abc import Generator, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from convkit.chat import ChatChunk, ChatRequest, ChatResponse
from convkit.errors import ConvkitError
from convkit.hookspecs import CallContext, OutgoingRequest, hookimpl
from convkit.messages import Message, Usage
from convkit.store import StoredMessage

__all__ = [
    "CAPTURE_ENV",
    "NAME",
    "FirstChunk",
    "Settings",
    "configure",
    "finalize_request",
    "prepare_request",
    "process_response",
    "request_failed",
    "turn_stored",
    "wrap_stream",
]

__version__ = "0.1.0"

#: The plugin's name: entry point, ``plugin_settings`` key and ``context.state_for`` key.
NAME = "otel"
#: The environment variable OpenTelemetry's GenAI instrumentations read to capture content:
#: ``true`` (or ``span_only`` / ``span_and_event``) records message content on spans.
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Bucket boundaries the conventions recommend for each histogram.
_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
_REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


# --------------------------------------------------------------------------- settings


@define(kw_only=True)
class Settings:
    """Process-wide settings of the plugin (see :func:`configure`).

    Attributes:
        tracer_provider: where spans go; None uses the global provider.
        meter_provider: where measurements go; None uses the global provider.
        capture_content: record message content on spans; None reads :data:`CAPTURE_ENV`.
        provider_name: ``gen_ai.provider.name`` (the conventions' name of the API's vendor).
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    capture_content: bool | None = None
    provider_name: str = "openai"
    _instruments: Any = field(default=None, init=False)


_settings = Settings()
_lock = threading.Lock()


def configure(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
    provider_name: str = "openai",
) -> None:
    """Set where spans and metrics go and whether message content is recorded.

    Without a call, the global OpenTelemetry providers are used and content is recorded only
    when :data:`CAPTURE_ENV` says so. A conversation's ``plugin_settings={"otel":
    {"capture_content": bool}}`` overrides ``capture_content`` for that conversation.

    Example::

        from opentelemetry.sdk.trace import TracerProvider
        convkit_otel.configure(tracer_provider=TracerProvider(), capture_content=False)
    """
    global _settings
    with _lock:
        _settings = Settings(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture_content,
            provider_name=provider_name,
        )


def _tracer() -> trace.Tracer:
    provider = _settings.tracer_provider
    if provider is not None:
        return provider.get_tracer(__name__, __version__)  # type: ignore[no-any-return]
    return trace.get_tracer(__name__, __version__)


@define
class _Instruments:
    duration: metrics.Histogram
    tokens: metrics.Histogram
    first_chunk: metrics.Histogram


def _instruments() -> _Instruments:
    settings = _settings
    if settings._instruments is not None:
        return settings._instruments  # type: ignore[no-any-return]
    provider = settings.meter_provider
    meter = (
        provider.get_meter(__name__, __version__)
        if provider is not None
        else metrics.get_meter(__name__, __version__)
    )
    made = _Instruments(
        duration=meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        ),
        tokens=meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        ),
        first_chunk=meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        ),
    )
    settings._instruments = made
    return made


def _capture(context: CallContext) -> bool:
    own = context.settings_for(NAME).get("capture_content")
    if isinstance(own, bool):
        return own
    if _settings.capture_content is not None:
        return _settings.capture_content
    value = os.environ.get(CAPTURE_ENV, "").strip().lower()
    return value in ("true", "1", "yes", "span_only", "span_and_event")


# --------------------------------------------------------------------------- one call


@define
class _Call:
    """A call that was sent (or is about to be): what its span will say."""

    name: str
    attributes: dict[str, Any]
    start_ns: int
    start: float
    parent: Any
    stream: bool
    input_messages: str | None = None
    sent: bool = False
    first_chunk: float | None = None
    partial_end: tuple[int, float] | None = None


def _state(context: CallContext) -> dict[str, Any]:
    state = context.state_for(NAME)
    if not state.get("watched") and context.conversation is not None:
        # A stream abandoned by the last call of a conversation still gets its span.
        with contextlib.suppress(TypeError):  # a conversation without weak references
            weakref.finalize(context.conversation, _flush, state)
        state["watched"] = True
    return state


def _flush(state: dict[str, Any]) -> None:
    """End a call that never reached ``process_response``/``request_failed``, if it was sent."""
    call: _Call | None = state.pop("call", None)
    if call is None or not call.sent:
        return  # never sent (refitted, refused as over budget): no span
    error = "StreamAbandoned" if call.partial_end is not None else "_OTHER"
    _end(call, error_type=error, end=call.partial_end)


def _server(context: CallContext) -> dict[str, Any]:
    client = getattr(context.conversation, "client", None)
    base_url = getattr(client, "base_url", None)
    if not isinstance(base_url, str):
        return {}
    parts = urlsplit(base_url)
    out: dict[str, Any] = {}
    if parts.hostname:
        out["server.address"] = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        out["server.port"] = port
    return out


def _wire_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Messages in the conventions' shape: role, parts (text, tool calls, tool results)."""
    out = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        if m.role == "tool":
            parts.append({"type": "tool_call_response", "id": m.tool_call_id, "response": m.text})
        elif m.text:
            parts.append({"type": "text", "content": m.text})
        for call in m.tool_calls or ():
            try:
                arguments: Any = json.loads(call.arguments) if call.arguments else {}
            except ValueError:
                arguments = call.arguments
            parts.append(
                {"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}
            )
        out.append({"role": m.role, "parts": parts})
    return out


def _start(request: OutgoingRequest, context: CallContext) -> _Call:
    params = request.params
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": _settings.provider_name,
        "gen_ai.request.model": request.model,
        "convkit.purpose": context.purpose,
    }
    if context.thread_id:
        attributes["gen_ai.conversation.id"] = context.thread_id
    for key, name in _REQUEST_PARAMS.items():
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes.setdefault(name, value)
    stop = params.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attributes["gen_ai.request.stop_sequences"] = tuple(stop)
    n = params.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attributes["gen_ai.request.choice.count"] = n
    attributes.update(_server(context))
    call = _Call(
        name=f"chat {request.model}",
        attributes=attributes,
        start_ns=time.time_ns(),
        start=time.perf_counter(),
        parent=otel_context.get_current(),
        stream=False,
    )
    if _capture(context):
        call.input_messages = json.dumps(_wire_messages(request.messages), ensure_ascii=False)
    return call


def _finish_reasons(response: ChatResponse) -> tuple[str, ...]:
    if response.choices:
        return tuple(c.finish_reason for c in response.choices if c.finish_reason)
    return (response.finish_reason,) if response.finish_reason else ()


def _end(
    call: _Call,
    *,
    response: ChatResponse | None = None,
    error_type: str | None = None,
    capture: bool = False,
    end: tuple[int, float] | None = None,
) -> None:
    end_ns, end_perf = end if end is not None else (time.time_ns(), time.perf_counter())
    attributes = dict(call.attributes)
    usage: Usage | None = None
    if response is not None:
        if response.id:
            attributes["gen_ai.response.id"] = response.id
        if response.model:
            attributes["gen_ai.response.model"] = response.model
        reasons = _finish_reasons(response)
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        usage = response.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if capture:
            if call.input_messages is not None:
                attributes["gen_ai.input.messages"] = call.input_messages
            output = _wire_messages([response.message])
            for item, reason in zip(output, reasons or (None,), strict=False):
                if reason:
                    item["finish_reason"] = reason
            attributes["gen_ai.output.messages"] = json.dumps(output, ensure_ascii=False)
    if error_type is not None:
        attributes["error.type"] = error_type
    span = _tracer().start_span(
        call.name,
        context=call.parent,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=call.start_ns,
    )
    if error_type is not None:
        span.set_status(Status(StatusCode.ERROR, error_type))
    span.end(end_time=end_ns)

    metric_attributes = {
        k: v
        for k, v in attributes.items()
        if k
        in (
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "server.address",
            "server.port",
            "error.type",
        )
    }
    instruments = _instruments()
    instruments.duration.record(max(0.0, end_perf - call.start), metric_attributes)
    if call.stream and call.first_chunk is not None:
        instruments.first_chunk.record(max(0.0, call.first_chunk - call.start), metric_attributes)
    if usage is not None:
        for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
            instruments.tokens.record(count, {**metric_attributes, "gen_ai.token.type": kind})


# --------------------------------------------------------------------------- hooks


@hookimpl(wrapper=True)
def prepare_request(context: CallContext) -> Generator[None, Any, Any]:
    """A new turn or follow-up: end what the previous call left open (an abandoned stream)."""
    _flush(_state(context))
    return (yield)


@hookimpl(wrapper=True)
def finalize_request(request: OutgoingRequest, context: CallContext) -> Generator[None, Any, Any]:
    """Start the call's clock once every plugin has edited the request and none answered it."""
    answer = yield
    state = _state(context)
    _flush(state)
    if answer is None:
        state["call"] = _start(request, context)
    return answer


@hookimpl(tryfirst=True)
def wrap_stream(request: ChatRequest, context: CallContext) -> FirstChunk | None:
    """The call is on the wire: for a stream, a pass-through middleware notes the first chunk.

    ``tryfirst``, so it sees the server's raw chunks before any other middleware.
    """
    call: _Call | None = _state(context).get("call")
    if call is None:
        return None  # answered by a plugin: no call, no span
    call.sent = True
    if not request.params.get("stream"):
        return None
    call.stream = True
    return FirstChunk(call)


@hookimpl(tryfirst=True)
def process_response(response: ChatResponse, context: CallContext) -> None:
    """End the call's span with the response as the server sent it (before replacements)."""
    call: _Call | None = _state(context).pop("call", None)
    if call is None or not call.sent:
        return
    _end(call, response=response, capture=_capture(context))


@hookimpl
def request_failed(error: ConvkitError, context: CallContext) -> None:
    """End the call's span with ``error.type`` (the error's class name)."""
    call: _Call | None = _state(context).pop("call", None)
    if call is None:
        return
    _end(call, error_type=type(error).__name__, end=call.partial_end)


@hookimpl
def turn_stored(messages: Sequence[StoredMessage], context: CallContext) -> None:
    """A stream cut short was stored: note when it ended (an error or the next call ends it)."""
    call: _Call | None = _state(context).get("call")
    if call is not None and call.sent and any(m.status == "incomplete" for m in messages):
        call.partial_end = (time.time_ns(), time.perf_counter())


class FirstChunk:
    """Pure pass-through stream middleware: notes when the first chunk arrived, changes nothing."""

    def __init__(self, call: _Call) -> None:
        self._call = call

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        """Pass ``chunk`` on; the first time, note the time."""
        if self._call.first_chunk is None:
            self._call.first_chunk = time.perf_counter()
        return [chunk]

    def close(self) -> list[ChatChunk]:
        """Nothing is held back."""
        return []
