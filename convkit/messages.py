"""Chat messages as frozen values, and their exact round trip to the wire format.

A :class:`Message` is what one element of the chat-completions ``messages`` array holds.
``Message.from_openai(d).to_openai() == d`` for every valid ``d``, including keys convkit does
not know (``reasoning_content`` from some gateways, ``cache_control`` on a content part): they
are kept in ``extra`` and sent back unchanged.

Example::

    >>> from convkit import Message
    >>> m = Message.user("What is the capital of France?")
    >>> m.to_openai()
    {'role': 'user', 'content': 'What is the capital of France?'}
    >>> Message.from_openai({"role": "tool", "content": "22C"})
    Traceback (most recent call last):
    ...
    convkit.errors.InvalidMessageError: field 'tool_call_id': a tool message needs a tool_call_id
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Union

from attrs import field, frozen

from convkit._wire import EMPTY, copy_json, freeze_json, need_str, type_name
from convkit.errors import InvalidMessageError

__all__ = [
    "MODELED_KEYS",
    "ROLES",
    "AudioPart",
    "ContentPart",
    "FilePart",
    "ImagePart",
    "Message",
    "MessageLike",
    "RawPart",
    "TextPart",
    "ToolCall",
    "Usage",
    "as_message",
    "as_messages",
    "part_from_openai",
]

#: Every role the chat-completions API accepts (``function`` is the legacy tool role).
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

_EMPTY = EMPTY


def _json_field(value: Any, where: str, modeled: frozenset[str] = frozenset()) -> Mapping[str, Any]:
    """Convert a mapping of JSON values named ``where`` that must not hold ``modeled`` keys.

    Every mapping a value keeps (extras, a raw part, a file) goes through this one rule: a
    checked deep copy (JSON values only, no cycles, bounded depth), read-only, and free of
    the keys its own fields model, so that what is sent is what is counted and stored.
    """
    return freeze_json(value, where, InvalidMessageError, modeled)


def _text_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", frozenset({"type", "text"}))


def _image_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", frozenset({"type", "image_url"}))


def _image_url_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "image_url", frozenset({"url", "detail"}))


def _audio_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", frozenset({"type", "input_audio"}))


def _input_audio_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "input_audio", frozenset({"data", "format"}))


def _file_value(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "file", frozenset())


def _file_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", frozenset({"type", "file"}))


def _part_data(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "part", frozenset())


def _message_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", _KNOWN_KEYS)


def _call_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "extra", frozenset({"id", "type", "function", "custom"}))


def _call_inner_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "function", frozenset({"name"}))


def _usage_extra(value: Any) -> Mapping[str, Any]:
    return _json_field(value, "usage", _USAGE_KEYS)


def _frozenset(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _out(extra: Mapping[str, Any]) -> dict[str, Any]:
    # Extras are JSON values owned by the message; hand out copies so callers who mutate the
    # wire dict never change a frozen message behind its back. Copied without recursion, so a
    # value as deep as json decodes never raises RecursionError.
    return copy_json(extra) if extra else {}


def _unknown(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _need_str(value: Any, where: str) -> str:
    return need_str(value, where, InvalidMessageError)


def _need_dict(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidMessageError(f"expected an object, got {type(value).__name__}", field=where)
    return value


# --------------------------------------------------------------------------- content parts


@frozen(kw_only=True)
class TextPart:
    """A ``{"type": "text", "text": ...}`` content part."""

    text: str
    extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_text_extra,
        repr=False,
    )

    type: Literal["text"] = field(default="text", init=False, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        return {"type": "text", "text": self.text, **_out(self.extra)}


@frozen(kw_only=True)
class ImagePart:
    """An ``image_url`` content part (a URL or a ``data:`` URL) with its ``detail`` level."""

    url: str
    detail: str | None = None
    extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_image_extra,
        repr=False,
    )
    image_url_extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_image_url_extra,
        repr=False,
    )
    #: The wire dict held ``"detail": null`` (sent back the same way).
    detail_null: bool = field(default=False, repr=False, eq=False)

    type: Literal["image_url"] = field(default="image_url", init=False, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        inner: dict[str, Any] = {"url": self.url}
        if self.detail is not None or self.detail_null:
            inner["detail"] = self.detail
        inner.update(_out(self.image_url_extra))
        return {"type": "image_url", "image_url": inner, **_out(self.extra)}


@frozen(kw_only=True)
class AudioPart:
    """An ``input_audio`` content part: base64 ``data`` and its ``format`` (``wav``, ``mp3``)."""

    data: str
    format: str
    extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_audio_extra,
        repr=False,
    )
    input_audio_extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_input_audio_extra,
        repr=False,
    )

    type: Literal["input_audio"] = field(default="input_audio", init=False, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        inner = {"data": self.data, "format": self.format, **_out(self.input_audio_extra)}
        return {"type": "input_audio", "input_audio": inner, **_out(self.extra)}


@frozen(kw_only=True)
class FilePart:
    """A ``file`` content part (``file_id``, or ``file_data`` with ``filename``)."""

    file: Mapping[str, Any] = field(converter=_file_value)
    extra: Mapping[str, Any] = field(
        default=_EMPTY,
        converter=_file_extra,
        repr=False,
    )

    type: Literal["file"] = field(default="file", init=False, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        return {"type": "file", "file": _out(self.file), **_out(self.extra)}


@frozen(kw_only=True)
class RawPart:
    """A content part of a type convkit does not model (``refusal``, vendor types), kept as is."""

    data: Mapping[str, Any] = field(converter=_part_data)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.data.get("type"), str):
            raise InvalidMessageError("a content part needs a string 'type'", field="part.type")

    @property
    def type(self) -> str:
        """The part's ``type`` string."""
        return str(self.data["type"])

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        return _out(self.data)


ContentPart = Union[TextPart, ImagePart, AudioPart, FilePart, RawPart]

_TEXT_KEYS = frozenset({"type", "text"})
_IMAGE_KEYS = frozenset({"type", "image_url"})
_IMAGE_INNER = frozenset({"url", "detail"})
_AUDIO_KEYS = frozenset({"type", "input_audio"})
_AUDIO_INNER = frozenset({"data", "format"})
_FILE_KEYS = frozenset({"type", "file"})
_DETAILS = frozenset({"auto", "low", "high"})


def part_from_openai(d: Any, where: str = "content[0]") -> ContentPart:
    """Build a content part from its wire-format dict; ``where`` names it in errors."""
    d = _need_dict(d, where)
    kind = d.get("type")
    if not isinstance(kind, str):
        raise InvalidMessageError("a content part needs a string 'type'", field=f"{where}.type")
    if kind == "text":
        text = _need_str(d.get("text"), f"{where}.text")
        return TextPart(text=text, extra=_unknown(d, _TEXT_KEYS))
    if kind == "image_url":
        inner = d.get("image_url")
        if isinstance(inner, str):  # some clients send the bare URL
            raise InvalidMessageError(
                "image_url must be an object {'url': ...}, not a string", field=f"{where}.image_url"
            )
        inner = _need_dict(inner, f"{where}.image_url")
        url = _need_str(inner.get("url"), f"{where}.image_url.url")
        detail = inner.get("detail")
        if detail is not None and (not isinstance(detail, str) or detail not in _DETAILS):
            raise InvalidMessageError(
                f"detail must be one of auto, low, high; got {detail!r}",
                field=f"{where}.image_url.detail",
            )
        return ImagePart(
            url=url,
            detail=detail,
            extra=_unknown(d, _IMAGE_KEYS),
            image_url_extra=_unknown(inner, _IMAGE_INNER),
            detail_null="detail" in inner and detail is None,
        )
    if kind == "input_audio":
        inner = _need_dict(d.get("input_audio"), f"{where}.input_audio")
        return AudioPart(
            data=_need_str(inner.get("data"), f"{where}.input_audio.data"),
            format=_need_str(inner.get("format"), f"{where}.input_audio.format"),
            extra=_unknown(d, _AUDIO_KEYS),
            input_audio_extra=_unknown(inner, _AUDIO_INNER),
        )
    if kind == "file":
        return FilePart(
            file=_need_dict(d.get("file"), f"{where}.file"), extra=_unknown(d, _FILE_KEYS)
        )
    return RawPart(data=d)


def _to_part(value: Any, where: str) -> ContentPart:
    if isinstance(value, (TextPart, ImagePart, AudioPart, FilePart, RawPart)):
        return value
    return part_from_openai(value, where)


# --------------------------------------------------------------------------- tool calls


@frozen(kw_only=True)
class ToolCall:
    """One tool call requested by the assistant.

    ``arguments`` is the JSON text exactly as the model produced it (it may be invalid JSON;
    convkit never rewrites it). ``type`` is ``"function"`` for function tools; ``"custom"`` calls
    keep their free-form ``input`` in ``arguments``.
    """

    id: str
    name: str
    arguments: str = ""
    type: str = "function"
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_call_extra, repr=False)
    inner_extra: Mapping[str, Any] = field(default=_EMPTY, converter=_call_inner_extra, repr=False)
    #: The wire dict had no ``type`` key (some servers omit it); it is sent back without one.
    type_omitted: bool = field(default=False, repr=False, eq=False)
    #: The wire dict had no ``arguments`` (``input``) key; it is sent back without one.
    arguments_omitted: bool = field(default=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        for label in ("id", "name", "arguments", "type"):
            value = getattr(self, label)
            if not isinstance(value, str):
                raise InvalidMessageError(
                    f"expected a string, got {type_name(value)}", field=f"tool_calls.{label}"
                )
        args_key = "input" if self.type == "custom" else "arguments"
        if args_key in self.inner_extra:
            raise InvalidMessageError(
                f"{args_key!r} cannot be an extra key: it is a field of its own",
                field=f"function.{args_key}",
            )

    @classmethod
    def from_openai(cls, d: Any, where: str = "tool_calls[0]") -> ToolCall:
        """Build a tool call from its wire-format dict."""
        d = _need_dict(d, where)
        call_id = _need_str(d.get("id"), f"{where}.id")
        kind = d.get("type", "function")
        kind = _need_str(kind, f"{where}.type")
        if kind == "custom":
            inner = _need_dict(d.get("custom"), f"{where}.custom")
            args_key = "input"
        else:
            inner = _need_dict(d.get("function"), f"{where}.function")
            args_key = "arguments"
        name = _need_str(
            inner.get("name"), f"{where}.{'custom' if kind == 'custom' else 'function'}.name"
        )
        args = inner.get(args_key, "")
        if not isinstance(args, str):
            raise InvalidMessageError(
                f"tool-call {args_key} must be a string (JSON text), got {type(args).__name__}",
                field=f"{where}.{'custom' if kind == 'custom' else 'function'}.{args_key}",
            )
        return cls(
            id=call_id,
            name=name,
            arguments=args,
            type=kind,
            extra=_unknown(d, frozenset({"id", "type", "function", "custom"})),
            inner_extra=_unknown(inner, frozenset({"name", args_key})),
            type_omitted="type" not in d,
            arguments_omitted=args_key not in inner,
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        inner: dict[str, Any] = {"name": self.name}
        if self.arguments or not self.arguments_omitted:
            inner["input" if self.type == "custom" else "arguments"] = self.arguments
        inner.update(_out(self.inner_extra))
        if self.type == "custom":
            out: dict[str, Any] = {"id": self.id, "type": "custom", "custom": inner}
        else:
            out = {"id": self.id, "type": self.type, "function": inner}
        if self.type_omitted:
            del out["type"]
        out.update(_out(self.extra))
        return out


# --------------------------------------------------------------------------- messages

_KNOWN_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "refusal"})
#: The wire keys :class:`Message` models as fields: never found in its ``extra``.
MODELED_KEYS = _KNOWN_KEYS


def _content_converter(value: Any) -> str | tuple[ContentPart, ...] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_to_part(p, f"content[{i}]") for i, p in enumerate(value))
    raise InvalidMessageError(
        f"content must be a string, a list of parts or null, got {type(value).__name__}",
        field="content",
    )


def _tool_calls_converter(value: Any) -> tuple[ToolCall, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise InvalidMessageError(
            f"tool_calls must be a list, got {type(value).__name__}", field="tool_calls"
        )
    return tuple(
        v if isinstance(v, ToolCall) else ToolCall.from_openai(v, f"tool_calls[{i}]")
        for i, v in enumerate(value)
    )


@frozen(kw_only=True, eq=True)
class Message:
    """One chat message, immutable; change it with :func:`attrs.evolve`.

    Build one with a role helper or from a wire-format dict::

        Message.system("You are terse.")
        Message.user(["Describe this", ImagePart(url="https://example.com/a.png")])
        Message.assistant(tool_calls=[ToolCall(id="call_1", name="f", arguments="{}")])
        Message.tool("22C", tool_call_id="call_1")
        Message.from_openai({"role": "user", "content": "hi", "name": "ann"})

    Invalid combinations raise :class:`~convkit.InvalidMessageError` naming the field.
    """

    role: str
    content: str | tuple[ContentPart, ...] | None = field(
        default=None, converter=_content_converter
    )
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = field(default=None, converter=_tool_calls_converter)
    tool_call_id: str | None = None
    refusal: str | None = None
    #: Keys convkit does not model, kept and sent back unchanged (JSON values; never a key
    #: that is a field of its own, such as ``role``).
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_message_extra, repr=False)
    #: Known keys that were present with an explicit ``null`` on input (sent back the same way).
    explicit_nulls: frozenset[str] = field(
        default=frozenset(), converter=_frozenset, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        _validate(self)

    # ---- constructors

    @classmethod
    def system(cls, content: str | Sequence[Any], *, name: str | None = None) -> Message:
        """A ``system`` message."""
        return cls(role="system", content=content, name=name)

    @classmethod
    def developer(cls, content: str | Sequence[Any], *, name: str | None = None) -> Message:
        """A ``developer`` message (the system role of reasoning models)."""
        return cls(role="developer", content=content, name=name)

    @classmethod
    def user(cls, content: str | Sequence[Any], *, name: str | None = None) -> Message:
        """A ``user`` message; ``content`` may mix strings and parts (strings become text parts)."""
        if not isinstance(content, str):
            content = [TextPart(text=c) if isinstance(c, str) else c for c in content]
        return cls(role="user", content=content, name=name)

    @classmethod
    def assistant(
        cls,
        content: str | Sequence[Any] | None = None,
        *,
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] | None = None,
        refusal: str | None = None,
        name: str | None = None,
    ) -> Message:
        """An ``assistant`` message: text, tool calls, or a refusal."""
        return cls(
            role="assistant", content=content, tool_calls=tool_calls, refusal=refusal, name=name
        )

    @classmethod
    def tool(cls, content: str | Sequence[Any], *, tool_call_id: str) -> Message:
        """A ``tool`` result answering the call ``tool_call_id``."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id)

    # ---- wire format

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> Message:
        """Build a message from a chat-completions wire dict, keeping unknown keys in ``extra``."""
        if isinstance(d, Message):
            return d
        if not isinstance(d, Mapping):
            raise InvalidMessageError(f"a message must be an object, got {type(d).__name__}")
        role = d.get("role")
        if not isinstance(role, str):
            raise InvalidMessageError("a message needs a string 'role'", field="role")
        nulls = frozenset(k for k in _KNOWN_KEYS if k in d and d[k] is None)
        for key in ("name", "tool_call_id", "refusal"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidMessageError(
                    f"expected a string, got {type(value).__name__}", field=key
                )
        return cls(
            role=role,
            content=d.get("content"),
            name=d.get("name"),
            tool_calls=d.get("tool_calls"),
            tool_call_id=d.get("tool_call_id"),
            refusal=d.get("refusal"),
            extra=_unknown(d, _KNOWN_KEYS),
            explicit_nulls=nulls,
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the chat-completions wire dict (a fresh object each call)."""
        out: dict[str, Any] = {"role": self.role}
        content = self.content
        if content is not None:
            out["content"] = (
                content if isinstance(content, str) else [p.to_openai() for p in content]
            )
        elif "content" in self.explicit_nulls:
            out["content"] = None
        if self.name is not None:
            out["name"] = self.name
        elif "name" in self.explicit_nulls:
            out["name"] = None
        if self.tool_calls is not None:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        elif "tool_calls" in self.explicit_nulls:
            out["tool_calls"] = None
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        elif "tool_call_id" in self.explicit_nulls:
            out["tool_call_id"] = None
        if self.refusal is not None:
            out["refusal"] = self.refusal
        elif "refusal" in self.explicit_nulls:
            out["refusal"] = None
        if self.extra:
            out.update(_out(self.extra))
        return out

    # ---- conveniences

    @property
    def text(self) -> str:
        """The message's text: the string content, or its text parts joined (``""`` if none)."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(p.text for p in content if isinstance(p, TextPart))

    @property
    def is_tool_call(self) -> bool:
        """True for an assistant message that requests at least one tool call."""
        return bool(self.tool_calls)


_TEXT_ONLY_ROLES = frozenset({"system", "developer", "tool"})


def _validate(m: Message) -> None:
    role = m.role
    if not isinstance(role, str):
        raise InvalidMessageError(f"role must be a string, got {type_name(role)}", field="role")
    if role not in ROLES:
        raise InvalidMessageError(
            f"unknown role {role!r}; expected one of {', '.join(sorted(ROLES))}", field="role"
        )
    for label in ("name", "tool_call_id", "refusal"):
        value = getattr(m, label)
        if value is not None and not isinstance(value, str):
            raise InvalidMessageError(f"{label} must be a string", field=label)
    content = m.content
    if role == "assistant":
        if isinstance(content, tuple):
            for i, p in enumerate(content):
                if not isinstance(p, (TextPart, RawPart)):
                    raise InvalidMessageError(
                        f"assistant content parts must be text or refusal, got {p.type!r}",
                        field=f"content[{i}]",
                    )
        if not (
            content is not None
            or m.tool_calls
            or m.refusal is not None
            or "function_call" in m.extra
            or "audio" in m.extra
        ):
            raise InvalidMessageError(
                "an assistant message needs content, tool_calls or a refusal", field="content"
            )
    else:
        if m.tool_calls is not None:
            raise InvalidMessageError(
                f"a {role} message cannot carry tool_calls", field="tool_calls"
            )
        if m.refusal is not None:
            raise InvalidMessageError(f"a {role} message cannot carry a refusal", field="refusal")
        if content is None and role != "function":
            raise InvalidMessageError(f"a {role} message needs content", field="content")
        if role in _TEXT_ONLY_ROLES and isinstance(content, tuple):
            for i, p in enumerate(content):
                if not isinstance(p, TextPart):
                    raise InvalidMessageError(
                        f"{role} content parts must be text, got {p.type!r}", field=f"content[{i}]"
                    )
    if role == "tool":
        if not isinstance(m.tool_call_id, str) or not m.tool_call_id:
            raise InvalidMessageError("a tool message needs a tool_call_id", field="tool_call_id")
    elif m.tool_call_id is not None:
        raise InvalidMessageError(
            f"only tool messages carry tool_call_id, not {role}", field="tool_call_id"
        )
    if role == "function" and not m.name:
        raise InvalidMessageError("a function message needs a name", field="name")


MessageLike = Union[Message, Mapping[str, Any]]
"""A :class:`Message` or an OpenAI wire dict: every public function takes either."""


def as_message(value: MessageLike, index: int | None = None) -> Message:
    """Return ``value`` as a :class:`Message`, validating dicts; errors name ``index``."""
    if isinstance(value, Message):
        return value
    try:
        return Message.from_openai(value)
    except InvalidMessageError as exc:
        if index is None:
            raise
        raise exc.at_index(index) from None


def as_messages(values: Iterable[MessageLike]) -> list[Message]:
    """Return a list of :class:`Message`, validating dicts; errors name the offending index."""
    if isinstance(values, (str, bytes, Mapping)):
        raise InvalidMessageError(f"expected a list of messages, got {type(values).__name__}")
    return [as_message(v, i) for i, v in enumerate(values)]


# --------------------------------------------------------------------------- usage

_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


@frozen(kw_only=True)
class Usage:
    """Token usage as the API reports it (``usage`` of a response or the final stream chunk)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    extra: Mapping[str, Any] = field(default=_EMPTY, converter=_usage_extra, repr=False)

    @classmethod
    def from_openai(cls, d: Mapping[str, Any]) -> Usage:
        """Build from the wire ``usage`` object (details such as ``prompt_tokens_details`` kept)."""
        known = ("prompt_tokens", "completion_tokens", "total_tokens")
        if not isinstance(d, Mapping):
            raise ValueError(f"usage must be an object, got {type(d).__name__}")
        return cls(
            prompt_tokens=_count(d, "prompt_tokens"),
            completion_tokens=_count(d, "completion_tokens"),
            total_tokens=_count(d, "total_tokens"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_openai(self) -> dict[str, Any]:
        """Return the wire-format dict."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            **_out(self.extra),
        }


def _count(d: Mapping[str, Any], key: str) -> int:
    """A token count from a usage object: a whole, finite, non-negative number (or absent)."""
    value = d.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"usage.{key} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"usage.{key} must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"usage.{key} must not be negative, got {value!r}")
    return int(value)
