"""Keeping the API key out of text and values built from server data (private).

Some servers echo what they received, the ``Authorization`` header included, in error bodies.
Everything the clients build from server data — error messages, decoded bodies, text quoted
from a stream, exception chains — goes through one :class:`Redactor` first; the log records of
httpx and httpcore pass a filter that cuts the keys of every live client out.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from convkit.errors import APIStatusError, TransportError

__all__ = ["HTTP_LOGGERS", "REDACTED", "Redactor"]

#: What replaces the API key, or a piece of it, in text built from server data.
REDACTED = "[redacted]"
# The shortest start of the key that is redacted on its own: text cut to a length (by a server,
# by Python's repr of a long value) may end inside the key and keep only its first characters.
_KEY_FRAGMENT = 8
# Shorter keys are not redacted at all: a 3-character key would blank out ordinary words.
_SHORTEST_KEY = 4


class Redactor:
    """Removes one API key, and any run of its first 8 or more characters, from text and values.

    A run of the key's first characters is what is left of it where text was cut to a length;
    redacting those too means a cut can never leave a usable part of the key. Keys shorter
    than 4 characters are left alone.
    """

    __slots__ = ("__weakref__", "_key")

    def __init__(self, api_key: str | None) -> None:
        self._key = api_key if api_key and len(api_key) >= _SHORTEST_KEY else None
        if self._key is not None:
            _LOG_GUARD.watch(self)

    def __repr__(self) -> str:
        return f"Redactor(active={self._key is not None})"

    def text(self, text: str) -> str:
        """``text`` with the key cut out (``text`` itself when there is nothing to cut)."""
        key = self._key
        return text if key is None else _cut_key(text, key)

    def value(self, value: Any) -> Any:
        """A decoded JSON value with the key cut out of every string, keys of objects included."""
        if self._key is None:
            return value
        if isinstance(value, str):
            return _cut_key(value, self._key)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def header(self, headers: Mapping[str, str], name: str) -> str | None:
        """Header ``name`` with the key cut out (a server may echo the key in any header)."""
        value = headers.get(name)
        return None if value is None else self.text(value)

    def error(self, err: TransportError) -> TransportError:
        """``err`` with the key cut out of everything it carries and of its whole chain.

        Its message, an API error's ``body``, its ``request_id``, and every exception in its
        ``__cause__`` / ``__context__`` chain (httpx and httpcore quote what they were given): an
        exception whose text still shows the key once its arguments are redacted is replaced
        in the chain by a plain :class:`Exception` holding its redacted text.
        """
        key = self._key
        if key is None:
            return err
        _cut_args(err, key)
        if isinstance(err, APIStatusError):
            err.body = self.value(err.body)
        if err.request_id is not None:
            err.request_id = _cut_key(err.request_id, key)
        seen = {id(err)}
        todo: list[BaseException] = [err]
        while todo:
            link = todo.pop()
            for attr in ("__cause__", "__context__"):
                nxt = getattr(link, attr)
                if nxt is None or id(nxt) in seen:
                    continue
                seen.add(id(nxt))
                _cut_args(nxt, key)
                if _shows(nxt, key):
                    plain = Exception(f"{type(nxt).__name__}: {_cut_key(str(nxt), key)}")
                    plain.__cause__ = nxt.__cause__
                    plain.__context__ = nxt.__context__
                    plain.__suppress_context__ = nxt.__suppress_context__
                    setattr(link, attr, plain)
                    seen.add(id(plain))
                    nxt = plain
                todo.append(nxt)
        return err


#: The loggers of httpx and httpcore: they quote what servers send (a reason phrase, response
#: headers) and the exceptions they meet, in which a server may echo the key.
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _LogGuard(logging.Filter):
    """A filter on :data:`HTTP_LOGGERS` that cuts the keys of every live client out of records.

    Installed when the first client with a key is made. It costs nothing while those loggers are
    off (no record is made), and a ``getMessage()`` per record when they are on.
    """

    def __init__(self) -> None:
        super().__init__("convkit")
        self._redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
        self._installed = False
        self._lock = threading.Lock()

    def watch(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)
            if not self._installed:
                for name in HTTP_LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(self._redactors)
        if not redactors:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a broken record is the logging module's to report
            return True
        cut = text
        for r in redactors:
            cut = r.text(cut)
        if cut is not text:
            record.msg, record.args = cut, None
        return True


_LOG_GUARD = _LogGuard()


def _cut_args(exc: BaseException, key: str) -> None:
    """Redact the key from the string arguments of ``exc`` (nested exceptions included)."""
    args = exc.args
    new = tuple(_cut_any(a, key) for a in args)
    if any(a is not b for a, b in zip(new, args, strict=True)):
        exc.args = new


def _cut_any(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return _cut_key(value, key)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("latin-1")
        cut = _cut_key(text, key)
        return value if cut is text else cut.encode("latin-1")
    if isinstance(value, BaseException):
        _cut_args(value, key)
    return value


def _shows(exc: BaseException, key: str) -> bool:
    """Whether the text of ``exc`` still shows the key or the start of it."""
    head = key[:_KEY_FRAGMENT]
    try:
        return head in str(exc) or head in repr(exc)
    except Exception:  # a broken __str__ may hide anything: replace the exception to be safe
        return True


def _cut_key(text: str, key: str) -> str:
    """``text`` with every occurrence of ``key``, and of its first 8+ characters, redacted.

    Returns ``text`` itself when there is nothing to redact.
    """
    head = key[:_KEY_FRAGMENT]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        # Take the match as far as it follows the key: the whole key, or what a cut left.
        end, n = start + len(head), len(head)
        while end < len(text) and n < len(key) and text[end] == key[n]:
            end += 1
            n += 1
        out.append(text[done:start])
        out.append(REDACTED)
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)
