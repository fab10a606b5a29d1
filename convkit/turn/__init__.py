"""One conversation turn as a sans-IO generator of effects.

:class:`TurnCore` decides everything a turn does — validating the new content, storing it,
reading the window once with the policy's read plan, fitting, calling the hooks, sending,
feeding the stream through middleware, storing the reply (or what arrived of it), running tool
handlers, recovering from ``context_length_exceeded``, calibrating, summarizing after the reply
— and performs none of it. It yields *effects* (below) and receives their results; the
:class:`~convkit.Conversation` and :class:`~convkit.AsyncConversation` shells perform them
with a :class:`~convkit.store.Store` / :class:`~convkit.store.AsyncStore`, a
:class:`~convkit.ChatClient` / :class:`~convkit.AsyncChatClient` and the plugin host. Nothing
is decided twice: the sync and async turns are the same code.

Effects (each a small frozen value; the result is sent back, an exception thrown back):

* :class:`StoreCall` — call a store method by name; result: its return value.
* :class:`HookCall` — call a plugin hook with keyword arguments; result: see ``mode``.
* :class:`Complete` — send a request, whole; result: the :class:`~convkit.chat.ChatResponse`.
* :class:`OpenStream` / :class:`NextChunk` / :class:`CloseStream` — stream a request chunk by
  chunk; ``NextChunk`` gives the next :class:`~convkit.chat.ChatChunk` or None at the end.
* :class:`Emit` — hand a text delta to the caller (streaming turns only); result: None.
* :class:`RunTool` — run a tool handler; result: its return value.
* :class:`Summarize` — run a summarizer callable; result: its text.

If the caller leaves a stream early (``break``, an exception, cancellation, Ctrl-C), the
shell throws :class:`StreamAbandoned` in at the pending effect; the turn stores what arrived,
marked ``incomplete``, and re-raises it.
"""

from __future__ import annotations

from convkit.turn._content import user_message
from convkit.turn._core import META_KEY, Purpose, TurnCore
from convkit.turn._effects import (
    CloseStream,
    Complete,
    Emit,
    HookCall,
    NextChunk,
    OpenStream,
    RunTool,
    StoreCall,
    StreamAbandoned,
    StreamResult,
    Summarize,
)
from convkit.turn._values import (
    MAX_CALIBRATION,
    Calibration,
    CalibrationEntry,
    Reply,
    WindowReport,
    tools_key,
)

__all__ = [
    "MAX_CALIBRATION",
    "META_KEY",
    "Calibration",
    "CalibrationEntry",
    "CloseStream",
    "Complete",
    "Emit",
    "HookCall",
    "NextChunk",
    "OpenStream",
    "Purpose",
    "Reply",
    "RunTool",
    "StoreCall",
    "StreamAbandoned",
    "StreamResult",
    "Summarize",
    "TurnCore",
    "WindowReport",
    "tools_key",
    "user_message",
]
