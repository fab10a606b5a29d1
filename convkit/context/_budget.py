"""Budget arithmetic: the reply's reserve, the prompt budget, what the fixed prefix costs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from convkit.errors import InvalidRequestError
from convkit.messages import Message
from convkit.tokens import TokenCounter

__all__ = ["counting_key", "default_reply_reserve", "prompt_budget", "summary_tokens"]


def default_reply_reserve(context_window: int, max_output_tokens: int) -> int:
    """Tokens held for the reply when a request names no ``max_tokens``.

    ``min(4096, max_output_tokens, context_window // 4)``: enough for a long answer without
    starving small windows (gpt-4's 8,192 keeps 2,048).
    """
    return min(4096, max_output_tokens, context_window // 4)


def check_tokens(value: Any, name: str, *, minimum: int) -> None:
    """Refuse a token figure that is not a whole number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise InvalidRequestError(
            f"{name} must be a {kind} whole number, got {value!r}", param=name
        )


def prompt_budget(
    counter: TokenCounter,
    *,
    max_prompt_tokens: int | None = None,
    reply_tokens: int | None = None,
) -> int:
    """The prompt-token budget for ``counter``'s model (tools not yet subtracted).

    The one place a budget is read, so every entry point (``trim_messages``, the policies, a
    conversation) holds it to one rule: ``max_prompt_tokens`` a positive whole number and
    ``reply_tokens`` a non-negative one; ``nan``, ``inf``, floats and booleans raise
    :class:`~convkit.InvalidRequestError` (a :class:`ValueError`).
    """
    if max_prompt_tokens is not None:
        check_tokens(max_prompt_tokens, "max_prompt_tokens", minimum=1)
        return max_prompt_tokens
    info = counter.info
    if reply_tokens is not None:
        check_tokens(reply_tokens, "max_tokens", minimum=0)
    reserve = (
        reply_tokens
        if reply_tokens is not None
        else default_reply_reserve(info.context_window, info.max_output_tokens)
    )
    if reserve >= info.context_window:
        raise InvalidRequestError(
            f"the reply reserve ({reserve} tokens) leaves no room for a prompt in "
            f"{info.name}'s {info.context_window}-token context window",
            param="max_tokens",
        )
    return math.floor((info.context_window - reserve) * (1.0 - info.safety_margin))


def counting_key(counter: Any) -> str:
    """The rules a message's count depends on: encoding and per-message overheads.

    A count made under one key is valid under the same key only: two models can share an
    encoding and still frame messages differently (gpt-3.5-turbo-0301 adds 4 tokens a message,
    later models 3).
    """
    info = getattr(counter, "info", None)
    encoding = counter.encoding_name
    if info is None:
        return str(encoding)
    return f"{encoding}/{info.tokens_per_message}/{info.tokens_per_name}"


def summary_tokens(counter: TokenCounter, summary: Any, role: str = "system") -> int:
    """What ``summary``'s message costs: its stored count when made under ``counter``'s rules."""
    if (
        role == "system"
        and summary.tokens > 0
        and getattr(summary, "counted_with", None) == counting_key(counter)
    ):
        return int(summary.tokens)
    return counter.count_message(summary.as_message(role))


def prefix_tokens(
    counter: TokenCounter,
    prefix: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    summary_cost: int = 0,
    *,
    summary_message: Message | None = None,
    tool_choice: Any = None,
) -> int:
    """Reply priming + tools (and ``tool_choice``) + the system messages + a summary's cost.

    Tools are counted as the API renders them beside the request's first system or developer
    message (the summary's, when there is no system prompt).
    """
    first = next((m for m in prefix if m.role in ("system", "developer")), None)
    if (
        first is None
        and summary_message is not None
        and summary_message.role
        in (
            "system",
            "developer",
        )
    ):
        first = summary_message
    return (
        counter.info.reply_priming
        + counter.count_tools(tools, tool_choice, system=first)
        + sum(counter.count_message(m) for m in prefix)
        + summary_cost
    )
