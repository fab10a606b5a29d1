"""Server-sent events, parsed incrementally and without I/O (private).

:class:`SSEDecoder` turns bytes, split at any point, into :class:`ServerSentEvent` values,
following the WHATWG event-stream rules: lines end in CR, LF or CRLF (a CRLF may be split across
two feeds); lines starting with ``:`` are comments (``: keep-alive``); ``data:`` takes an
optional single space; several ``data`` lines form one event joined with ``"\\n"``; a blank line
dispatches the event. Bytes are decoded with an incremental UTF-8 decoder, so a character split
across two network reads comes out whole.

:class:`ChatEventDecoder` sits on top and speaks the chat-completions dialect: ``[DONE]`` ends
the stream, ``event: error`` (or a ``data`` object holding only ``error``) fails it with the
matching :class:`~convkit.APIStatusError`, and anything that is not JSON fails it with
:class:`~convkit.StreamError`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from convkit._wire import JSON_ERRORS, error_detail
from convkit.errors import (
    APIStatusError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
    status_error_class,
)

__all__ = [
    "ChatEventDecoder",
    "EventTooLongError",
    "SSEDecoder",
    "ServerSentEvent",
    "error_from_event",
]


class EventTooLongError(ValueError):
    """One line, or one event's data, grew past the decoder's ``max_event_chars``."""


class ServerSentEvent(NamedTuple):
    """One dispatched event: its ``data`` (lines joined by ``"\\n"``), type, id and retry."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


# NamedTuple's generated __new__ is a Python function; building the tuple directly halves the
# cost of the one object made per event.
_new_event = tuple.__new__


class SSEDecoder:
    """Incremental event-stream parser: ``feed(bytes)`` returns the events completed so far.

    The work is linear in the input however it is split: a line that arrives in many pieces is
    held as those pieces and joined once, when it ends. ``max_event_chars`` (None: no bound)
    bounds the characters of one line and of one event's data; past it :meth:`feed` raises
    :class:`EventTooLongError` and the decoder is spent.

    Example::

        >>> d = SSEDecoder()
        >>> d.feed(b"data: hel")
        []
        >>> d.feed(b"lo\\r\\n\\r\\n")
        [ServerSentEvent(data='hello', event=None, id=None, retry=None)]
    """

    __slots__ = (
        "_data",
        "_data_chars",
        "_decoder",
        "_event",
        "_held",
        "_held_chars",
        "_last_id",
        "_max",
        "_retry",
        "_skip_lf",
        "_split_char",
        "_started",
        "_tail",
    )

    def __init__(self, *, max_event_chars: int | None = None) -> None:
        self._max = max_event_chars
        # Pieces of the current line that came in feeds without a line end, joined when it ends.
        self._held: list[str] = []
        self._held_chars = 0
        self._data_chars = 0  # characters of data lines held for the current event
        # "replace" as the spec says: one bad byte must not cost the rest of the stream.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._split_char = False  # the decoder holds the first bytes of a split character
        self._tail = ""  # the current, not yet terminated line
        self._skip_lf = False  # the previous text ended in CR: a leading LF completes a CRLF
        self._started = False
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completed (possibly none)."""
        if not chunk:
            return []
        if not self._split_char and chunk[-1] < 0x80:
            # Nothing held back and the piece ends on a whole character: plain decoding gives
            # exactly what the incremental decoder would, several times faster.
            return self._feed_text(chunk.decode("utf-8", "replace"))
        text = self._decoder.decode(chunk)
        self._split_char = bool(self._decoder.getstate()[0])
        return self._feed_text(text)

    def close(self) -> list[ServerSentEvent]:
        """Signal end of input and return what was still pending.

        Unlike a browser, a final event that lacks its closing blank line is still delivered:
        several servers end with ``data: [DONE]`` and a single newline. Callers decide whether
        such an event is complete.
        """
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._join_held()
        if self._tail:
            line, self._tail = self._tail, ""
            events.extend(self._lines([line]))
        if self._data:
            events.append(self._dispatch())
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":  # a byte-order mark may open the stream; it is not data
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\n" not in text and "\r" not in text:
            # No line ends here: hold the piece. Joining it to the tail now would copy the
            # whole line again on every feed (quadratic in the line's length).
            self._held.append(text)
            self._held_chars += len(text)
            if self._max is not None and len(self._tail) + self._held_chars > self._max:
                self._too_long("a line")
            return []
        self._join_held()
        buf = self._tail + text if self._tail else text
        if "\r" in buf:
            # A CR at the very end already ends its line; remember it so that an LF opening the
            # next feed is read as the second half of a CRLF, not as an empty line.
            self._skip_lf = buf[-1] == "\r"
            buf = buf.replace("\r\n", "\n").replace("\r", "\n")
        if self._data or self._event is not None:
            # In the middle of an event: go line by line.
            lines = buf.split("\n")
            self._tail = lines.pop()
            self._check_tail()
            return self._lines(lines) if lines else []
        # Fast path, the same result as the line-by-line rules: between events, cut the text at
        # blank lines; a block that is a lone "data: ..." line is an event as it stands.
        blocks = buf.split("\n\n")
        rest = blocks.pop()
        events: list[ServerSentEvent] = []
        last_id, retry = self._last_id, self._retry
        most = self._max
        for block in blocks:
            if most is not None and len(block) > most:
                self._too_long("an event")
            if block[:6] == "data: " and "\n" not in block:
                events.append(_new_event(ServerSentEvent, (block[6:], None, last_id, retry)))
            else:
                lines = block.split("\n")
                lines.append("")
                events.extend(self._lines(lines))
                last_id, retry = self._last_id, self._retry
        if rest:
            lines = rest.split("\n")
            self._tail = lines.pop()
            self._check_tail()
            if lines:
                events.extend(self._lines(lines))
        else:
            self._tail = ""
        return events

    def _join_held(self) -> None:
        if self._held:
            self._tail += "".join(self._held)
            self._held = []
            self._held_chars = 0

    def _check_tail(self) -> None:
        if self._max is not None and len(self._tail) > self._max:
            self._too_long("a line")

    def _too_long(self, what: str) -> None:
        # Drop what is held: the decoder is spent, and the caller must not keep the memory.
        self._held, self._held_chars, self._tail, self._data = [], 0, "", []
        raise EventTooLongError(f"{what} of the event stream is longer than {self._max} characters")

    def _lines(self, lines: list[str]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        most = self._max
        for line in lines:
            if most is not None and len(line) > most:
                self._too_long("a line")
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = None  # an empty event resets its type and is not dispatched
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value[:1] == " " else value)
                if self._max is not None:
                    self._data_chars += len(line)
                    if self._data_chars > self._max:
                        self._too_long("an event")
            elif line[0] == ":":
                continue  # a comment, such as ": keep-alive"
            else:
                name, colon, value = line.partition(":")
                if colon and value[:1] == " ":
                    value = value[1:]
                if name == "event":
                    self._event = value
                elif name == "data":  # a bare "data" line without a colon
                    data.append(value)
                elif name == "id":
                    if "\0" not in value:
                        self._last_id = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    self._retry = int(value)
                # any other field name is ignored, as the spec requires
        return events

    def _dispatch(self) -> ServerSentEvent:
        data = self._data
        event = ServerSentEvent(
            data[0] if len(data) == 1 else "\n".join(data),
            self._event,
            self._last_id,
            self._retry,
        )
        self._data = []
        self._data_chars = 0
        self._event = None
        return event


def error_from_event(data: str, *, request_id: str | None = None) -> APIStatusError:
    """Build the exception for an error reported inside a stream.

    The HTTP status was already 200, so the status comes from the body when it names one
    (``error.code``, ``error.status`` or ``status_code`` holding an HTTP error number) and is
    500 otherwise: the server failed mid-answer.
    """
    try:
        body: Any = json.loads(data)
    except JSON_ERRORS:
        body = data
    status = 500
    err = body.get("error") if isinstance(body, dict) else None
    candidates = []
    if isinstance(err, dict):
        candidates += [err.get("code"), err.get("status"), err.get("status_code")]
    if isinstance(body, dict):
        candidates += [body.get("status_code"), body.get("status")]
    for c in candidates:
        if isinstance(c, str) and c.isdigit():
            c = int(c)
        if isinstance(c, int) and not isinstance(c, bool) and 400 <= c <= 599:
            status = c
            break
    detail = error_detail(body)
    if detail is None:
        detail = data[:200]
    cls = status_error_class(status, body)
    return cls(
        f"error event in stream (status {status}): {detail}",
        status_code=status,
        body=body,
        request_id=request_id,
    )


class ChatEventDecoder:
    """Turn a chat-completions event stream into decoded JSON chunk objects.

    ``feed`` and ``close`` never raise: they return the chunk objects completed so far and, when
    the stream goes wrong, set :attr:`failure` (after which nothing more is decoded). That way a
    caller delivers every chunk that arrived before a fault, then reports the fault.

    * ``data: [DONE]`` sets :attr:`done`; anything after it is ignored;
    * ``event: error``, or a data object carrying ``error`` and no ``choices`` →
      :class:`~convkit.APIStatusError` (see :func:`error_from_event`);
    * data that is not a JSON object → :class:`~convkit.StreamError` (malformed);
    * :meth:`close` before ``[DONE]`` → :class:`~convkit.StreamError` (truncated);
    * a line or an event longer than ``max_event_chars`` →
      :class:`~convkit.errors.ResponseTooLargeError`.

    Error messages quote the offending data, cut to 200 characters. Pass ``redact`` (text in,
    text out) to remove secrets from it first: redacting after the cut could miss a secret the
    cut split in two.

    Example::

        >>> d = ChatEventDecoder()
        >>> d.feed(b'data: {"choices": []}\\n\\ndata: [DONE]\\n\\n'), d.done
        ([{'choices': []}], True)
        >>> d = ChatEventDecoder()
        >>> d.feed(b'data: {"choices": []}\\n\\n'), d.close(), d.failure
        ([{'choices': []}], [], StreamError('the stream ended before data: [DONE] (truncated)'))
    """

    __slots__ = ("_max", "_redact", "_sse", "done", "failure", "request_id", "truncated")

    def __init__(
        self,
        *,
        request_id: str | None = None,
        redact: Callable[[str], str] | None = None,
        max_event_chars: int | None = None,
    ) -> None:
        self._sse = SSEDecoder(max_event_chars=max_event_chars)
        self._max = max_event_chars
        self._redact = redact
        #: True once ``data: [DONE]`` has arrived.
        self.done = False
        #: The error that ended decoding, if any.
        self.failure: TransportError | None = None
        #: True when :attr:`failure` is a truncation (input ended early), not a bad event.
        self.truncated = False
        self.request_id = request_id

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Consume bytes; return the chunk objects they completed."""
        if self.done or self.failure is not None:
            return []
        try:
            events = self._sse.feed(chunk)
        except EventTooLongError:
            self.failure = self._too_long()
            return []
        return self._handle(events, False) if events else []

    def close(self) -> list[dict[str, Any]]:
        """Signal end of input; return pending chunk objects (a missing ``[DONE]`` is a failure)."""
        if self.done or self.failure is not None:
            return []
        try:
            events = self._sse.close()
        except EventTooLongError:
            self.failure = self._too_long()
            return []
        out = self._handle(events, True)
        if not self.done and self.failure is None:
            self.failure = StreamError("the stream ended before data: [DONE] (truncated)")
            self.truncated = True
        return out

    def _handle(self, events: list[ServerSentEvent], at_eof: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        loads = json.loads
        for ev in events:
            data = ev.data
            if ev.event is not None and ev.event == "error":
                self.failure = error_from_event(self._redacted(data), request_id=self.request_id)
                break
            if data == "[DONE]":
                self.done = True
                break
            try:
                obj = loads(data)
            except JSON_ERRORS:
                if at_eof:
                    self.failure = StreamError(
                        "the stream ended in the middle of an event (truncated)"
                    )
                    self.truncated = True
                else:
                    shown = self._redacted(data)[:200]
                    self.failure = StreamError(f"malformed chunk (not JSON): {shown!r}")
                break
            if type(obj) is not dict:
                shown = self._redacted(data)[:200]
                self.failure = StreamError(f"malformed chunk (not a JSON object): {shown!r}")
                break
            if "choices" not in obj and obj.get("error"):
                self.failure = error_from_event(self._redacted(data), request_id=self.request_id)
                break
            out.append(obj)
        return out

    def _too_long(self) -> ResponseTooLargeError:
        size = self._max if self._max is not None else 0
        err = ResponseTooLargeError(
            f"an event of the stream is longer than max_event_chars={size}: stopped reading",
            limit="max_event_chars",
            size=size,
        )
        err.request_id = self.request_id
        return err

    def _redacted(self, data: str) -> str:
        return self._redact(data) if self._redact is not None else data
