"""convkit-redact: secrets and personal data never leave the process; replies get them back.

Before every completions call a conversation makes — user turns, tool follow-ups and
summaries — ``finalize_request`` replaces each API key, bearer token, private key, e-mail
address, phone number, card number (Luhn-checked), IBAN (mod-97-checked) and high-entropy
token in the outgoing messages with a placeholder such as ``[EMAIL_1]``. The same value gets
the same placeholder for the whole conversation (the map lives in
``context.state_for("redact")``). The stream middleware (``tryfirst``: it sees the raw chunks
before any other) puts the originals back into the reply as it streams, even when a
placeholder is split across chunks, and ``process_response`` restores the complete response
(every choice, refusals and tool-call arguments) — so what the caller sees and what is stored
are the originals; only the request carries placeholders.

Installed, the plugin loads through its entry point (``redact``) for every conversation.
Configure it per conversation::

    Conversation("gpt-4o", plugin_settings={"redact": {
        "disable": ["phone"],                        # built-in detectors to leave out
        "patterns": {"employee_id": r"EMP-\\d{6}"},  # more, as [EMPLOYEE_ID_1]
    }})

or register a configured instance yourself (then exclude the entry point with
``CONVKIT_PLUGINS``, or leave it: both share one map and masking twice changes nothing)::

    Conversation("gpt-4o", plugins=[Redact(disable=["high_entropy"])])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from convkit import ChatResponse, Message, TextPart, hookimpl
from convkit.chat import ChatRequest
from convkit.hookspecs import CallContext, OutgoingRequest

from convkit_redact.detectors import BUILTIN, BUILTIN_NAMES, Detector, custom_detector, find
from convkit_redact.restore import Restorer, restore_response, restore_text

__all__ = [
    "NAME",
    "Redact",
    "Restorer",
    "Vault",
    "finalize_request",
    "process_response",
    "restore_text",
    "wrap_stream",
]

#: The plugin's name: its entry point, its settings key and its state key.
NAME = "redact"


# --------------------------------------------------------------------------- the hooks
# Registered through the entry point, the module itself is the plugin: its hooks use a
# default Redact() configured by the conversation's plugin settings.


@hookimpl
def finalize_request(request: OutgoingRequest, context: CallContext) -> None:
    """Mask the secrets in everything about to be sent (turns, tool follow-ups, summaries)."""
    _DEFAULT.finalize_request(request, context)


@hookimpl(tryfirst=True)
def wrap_stream(request: ChatRequest, context: CallContext) -> Restorer | None:
    """Restore placeholders in the live stream (None when nothing was masked yet)."""
    return _DEFAULT.wrap_stream(request, context)


@hookimpl
def process_response(response: ChatResponse, context: CallContext) -> ChatResponse | None:
    """Restore placeholders everywhere in the complete response before it is stored."""
    return _DEFAULT.process_response(response, context)


# --------------------------------------------------------------------------- the classes


@attrs.define
class Vault:
    """One conversation's placeholders: value to placeholder and back, numbered per label.

    Kept in ``context.state_for("redact")["vault"]``, so every call of the conversation (and
    every Redact instance in it) shares it.

    Example::

        >>> v = Vault()
        >>> v.placeholder("ann@example.org", "EMAIL"), v.placeholder("ann@example.org", "EMAIL")
        ('[EMAIL_1]', '[EMAIL_1]')
        >>> v.originals["[EMAIL_1]"]
        'ann@example.org'
    """

    originals: dict[str, str] = attrs.Factory(dict)
    _by_value: dict[str, str] = attrs.Factory(dict)
    _counts: dict[str, int] = attrs.Factory(dict)

    def placeholder(self, value: str, label: str) -> str:
        """The placeholder of ``value`` (a new one, ``[LABEL_n]``, the first time)."""
        found = self._by_value.get(value)
        if found is None:
            n = self._counts.get(label, 0) + 1
            self._counts[label] = n
            found = f"[{label}_{n}]"
            self._by_value[value] = found
            self.originals[found] = value
        return found

    def mask(self, text: str, detectors: Sequence[Detector]) -> str:
        """``text`` with every secret the detectors find replaced by its placeholder."""
        spans = find(text, detectors)
        if not spans:
            return text
        out, pos = [], 0
        for span in spans:
            out.append(text[pos : span.start])
            out.append(self.placeholder(span.value, span.detector.label))
            pos = span.end
        out.append(text[pos:])
        return "".join(out)


class Redact:
    """The redaction plugin, configured: which detectors run, and any patterns of your own.

    Args:
        patterns: more detectors, by name: a regex (text or compiled) or
            ``{"pattern": ..., "label": ...}``; a group named ``secret`` masks only that part.
        disable: built-in detectors to leave out: ``api_key``, ``aws_key``, ``bearer``,
            ``jwt``, ``private_key``, ``email``, ``phone``, ``card``, ``iban``,
            ``high_entropy``.

    Each conversation's ``plugin_settings["redact"]`` adds to this: ``patterns`` and
    ``disable`` as above, and ``enabled`` (False: this conversation sends everything as is).

    Raises:
        ValueError: an unknown detector name in ``disable``, or a bad pattern.

    Example::

        conv = Conversation("gpt-4o", plugins=[Redact(patterns={"ticket": r"TCK-\\d{5}"})])
        conv.send("ticket TCK-12345, mail bob@example.com")   # sent: [TICKET_1], [EMAIL_1]
    """

    def __init__(
        self,
        *,
        patterns: Mapping[str, str | re.Pattern[str] | Mapping[str, Any]] | None = None,
        disable: Iterable[str] = (),
    ) -> None:
        self._base = _detectors(BUILTIN, patterns or {}, disable)
        self._by_settings: dict[str, tuple[Detector, ...]] = {}

    def detectors(self, context: CallContext | None = None) -> tuple[Detector, ...]:
        """The detectors for a call: this plugin's, adjusted by the conversation's settings."""
        settings = context.settings_for(NAME) if context is not None else {}
        if not settings.get("patterns") and not settings.get("disable"):
            return self._base
        key = repr((sorted(settings.get("patterns", {}).items()), settings.get("disable")))
        found = self._by_settings.get(key)
        if found is None:
            found = self._by_settings[key] = _detectors(
                self._base, settings.get("patterns") or {}, settings.get("disable") or ()
            )
        return found

    @staticmethod
    def vault(context: CallContext) -> Vault:
        """The conversation's :class:`Vault` (created on first use)."""
        state = context.state_for(NAME)
        vault = state.get("vault")
        if not isinstance(vault, Vault):
            vault = state["vault"] = Vault()
        return vault

    # ---- hooks

    @hookimpl
    def finalize_request(self, request: OutgoingRequest, context: CallContext) -> None:
        """Mask every message about to be sent (see the module docs)."""
        if context.settings_for(NAME).get("enabled", True) is False:
            return
        detectors = self.detectors(context)
        if not detectors:
            return
        vault = self.vault(context)
        masked = [_mask_message(m, vault, detectors) for m in request.messages]
        if any(a is not b for a, b in zip(masked, request.messages, strict=True)):
            request.messages = masked

    @hookimpl(tryfirst=True)
    def wrap_stream(self, request: ChatRequest, context: CallContext) -> Restorer | None:
        """A :class:`Restorer` for this stream, or None when nothing was masked."""
        vault = context.state_for(NAME).get("vault")
        if not isinstance(vault, Vault) or not vault.originals:
            return None
        return Restorer(vault.originals)

    @hookimpl
    def process_response(self, response: ChatResponse, context: CallContext) -> ChatResponse | None:
        """The response with every placeholder restored, or None when it holds none."""
        vault = context.state_for(NAME).get("vault")
        if not isinstance(vault, Vault) or not vault.originals:
            return None
        return restore_response(response, vault.originals)


def _detectors(
    base: Sequence[Detector],
    patterns: Mapping[str, Any],
    disable: Iterable[str],
) -> tuple[Detector, ...]:
    if isinstance(disable, str):
        disable = [disable]
    off = set(disable)
    known = BUILTIN_NAMES | {d.name for d in base}
    unknown = off - known - set(patterns)
    if unknown:
        raise ValueError(
            f"redact: no detector named {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    if not isinstance(patterns, Mapping):
        raise ValueError("redact: 'patterns' must map names to regular expressions")
    extra = [custom_detector(name, spec) for name, spec in patterns.items()]
    names = {d.name for d in extra}
    kept = [d for d in base if d.name not in off and d.name not in names]
    return tuple(kept + [d for d in extra if d.name not in off])


def _mask_message(message: Message, vault: Vault, detectors: Sequence[Detector]) -> Message:
    changes: dict[str, Any] = {}
    content = message.content
    if isinstance(content, str):
        masked = vault.mask(content, detectors)
        if masked != content:
            changes["content"] = masked
    elif isinstance(content, tuple):
        parts = tuple(
            attrs.evolve(p, text=vault.mask(p.text, detectors)) if isinstance(p, TextPart) else p
            for p in content
        )
        if parts != content:
            changes["content"] = parts
    if message.refusal is not None:
        masked = vault.mask(message.refusal, detectors)
        if masked != message.refusal:
            changes["refusal"] = masked
    if message.tool_calls:
        calls = tuple(
            attrs.evolve(c, arguments=vault.mask(c.arguments, detectors))
            for c in message.tool_calls
        )
        if calls != message.tool_calls:
            changes["tool_calls"] = calls
    return attrs.evolve(message, **changes) if changes else message


_DEFAULT = Redact()
