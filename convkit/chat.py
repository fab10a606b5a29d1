"""Chat-completions requests, responses and stream chunks as frozen values, plus the accumulator.

Everything here is pure: no sockets, no clocks. :class:`ChatRequest` checks its parameters
before anything is sent, :class:`ChatResponse` and :class:`ChatChunk` are parsed from the wire
format, and :class:`StreamAccumulator` turns a sequence of chunks into the response a
non-streaming call would have returned.

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

import copy
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from convkit.errors import InvalidMessageError, InvalidRequestError
from convkit.messages import Message, MessageLike, ToolCall, Usage, as_messages

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChoiceDelta",
    "StreamAccumulator",
    "ToolCallDelta",
    "validate_params",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not value:
        return _EMPTY
    return MappingProxyType(dict(value))


# --------------------------------------------------------------------------- parameters


def _is_number(v: object) -> bool:
    # bool is an int subclass; ``temperature=True`` is a caller bug, not 1.0.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type_name(v: object) -> str:
    return type(v).__name__


def _fail(param: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"invalid {param!r}: {problem}", param=param)


def _check_range(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not _is_number(v):
            raise _fail(name, f"expected a number between {lo:g} and {hi:g}, got {_type_name(v)}")
        # ``not lo <= v <= hi`` is also true for NaN, which must not slip through.
        if not lo <= v <= hi:
            raise _fail(name, f"must be between {lo:g} and {hi:g}, got {v!r}")

    return check


def _check_int(
    minimum: int | None = None, maximum: int | None = None
) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not _is_int(v):
            raise _fail(name, f"expected an integer, got {_type_name(v)}")
        if minimum is not None and v < minimum:
            raise _fail(name, f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise _fail(name, f"must be at most {maximum}, got {v}")

    return check


def _check_type(kind: type, label: str) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise _fail(name, f"expected {label}, got {_type_name(v)}")

    return check


def _check_stop(name: str, v: Any) -> None:
    if isinstance(v, str):
        return
    if not isinstance(v, (list, tuple)):
        raise _fail(name, f"expected a string or a list of strings, got {_type_name(v)}")
    if len(v) > 4:
        raise _fail(name, f"at most 4 stop sequences are allowed, got {len(v)}")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise _fail(name, f"item {i} must be a string, got {_type_name(s)}")


def _check_list_of_dicts(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)):
        raise _fail(name, f"expected a list of objects, got {_type_name(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, Mapping):
            raise _fail(name, f"item {i} must be an object, got {_type_name(item)}")


def _check_tools(name: str, v: Any) -> None:
    _check_list_of_dicts(name, v)
    for i, tool in enumerate(v):
        if not isinstance(tool.get("type"), str):
            raise _fail(name, f"item {i} needs a string 'type' (usually 'function')")


def _check_str_or_dict(name: str, v: Any) -> None:
    if not isinstance(v, (str, Mapping)):
        raise _fail(name, f"expected a string or an object, got {_type_name(v)}")


def _check_response_format(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object like {{'type': 'json_object'}}, got {_type_name(v)}")
    if not isinstance(v.get("type"), str):
        raise _fail(name, "needs a string 'type' ('text', 'json_object' or 'json_schema')")


def _check_stream_options(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object, got {_type_name(v)}")
    include = v.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise _fail(name, f"'include_usage' must be a boolean, got {_type_name(include)}")


def _check_logit_bias(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object mapping token ids to biases, got {_type_name(v)}")
    for token, bias in v.items():
        if not (isinstance(token, str) or _is_int(token)):
            raise _fail(name, f"token ids must be strings or integers, got {_type_name(token)}")
        if not _is_number(bias) or not -100 <= bias <= 100:
            raise _fail(
                name, f"bias for token {token!r} must be a number in -100..100, got {bias!r}"
            )


def _check_metadata(name: str, v: Any) -> None:
    if not isinstance(v, Mapping):
        raise _fail(name, f"expected an object of strings, got {_type_name(v)}")
    for key, value in v.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise _fail(name, "keys and values must be strings")


def _check_str_list(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise _fail(name, "expected a list of strings")


_BOOL = _check_type(bool, "a boolean")
_STR = _check_type(str, "a string")
_DICT = _check_type(Mapping, "an object")

#: The standard chat-completions parameters and how each is checked. Anything not listed is a
#: vendor field and passes through untouched.
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "temperature": _check_range(0, 2),
    "top_p": _check_range(0, 1),
    "frequency_penalty": _check_range(-2, 2),
    "presence_penalty": _check_range(-2, 2),
    "max_tokens": _check_int(minimum=1),
    "max_completion_tokens": _check_int(minimum=1),
    "n": _check_int(minimum=1),
    "seed": _check_int(),
    "top_logprobs": _check_int(minimum=0, maximum=20),
    "stop": _check_stop,
    "tools": _check_tools,
    "functions": _check_list_of_dicts,
    "tool_choice": _check_str_or_dict,
    "function_call": _check_str_or_dict,
    "response_format": _check_response_format,
    "stream": _BOOL,
    "stream_options": _check_stream_options,
    "logprobs": _BOOL,
    "parallel_tool_calls": _BOOL,
    "store": _BOOL,
    "logit_bias": _check_logit_bias,
    "metadata": _check_metadata,
    "modalities": _check_str_list,
    "user": _STR,
    "reasoning_effort": _STR,
    "service_tier": _STR,
    "verbosity": _STR,
    "safety_identifier": _STR,
    "prompt_cache_key": _STR,
    "audio": _DICT,
    "prediction": _DICT,
    "web_search_options": _DICT,
}

_RESERVED = frozenset({"model", "messages"})


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check standard request parameters and return them as a new dict.

    Standard parameters (``temperature``, ``max_tokens``, ``tools``, ...) must have the type and
    range the API documents; ``None`` is accepted for any of them and sent as ``null``. Unknown
    keys are vendor fields and pass through untouched.

    Raises:
        InvalidRequestError: naming the offending parameter in ``param``.

    Example::

        >>> validate_params({"temperature": 0.2, "top_k": 40})
        {'temperature': 0.2, 'top_k': 40}
        >>> validate_params({"temperature": 3})
        Traceback (most recent call last):
        ...
        convkit.errors.InvalidRequestError: invalid 'temperature': must be between 0 and 2, got 3
    """
    if not isinstance(params, Mapping):
        raise InvalidRequestError(f"params must be a mapping, got {_type_name(params)}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise InvalidRequestError(f"parameter names must be strings, got {name!r}")
        if name in _RESERVED:
            raise InvalidRequestError(
                f"{name!r} is not a parameter: pass it as its own argument", param=name
            )
        if value is not None:
            check = _CHECKS.get(name)
            if check is not None:
                check(name, value)
        out[name] = value
    return out


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
            body.update(copy.deepcopy(dict(self.params)))
        return body

    @property
    def stream(self) -> bool:
        """True when the parameters ask for a streamed response."""
        return bool(self.params.get("stream"))


# --------------------------------------------------------------------------- responses


def _message_from_wire(d: Any) -> Message:
    """Build the assistant message of a choice, tolerating what real servers send."""
    if not isinstance(d, Mapping):
        raise InvalidMessageError("a choice's message must be an object", field="message")
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
    return Message.from_openai(d)


def _finish_reason(value: Any) -> str | None:
    """A wire ``finish_reason``: a string or absent; anything else is a :class:`ValueError`.

    The same rule holds for a complete body and for a stream's chunks.
    """
    if value is None or type(value) is str:
        return value
    raise ValueError(f"'finish_reason' must be a string, got {_type_name(value)}")


def _usage(value: Any) -> Usage | None:
    """A wire ``usage``: an object of token counts or absent; anything else is a ValueError.

    Whatever :meth:`Usage.from_openai` raises on ill-typed counts (a list, an object,
    ``Infinity``) becomes a :class:`ValueError`, so parsers keep their documented contract.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"'usage' must be an object, got {_type_name(value)}")
    try:
        return Usage.from_openai(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"malformed 'usage': {exc}") from exc


_CHOICE_KEYS = frozenset({"index", "message", "finish_reason"})
_RESPONSE_KEYS = frozenset({"id", "model", "created", "choices", "usage", "object"})


@frozen(kw_only=True)
class Choice:
    """One choice of a response (a request with ``n > 1`` gets several)."""

    index: int
    message: Message
    finish_reason: str | None = None
    #: Other keys of the choice (``logprobs``, vendor fields), kept as received.
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_freeze, repr=False)

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> Choice:
        """Build from one element of a response's ``choices``.

        Raises:
            ValueError: the message is not valid, or ``finish_reason`` is not a string.
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
            **copy.deepcopy(dict(self.extra)),
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
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_freeze, repr=False)

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
            ValueError: the body is not a chat completion (no ``choices`` list, bad message,
                a ``finish_reason`` that is not a string, a ``usage`` that is not an object of
                token counts).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a JSON object, got {_type_name(d)}")
        raw_choices = d.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise ValueError("the body has no 'choices'")
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
        out.update(copy.deepcopy(dict(self.extra)))
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
        raise ValueError("each tool_calls item must be an object")
    fn = tc.get("function")
    if fn is None:
        fn = tc.get("custom")  # custom tools stream their free-form "input"
    if fn is None:
        fn = _EMPTY
    elif not isinstance(fn, Mapping):
        raise ValueError("a tool call's 'function' must be an object")
    args = fn.get("arguments")
    if args is None:
        args = fn.get("input")
    index = tc.get("index")
    call_id, kind, name = tc.get("id"), tc.get("type"), fn.get("name")
    for label, value in (("id", call_id), ("type", kind), ("name", name), ("arguments", args)):
        if value is not None and type(value) is not str:
            raise ValueError(f"a tool call's {label} must be a string, got {_type_name(value)}")
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

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> ChatChunk:
        """Wrap one decoded chunk object (the JSON of one ``data:`` line), checking its shape.

        Raises:
            ValueError: the object is not shaped like a chunk (this includes a ``finish_reason``
                that is not a string and a ``usage`` that is not an object of token counts).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a JSON object, got {_type_name(d)}")
        choices = d.get("choices")
        if choices is not None:
            if type(choices) is not list:
                raise ValueError("'choices' must be a list")
            for c in choices:
                if type(c) is not dict:
                    raise ValueError("each choice must be an object")
                delta = c.get("delta")
                if delta is not None and type(delta) is not dict:
                    raise ValueError("'delta' must be an object")
                _finish_reason(c.get("finish_reason"))
        _usage(d.get("usage"))
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


# --------------------------------------------------------------------------- accumulator

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
    __slots__ = ("calls", "content", "extra", "finish", "logprobs", "refusal", "role", "slots")

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] | None = None
        self.refusal: list[str] | None = None
        self.calls: list[_ToolCallState] = []
        # wire index -> position in ``calls`` of the call currently receiving fragments
        self.slots: dict[int, int] = {}
        self.finish: str | None = None
        self.extra: dict[str, Any] = {}
        self.logprobs: dict[str, Any] | None = None

    def add_tool_calls(self, items: Any) -> None:
        if type(items) is not list:
            raise ValueError("'tool_calls' must be a list")
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
        )


def _need_str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise ValueError(f"delta {what} must be a string, got {_type_name(value)}")
    return value


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
            ValueError: the chunk is malformed (a misshapen ``choices`` list, a delta field or
                ``finish_reason`` of the wrong type, a ``usage`` that is not an object of token
                counts); the chunks fed before it stay accumulated.
        """
        raw = chunk.raw
        if not isinstance(raw, Mapping):
            raise ValueError(f"a chunk must wrap a JSON object, got {_type_name(raw)}")
        self._add(raw)

    def feed_openai(self, obj: Mapping[str, Any]) -> ChatChunk:
        """Add one decoded chunk object and return it as a :class:`ChatChunk`.

        The one-pass path the clients take: the object's shape is checked while it is merged,
        instead of once by :meth:`ChatChunk.from_openai` and again here.

        Raises:
            ValueError: as :meth:`feed`.
        """
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise ValueError(f"expected a JSON object, got {_type_name(obj)}")
        self._add(obj)
        return ChatChunk(MappingProxyType(obj) if type(obj) is dict else obj)

    def _add(self, raw: Mapping[str, Any]) -> None:
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
        if type(choices) is not list:
            raise ValueError("'choices' must be a list")
        states = self._choices
        for c in choices:
            if type(c) is not dict:
                raise ValueError("each choice must be an object")
            index = c.get("index", 0)
            if type(index) is not int:
                index = 0
            state = states.get(index)
            if state is None:
                state = states[index] = _ChoiceState()
            delta = c.get("delta")
            if delta:
                if type(delta) is not dict:
                    raise ValueError("'delta' must be an object")
                # One pass over the delta's keys: the common delta holds a lone "content".
                for key, value in delta.items():
                    if value is None:
                        continue
                    if key == "content":
                        if type(value) is not str:
                            _need_str(value, "content")
                        if state.content is None:
                            state.content = [value]
                        else:
                            state.content.append(value)
                    elif key == "tool_calls":
                        state.add_tool_calls(value)
                    elif key == "role":
                        state.role = _need_str(value, "role")
                    elif key == "refusal":
                        if state.refusal is None:
                            state.refusal = [_need_str(value, "refusal")]
                        else:
                            state.refusal.append(_need_str(value, "refusal"))
                    else:
                        state.add_extra(key, value)
            finish = c.get("finish_reason")
            if finish is not None:
                state.finish = _finish_reason(finish)
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
                extra["logprobs"] = copy.deepcopy(state.logprobs)
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
            extra=copy.deepcopy(self._extra),
        )
