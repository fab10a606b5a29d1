"""convkit-cache: an exact-match response cache in the conversation's own database.

The key is what the request would actually send: the model, the fitted messages (system prompt
and summary included, after every other plugin's edits), the tools and the parameters that
change the answer (not ``stream``, ``stream_options``, ``user`` or ``metadata``). A hit is
answered from ``finalize_request`` (``trylast``: it sees every other plugin's edits) without
calling the API; convkit replays it through the stream middleware — as chunks when the caller
streams — and stores it in the thread like any reply, its metadata marking it as cached:
``{"cache": {"hit": true, "entry": "<first 16 hex digits of the key>", "cached_at": "<when the
answer was stored, ISO 8601 UTC>"}}`` beside convkit's own ``answered_by_plugin: true``. A hit
carries no usage: no tokens were spent.

What is cached is the answer as the API sent it, before any stream middleware or
``process_response`` changed it (a ``wrap_stream`` wrapper puts a recorder first in the
pipeline), so a hit goes through the same plugins as a fresh answer — a redaction plugin
restores its placeholders with the hitting conversation's own values. Entries are written on
``process_response`` for user turns and tool follow-ups, which convkit calls only for a
complete answer: errors and broken or abandoned streams are never cached; refusals only if
asked (``cache_refusals``).

Settings (``Conversation(plugin_settings={"cache": {...}})``, over the plugin's options):
``enabled`` (False: no lookups, no writes), ``ttl`` (seconds, None: no expiry),
``max_entries``, ``max_bytes``, ``cache_refusals``. Per call, ``conv.send(text, cache=False)``
skips the cache and ``cache="refresh"`` asks the API and stores the new answer; the
parameter is removed before anything is sent.

Several processes may share one database: the table has one row per key, written with an
upsert, and created with ``CREATE TABLE IF NOT EXISTS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs
from convkit import ChatResponse, Message, hookimpl
from convkit.chat import ChatChunk, ChatRequest, Choice, StreamAccumulator
from convkit.hookspecs import CallContext, OutgoingRequest, RequestDraft

from convkit_cache import db

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "IGNORED_PARAMS",
    "NAME",
    "Cache",
    "Recorder",
    "cache_key",
    "finalize_request",
    "prepare_request",
    "process_response",
    "wrap_stream",
]

log = logging.getLogger("convkit_cache")

#: The plugin's name: its entry point, its settings key, its state key and its call parameter.
NAME = "cache"
#: Parameters left out of the key: they do not change the answer.
IGNORED_PARAMS = frozenset({"stream", "stream_options", "user", "metadata", "store", NAME})
#: Default limits.
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_CACHED_PURPOSES = ("turn", "tool_followup")


# --------------------------------------------------------------------------- the hooks
# Registered through the entry point, the module itself is the plugin: its hooks use a
# default Cache() adjusted by the conversation's plugin settings.


@hookimpl
def prepare_request(draft: RequestDraft, context: CallContext) -> None:
    """Take this call's ``cache`` parameter out of the request (and remember it)."""
    _DEFAULT.prepare_request(draft, context)


@hookimpl(trylast=True)
def finalize_request(request: OutgoingRequest, context: CallContext) -> Any:
    """Answer from the cache, keyed on exactly what would be sent."""
    return _DEFAULT.finalize_request(request, context)


@hookimpl(wrapper=True)
def wrap_stream(
    request: ChatRequest, context: CallContext
) -> Generator[None, list[Any], list[Any]]:
    """Put a recorder first in the pipeline of a call whose answer is to be cached."""
    result = yield
    return _DEFAULT.with_recorder(result, request, context)


@hookimpl
def process_response(response: ChatResponse, request: ChatRequest, context: CallContext) -> Any:
    """Store the complete answer as the API sent it."""
    return _DEFAULT.process_response(response, request, context)


# --------------------------------------------------------------------------- the classes


def _message(m: Any) -> Message:
    return m if isinstance(m, Message) else Message.from_openai(m)


def cache_key(
    model: str,
    messages: Sequence[Any],
    tools: Sequence[Mapping[str, Any]] | None,
    params: Mapping[str, Any],
) -> str:
    """The SHA-256 (hex) of what a request sends that can change its answer.

    Example::

        >>> a = cache_key("m", [Message.user("hi")], None, {"temperature": 0, "stream": True})
        >>> a == cache_key("m", [Message.user("hi")], None, {"temperature": 0})
        True
    """
    body = {
        "model": model,
        "messages": [_message(m).to_openai() for m in messages],
        "tools": list(tools) if tools else None,
        "params": {k: v for k, v in params.items() if k not in IGNORED_PARAMS and k != "tools"},
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _request_key(request: ChatRequest) -> str:
    tools = request.params.get("tools")
    return cache_key(request.model, request.messages, tools, request.params)


class Recorder:
    """Pass-through stream middleware that keeps the raw chunks' sum: the API's own answer."""

    __slots__ = ("_acc",)

    def __init__(self) -> None:
        self._acc = StreamAccumulator()

    def feed(self, chunk: ChatChunk) -> tuple[ChatChunk]:
        """Remember the chunk; pass it on unchanged."""
        self._acc.feed(chunk)
        return (chunk,)

    def close(self) -> tuple[()]:
        """Nothing is held."""
        return ()

    def response(self) -> ChatResponse:
        """What the chunks fed so far add up to."""
        return self._acc.response()


@attrs.frozen
class _Options:
    enabled: bool
    ttl: float | None
    max_entries: int | None
    max_bytes: int | None
    cache_refusals: bool


def _as_limit(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"cache: {name} must be a positive number or None, got {value!r}")
    return value


class Cache:
    """The cache plugin, configured.

    Args:
        ttl: seconds an entry answers for (None: until evicted).
        max_entries: at most this many entries in the database (None: no limit); the oldest
            go first.
        max_bytes: at most this many bytes of cached responses (None: no limit).
        cache_refusals: store answers that are refusals too (default: not).
        clock: the time in seconds (``time.time``); tests pass their own.

    Example::

        conv = Conversation("gpt-4o", plugins=[Cache(ttl=3600)])
        conv.send("What is 2 + 2?")
        Conversation("gpt-4o", plugins=[Cache(ttl=3600)]).send("What is 2 + 2?")  # no call
    """

    def __init__(
        self,
        *,
        ttl: float | None = None,
        max_entries: int | None = DEFAULT_MAX_ENTRIES,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        cache_refusals: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = _Options(
            enabled=True,
            ttl=_as_limit("ttl", ttl),
            max_entries=_as_limit("max_entries", max_entries),
            max_bytes=_as_limit("max_bytes", max_bytes),
            cache_refusals=bool(cache_refusals),
        )
        self.clock = clock

    def options(self, context: CallContext) -> _Options:
        """This plugin's options with the conversation's settings applied."""
        settings = context.settings_for(NAME)
        if not settings:
            return self._base
        unknown = set(settings) - {f.name for f in attrs.fields(_Options)}
        if unknown:
            raise ValueError(f"cache: unknown settings {', '.join(sorted(unknown))}")
        changes = {
            k: _as_limit(k, v)
            for k, v in settings.items()
            if k in ("ttl", "max_entries", "max_bytes")
        }
        for flag in ("enabled", "cache_refusals"):
            if flag in settings:
                changes[flag] = bool(settings[flag])
        return attrs.evolve(self._base, **changes)

    # ---- per-call state

    @staticmethod
    def _state(context: CallContext) -> dict[str, Any]:
        return context.state_for(NAME)

    def _call_choice(self, context: CallContext) -> Any:
        calls = self._state(context).get("calls") or {}
        found = calls.pop(id(context), None)
        if found is None:
            return True
        ref, choice = found
        return choice if ref() is context else True

    # ---- hooks

    @hookimpl
    def prepare_request(self, draft: RequestDraft, context: CallContext) -> None:
        """Take the ``cache`` parameter out of the draft; it is this plugin's, not the API's."""
        if NAME not in draft.params:
            return
        choice = draft.params.pop(NAME)
        if choice not in (True, False, "refresh", None):
            raise ValueError(
                f"cache: the call parameter must be True, False or 'refresh', got {choice!r}"
            )
        calls = self._state(context).setdefault("calls", {})
        for stale in [k for k, (ref, _) in calls.items() if ref() is None]:
            del calls[stale]
        calls[id(context)] = (weakref.ref(context), True if choice is None else choice)

    @hookimpl(trylast=True)
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> Any:
        """A cached answer for exactly this request, or None (then its answer is recorded)."""
        choice = self._call_choice(context)
        request.params.pop(NAME, None)  # in case it came another way than the draft
        if context.purpose not in _CACHED_PURPOSES or choice is False or context.store is None:
            return None
        opts = self.options(context)
        if not opts.enabled:
            return None
        key = cache_key(request.model, request.messages, request.tools, request.params)
        pending = self._state(context).setdefault("pending", {})
        if len(pending) > 64:  # calls that never reached process_response (failed, refitted)
            pending.clear()
        pending[key] = None
        if choice == "refresh":
            return None
        since = None if opts.ttl is None else self.clock() - opts.ttl
        engine, is_async = _engine(context.store)
        if is_async:
            return self._alookup(engine, key, since, pending, context)
        try:
            found = db.run(engine, db.lookup(key, since))
        except Exception as exc:
            log.warning("convkit-cache: lookup failed, calling the API: %s", exc)
            return None
        return self._hit(found, key, pending, context)

    async def _alookup(
        self,
        engine: Any,
        key: str,
        since: float | None,
        pending: dict[str, Any],
        context: CallContext,
    ) -> ChatResponse | None:
        try:
            found = await db.arun(engine, db.lookup(key, since))
        except Exception as exc:
            log.warning("convkit-cache: lookup failed, calling the API: %s", exc)
            return None
        return self._hit(found, key, pending, context)

    @staticmethod
    def _hit(
        found: tuple[str, float] | None, key: str, pending: dict[str, Any], context: CallContext
    ) -> ChatResponse | None:
        if found is None:
            return None
        text, stored_at = found
        try:
            response = ChatResponse.from_openai(json.loads(text))
        except ValueError as exc:
            log.warning("convkit-cache: a cached entry is unreadable, calling the API: %s", exc)
            return None
        pending.pop(key, None)
        # The stored reply says it came from the cache, and from which entry.
        context.reply_metadata[NAME] = {
            "hit": True,
            "entry": key[:16],
            "cached_at": datetime.fromtimestamp(stored_at, timezone.utc).isoformat(),
        }
        return attrs.evolve(response, usage=None)

    @hookimpl(wrapper=True)
    def wrap_stream(
        self, request: ChatRequest, context: CallContext
    ) -> Generator[None, list[Any], list[Any]]:
        """Put a :class:`Recorder` first in the pipeline of a call whose answer is to be cached."""
        result = yield
        return self.with_recorder(result, request, context)

    def with_recorder(
        self, result: list[Any], request: ChatRequest, context: CallContext
    ) -> list[Any]:
        """``wrap_stream``'s middleware with a :class:`Recorder` first, for a call to cache."""
        pending = self._state(context).get("pending")
        if not pending:
            return result
        key = _request_key(request)
        if key not in pending:
            return result
        recorder = Recorder()
        pending[key] = recorder
        return [(NAME, recorder), *result]

    @hookimpl
    def process_response(
        self, response: ChatResponse, request: ChatRequest, context: CallContext
    ) -> Awaitable[None] | None:
        """Store the recorded answer of a completed call (never changes the response)."""
        pending = self._state(context).get("pending")
        if not pending:
            return None
        key = _request_key(request)
        recorder = pending.pop(key, None)
        if not isinstance(recorder, Recorder) or context.store is None:
            return None
        opts = self.options(context)
        raw = recorder.response()
        if not self._cacheable(raw, opts):
            return None
        row = self._row(raw, key)
        if opts.max_bytes is not None and row["size"] > opts.max_bytes:
            return None
        engine, is_async = _engine(context.store)
        expired = None if opts.ttl is None else row["created_at"] - opts.ttl
        op = db.put(
            engine.dialect.name,
            row,
            expired_before=expired,
            max_entries=opts.max_entries,
            max_bytes=opts.max_bytes,
        )
        if is_async:
            return self._aput(engine, op)
        try:
            db.run(engine, op)
        except Exception as exc:
            log.warning("convkit-cache: the answer was not cached: %s", exc)
        return None

    async def _aput(self, engine: Any, op: Any) -> None:
        try:
            await db.arun(engine, op)
        except Exception as exc:
            log.warning("convkit-cache: the answer was not cached: %s", exc)

    @staticmethod
    def _cacheable(response: ChatResponse, opts: _Options) -> bool:
        if response.finish_reason not in ("stop", "tool_calls", "length"):
            return False
        message = response.message
        if message.refusal is not None and not opts.cache_refusals:
            return False
        return bool(message.text) or bool(message.tool_calls) or message.refusal is not None

    def _row(self, response: ChatResponse, key: str) -> dict[str, Any]:
        if not response.choices:
            response = attrs.evolve(
                response,
                choices=(
                    Choice(index=0, message=response.message, finish_reason=response.finish_reason),
                ),
            )
        body = response.to_openai()
        body.pop("usage", None)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return {
            "model": response.model[:255],
            "created_at": float(self.clock()),
            "size": len(text.encode()),
            "response": text,
            "key": key,
        }


def _engine(store: Any) -> tuple[Any, bool]:
    from sqlalchemy.ext.asyncio import AsyncEngine

    engine = store.engine
    return engine, isinstance(engine, AsyncEngine)


_DEFAULT = Cache()
