"""Checking what a turn is given, and small rules the turn applies to values."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from convkit.chat import ChatResponse
from convkit.errors import ContextLengthExceededError, InvalidMessageError, InvalidRequestError
from convkit.messages import Message, as_message

__all__ = ["user_message"]


def user_message(content: Any) -> Message:
    """The user message for ``content``: text, a Message, a wire dict or content parts.

    Raises:
        InvalidMessageError: empty text, wrong types, an invalid dict (nothing is stored).
    """
    if isinstance(content, str):
        if not content.strip():
            raise InvalidMessageError("the message is empty", field="content")
        return Message.user(content)
    if isinstance(content, Message):
        msg = content
    elif isinstance(content, Mapping):
        msg = as_message(content)
    elif isinstance(content, (list, tuple)):
        if not content:
            raise InvalidMessageError("the message has no content parts", field="content")
        msg = Message.user(list(content))
    else:
        raise InvalidMessageError(
            f"content must be text, a Message, a dict or a list of parts, got "
            f"{type(content).__name__}",
            field="content",
        )
    if msg.role != "user":
        # The user's turn: assistant or tool messages would break the thread's pairing, and
        # system prompts belong to the conversation (``system=``, ``set_system``).
        hint = {
            "tool": "use add_tool_result() for tool results",
            "system": "use set_system() for the system prompt",
            "developer": "use set_system() for the system prompt",
        }.get(msg.role, "only the user's messages are sent this way")
        raise InvalidMessageError(
            f"a {msg.role} message cannot be a user turn; {hint}", field="role"
        )
    if isinstance(msg.content, str) and not msg.content.strip():
        raise InvalidMessageError("the message is empty", field="content")
    return msg


def _tool_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    try:
        return json.dumps(content, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMessageError(
            f"a tool result must be text or JSON-serializable, got {type(content).__name__}",
            field="content",
        ) from exc


_OVERFLOW_FIGURES = re.compile(r"(\d[\d,]*)\s*tokens", re.IGNORECASE)


def _overshoot(err: ContextLengthExceededError) -> int | None:
    """How many tokens over the limit the API says the prompt was, when it says so."""
    numbers = [int(n.replace(",", "")) for n in _OVERFLOW_FIGURES.findall(str(err))]
    if len(numbers) >= 2 and numbers[1] > numbers[0]:
        return numbers[1] - numbers[0]
    return None


def _with_budget(policy: Any, budget: int) -> Any:
    """A copy of ``policy`` fitted to ``budget`` (calibrated or tightened)."""
    try:
        return attrs.evolve(policy, max_prompt_tokens=budget, counter=policy.counter)
    except (TypeError, ValueError, attrs.exceptions.NotAnAttrsClassError) as exc:
        raise InvalidRequestError(
            f"the context policy {type(policy).__name__} cannot be given a budget: {exc}"
        ) from exc


def _reply_tokens(params: Mapping[str, Any]) -> int | None:
    value = params.get("max_completion_tokens", params.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_answer(answer: Any, hook: str) -> ChatResponse | None:
    if answer is None or isinstance(answer, ChatResponse):
        return answer
    raise InvalidRequestError(
        f"a {hook} hook returned {type(answer).__name__}; expected a ChatResponse or None"
    )


def _storable_partial(message: Message) -> Message | None:
    """What of a cut-short reply can be stored (text kept; None when nothing arrived)."""
    has_text = bool(message.text) or message.refusal is not None
    if not has_text and not message.tool_calls:
        return None
    return message
