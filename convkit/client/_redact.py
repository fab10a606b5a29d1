"""Keeping the API key out of text and values built from server data (private).

Some servers echo what they received, the ``Authorization`` header included, in error bodies.
Everything the clients build from server data — error messages, decoded bodies, text quoted
from a stream — goes through one :class:`Redactor` first.
"""

from __future__ import annotations

from typing import Any

from convkit.errors import APIStatusError, TransportError

__all__ = ["REDACTED", "Redactor"]

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

    __slots__ = ("_key",)

    def __init__(self, api_key: str | None) -> None:
        self._key = api_key if api_key and len(api_key) >= _SHORTEST_KEY else None

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

    def error(self, err: TransportError) -> TransportError:
        """``err`` with the key cut out of its message (and of an API error's body)."""
        if self._key is None:
            return err
        if err.args and isinstance(err.args[0], str):
            text = _cut_key(err.args[0], self._key)
            if text is not err.args[0]:
                err.args = (text, *err.args[1:])
        if isinstance(err, APIStatusError):
            err.body = self.value(err.body)
        return err


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
