"""Responses as stream chunks and back, and small builders for chunks (pure functions).

A non-streamed response is replayed through the stream middleware as chunks, so that a
middleware sees every reply whichever way it was requested; :func:`response_from_chunks`
(the :class:`~convkit.chat.StreamAccumulator`) turns the middleware's output back into the
response that is stored and returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from convkit._wire import copy_json
from convkit.chat import ChatChunk, ChatResponse, Choice, StreamAccumulator
from convkit.messages import ToolCall

__all__ = ["chunks_from_response", "response_from_chunks", "text_chunk", "with_text"]

#: Characters of content per replayed chunk.
DEFAULT_PIECE = 32


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _head(response: ChatResponse) -> dict[str, Any]:
    return {
        "id": response.id,
        "object": "chat.completion.chunk",
        "created": response.created,
        "model": response.model,
    }


def _call_fragments(index: int, call: ToolCall, size: int) -> list[dict[str, Any]]:
    pieces = _pieces(call.arguments, size) if call.arguments else []
    first: dict[str, Any] = {
        "index": index,
        "id": call.id,
        "type": call.type,
        "function": {"name": call.name, "arguments": pieces[0] if pieces else ""},
    }
    return [first] + [{"index": index, "function": {"arguments": p}} for p in pieces[1:]]


def _choice_deltas(choice: Choice, size: int) -> list[dict[str, Any]]:
    """The ``choices`` entries that replay one choice, in stream order."""
    msg = choice.message
    out: list[dict[str, Any]] = []
    first: dict[str, Any] = {"role": "assistant"}
    # Message extras (reasoning_content, annotations, audio) arrive whole, with the role.
    first.update(copy_json(msg.extra))
    content = msg.content
    if isinstance(content, tuple):  # parts in an assistant reply: replay their text
        content = msg.text
    pieces = _pieces(content, size) if content is not None else []
    if pieces:
        first["content"] = pieces[0]
    out.append({"index": choice.index, "delta": first, "finish_reason": None})
    out.extend(
        {"index": choice.index, "delta": {"content": p}, "finish_reason": None} for p in pieces[1:]
    )
    if msg.refusal is not None:
        out.extend(
            {"index": choice.index, "delta": {"refusal": p}, "finish_reason": None}
            for p in _pieces(msg.refusal, size)
        )
    for i, call in enumerate(msg.tool_calls or ()):
        out.extend(
            {"index": choice.index, "delta": {"tool_calls": [frag]}, "finish_reason": None}
            for frag in _call_fragments(i, call, size)
        )
    last: dict[str, Any] = {
        "index": choice.index,
        "delta": {},
        "finish_reason": choice.finish_reason,
    }
    logprobs = choice.extra.get("logprobs")
    if logprobs is not None:
        last["logprobs"] = copy_json(logprobs)
    out.append(last)
    return out


def chunks_from_response(
    response: ChatResponse, *, piece_size: int = DEFAULT_PIECE
) -> list[ChatChunk]:
    """Replay a complete response as the stream chunks a server would have sent.

    For each choice: a chunk with the role (and the message's extra fields), the content in
    pieces of ``piece_size`` characters, the refusal, each tool call (id, type and name first,
    then its arguments in pieces), and a chunk with the finish reason (and ``logprobs``); then
    one usage chunk if the response has usage. Top-level extras (``system_fingerprint``) ride
    on the first chunk. :func:`response_from_chunks` gives the response back.

    Not replayed: a choice's keys other than ``logprobs``, and a message's ``name``.

    Example::

        >>> from convkit.chat import ChatResponse
        >>> from convkit.messages import Message
        >>> resp = ChatResponse(id="r1", model="m", created=1, message=Message.assistant("Hi!"),
        ...                     finish_reason="stop")
        >>> [c.text for c in chunks_from_response(resp, piece_size=2)]
        ['Hi', '!', '']
    """
    if piece_size < 1:
        raise ValueError(f"piece_size must be at least 1, got {piece_size}")
    head = _head(response)
    choices = response.choices or (
        Choice(index=0, message=response.message, finish_reason=response.finish_reason),
    )
    objs: list[dict[str, Any]] = []
    for choice in sorted(choices, key=lambda c: c.index):
        objs.extend({**head, "choices": [d]} for d in _choice_deltas(choice, piece_size))
    if response.usage is not None:
        objs.append({**head, "choices": [], "usage": response.usage.to_openai()})
    if response.extra:
        objs[0].update(copy_json(response.extra))
    return [ChatChunk.from_openai(o) for o in objs]


def response_from_chunks(chunks: Iterable[ChatChunk]) -> ChatResponse:
    """Accumulate chunks into the response they stand for (a :class:`StreamAccumulator`)."""
    acc = StreamAccumulator()
    for chunk in chunks:
        acc.feed(chunk)
    return acc.response()


def text_chunk(
    text: str,
    *,
    id: str = "",  # noqa: A002 - the wire field's name
    model: str = "",
    index: int = 0,
    finish_reason: str | None = None,
) -> ChatChunk:
    """A chunk adding ``text`` to choice ``index`` (to inject text, or to script a test).

    Example::

        >>> text_chunk("Hello").text
        'Hello'
    """
    return ChatChunk.from_openai(
        {
            "id": id,
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [
                {"index": index, "delta": {"content": text}, "finish_reason": finish_reason}
            ],
        }
    )


def with_text(chunk: ChatChunk, text: str) -> ChatChunk:
    """A copy of ``chunk`` whose first choice adds ``text`` instead of what it added.

    Everything else (id, model, other choices, tool-call fragments, finish reason) is kept.
    A chunk without a first choice (the usage chunk) gets one.

    Example::

        >>> with_text(text_chunk("secret", id="c1"), "[hidden]").text
        '[hidden]'
    """
    raw: dict[str, Any] = dict(chunk.raw)
    choices = [dict(c) if isinstance(c, Mapping) else c for c in raw.get("choices") or ()]
    for c in choices:
        if c.get("index", 0) == 0:
            c["delta"] = {**(c.get("delta") or {}), "content": text}
            break
    else:
        choices.insert(0, {"index": 0, "delta": {"content": text}, "finish_reason": None})
    raw["choices"] = choices
    return ChatChunk.from_openai(raw)
