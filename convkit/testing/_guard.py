"""A responder that checks every request against a model's real context window.

The loopback server answers whatever it is sent; :class:`ContextWindowGuard` makes it behave
like the API on size: it counts each request body's prompt tokens exactly as convkit counts
them (messages, tools, ``tool_choice``), adds the reply's reserve (``max_completion_tokens`` /
``max_tokens``), and answers ``400 context_length_exceeded`` — with the API's message naming
both figures — when they exceed the window. It records every figure, so a test can assert that
no request was over.

Example::

    guard = ContextWindowGuard("gpt-4", context_window=8_192, reply=lambda r: Reply.text("ok"))
    with FakeChatServer(default_responder=guard) as server:
        ...
    assert guard.rejected == 0 and guard.largest <= 8_192
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from convkit.testing._replies import RecordedRequest, Reply, echo_responder

__all__ = ["ContextWindowGuard"]


class ContextWindowGuard:
    """A ``default_responder`` rejecting requests that would not fit ``context_window``.

    Args:
        model: the model whose counting rules measure the bodies.
        context_window: prompt plus reply tokens the "model" accepts.
        reply: answers a request that fits (default: echo the last user message).

    Attributes:
        seen: ``(prompt_tokens, reply_reserve)`` of every request, in order.
        rejected: how many requests were answered ``context_length_exceeded``.
        largest: the largest ``prompt_tokens + reply_reserve`` seen.
    """

    def __init__(
        self,
        model: str,
        *,
        context_window: int,
        reply: Callable[[RecordedRequest], Reply] = echo_responder,
    ) -> None:
        from convkit.tokens import TokenCounter

        self.counter = TokenCounter(model)
        self.context_window = context_window
        self.reply = reply
        self.seen: list[tuple[int, int]] = []
        self.rejected = 0
        self._lock = threading.Lock()

    @property
    def largest(self) -> int:
        """The largest prompt plus reply reserve among the requests seen (0 before any)."""
        with self._lock:
            return max((p + r for p, r in self.seen), default=0)

    def prompt_tokens(self, body: Any) -> int:
        """The body's prompt tokens by convkit's count (usable as ``prompt_tokens_fn``)."""
        return self.counter.count(
            body.get("messages") or [],
            tools=body.get("tools"),
            tool_choice=body.get("tool_choice"),
        )

    def __call__(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        prompt = self.prompt_tokens(body)
        reserve = body.get("max_completion_tokens", body.get("max_tokens")) or 0
        reserve = reserve if isinstance(reserve, int) else 0
        with self._lock:
            self.seen.append((prompt, reserve))
            over = prompt + reserve > self.context_window
            if over:
                self.rejected += 1
        if over:
            return Reply.error(
                400,
                code="context_length_exceeded",
                message=(
                    f"This model's maximum context length is {self.context_window} tokens. "
                    f"However, you requested {prompt + reserve} tokens ({prompt} in the "
                    f"messages, {reserve} in the completion)."
                ),
            )
        return self.reply(request)
