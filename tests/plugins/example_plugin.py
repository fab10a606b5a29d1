"""An example plugin: e-mail addresses never reach the model, and replies get them back.

``finalize_request`` swaps each address in what is about to be sent for a placeholder
(``<<EMAIL1>>``), remembered in the conversation's plugin state, so the same address gets the
same placeholder on every call, summaries included. The stream middleware puts the addresses
back into the reply, holding back text that may be the start of a placeholder split across
chunks. Installed as a distribution, it would declare::

    [project.entry-points.convkit]
    mask-emails = "convkit_mask_emails"
"""

from __future__ import annotations

import re

import attrs

from convkit.chat import ChatChunk, ChatRequest
from convkit.hookspecs import CallContext, OutgoingRequest, hookimpl
from convkit.plugins import text_chunk, with_text

NAME = "mask-emails"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@hookimpl
def finalize_request(request: OutgoingRequest, context: CallContext) -> None:
    """Replace every e-mail address in the outgoing text messages with its placeholder."""
    placeholders = context.state_for(NAME)  # placeholder -> address, for the whole conversation
    by_address = {address: p for p, address in placeholders.items()}

    def mask(match: re.Match[str]) -> str:
        address = match.group(0)
        if address not in by_address:
            by_address[address] = f"<<EMAIL{len(by_address) + 1}>>"
            placeholders[by_address[address]] = address
        return by_address[address]

    request.messages = [
        attrs.evolve(m, content=EMAIL.sub(mask, m.content)) if isinstance(m.content, str) else m
        for m in request.messages
    ]


@hookimpl(tryfirst=True)  # first in the pipeline: later middleware see the real addresses
def wrap_stream(request: ChatRequest, context: CallContext) -> Unmask | None:
    """Restore the addresses in the reply, if this conversation has masked any."""
    placeholders = context.state_for(NAME)
    return Unmask(placeholders) if placeholders else None


class Unmask:
    """Stream middleware: placeholders back to addresses, even when split across chunks."""

    def __init__(self, placeholders: dict[str, str]) -> None:
        self.placeholders = placeholders
        self.held = ""  # text that may be the start of a placeholder
        self.last: ChatChunk | None = None

    def _restore(self, text: str) -> str:
        return re.sub(
            r"<<EMAIL\d+>>", lambda m: self.placeholders.get(m.group(0), m.group(0)), text
        )

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        if not chunk.text:
            return [chunk]  # role, tool-call, finish and usage chunks pass as they are
        text = self.held + chunk.text
        start = text.rfind("<<")
        if start == -1 and text.endswith("<"):
            start = len(text) - 1
        if start != -1 and ">>" not in text[start:] and len(text) - start < 16:
            text, self.held = text[:start], text[start:]
        else:
            self.held = ""
        self.last = chunk
        return [with_text(chunk, self._restore(text))] if text else []

    def close(self) -> list[ChatChunk]:
        held, self.held = self.held, ""
        if not held:
            return []
        last = self.last
        return [text_chunk(held, id=last.id if last else "", model=last.model if last else "")]
