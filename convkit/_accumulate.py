"""The stream accumulator: chunks in, the response a non-streaming call would return out (private).

Served as :class:`convkit.chat.StreamAccumulator`. Sans-IO; the chunk's shape is checked by
:func:`convkit.chat.check_chunk` before it is merged, so merging trusts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from convkit._wire import copy_json
from convkit.chat import (
    DELTA_FIELDS,
    ChatChunk,
    ChatResponse,
    Choice,
    _tool_call_fields,
    _usage,
    check_chunk,
)
from convkit.messages import Message, ToolCall, Usage

__all__ = ["StreamAccumulator"]

# Per-chunk noise that means nothing for the assembled response.
_CHUNK_SKIP = frozenset({"id", "model", "created", "choices", "usage", "object", "obfuscation"})


class _ToolCallState:
    __slots__ = ("args", "id", "name", "type")

    def __init__(self) -> None:
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.args: list[str] = []


class _ChoiceState:
    __slots__ = (
        "calls",
        "content",
        "extra",
        "fields",
        "finish",
        "logprobs",
        "refusal",
        "role",
        "slots",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] | None = None
        self.refusal: list[str] | None = None
        self.calls: list[_ToolCallState] = []
        # wire index -> position in ``calls`` of the call currently receiving fragments
        self.slots: dict[int, int] = {}
        self.finish: str | None = None
        self.extra: dict[str, Any] = {}
        # Modeled scalar fields a delta carried (``name``): the first value is kept.
        self.fields: dict[str, Any] = {}
        self.logprobs: dict[str, Any] | None = None

    def add_tool_calls(self, items: list[Any]) -> None:
        for position, tc in enumerate(items):
            self.add_tool_call(*_tool_call_fields(tc, position))

    def add_tool_call(
        self, index: int, call_id: str | None, kind: str | None, name: str | None, args: str | None
    ) -> None:
        pos = self.slots.get(index)
        if pos is not None and call_id and self.calls[pos].id and call_id != self.calls[pos].id:
            # A new id at an index already in use: some servers (Ollama) number every call of a
            # parallel batch 0; treat it as the next call rather than corrupting the first.
            pos = None
        if pos is None and index < 0 and self.calls and not call_id:
            # No index on the wire and no new id: the fragment continues the latest call.
            pos = len(self.calls) - 1
        if pos is None:
            pos = len(self.calls)
            self.calls.append(_ToolCallState())
        self.slots[index] = pos
        call = self.calls[pos]
        # id, type and name arrive once; servers that repeat them must not double them up.
        if call_id and not call.id:
            call.id = call_id
        if kind and not call.type:
            call.type = kind
        if name and not call.name:
            call.name = name
        if args:
            call.args.append(args)

    def add_logprobs(self, lp: Any) -> None:
        if not isinstance(lp, Mapping):
            return
        if self.logprobs is None:
            self.logprobs = {}
        for key, value in lp.items():
            if isinstance(value, list):
                self.logprobs.setdefault(key, []).extend(value)
            elif key not in self.logprobs:
                self.logprobs[key] = value

    def add_extra(self, key: str, value: Any) -> None:
        old = self.extra.get(key)
        if isinstance(value, str) and isinstance(old, str):
            self.extra[key] = old + value  # reasoning_content and friends stream like content
        else:
            self.extra[key] = value

    def message(self) -> Message:
        calls = tuple(
            ToolCall(
                id=c.id or "",
                name=c.name or "",
                arguments="".join(c.args),
                type=c.type or "function",
            )
            for c in self.calls
        )
        refusal = "".join(self.refusal) if self.refusal is not None else None
        content: str | None
        if self.content is not None:
            content = "".join(self.content)
        elif calls or refusal is not None:
            content = None
        else:
            content = ""  # a stream that ended before any text: still a valid (empty) message
        return Message(
            role="assistant",
            content=content,
            tool_calls=calls or None,
            refusal=refusal,
            extra=self.extra,
            **self.fields,
        )


class StreamAccumulator:
    """Merge stream chunks into the :class:`ChatResponse` a non-streaming call would return.

    Sans-IO: feed it :class:`ChatChunk` values in order; ask for :meth:`response` at any time,
    including after a failure, to get what has arrived so far.

    Content and refusal deltas are concatenated; tool-call fragments are merged by index (id,
    type and name taken once, arguments concatenated, parallel calls kept apart, and a fresh id
    at a reused index starts a new call); the last finish reason wins; the usage chunk
    (``stream_options.include_usage``, empty ``choices``) is kept. Unknown string fields of a
    delta (``reasoning_content``) are concatenated into the message's ``extra``; other unknown
    delta fields keep their latest value. Top-level extras (``system_fingerprint``) are taken
    from the first chunks and the usage chunk.

    Example::

        acc = StreamAccumulator()
        for chunk in chunks:
            acc.feed(chunk)
        final = acc.response()
    """

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self._id = ""
        self._model = ""
        self._created: int | None = None
        self._usage: Usage | None = None
        self._extra: dict[str, Any] = {}
        #: How many chunks have been fed.
        self.chunks = 0

    def feed(self, chunk: ChatChunk) -> None:
        """Add one chunk.

        Raises:
            ResponseFormatError: the chunk is malformed (see :func:`~convkit.chat.check_chunk`);
                the chunks fed before it stay accumulated.
        """
        raw = chunk.raw
        if not chunk.trusted:
            check_chunk(raw)
        self._add(raw)

    def feed_openai(self, obj: Mapping[str, Any]) -> ChatChunk:
        """Add one decoded chunk object and return it as a :class:`ChatChunk`.

        The path the clients take: the object's shape is checked once, then merged, instead
        of being wrapped by :meth:`ChatChunk.from_openai` and checked again by :meth:`feed`.

        Raises:
            ResponseFormatError: as :meth:`feed`.
        """
        check_chunk(obj)
        self._add(obj)
        if type(obj) is dict:
            return ChatChunk(MappingProxyType(obj), trusted=True)
        return ChatChunk(obj)

    def _add(self, raw: Mapping[str, Any]) -> None:
        # ``raw`` has passed check_chunk: every type tested below is known to hold.
        self.chunks += 1
        if not self._id:
            self._id = str(raw.get("id") or "")
            self._model = str(raw.get("model") or "")
            created = raw.get("created")
            self._created = created if type(created) is int else None
        usage = raw.get("usage")
        if usage is not None:
            self._usage = _usage(usage)
        choices = raw.get("choices")
        if self.chunks <= 2 or not choices or usage is not None:
            # Top-level extras (system_fingerprint, Azure's prompt_filter_results) come with the
            # first chunks or the final usage chunk; scanning every chunk would only cost time.
            for key, value in raw.items():
                if key not in _CHUNK_SKIP and key not in self._extra:
                    self._extra[key] = value
        if not choices:
            return
        states = self._choices
        for c in choices:
            index = c.get("index", 0)
            if type(index) is not int:
                index = 0
            state = states.get(index)
            if state is None:
                state = states[index] = _ChoiceState()
            delta = c.get("delta")
            if delta:
                # One pass over the delta's keys: the common delta holds a lone "content".
                for key, value in delta.items():
                    if value is None:
                        continue
                    if key == "content":
                        if state.content is None:
                            state.content = [value]
                        else:
                            state.content.append(value)
                    elif key == "tool_calls":
                        state.add_tool_calls(value)
                    elif key == "role":
                        state.role = value
                    elif key == "refusal":
                        if state.refusal is None:
                            state.refusal = [value]
                        else:
                            state.refusal.append(value)
                    elif key in DELTA_FIELDS:
                        state.fields.setdefault(key, value)
                    else:
                        state.add_extra(key, value)
            finish = c.get("finish_reason")
            if finish is not None:
                state.finish = finish
            logprobs = c.get("logprobs")
            if logprobs is not None:
                state.add_logprobs(logprobs)

    def response(self) -> ChatResponse:
        """Return the response assembled so far (safe to call at any time, any number of times)."""
        states = self._choices or {0: _ChoiceState()}
        choices = []
        for index in sorted(states):
            state = states[index]
            extra: dict[str, Any] = {}
            if state.logprobs is not None:
                extra["logprobs"] = copy_json(state.logprobs)
            choices.append(
                Choice(
                    index=index,
                    message=state.message(),
                    finish_reason=state.finish,
                    extra=extra,
                )
            )
        first = choices[0]
        return ChatResponse(
            id=self._id,
            model=self._model,
            created=self._created,
            message=first.message,
            finish_reason=first.finish_reason,
            usage=self._usage,
            choices=tuple(choices),
            extra=copy_json(self._extra),
        )
