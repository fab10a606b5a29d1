"""What a turn reports: the reply, the window report, calibration."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field, frozen

from convkit.errors import SummarizationError
from convkit.messages import Message, ToolCall, Usage

__all__ = [
    "MAX_CALIBRATION",
    "Calibration",
    "CalibrationEntry",
    "Reply",
    "WindowReport",
    "tools_key",
]


@frozen(kw_only=True)
class WindowReport:
    """What a request held: enough for a chatbot UI to say "older messages were summarized".

    Attributes:
        prompt_tokens: the prompt tokens convkit counted for the request it sent.
        reported_prompt_tokens: what the API reported (``usage.prompt_tokens``), or None.
        budget: the prompt budget the window was fitted to (after calibration).
        messages: how many messages the request carried (system prompt and summary included).
        dropped: how many messages after the summary's coverage were left out.
        first_seq: ``seq`` of the oldest history message sent (None if none).
        summary_through: ``covers_through_seq`` of the summary the request carried, or None.
        summarized: ``seq`` of the messages folded into a new summary by this turn (made after
            the reply, for the next turn, unless the policy summarizes before sending).
        truncated: the newest message's text was cut to fit.
        exact: the count reproduces the API's (False: an estimate for an unknown model).
        calibration: the factor budgets were divided by for this model (1.0: none).
        summary_error: a summarization failure the turn recovered from, or None.
        answered_by_plugin: a hook answered without calling the API.
    """

    prompt_tokens: int
    reported_prompt_tokens: int | None
    budget: int
    messages: int
    dropped: int
    first_seq: int | None
    summary_through: int | None
    summarized: tuple[int, ...] = ()
    truncated: bool = False
    exact: bool = True
    calibration: float = 1.0
    summary_error: SummarizationError | None = None
    answered_by_plugin: bool = False


@frozen(kw_only=True)
class Reply:
    """The outcome of one turn.

    Attributes:
        message: the assistant message (as stored).
        usage: the API's token usage for the final call of the turn, or None.
        window: what the final request held (:class:`WindowReport`); None when a plugin
            answered before anything was fitted.
        incomplete: True when the reply was cut short (a broken or abandoned stream) and stored
            as ``incomplete``.
        seq: the stored reply's ``seq`` in the thread (None if nothing was stored).
        finish_reason: why the model stopped (``"stop"``, ``"length"``, ``"tool_calls"``...).
        tool_rounds: how many rounds of tool handlers ran before this reply.
        thread_id: the thread the reply was stored in.
        plugin_errors: observers (``turn_stored``, ``window_fitted``, ``request_failed``) that
            raised during the turn, each a :class:`~convkit.PluginError` already logged; the
            turn went on, nothing was lost.
    """

    message: Message
    usage: Usage | None
    window: WindowReport | None
    incomplete: bool = False
    seq: int | None = None
    finish_reason: str | None = None
    tool_rounds: int = 0
    thread_id: str = ""
    plugin_errors: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        """The reply's text."""
        return self.message.text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Tool calls the reply asks for and that no handler answered."""
        return self.message.tool_calls or ()


@frozen(kw_only=True)
class CalibrationEntry:
    """Predicted vs reported prompt tokens for one model and set of tools.

    Attributes:
        samples: how many calls were compared.
        predicted: convkit's count for the last call.
        reported: the API's ``usage.prompt_tokens`` for the last call.
        worst_ratio: the largest reported/predicted ratio among the recent calls.
        scale: the factor budgets are divided by (1.0 for models counted exactly; else the
            worst recent ratio, bounded to [1.0, :data:`MAX_CALIBRATION`]).
    """

    samples: int
    predicted: int
    reported: int
    worst_ratio: float
    scale: float


#: The largest factor calibration divides a budget by.
MAX_CALIBRATION = 1.5
_RECENT = 8


@define
class Calibration:
    """Predicted vs reported prompt tokens, per model (and tools), across a conversation.

    For models convkit counts exactly nothing is scaled; the figures only show how close the
    count is. For models whose counts are estimates (another vendor's model behind a gateway),
    every later budget is divided by the worst ratio of the last 8 calls, bounded to
    [1.0, 1.5], so a model that tokenizes more densely than the estimate is not sent windows it
    rejects.

    Example::

        conv.calibration.get("llama-3.1-70b")   # CalibrationEntry(samples=3, ..., scale=1.12)
    """

    _recent: dict[tuple[str, str], list[float]] = field(factory=dict)
    _entries: dict[tuple[str, str], CalibrationEntry] = field(factory=dict)

    def record(
        self, model: str, tools_key: str, predicted: int, reported: int, *, exact: bool
    ) -> CalibrationEntry:
        """Record one call's figures; return the model's entry."""
        key = (model, tools_key)
        ratio = reported / predicted if predicted > 0 else 1.0
        recent = self._recent.setdefault(key, [])
        recent.append(ratio)
        del recent[:-_RECENT]
        worst = max(recent)
        scale = 1.0 if exact else min(MAX_CALIBRATION, max(1.0, worst))
        old = self._entries.get(key)
        entry = CalibrationEntry(
            samples=(old.samples if old else 0) + 1,
            predicted=predicted,
            reported=reported,
            worst_ratio=worst,
            scale=scale,
        )
        self._entries[key] = entry
        return entry

    def scale(self, model: str, tools_key: str) -> float:
        """The factor to divide ``model``'s budget by (1.0 when nothing is known)."""
        entry = self._entries.get((model, tools_key))
        return 1.0 if entry is None else entry.scale

    def get(self, model: str, tools_key: str = "") -> CalibrationEntry | None:
        """The entry of ``model`` (with the tools whose key is ``tools_key``), or None."""
        return self._entries.get((model, tools_key))

    def __iter__(self) -> Any:
        return iter(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)

    def as_dict(self) -> dict[str, CalibrationEntry]:
        """Entries by model name (tools merged: the newest entry of each model)."""
        return {model: entry for (model, _), entry in self._entries.items()}


def tools_key(tools: Sequence[Mapping[str, Any]] | None) -> str:
    """A short stable hash of tool definitions (calibration is kept per set of tools)."""
    if not tools:
        return ""
    text = json.dumps(list(tools), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
