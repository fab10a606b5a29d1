"""``Conversation`` and ``AsyncConversation``: a whole turn, done right, over one sans-IO core.

Both classes are thin shells over :class:`convkit.turn.TurnCore`, which decides everything a
turn does and yields the effects to perform (store calls, hook calls, HTTP requests, chunks to
hand to the caller). The sync shell performs them with a :class:`~convkit.store.Store` and a
:class:`~convkit.ChatClient`, the async shell with an :class:`~convkit.store.AsyncStore` and an
:class:`~convkit.AsyncChatClient`; plugins are called through one
:class:`~convkit.plugins.PluginHost`.

Example::

    from convkit import Conversation

    with Conversation("gpt-4o", system="You are brief.") as conv:
        reply = conv.send("Where is my order?")
        print(reply.text, reply.window.prompt_tokens)
        for delta in conv.stream("And the refund?"):
            print(delta, end="")
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from convkit.context import ContextPolicy
from convkit.errors import InvalidRequestError
from convkit.turn import (
    Calibration,
    CloseStream,
    Complete,
    Emit,
    HookCall,
    NextChunk,
    OpenStream,
    Reply,
    RunTool,
    StoreCall,
    StreamAbandoned,
    StreamResult,
    Summarize,
    TurnCore,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from convkit.client import AsyncChatClient, ChatClient
    from convkit.plugins import PluginHost
    from convkit.store import AsyncStore, Store, StoredMessage

__all__ = ["AsyncConversation", "AsyncReplyStream", "Conversation", "ReplyStream"]

log = logging.getLogger("convkit.conversation")

#: How many tool-handler rounds a turn runs before returning the reply as it stands.
DEFAULT_MAX_TOOL_ROUNDS = 8


class _Base:
    """What both shells share: building the core, the plugin host, and the properties."""

    _core: TurnCore
    _host: PluginHost

    def _setup(
        self,
        model: str,
        *,
        thread: str | None,
        system: str | None,
        policy: ContextPolicy | None,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None,
        plugins: Sequence[object],
        plugin_settings: Mapping[str, Any] | None,
        max_tool_rounds: int,
        summarize_after_reply: bool,
        params: Mapping[str, Any],
    ) -> None:
        if thread is not None and (not isinstance(thread, str) or not thread):
            raise InvalidRequestError("thread must be a thread id (text) or None", param="thread")
        if tool_handlers is not None and not isinstance(tool_handlers, Mapping):
            raise InvalidRequestError(
                "tool_handlers must map tool names to callables", param="tool_handlers"
            )
        if plugin_settings is not None and not isinstance(plugin_settings, Mapping):
            raise InvalidRequestError(
                "plugin_settings must map plugin names to their settings", param="plugin_settings"
            )
        if isinstance(plugins, (str, bytes)) or not isinstance(plugins, Sequence):
            raise InvalidRequestError("plugins must be a list of plugin objects", param="plugins")
        if policy is not None and not isinstance(policy, ContextPolicy):
            raise InvalidRequestError(
                f"policy must be a ContextPolicy (TrimOldest, Summarize...), got "
                f"{type(policy).__name__}",
                param="policy",
            )
        for plugin in plugins:
            if not any(hasattr(getattr(plugin, n, None), "convkit_impl") for n in dir(plugin)):
                raise InvalidRequestError(
                    f"{plugin!r} implements no convkit hook (mark its functions with "
                    "@convkit.hookimpl)",
                    param="plugins",
                )
        from convkit.plugins import PluginHost

        self._core = TurnCore(
            model,
            thread_id=thread if thread is not None else uuid.uuid4().hex,
            resume=thread is not None,
            system=system,
            policy=policy,
            tools=tools,
            tool_handlers=tool_handlers,
            params=params,
            max_tool_rounds=max_tool_rounds,
            summarize_after_reply=summarize_after_reply,
            plugin_settings=plugin_settings,
        )
        self._core.shell = self
        self._host = PluginHost(plugins)

    def _attach(
        self,
        model: str,
        store: Any,
        store_cls: type,
        client: Any,
        client_cls: type,
        *,
        base_url: str | None,
        api_key: str | None,
    ) -> tuple[Any, Any]:
        """Use the store and client given, or create (and own) them."""
        if client is not None and not isinstance(client, client_cls):
            raise InvalidRequestError(
                f"client must be a {client_cls.__name__}, got {type(client).__name__}",
                param="client",
            )
        if client is not None and (base_url is not None or api_key is not None):
            raise InvalidRequestError("give either client= or base_url=/api_key=")
        self._owns_store = not isinstance(store, store_cls)
        if self._owns_store:
            from sqlalchemy.engine import URL

            if store is not None and not isinstance(store, (str, URL)):
                raise InvalidRequestError(
                    f"store must be a {store_cls.__name__}, a database URL or None, got "
                    f"{type(store).__name__}",
                    param="store",
                )
            store = store_cls(store, model=model)
        self._owns_client = client is None
        if client is None:
            client = client_cls(base_url=base_url, api_key=api_key)
        self._core.store = store
        self._streams: list[Any] = []
        self._live: Any = None  # the reply stream a caller may have left open
        return store, client

    @property
    def model(self) -> str:
        """The model every turn is sent to."""
        return self._core.model

    @model.setter
    def model(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise InvalidRequestError("model must be a non-empty string", param="model")
        core = self._core
        core.model = value
        from convkit.context import TrimOldest
        from convkit.tokens import TokenCounter

        core.counter = TokenCounter(value)
        if type(core.policy) is TrimOldest:
            core.policy = TrimOldest(
                value,
                max_prompt_tokens=core.policy.max_prompt_tokens,
                truncate=core.policy.truncate,
                counter=core.counter,
            )

    @property
    def thread_id(self) -> str:
        """The thread this conversation reads and writes (changes on regenerate and edit)."""
        return self._core.thread_id

    @property
    def system(self) -> str | None:
        """The system prompt sent with every turn (stored with the thread)."""
        return self._core.system

    @property
    def calibration(self) -> Calibration:
        """Predicted vs reported prompt tokens, per model (:class:`convkit.turn.Calibration`)."""
        return self._core.calibration

    @property
    def policy(self) -> ContextPolicy:
        """The context policy fitting every request."""
        return self._core.policy

    @property
    def plugins(self) -> PluginHost:
        """The plugins this conversation calls (global ones and its own)."""
        return self._host

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, thread={self.thread_id!r})"


# --------------------------------------------------------------------------- sync


class ReplyStream:
    """The text deltas of a streamed turn, in order; then :attr:`reply`.

    Iterate it (or use it as a context manager and iterate inside). Leaving early — ``break``,
    an exception, closing it — stores what arrived as an ``incomplete`` reply.

    Example::

        with conv.stream("Tell me more") as deltas:
            for delta in deltas:
                print(delta, end="", flush=True)
        deltas.reply.incomplete  # False when the stream ran to its end
    """

    def __init__(self, run: Generator[str, None, Reply], owner: Any = None) -> None:
        self._run = run
        self._owner = owner
        self._reply: Reply | None = None
        self._parts: list[str] = []
        self._done = False

    def _ended(self) -> None:
        self._done = True
        if self._owner is not None and getattr(self._owner, "_live", None) is self:
            self._owner._live = None

    def __iter__(self) -> ReplyStream:
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        try:
            delta = next(self._run)
        except StopIteration as stop:
            self._ended()
            self._reply = stop.value
            raise StopIteration from None
        except BaseException:
            self._ended()
            raise
        self._parts.append(delta)
        return delta

    def __enter__(self) -> ReplyStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream; what arrived is stored as an incomplete reply."""
        if not self._done:
            self._ended()
            self._run.close()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def reply(self) -> Reply:
        """The finished turn's :class:`~convkit.turn.Reply`.

        Raises:
            RuntimeError: the stream has not run to its end.
        """
        if self._reply is None:
            raise RuntimeError("the stream has not finished: iterate it to the end first")
        return self._reply


class Conversation(_Base):
    """A conversation on one stored thread: each call does a whole turn, right.

    A turn stores the user's message first (nothing is lost if anything later fails), reads
    the window from the store once with the policy's read plan, fits it (trimming, or
    summarizing after the reply), calls the plugin hooks, sends the request (streamed or not),
    stores the reply with its usage, runs tool handlers (bounded), and records how the
    prompt-token count compared with what the API reported.

    Args:
        model: the model every turn is sent to.
        store: a :class:`~convkit.store.Store`, a database URL, or None for the embedded SQLite
            default (a store created here is closed by :meth:`close`).
        thread: None starts a new thread; an id resumes that thread (any process, any time).
        system: the system prompt, sent every turn and stored with the thread (a resume keeps
            it; giving one on resume replaces it).
        policy: a :class:`~convkit.ContextPolicy`; None trims the oldest turns for the model.
            A :class:`~convkit.Summarize` without a summarizer summarizes through this
            conversation's client (and plugins), after the reply.
        client: a :class:`~convkit.ChatClient`; None creates one from ``base_url``/``api_key``
            (or ``OPENAI_BASE_URL``/``OPENAI_API_KEY``), closed by :meth:`close`.
        base_url, api_key: for the client created here.
        tools: OpenAI tool definitions, counted and sent every turn.
        tool_handlers: ``{name: f(arguments: dict) -> str | dict}``; when every call of a reply
            has a handler, the turn runs them, stores the results and continues, at most
            ``max_tool_rounds`` times. A handler that raises gives the model an error result.
        plugins: plugins for this conversation only (beside the globally loaded ones).
        plugin_settings: per-plugin settings handed to hooks (``{"redact": {...}}``).
        max_tool_rounds: bound on tool-handler rounds per turn (default 8).
        summarize_after_reply: with a ``Summarize`` policy, fold old turns into the summary
            after the reply is returned (the default), never delaying the first token.
        params: default request parameters (``temperature``, ``max_tokens``...), checked now.

    Example::

        conv = Conversation("gpt-4o", system="You are brief.", temperature=0.2)
        reply = conv.send("Where is my order?")
        reply.text, reply.usage, reply.window.dropped
        for delta in conv.stream("And the refund?"):
            print(delta, end="")
        conv.close()
    """

    _store: Store
    _client: ChatClient

    def __init__(
        self,
        model: str,
        *,
        store: Store | str | URL | None = None,
        thread: str | None = None,
        system: str | None = None,
        policy: ContextPolicy | None = None,
        client: ChatClient | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
        plugins: Sequence[object] = (),
        plugin_settings: Mapping[str, Any] | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        summarize_after_reply: bool = True,
        **params: Any,
    ) -> None:
        self._setup(
            model,
            thread=thread,
            system=system,
            policy=policy,
            tools=tools,
            tool_handlers=tool_handlers,
            plugins=plugins,
            plugin_settings=plugin_settings,
            max_tool_rounds=max_tool_rounds,
            summarize_after_reply=summarize_after_reply,
            params=params,
        )
        from convkit.client import ChatClient
        from convkit.store import Store

        self._store, self._client = self._attach(
            model, store, Store, client, ChatClient, base_url=base_url, api_key=api_key
        )

    @property
    def store(self) -> Store:
        """The store the thread lives in."""
        return self._store

    @property
    def client(self) -> ChatClient:
        """The client requests go through."""
        return self._client

    def __enter__(self) -> Conversation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the store and client this conversation created (not ones it was given).

        A stream still open is closed first (what arrived is stored as incomplete).
        """
        self._settle()
        if self._owns_client:
            self._client.close()
        if self._owns_store:
            self._store.close()

    def _settle(self) -> None:
        """Close a stream left open, so its partial reply is stored before anything else."""
        live = getattr(self, "_live", None)
        if live is not None:
            live.close()
        self._live = None

    def _do(self, steps: Generator[Any, Any, Any]) -> Any:
        self._settle()
        return self._finish(self._run(steps))

    # ---- turns

    def send(self, content: Any = None, **params: Any) -> Reply:
        """Do one turn: store ``content`` as the user's message, answer it, return the reply.

        ``content`` is text, a :class:`~convkit.Message`, a wire dict or a list of content
        parts; None continues the thread as it stands (after :meth:`add_tool_result`).
        ``params`` override the default request parameters for this turn.

        Raises:
            InvalidMessageError: bad content (nothing is stored).
            ContextOverflowError: even the newest turn does not fit the budget.
            TransportError: the call failed (the user's message stays stored).
        """
        reply: Reply = self._do(self._core.turn(content, params, stream=False))
        return reply

    def stream(self, content: Any = None, **params: Any) -> ReplyStream:
        """Like :meth:`send`, streaming: iterate the result for text deltas, in order.

        The user's message is checked and stored now; the request is sent when the stream is
        first iterated. Any later operation on the conversation closes a stream left open.
        """
        call_params = self._do(self._core.accept(content, params))
        stream = ReplyStream(self._run(self._core.respond(call_params, stream=True)), self)
        self._live = stream
        return stream

    def regenerate(self, **params: Any) -> Reply:
        """Answer the newest user message again, on a fork of the thread.

        :attr:`thread_id` moves to the fork; the previous answer stays on the thread it was on.
        """
        reply: Reply = self._do(self._core.regenerate(params, stream=False))
        return reply

    def edit(self, seq: int, content: Any, **params: Any) -> Reply:
        """Fork the thread before user message ``seq``, put ``content`` there, and answer it.

        :attr:`thread_id` moves to the fork; the original thread keeps its messages.
        """
        reply: Reply = self._do(self._core.edit(seq, content, params, stream=False))
        return reply

    def add_tool_result(self, tool_call_id: str, content: Any) -> StoredMessage:
        """Store the result of a pending tool call; then :meth:`send` with no content continues.

        Raises:
            InvalidRequestError: no pending call has that id (nothing is stored).
        """
        result: StoredMessage = self._do(self._core.add_tool_result(tool_call_id, content))
        return result

    def history(self, limit: int | None = 50) -> list[StoredMessage]:
        """The newest ``limit`` stored messages, oldest first (None: the whole thread)."""
        result: list[StoredMessage] = self._do(self._core.history(limit))
        return result

    def set_system(self, system: str | None) -> None:
        """Change the system prompt for later turns (stored with the thread)."""
        self._do(self._core.set_system(system))

    # ---- the driver

    @staticmethod
    def _finish(run: Generator[str, None, Any]) -> Any:
        while True:
            try:
                next(run)
            except StopIteration as stop:
                return stop.value

    def _run(self, steps: Generator[Any, Any, Any]) -> Generator[str, None, Any]:
        """Perform ``steps``' effects, yielding its text deltas to the caller."""
        try:
            effect = next(steps)
            while True:
                if type(effect) is Emit:
                    try:
                        yield effect.text
                    except GeneratorExit:
                        self._abandon(steps, StreamAbandoned("the caller left the stream"))
                        raise
                    except BaseException:
                        self._abandon(steps, StreamAbandoned("the stream was interrupted"))
                        raise
                    effect = steps.send(None)
                    continue
                try:
                    result = self._perform(effect)
                except Exception as exc:
                    effect = steps.throw(exc)
                except BaseException:  # KeyboardInterrupt mid-request: keep what arrived
                    self._abandon(steps, StreamAbandoned("the stream was interrupted"))
                    raise
                else:
                    effect = steps.send(result)
        except StopIteration as stop:
            return stop.value
        finally:
            self._close_streams()

    def _abandon(self, steps: Generator[Any, Any, Any], why: StreamAbandoned) -> None:
        """Let the turn store what arrived, performing its remaining effects (no more text)."""
        try:
            effect = steps.throw(why)
            while True:
                if type(effect) is Emit:
                    effect = steps.send(None)
                    continue
                try:
                    result = self._perform(effect)
                except Exception as exc:
                    effect = steps.throw(exc)
                else:
                    effect = steps.send(result)
        except StopIteration:
            pass
        except StreamAbandoned:
            pass
        except Exception as exc:  # storing the partial failed: report, the caller's exit wins
            log.warning("could not store the interrupted reply: %s: %s", type(exc).__name__, exc)
        finally:
            steps.close()

    def _close_streams(self) -> None:
        while self._streams:
            stream = self._streams.pop()
            try:
                stream.close()
            except Exception:  # pragma: no cover - closing never matters more than the result
                log.debug("closing a stream failed", exc_info=True)

    def _perform(self, effect: Any) -> Any:
        kind = type(effect)
        if kind is StoreCall:
            return getattr(self._store, effect.method)(*effect.args, **effect.kwargs)
        if kind is HookCall:
            return self._hook(effect)
        if kind is Complete:
            return self._client.complete_request(effect.request)
        if kind is OpenStream:
            stream = self._client.stream_request(effect.request, accumulate=effect.accumulate)
            self._streams.append(stream)
            stream.__enter__()
            return stream
        if kind is StreamResult:
            return effect.handle.partial
        if kind is NextChunk:
            return next(effect.handle, None)
        if kind is CloseStream:
            if effect.handle in self._streams:
                self._streams.remove(effect.handle)
            effect.handle.close()
            return None
        if kind is RunTool:
            return _sync_result(effect.handler(effect.arguments), "a tool handler")
        if kind is Summarize:
            return _sync_result(effect.summarizer(effect.request), "the summarizer")
        raise TypeError(f"unknown effect {effect!r}")  # pragma: no cover

    def _hook(self, effect: HookCall) -> Any:
        host, kwargs, mode = self._host, dict(effect.kwargs), effect.mode
        if mode == "first":
            return host.first_answer(effect.name, **kwargs)
        if mode == "chain":
            return host.process_response(**kwargs)
        if mode == "observe":
            return host.notify(effect.name, **kwargs)
        if mode == "middleware":
            return host.middleware(**kwargs)
        return host.call(effect.name, **kwargs)


def _sync_result(value: Any, what: str) -> Any:
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise InvalidRequestError(f"{what} is async: use AsyncConversation")
    return value


# --------------------------------------------------------------------------- async


class AsyncReplyStream:
    """The text deltas of a streamed async turn (``async for``); then :attr:`reply`.

    The user's message is stored when the stream is first iterated, or closed unstarted.
    Leaving early (``break``, an exception, cancellation, ``aclose()``) stores what arrived as
    an ``incomplete`` reply; any later operation on the conversation closes a stream left open.

    Example::

        async with conv.stream("Tell me more") as deltas:
            async for delta in deltas:
                print(delta, end="")
        deltas.reply
    """

    def __init__(self, owner: AsyncConversation, content: Any, params: Mapping[str, Any]) -> None:
        self._owner = owner
        self._content = content
        self._params = params
        self._run: Any = None
        self._holder: list[Any] = []
        self._parts: list[str] = []
        self._started = False
        self._done = False

    def _ended(self) -> None:
        self._done = True
        if self._owner._live is self:
            self._owner._live = None

    async def _start(self) -> None:
        self._started = True
        owner = self._owner
        await owner._settle(keep=self)
        call_params = await owner._finish(owner._core.accept(self._content, self._params))
        self._run = owner._run(owner._core.respond(call_params, stream=True), self._holder)

    def __aiter__(self) -> AsyncReplyStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        try:
            if not self._started:
                await self._start()
            delta: str = await self._run.__anext__()
        except BaseException:
            self._ended()
            raise
        self._parts.append(delta)
        return delta

    async def __aenter__(self) -> AsyncReplyStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream; what arrived is stored as an incomplete reply."""
        if self._done:
            return
        self._ended()
        if not self._started:
            self._started = True
            owner = self._owner
            await owner._finish(owner._core.accept(self._content, self._params))
        elif self._run is not None:
            await self._run.aclose()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def reply(self) -> Reply:
        """The finished turn's :class:`~convkit.turn.Reply`.

        Raises:
            RuntimeError: the stream has not run to its end.
        """
        if not self._holder:
            raise RuntimeError("the stream has not finished: iterate it to the end first")
        reply: Reply = self._holder[0]
        return reply


class AsyncConversation(_Base):
    """:class:`Conversation` for asyncio: the same turn, awaited.

    Takes the same arguments, with an :class:`~convkit.store.AsyncStore` and an
    :class:`~convkit.AsyncChatClient`. Hooks and tool handlers may be ``async def``.

    Example::

        async with AsyncConversation("gpt-4o", system="You are brief.") as conv:
            reply = await conv.send("Where is my order?")
            async for delta in conv.stream("And the refund?"):
                print(delta, end="")
    """

    _store: AsyncStore
    _client: AsyncChatClient

    def __init__(
        self,
        model: str,
        *,
        store: AsyncStore | str | URL | None = None,
        thread: str | None = None,
        system: str | None = None,
        policy: ContextPolicy | None = None,
        client: AsyncChatClient | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
        plugins: Sequence[object] = (),
        plugin_settings: Mapping[str, Any] | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        summarize_after_reply: bool = True,
        **params: Any,
    ) -> None:
        self._setup(
            model,
            thread=thread,
            system=system,
            policy=policy,
            tools=tools,
            tool_handlers=tool_handlers,
            plugins=plugins,
            plugin_settings=plugin_settings,
            max_tool_rounds=max_tool_rounds,
            summarize_after_reply=summarize_after_reply,
            params=params,
        )
        from convkit.client import AsyncChatClient
        from convkit.store import AsyncStore

        self._store, self._client = self._attach(
            model, store, AsyncStore, client, AsyncChatClient, base_url=base_url, api_key=api_key
        )

    @property
    def store(self) -> AsyncStore:
        """The store the thread lives in."""
        return self._store

    @property
    def client(self) -> AsyncChatClient:
        """The client requests go through."""
        return self._client

    async def __aenter__(self) -> AsyncConversation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store and client this conversation created (not ones it was given).

        A stream still open is closed first (what arrived is stored as incomplete).
        """
        await self._settle()
        if self._owns_client:
            await self._client.aclose()
        if self._owns_store:
            await self._store.aclose()

    async def _settle(self, keep: Any = None) -> None:
        """Close a stream left open, so its partial reply is stored before anything else."""
        live = self._live
        if live is not None and live is not keep:
            self._live = None
            await live.aclose()

    # ---- turns

    async def send(self, content: Any = None, **params: Any) -> Reply:
        """Do one turn (see :meth:`Conversation.send`)."""
        reply: Reply = await self._do(self._core.turn(content, params, stream=False))
        return reply

    def stream(self, content: Any = None, **params: Any) -> AsyncReplyStream:
        """Like :meth:`send`, streaming: ``async for`` the result for text deltas.

        The content and parameters are checked now; the user's message is stored when the
        stream is first iterated (or closed unstarted).
        """
        self._core.check(content, params)
        stream = AsyncReplyStream(self, content, params)
        self._live = stream
        return stream

    async def regenerate(self, **params: Any) -> Reply:
        """Answer the newest user message again, on a fork (see :meth:`Conversation.regenerate`)."""
        reply: Reply = await self._do(self._core.regenerate(params, stream=False))
        return reply

    async def edit(self, seq: int, content: Any, **params: Any) -> Reply:
        """Fork before user message ``seq``, answer ``content`` (as :meth:`Conversation.edit`)."""
        reply: Reply = await self._do(self._core.edit(seq, content, params, stream=False))
        return reply

    async def add_tool_result(self, tool_call_id: str, content: Any) -> StoredMessage:
        """Store the result of a pending tool call (see :meth:`Conversation.add_tool_result`)."""
        stored: StoredMessage = await self._do(self._core.add_tool_result(tool_call_id, content))
        return stored

    async def history(self, limit: int | None = 50) -> list[StoredMessage]:
        """The newest ``limit`` stored messages, oldest first (None: the whole thread)."""
        found: list[StoredMessage] = await self._do(self._core.history(limit))
        return found

    async def set_system(self, system: str | None) -> None:
        """Change the system prompt for later turns (stored with the thread)."""
        await self._do(self._core.set_system(system))

    # ---- the driver

    async def _do(self, steps: Generator[Any, Any, Any]) -> Any:
        await self._settle()
        return await self._finish(steps)

    async def _finish(self, steps: Generator[Any, Any, Any]) -> Any:
        holder: list[Any] = []
        async for _ in self._run(steps, holder):
            pass
        return holder[0] if holder else None

    async def _run(self, steps: Generator[Any, Any, Any], holder: list[Any]) -> AsyncIterator[str]:
        """Perform ``steps``' effects, yielding its text deltas; its result goes to ``holder``."""
        try:
            effect = next(steps)
            while True:
                if type(effect) is Emit:
                    try:
                        yield effect.text
                    except GeneratorExit:
                        await self._abandon(steps, StreamAbandoned("the caller left the stream"))
                        raise
                    except BaseException:
                        await self._abandon(steps, StreamAbandoned("the stream was interrupted"))
                        raise
                    effect = steps.send(None)
                    continue
                try:
                    result = await self._perform(effect)
                except Exception as exc:
                    effect = steps.throw(exc)
                except BaseException:  # cancelled mid-request: keep what arrived
                    await self._abandon(steps, StreamAbandoned("the stream was cancelled"))
                    raise
                else:
                    effect = steps.send(result)
        except StopIteration as stop:
            holder.append(stop.value)
        finally:
            await self._close_streams()

    async def _abandon(self, steps: Generator[Any, Any, Any], why: StreamAbandoned) -> None:
        try:
            effect = steps.throw(why)
            while True:
                if type(effect) is Emit:
                    effect = steps.send(None)
                    continue
                try:
                    result = await self._perform(effect)
                except Exception as exc:
                    effect = steps.throw(exc)
                else:
                    effect = steps.send(result)
        except (StopIteration, StreamAbandoned):
            pass
        except Exception as exc:
            log.warning("could not store the interrupted reply: %s: %s", type(exc).__name__, exc)
        finally:
            steps.close()

    async def _close_streams(self) -> None:
        while self._streams:
            stream = self._streams.pop()
            try:
                await stream.aclose()
            except Exception:  # pragma: no cover
                log.debug("closing a stream failed", exc_info=True)

    async def _perform(self, effect: Any) -> Any:
        kind = type(effect)
        if kind is StoreCall:
            return await getattr(self._store, effect.method)(*effect.args, **effect.kwargs)
        if kind is HookCall:
            return await self._hook(effect)
        if kind is Complete:
            return await self._client.complete_request(effect.request)
        if kind is OpenStream:
            stream = self._client.stream_request(effect.request, accumulate=effect.accumulate)
            self._streams.append(stream)
            await stream.__aenter__()
            return stream
        if kind is StreamResult:
            return effect.handle.partial
        if kind is NextChunk:
            try:
                return await effect.handle.__anext__()
            except StopAsyncIteration:
                return None
        if kind is CloseStream:
            if effect.handle in self._streams:
                self._streams.remove(effect.handle)
            await effect.handle.aclose()
            return None
        if kind is RunTool:
            return await _maybe_await(effect.handler(effect.arguments))
        if kind is Summarize:
            return await _maybe_await(effect.summarizer(effect.request))
        raise TypeError(f"unknown effect {effect!r}")  # pragma: no cover

    async def _hook(self, effect: HookCall) -> Any:
        host, kwargs, mode = self._host, dict(effect.kwargs), effect.mode
        if mode == "first":
            return await host.afirst_answer(effect.name, **kwargs)
        if mode == "chain":
            return await host.aprocess_response(**kwargs)
        if mode == "observe":
            return await host.anotify(effect.name, **kwargs)
        if mode == "middleware":
            return await host.amiddleware(**kwargs)
        return await host.acall(effect.name, **kwargs)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
