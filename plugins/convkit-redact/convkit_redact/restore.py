"""Putting the originals back: in a complete response, and in a live stream chunk by chunk.

:class:`Restorer` is the stream middleware. A placeholder such as ``[EMAIL_1]`` can arrive
split over several chunks (``"[EM"``, ``"AIL_"``, ``"1]"``); the middleware holds back the
tail of the text whenever it may be the start of a placeholder this conversation gave out, and
lets it go as soon as it is either complete (restored) or clearly not a placeholder (passed on
as it is). At the end of the stream, whatever is still held is flushed.

Chunks whose text holds no ``[`` while nothing is held pass through untouched: the common
case costs one substring test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs
from convkit import ChatChunk, ChatResponse, Message, TextPart
from convkit.plugins import text_chunk, with_text

__all__ = ["PLACEHOLDER", "Restorer", "restore_response", "restore_text"]

#: What a placeholder looks like: ``[LABEL_n]``.
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")


def restore_text(text: str, originals: Mapping[str, str]) -> str:
    """``text`` with every placeholder of ``originals`` replaced by its original value."""
    if "[" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: originals.get(m.group(0), m.group(0)), text)


def _restore_json_string(text: str, originals: Mapping[str, str]) -> str:
    """Restore inside JSON text (tool-call arguments): originals are escaped as JSON strings."""
    if "[" not in text:
        return text

    def put_back(m: re.Match[str]) -> str:
        found = originals.get(m.group(0))
        return m.group(0) if found is None else json.dumps(found)[1:-1]

    return PLACEHOLDER.sub(put_back, text)


def _restore_message(message: Message, originals: Mapping[str, str]) -> Message:
    changes: dict[str, Any] = {}
    if isinstance(message.content, str):
        restored = restore_text(message.content, originals)
        if restored != message.content:
            changes["content"] = restored
    elif isinstance(message.content, tuple):
        parts = tuple(
            attrs.evolve(p, text=restore_text(p.text, originals)) if isinstance(p, TextPart) else p
            for p in message.content
        )
        if parts != message.content:
            changes["content"] = parts
    if message.refusal is not None:
        restored = restore_text(message.refusal, originals)
        if restored != message.refusal:
            changes["refusal"] = restored
    if message.tool_calls:
        calls = tuple(
            attrs.evolve(c, arguments=_restore_json_string(c.arguments, originals))
            for c in message.tool_calls
        )
        if calls != message.tool_calls:
            changes["tool_calls"] = calls
    return attrs.evolve(message, **changes) if changes else message


def restore_response(response: ChatResponse, originals: Mapping[str, str]) -> ChatResponse | None:
    """The response with its placeholders restored (every choice: text, refusal, tool-call
    arguments), or None when there was nothing to restore."""
    message = _restore_message(response.message, originals)
    choices = tuple(
        attrs.evolve(c, message=_restore_message(c.message, originals)) for c in response.choices
    )
    if message is response.message and all(
        a.message is b.message for a, b in zip(choices, response.choices, strict=True)
    ):
        return None
    return attrs.evolve(response, message=message, choices=choices)


def _finishes(chunk: ChatChunk) -> bool:
    for c in chunk.raw.get("choices") or ():
        if c.get("index", 0) == 0:
            return c.get("finish_reason") is not None
    return False


class Restorer:
    """Stream middleware: placeholders in the first choice's text back to the originals.

    ``originals`` maps each placeholder this conversation gave out to its value; only those
    are held back and restored (a model inventing ``[EMAIL_9]`` gets it passed on as text).

    Example::

        >>> from convkit.testing.plugins import run_middleware_text
        >>> run_middleware_text(Restorer({"[EMAIL_1]": "ann@example.org"}), ["mail [EM", "AIL_1]"])
        'mail ann@example.org'
    """

    __slots__ = ("_held", "_last", "_longest", "_originals", "_prefixes")

    def __init__(self, originals: Mapping[str, str]) -> None:
        self._originals = dict(originals)
        # Every proper prefix of every placeholder: text ending in one of them is held back.
        self._prefixes = frozenset(p[:i] for p in self._originals for i in range(1, len(p)))
        self._longest = max((len(p) for p in self._originals), default=0)
        self._held = ""
        self._last: ChatChunk | None = None

    def feed(self, chunk: ChatChunk) -> list[ChatChunk] | tuple[ChatChunk]:
        """Pass the chunk on with its placeholders restored, holding back a possible prefix."""
        text = chunk.text
        if not self._held:
            if "[" not in text:
                return (chunk,)
        elif not text:
            if not _finishes(chunk):
                return (chunk,)  # a usage or tool-call chunk: the text is not over yet
            # The choice ends here: nothing more can complete the held text.
            held, self._held = self._held, ""
            return [with_text(chunk, restore_text(held, self._originals))]
        buf = self._held + text
        cut = len(buf)
        start = buf.rfind("[", max(0, cut - self._longest))
        if start != -1 and buf[start:] in self._prefixes and not _finishes(chunk):
            cut = start
        out, self._held = buf[:cut], buf[cut:]
        self._last = chunk
        if not out:
            return []  # all of it held back: the chunk is dropped for now
        return [with_text(chunk, restore_text(out, self._originals))]

    def close(self) -> list[ChatChunk]:
        """End of stream: pass on what is held (an unfinished placeholder is just text)."""
        held, self._held = self._held, ""
        if not held:
            return []
        last = self._last
        return [text_chunk(held, id=last.id if last else "", model=last.model if last else "")]
