"""Chat-completions requests, responses and stream chunks as frozen values.

Everything here is pure: no sockets, no clocks. :class:`ChatRequest` checks its parameters
before anything is sent (:func:`validate_params`, over the table in :mod:`convkit._params`),
:class:`ChatResponse` and :class:`ChatChunk` are parsed from the wire format, and
:class:`StreamAccumulator` (from :mod:`convkit._accumulate`) turns a sequence of chunks into the
response a non-streaming call would have returned. A chunk's shape is checked by one function,
:func:`check_chunk`, whether it is wrapped on its own or fed to the accumulator.

Example::

    >>> from convkit.chat import ChatChunk, StreamAccumulator
    >>> acc = StreamAccumulator()
    >>> for piece in ("Hel", "lo"):
    ...     acc.feed(ChatChunk.from_openai(
    ...         {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": piece}}]}))
    >>> acc.response().text
    'Hello'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from convkit._params import validate_params
from convkit._wire import EMPTY as _EMPTY
from convkit._wire import JSONValueError
from convkit._wire import copy_json as _copy_json
from convkit._wire import freeze as _freeze
from convkit._wire import type_name as _type_name
from convkit.errors import InvalidMessageError, InvalidRequestError, ResponseFormatError
from convkit.messages import MODELED_KEYS, Message, MessageLike, ToolCall, Usage, as_messages

if TYPE_CHECKING:  # pragma: no cover - served lazily, see __getattr__
    from convkit._accumulate import StreamAccumulator

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChoiceDelta",
    "StreamAccumulator",
    "ToolCallDelta",
    "check_chunk",
    "validate_params",
]


def __getattr__(name: str) -> Any:
    # The accumulator builds ChatResponse values, so its module imports this one; serving it
    # from here on first use keeps the import graph free of cycles.
    if name == "StreamAccumulator":
        from convkit._accumulate import StreamAccumulator

        return StreamAccumulator
    raise AttributeError(f"module 'convkit.chat' has no attribute {name!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------- request


def _messages_converter(value: Iterable[MessageLike]) -> tuple[Message, ...]:
    return tuple(as_messages(value))


def _params_converter(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(validate_params(value))


def _model_validator(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError("model must be a non-empty string", param="model")


@frozen(kw_only=True)
class ChatRequest:
    """One chat-completions request: model, messages and validated parameters.

    ``messages`` accepts :class:`~convkit.Message` values or OpenAI dicts; ``params`` holds every
    other body field (checked by :func:`validate_params`, vendor fields kept).

    Example::

        req = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                          params={"temperature": 0.2})
        body = req.to_openai()    # {"model": ..., "messages": [...], "temperature": 0.2}
    """

    model: str = field(validator=_model_validator)
    messages: tuple[Message, ...] = field(converter=_messages_converter)
    params: Mapping[str, Any] = field(factory=dict, converter=_params_converter)

    def to_openai(self) -> dict[str, Any]:
        """Return the JSON request body (a fresh dict each call)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in self.messages],
        }
        if self.params:
            body.update(_copy_json(self.params))
        return body

    @property
    def stream(self) -> bool:
        """True when the parameters ask for a streamed response."""
        return bool(self.params.get("stream"))


# --------------------------------------------------------------------------- responses


def _message_from_wire(d: Any) -> Message:
    """Build the assistant message of a choice, tolerating what real servers send."""
    if not isinstance(d, Mapping):
        raise ResponseFormatError("a choice's message must be an object", field="message")
    d = dict(d)
    d.setdefault("role", "assistant")
    # Servers send ``"tool_calls": []`` or ``content: null`` with nothing else (for example when
    # max_tokens ran out during reasoning). Such a message is still a valid, empty answer.
    if d.get("tool_calls") == []:
        del d["tool_calls"]
    if (
        d.get("content") is None
        and not d.get("tool_calls")
        and d.get("refusal") is None
        and "function_call" not in d
        and "audio" not in d
    ):
        d["content"] = ""
    try:
        return Message.from_openai(d)
    except InvalidMessageError as exc:
        # Server data, not the caller's: the same problem, reported as a malformed answer.
        raise ResponseFormatError(exc.reason, field=_message_field(exc.field)) from None


def _message_field(inner: str | None) -> str:
    return f"message.{inner}" if inner else "message"


def _finish_reason(value: Any) -> str | None:
    """A wire ``finish_reason``: a string or absent; anything else is a ResponseFormatError.

    The same rule holds for a complete body and for a stream's chunks.
    """
    if value is None or type(value) is str:
        return value
    raise ResponseFormatError(f"'finish_reason' must be a string, got {_type_name(value)}")


def _usage(value: Any) -> Usage | None:
    """A wire ``usage``: an object of token counts or absent; else a ResponseFormatError.

    :meth:`Usage.from_openai` checks counts a caller builds as well as server data, so what it
    raises on ill-typed counts (a list, an object, ``Infinity``) is turned into this module's
    error here, at the one place server counts enter.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ResponseFormatError(f"'usage' must be an object, got {_type_name(value)}")
    try:
        return Usage.from_openai(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ResponseFormatError(f"malformed 'usage': {exc}") from exc


_CHOICE_KEYS = frozenset({"index", "message", "finish_reason"})
_RESPONSE_KEYS = frozenset({"id", "model", "created", "choices", "usage", "object"})


def _extra_without(value: Mapping[str, Any] | None, modeled: frozenset[str]) -> Mapping[str, Any]:
    """Freeze an ``extra`` that must not hold the keys its value models.

    ``to_openai`` writes extras after the fields, so an extra named like a field would replace
    it on the wire (the same rule as :class:`~convkit.Message`'s extras).
    """
    clash = sorted(k for k in value or () if k in modeled)
    if clash:
        raise ResponseFormatError(
            f"{clash[0]!r} cannot be an extra key: it is a field of its own", field=clash[0]
        )
    return _freeze(value)


def _choice_extra(value: Any) -> Mapping[str, Any]:
    return _extra_without(value, _CHOICE_KEYS)


def _response_extra(value: Any) -> Mapping[str, Any]:
    return _extra_without(value, _RESPONSE_KEYS)


@frozen(kw_only=True)
class Choice:
    """One choice of a response (a request with ``n > 1`` gets several)."""

    index: int
    message: Message
    finish_reason: str | None = None
    #: Other keys of the choice (``logprobs``, vendor fields), kept as received.
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_choice_extra, repr=False)

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> Choice:
        """Build from one element of a response's ``choices``.

        Raises:
            ResponseFormatError: the message is not valid, or ``finish_reason`` is not a string.
        """
        index = d.get("index", 0)
        return cls(
            index=index if _is_int(index) else 0,
            message=_message_from_wire(d.get("message")),
            finish_reason=_finish_reason(d.get("finish_reason")),
            extra={k: v for k, v in d.items() if k not in _CHOICE_KEYS},
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        return {
            "index": self.index,
            "message": self.message.to_openai(),
            "finish_reason": self.finish_reason,
            **_copy_json(self.extra),
        }


@frozen(kw_only=True)
class ChatResponse:
    """A complete chat-completions response (or the accumulation of a stream).

    ``message``, ``finish_reason`` are those of the first choice; ``choices`` holds all of them.
    Top-level keys convkit does not model (``system_fingerprint``, ``service_tier``, vendor
    fields) are kept in ``extra``.

    Example::

        resp = client.complete(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        print(resp.text, resp.finish_reason, resp.usage and resp.usage.total_tokens)
    """

    id: str
    model: str
    created: int | None
    message: Message
    finish_reason: str | None = None
    usage: Usage | None = None
    choices: tuple[Choice, ...] = ()
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_response_extra, repr=False)

    @property
    def text(self) -> str:
        """The first choice's text (``""`` when it only called tools or refused)."""
        return self.message.text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The first choice's tool calls (empty when there are none)."""
        return self.message.tool_calls or ()

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> ChatResponse:
        """Parse a ``chat.completion`` body.

        Raises:
            ResponseFormatError: the body is not a chat completion (no ``choices`` list, bad
                message, a ``finish_reason`` that is not a string, a ``usage`` that is not an
                object of token counts). It is a :class:`ValueError`.
        """
        if not isinstance(d, Mapping):
            raise ResponseFormatError(f"expected a JSON object, got {_type_name(d)}")
        raw_choices = d.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise ResponseFormatError("the body has no 'choices'")
        choices = tuple(
            Choice.from_openai(c if isinstance(c, Mapping) else {}) for c in raw_choices
        )
        usage = _usage(d.get("usage"))
        created = d.get("created")
        first = min(choices, key=lambda c: c.index)
        return cls(
            id=str(d.get("id") or ""),
            model=str(d.get("model") or ""),
            created=created if _is_int(created) else None,
            message=first.message,
            finish_reason=first.finish_reason,
            usage=usage,
            choices=choices,
            extra={k: v for k, v in d.items() if k not in _RESPONSE_KEYS},
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the ``chat.completion`` body this response stands for."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [c.to_openai() for c in self.choices],
        }
        if self.usage is not None:
            out["usage"] = self.usage.to_openai()
        out.update(_copy_json(self.extra))
        return out


# --------------------------------------------------------------------------- stream chunks


@frozen(kw_only=True)
class ToolCallDelta:
    """A fragment of one tool call inside a stream chunk.

    The first fragment of a call carries ``id`` and ``name``; later ones add to ``arguments``.
    ``index`` is the call's position in the wire list, or negative when the server sent none.
    """

    index: int
    id: str | None = None
    type: str | None = None
    name: str | None = None
    arguments: str | None = None


@frozen(kw_only=True)
class ChoiceDelta:
    """What one chunk adds to one choice: text, refusal, tool-call fragments, finish reason."""

    index: int
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    #: The choice object as received (``delta``, ``logprobs``, vendor keys).
    raw: Mapping[str, Any] = field(default=_EMPTY, repr=False, eq=False)


def _tool_call_fields(
    tc: Any, position: int
) -> tuple[int, str | None, str | None, str | None, str | None]:
    """``(index, id, type, name, arguments)`` of one wire tool-call fragment."""
    if not isinstance(tc, Mapping):
        raise ResponseFormatError("each tool_calls item must be an object")
    fn = tc.get("function")
    if fn is None:
        fn = tc.get("custom")  # custom tools stream their free-form "input"
    if fn is None:
        fn = _EMPTY
    elif not isinstance(fn, Mapping):
        raise ResponseFormatError("a tool call's 'function' must be an object")
    args = fn.get("arguments")
    if args is None:
        args = fn.get("input")
    index = tc.get("index")
    call_id, kind, name = tc.get("id"), tc.get("type"), fn.get("name")
    for label, value in (("id", call_id), ("type", kind), ("name", name), ("arguments", args)):
        if value is not None and type(value) is not str:
            raise ResponseFormatError(
                f"a tool call's {label} must be a string, got {_type_name(value)}"
            )
    # Some servers leave out ``index``; a negative one tells the accumulator to match by id.
    return (index if type(index) is int else -1 - position), call_id, kind, name, args


def _choice_delta(c: Mapping[str, Any]) -> ChoiceDelta:
    delta = c.get("delta") or _EMPTY
    index = c.get("index", 0)
    calls = delta.get("tool_calls") or ()
    return ChoiceDelta(
        index=index if type(index) is int else 0,
        role=delta.get("role"),
        content=delta.get("content"),
        refusal=delta.get("refusal"),
        tool_calls=tuple(
            ToolCallDelta(index=i, id=cid, type=kind, name=name, arguments=args)
            for i, cid, kind, name, args in (
                _tool_call_fields(tc, pos) for pos, tc in enumerate(calls)
            )
        ),
        finish_reason=c.get("finish_reason"),
        raw=c,
    )


_DELTA_STRINGS = ("content", "role", "refusal")
#: Delta keys that :class:`Message` models and a stream does not concatenate (``name``,
#: ``tool_call_id``): each is a field of the assembled assistant message, held to the rule a
#: non-streamed message is held to, never an extra.
DELTA_FIELDS = tuple(sorted(MODELED_KEYS - {"content", "role", "refusal", "tool_calls"}))
_DELTA_KEYS = MODELED_KEYS


def check_chunk(d: Any) -> None:
    """Check that ``d`` is shaped like one ``chat.completion.chunk`` object.

    The one rule for a chunk, used by :meth:`ChatChunk.from_openai` and by the
    :class:`StreamAccumulator`: a JSON object whose ``choices``, when present, is a list of
    objects; each ``delta`` an object whose ``content``, ``role`` and ``refusal`` are strings
    and whose ``tool_calls`` is a list of tool-call fragments; ``finish_reason`` a string; and
    ``usage`` an object of token counts. ``null`` stands for absent everywhere.

    Raises:
        ResponseFormatError: naming what is wrong (it is a :class:`ValueError`).
    """
    if type(d) is not dict and not isinstance(d, Mapping):
        raise ResponseFormatError(f"expected a JSON object, got {_type_name(d)}")
    choices = d.get("choices")
    if choices is not None:
        if type(choices) is not list:
            raise ResponseFormatError("'choices' must be a list")
        for c in choices:
            if type(c) is not dict:
                raise ResponseFormatError("each choice must be an object")
            delta = c.get("delta")
            if delta:
                if type(delta) is not dict:
                    raise ResponseFormatError("'delta' must be an object")
                if len(delta) != 1 or type(delta.get("content")) is not str:
                    _check_delta(delta)
            elif delta is not None and type(delta) is not dict:
                raise ResponseFormatError("'delta' must be an object")
            finish = c.get("finish_reason")
            if finish is not None:
                _finish_reason(finish)
    usage = d.get("usage")
    if usage is not None:
        _usage(usage)


def _check_delta(delta: Mapping[str, Any]) -> None:
    # Past the common case, a delta holding one string "content".
    for key in _DELTA_STRINGS:
        value = delta.get(key)
        if value is not None and type(value) is not str:
            raise ResponseFormatError(
                f"expected a string, got {_type_name(value)}", field=f"delta.{key}"
            )
    calls = delta.get("tool_calls")
    if calls is not None:
        if type(calls) is not list:
            raise ResponseFormatError("'tool_calls' must be a list")
        for position, tc in enumerate(calls):
            _tool_call_fields(tc, position)
    for key, value in delta.items():
        if key not in _DELTA_KEYS and isinstance(value, (dict, list)):
            # Kept in the message's extra: JSON it can keep (as deep as a message may nest).
            try:
                _copy_json({key: value}, strict=True)
            except JSONValueError as exc:
                raise ResponseFormatError(str(exc), field=f"delta.{key}") from None
    for key in DELTA_FIELDS:
        value = delta.get(key)
        if value is not None:
            # The same rule as a complete body's message: an assistant message with this field.
            try:
                Message(role="assistant", content="", **{key: value})
            except InvalidMessageError as exc:
                raise ResponseFormatError(exc.reason, field=f"delta.{key}") from None


@frozen
class ChatChunk:
    """One ``chat.completion.chunk`` of a stream, parsed on demand from its JSON object.

    The decoded object (``raw``) is the single source of truth; ``id``, ``model``, ``text`` read
    it directly and ``choices``/``usage`` are built on first access, so that streaming thousands
    of chunks costs little more than decoding their JSON. Build one with :meth:`from_openai`.

    Example::

        with client.stream(model="gpt-4o-mini", messages=msgs) as stream:
            for chunk in stream:
                print(chunk.text, end="")
    """

    #: The chunk object as received (read-only view).
    raw: Mapping[str, Any] = field(repr=False)
    #: True for chunks a client decoded and checked itself (nothing else holds their object),
    #: so an accumulator can merge them without checking their shape again.
    trusted: bool = field(default=False, repr=False, eq=False, kw_only=True)

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> ChatChunk:
        """Wrap one decoded chunk object (the JSON of one ``data:`` line), checking its shape.

        Raises:
            ResponseFormatError: the object is not shaped like a chunk (see
                :func:`check_chunk`).
        """
        check_chunk(d)
        return cls(MappingProxyType(d) if type(d) is dict else d)

    def __repr__(self) -> str:
        return f"ChatChunk(id={self.id!r}, text={self.text!r})"

    @property
    def id(self) -> str:
        """The completion id (the same on every chunk of a stream)."""
        return str(self.raw.get("id") or "")

    @property
    def model(self) -> str:
        """The model that produced the chunk."""
        return str(self.raw.get("model") or "")

    @property
    def created(self) -> int | None:
        """Creation time (Unix seconds), if sent."""
        created = self.raw.get("created")
        return created if type(created) is int else None

    @property
    def text(self) -> str:
        """The text this chunk adds to the first choice (``""`` if none)."""
        for c in self.raw.get("choices") or ():
            if c.get("index", 0) == 0:
                delta = c.get("delta")
                content = delta.get("content") if delta else None
                return content if type(content) is str else ""
        return ""

    @cached_property
    def choices(self) -> tuple[ChoiceDelta, ...]:
        """What the chunk adds to each choice (empty for the final usage chunk)."""
        return tuple(_choice_delta(c) for c in self.raw.get("choices") or ())

    @cached_property
    def usage(self) -> Usage | None:
        """Token usage, on the final chunk when ``stream_options.include_usage`` was set."""
        usage = self.raw.get("usage")
        return _usage(usage) if isinstance(usage, Mapping) else None
