"""The plugin hooks convkit calls, their markers, and the values they receive.

A plugin is any object (a module, a class, an instance) whose functions are marked with
:data:`hookimpl` and named after a hook below. Every hook is called with keyword arguments, so
an implementation takes only the arguments it needs, in any order::

    from convkit import hookimpl

    @hookimpl
    def prepare_request(draft):
        draft.params.setdefault("temperature", 0.2)

The hooks run around every completions call a conversation makes: user turns, summaries and
tool follow-ups alike (:attr:`CallContext.purpose` says which). An implementation may be
``async def``; the async conversation awaits it, the sync one raises
:class:`~convkit.PluginError` naming the plugin and the hook. A plugin that raises is named in a
:class:`~convkit.PluginError` whose ``__cause__`` is the original exception; each hook's
docstring says what that does to the call. The user's message is stored before any hook runs,
so it is never lost.

The full reference, with the order in which plugins are called, is ``docs/plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import pluggy
from attrs import Factory, define, field, frozen

if TYPE_CHECKING:  # pragma: no cover
    from convkit.chat import ChatChunk, ChatRequest, ChatResponse
    from convkit.context import Summarizer, Window
    from convkit.errors import ConvkitError
    from convkit.messages import Message, Usage
    from convkit.models import ModelInfo
    from convkit.store import StoredMessage

__all__ = [
    "PROJECT",
    "CallContext",
    "OutgoingRequest",
    "Purpose",
    "RequestDraft",
    "StreamMiddleware",
    "count_tokens",
    "finalize_request",
    "hookimpl",
    "hookspec",
    "prepare_request",
    "process_response",
    "register_commands",
    "register_models",
    "request_failed",
    "summarizer",
    "turn_stored",
    "window_fitted",
    "wrap_stream",
]

#: The pluggy project name: entry-point group, marker name and plugin-manager name.
PROJECT = "convkit"

#: Marks a hook specification (convkit's own use).
hookspec = pluggy.HookspecMarker(PROJECT)

#: Marks a hook implementation in a plugin: ``@hookimpl``, ``@hookimpl(tryfirst=True)``,
#: ``@hookimpl(trylast=True)``, ``@hookimpl(wrapper=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Why a completions call is made.
Purpose = Literal["turn", "summary", "tool_followup"]


# --------------------------------------------------------------------------- values


@frozen(kw_only=True)
class CallContext:
    """What every request hook is told about the call it runs around.

    Attributes:
        thread_id: the conversation's thread, or None for a conversation that is not stored.
        model: the model the call is for (as the conversation was asked; a hook may change
            the draft's model, not this).
        purpose: ``"turn"`` (a user turn), ``"summary"`` (folding old messages into the
            summary) or ``"tool_followup"`` (the call after tool results were added).
        store: the conversation's :class:`~convkit.Store` / :class:`~convkit.AsyncStore`, or
            None.
        settings: per-conversation plugin settings, keyed by plugin name
            (``Conversation(..., plugin_settings={"redact": {...}})``); read-only by convention.
        state: a scratch dict that lives as long as the conversation and is shared by every
            call it makes. Keep your data under your plugin's name (:meth:`state_for`).
        conversation: the conversation object itself, or None.
        reply_metadata: entries to store in the metadata of the reply this call produces
            (:attr:`~convkit.store.StoredMessage.metadata`), fresh for every call. Keep them
            under your plugin's name (``context.reply_metadata["cache"] = {"hit": True}``);
            values must be JSON. convkit's own keys (``model``, ``purpose``,
            ``finish_reason``, ``answered_by_plugin``) are never replaced. An entry the store
            would refuse is left out and reported in :attr:`~convkit.Reply.plugin_errors`
            (as a :class:`~convkit.PluginError` naming the entry's key): the reply is stored
            regardless. Summary calls store no reply: what they are given is not kept.

    Example::

        @hookimpl
        def prepare_request(draft, context):
            if context.purpose == "summary":
                return None
            level = context.settings.get("tone", {}).get("level", "plain")
            draft.system.append(Message.system(f"Answer in a {level} tone."))
    """

    thread_id: str | None
    model: str
    purpose: Purpose = "turn"
    store: Any = None
    settings: Mapping[str, Any] = field(factory=dict)
    state: dict[str, Any] = field(factory=dict)
    conversation: Any = None
    reply_metadata: dict[str, Any] = field(factory=dict)

    def settings_for(self, plugin: str) -> Mapping[str, Any]:
        """This conversation's settings for ``plugin`` (an empty mapping when there are none)."""
        found = self.settings.get(plugin)
        return found if isinstance(found, Mapping) else {}

    def state_for(self, plugin: str) -> dict[str, Any]:
        """``plugin``'s scratch dict in :attr:`state`, created empty on first use."""
        found = self.state.get(plugin)
        if found is None:
            found = self.state[plugin] = {}
        return found


@define(kw_only=True)
class RequestDraft:
    """The request before the history is fitted; ``prepare_request`` edits it in place.

    Attributes:
        model: the model to call.
        system: the system (or developer) messages sent first, before the fitted history.
        tools: tool definitions (OpenAI ``tools`` objects), or None.
        params: every other body field (``temperature``, ``max_tokens``, vendor fields).
        headers: extra HTTP headers for this call.

    Example::

        @hookimpl
        def prepare_request(draft):
            draft.headers["x-team"] = "search"
            draft.params["max_tokens"] = min(draft.params.get("max_tokens", 512), 512)
    """

    model: str
    system: list[Message] = Factory(list)
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Factory(dict)
    headers: dict[str, str] = Factory(dict)


@define(kw_only=True)
class OutgoingRequest:
    """The fitted request about to be sent; ``finalize_request`` may edit it in place.

    convkit recounts the messages and tools after the hook: a request that no longer fits the
    budget is refitted or refused, never sent.

    Attributes:
        model: the model to call.
        messages: everything that will be sent, system prompt and summary included.
        tools: tool definitions, or None.
        params: every other body field.
        headers: extra HTTP headers for this call.
    """

    model: str
    messages: list[Message] = Factory(list)
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Factory(dict)
    headers: dict[str, str] = Factory(dict)


@runtime_checkable
class StreamMiddleware(Protocol):
    """What ``wrap_stream`` returns: a pure, stateful filter over one stream's chunks.

    convkit calls :meth:`feed` with every chunk in order and :meth:`close` once at the end of
    the stream. Both return the chunks to pass on (an empty iterable drops or holds back; more
    than one injects). Middleware do no I/O, so one object serves sync and async streams; a
    non-streamed response is replayed through them as chunks, so middleware see every reply.

    Example::

        class Upper:
            def feed(self, chunk):
                return [with_text(chunk, chunk.text.upper())]

            def close(self):
                return []
    """

    def feed(self, chunk: ChatChunk) -> Iterable[ChatChunk]:
        """Take one chunk; return what to pass on in its place (possibly nothing)."""
        ...

    def close(self) -> Iterable[ChatChunk]:
        """The stream ended: return what is still held back (possibly nothing)."""
        ...


# --------------------------------------------------------------------------- request hooks


@hookspec(firstresult=True)
def prepare_request(draft: RequestDraft, context: CallContext) -> ChatResponse | None:
    """Edit the request before the history is fitted, or answer it without calling the API.

    Runs once per completions call, before the window is fitted, so what a plugin adds to the
    system prompt or tools is counted into the budget. Edit ``draft`` in place and return None
    to let the next plugin run. Return a :class:`~convkit.ChatResponse` to answer the call
    yourself: no later ``prepare_request`` runs, nothing is sent, and the answer still goes
    through stream middleware (replayed as chunks), ``process_response`` and storage.

    A plugin that raises aborts the call with :class:`~convkit.PluginError` before anything is
    sent; the user's message is already stored.

    Example::

        @hookimpl
        def prepare_request(draft, context):
            draft.system.append(Message.system("Today is Tuesday."))
    """


@hookspec(firstresult=True)
def finalize_request(request: OutgoingRequest, context: CallContext) -> ChatResponse | None:
    """Make a final edit of the fitted request, or answer it keyed on exactly what is sent.

    Runs after fitting, just before sending. Edits in place (masking a secret in the messages,
    a last header) are recounted: a request over budget is refitted or refused, never sent.
    Return a :class:`~convkit.ChatResponse` to answer without calling the API (a response
    cache: mark it ``trylast`` so it sees every other plugin's edits); later implementations
    do not run.

    A plugin that raises aborts the call with :class:`~convkit.PluginError` before anything is
    sent; the user's message is already stored.

    Example::

        @hookimpl(trylast=True)
        def finalize_request(request, context):
            return CACHE.get(cache_key(request))
    """


@hookspec
def wrap_stream(request: ChatRequest, context: CallContext) -> StreamMiddleware | None:
    """Return a middleware for this call's chunks (see :class:`StreamMiddleware`), or None.

    Runs once per completions call, streamed or not, after the request is final. The host
    nests the middleware returned: the first one in call order (``tryfirst`` plugins first)
    is fed the server's raw chunks and each one's output feeds the next. What the caller
    iterates, what is stored and what ``process_response`` sees is the last one's output.

    A plugin that raises here, or a middleware that raises in ``feed``/``close``, ends the
    call with :class:`~convkit.PluginError`; what had come out of the pipeline is stored,
    marked incomplete.

    Example::

        @hookimpl
        def wrap_stream(request, context):
            return Upper() if context.purpose == "turn" else None
    """


@hookspec
def process_response(
    response: ChatResponse, request: ChatRequest, context: CallContext
) -> ChatResponse | None:
    """See the complete response, and optionally replace it, before it is stored and returned.

    Implementations are chained in call order: one that returns a response replaces it for
    the next implementation, for storage and for the caller; one that returns None passes it
    on unchanged.

    A plugin that raises ends the call with :class:`~convkit.PluginError`; the response as it
    was before that plugin is stored, marked incomplete.

    Example::

        @hookimpl
        def process_response(response):
            if "forbidden" in response.text:
                return attrs.evolve(response, message=Message.assistant("[withheld]"))
    """


# --------------------------------------------------------------------------- observers


@hookspec
def turn_stored(
    messages: Sequence[StoredMessage], usage: Usage | None, context: CallContext
) -> None:
    """Observe the rows a call stored (the assistant reply, tool messages) and its usage.

    Runs after the rows are committed. The return value is ignored. A plugin that raises
    loses nothing: the error is logged (logger ``convkit.plugins``) and reported on the
    turn's result, and the other observers still run.

    Example::

        @hookimpl
        def turn_stored(usage, context):
            if usage is not None:
                COSTS[context.thread_id] += usage.total_tokens
    """


@hookspec
def request_failed(
    error: ConvkitError, attempts: int, request: ChatRequest | None, context: CallContext
) -> None:
    """Observe a completions call that failed after ``attempts`` tries.

    ``error`` is the typed error the caller is about to get (a
    :class:`~convkit.TransportError` subclass, a :class:`~convkit.PluginError`, ...);
    ``request`` is None when the call failed before a request was built. The return value is
    ignored; a plugin that raises is logged and the original error is raised.

    Example::

        @hookimpl
        def request_failed(error, attempts):
            log.warning("completion failed after %d attempts: %s", attempts, error)
    """


@hookspec
def window_fitted(window: Window, context: CallContext) -> None:
    """Observe the fitted window: what is sent, what was dropped, whether it was summarized.

    Runs after fitting and before ``finalize_request``. The return value is ignored; a plugin
    that raises is logged and the call goes on.

    Example::

        @hookimpl
        def window_fitted(window):
            if window.dropped:
                print(f"{len(window.dropped)} messages left out")
    """


# --------------------------------------------------------------------------- single answers


@hookspec(firstresult=True)
def count_tokens(
    model: str, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None
) -> int | None:
    """Count the prompt tokens of ``messages`` (and ``tools``) for a model tiktoken does not know.

    The first non-None answer is used; return None for models you do not count. A plugin that
    raises makes the count fail with :class:`~convkit.PluginError`.

    Example::

        @hookimpl
        def count_tokens(model, messages, tools):
            if model.startswith("llama"):
                return llama_count(messages, tools)
    """


@hookspec(firstresult=True)
def summarizer(model: str, context: CallContext) -> Summarizer | None:
    """Return the summarizer a conversation should use for ``model``, or None.

    The first non-None answer replaces the default summarizer (a callable taking a
    :class:`~convkit.SummaryRequest` and returning the summary text, or an awaitable of it).
    A plugin that raises here fails the fit's summary step, which falls back to trimming.

    Example::

        @hookimpl
        def summarizer(model, context):
            return lambda request: " / ".join(m.text[:40] for m in request.messages)
    """


@hookspec
def register_models(register: Callable[[ModelInfo], None]) -> None:
    """Register models (context window, output limit, encoding) when the plugin is loaded.

    Called once per plugin, when it is loaded (entry point, ``register_plugin()``) or first
    used by a conversation. A plugin that raises is reported like a plugin that failed to
    import; the models already registered stay.

    Example::

        @hookimpl
        def register_models(register):
            register(ModelInfo(name="acme-70b", context_window=32_768, max_output_tokens=4_096,
                               encoding="cl100k_base", exact=False, safety_margin=0.1))
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``convkit`` command.

    ``cli`` is the argparse subparsers object: call ``cli.add_parser(...)`` and set a
    ``handler`` default (a function taking the parsed arguments and returning an exit code).
    A plugin that raises is reported on stderr and the other commands still work.

    Example::

        @hookimpl
        def register_commands(cli):
            hello = cli.add_parser("hello", help="say hello")
            hello.set_defaults(handler=lambda args: print("hello") or 0)
    """
