"""Fitting history into the context window: trimming and rolling summaries.

Every window convkit builds is one the API accepts and that fits:

* its ``count_tokens`` (messages + tools + reply priming) is within the prompt budget;
* the leading ``system``/``developer`` messages and the newest ``user`` turn are kept;
* tool-call groups follow one rule, shared with the store (:mod:`convkit.context._groups`):
  a call and its results are kept or dropped together, a call whose result never arrived is
  removed, a result whose call is gone is dropped — no orphan either way;
* after the system prompt (and summary), the window starts on a ``user`` message;
* order is preserved.

Two ways in:

* :func:`trim_messages` — stateless, for a list you hold: dicts in, dicts out; Messages in,
  Messages out.
* :class:`TrimOldest` and :class:`Summarize` — :class:`ContextPolicy` objects for long-running
  threads. They read each message's cached token count (what the store keeps on its row) and
  never re-encode history, so a turn costs O(new text + window), not O(thread). A policy's
  :meth:`~ContextPolicy.read_plan` tells the store how much to read; its
  :meth:`~ContextPolicy.steps` (or ``fit``/``afit``) returns a :class:`Window` saying what is
  sent, what was dropped and which :class:`Summary` was used.

The budget, unless given as ``max_prompt_tokens``, is the model's context window minus the
reply's reserve (the request's ``max_completion_tokens``/``max_tokens``, else
:func:`default_reply_reserve`), less the model's safety margin when its counts are estimates
(see :mod:`convkit.models`). Tool definitions count against it.
"""

from __future__ import annotations

from convkit.context._budget import counting_key, default_reply_reserve, prompt_budget
from convkit.context._fit import HistoryItem, trim_messages
from convkit.context._policies import ContextPolicy, Steps, Summarize, TrimOldest
from convkit.context._values import (
    DEFAULT_SUMMARY_PROMPT,
    SUMMARY_HEADER,
    Counted,
    ReadPlan,
    Summarizer,
    Summary,
    SummaryRequest,
    Window,
)

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "SUMMARY_HEADER",
    "ContextPolicy",
    "Counted",
    "HistoryItem",
    "ReadPlan",
    "Steps",
    "Summarize",
    "Summarizer",
    "Summary",
    "SummaryRequest",
    "TrimOldest",
    "Window",
    "counting_key",
    "default_reply_reserve",
    "prompt_budget",
    "trim_messages",
]
