"""The values context fitting works with: counted entries, summaries, windows, read plans."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Union

from attrs import Attribute, field, frozen

from convkit.errors import InvalidRequestError, SummarizationError
from convkit.messages import Message

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "SUMMARY_HEADER",
    "Counted",
    "ReadPlan",
    "Summarizer",
    "Summary",
    "SummaryRequest",
    "Window",
]

#: The line that opens the message carrying a summary (see :meth:`Summary.as_message`).
SUMMARY_HEADER = "Summary of the earlier conversation:"


@frozen(kw_only=True)
class Counted:
    """A message with its cached token count and its position in the thread.

    The store's :class:`~convkit.store.StoredMessage` has the same attributes, so stored
    messages can be passed to a policy directly; policies also accept plain messages and count
    them once.

    Attributes:
        message: the message.
        tokens: what it adds to a prompt (per-message overhead included).
        seq: its 1-based position in the thread.
        status: ``"complete"``, or ``"incomplete"`` for what a broken stream left behind (its
            text is kept, its tool calls are never sent: their arguments may be cut short).
    """

    message: Message
    tokens: int
    seq: int
    status: str = "complete"


@frozen(kw_only=True)
class Summary:
    """A rolling summary of a thread's older messages: the one summary type of convkit.

    Policies make them, the store keeps them (:meth:`convkit.store.Store.put_summary`) and
    hands them back (:meth:`~convkit.store.Store.get_summary`), and every later turn, in any
    process, reuses them.

    Attributes:
        text: the summary itself.
        covers_through_seq: the summary stands in for every message with ``seq`` up to this.
        tokens: what the summary's message (:meth:`as_message`, role ``system``) adds to a
            prompt, overhead included; 0 when unknown.
        counted_with: the counting rules ``tokens`` was made with (encoding and per-message
            overheads, see :func:`counting_key`); a policy trusts ``tokens`` only when they
            match its own, and recounts otherwise.
        model: the model that wrote it (or None).
        thread_id: the thread it was read from (None until stored).
        created_at: when it was stored (None until stored).

    Example::

        summary = Summary(text="The user ordered a lamp.", covers_through_seq=40)
        summary.as_message()  # the system message a window carries
    """

    text: str
    covers_through_seq: int
    tokens: int = 0
    counted_with: str | None = None
    model: str | None = None
    thread_id: str | None = None
    created_at: datetime | None = None

    def as_message(self, role: str = "system") -> Message:
        """The message that carries this summary in a window (the one rendering of a summary)."""
        return Message(role=role, content=f"{SUMMARY_HEADER}\n{self.text}")


def _whole(instance: object, attribute: Attribute[Any], value: Any) -> None:
    # A plan is handed to a store's read: nan or inf there would mean "no limit at all".
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(
            f"{attribute.name} must be a non-negative whole number, got {value!r}",
            param=attribute.name,
        )


def _whole_or_none(instance: object, attribute: Attribute[Any], value: Any) -> None:
    if value is not None:
        _whole(instance, attribute, value)


@frozen(kw_only=True)
class ReadPlan:
    """What a policy needs read from a thread for one request (see ``ContextPolicy.read_plan``).

    Attributes:
        budget: history tokens worth reading, newest first (the newest user turn is read
            whatever its size).
        after_seq: read only messages after this ``seq`` (the summary's coverage), or None.
    """

    budget: int = field(validator=_whole)
    after_seq: int | None = field(default=None, validator=_whole_or_none)


@frozen(kw_only=True)
class Window:
    """What a policy decided to send.

    Attributes:
        messages: the messages to send, in order (system prompt, summary message, history).
        prompt_tokens: their count, tools and reply priming included.
        budget: the prompt-token budget the window was fitted to.
        first_seq: ``seq`` of the oldest history message sent (None if none is). Every older
            message not covered by the summary was left out.
        dropped: ``seq`` of the newer history messages that were examined and left out
            (orphaned tool results, calls that never got results, turns that did not fit).
        summary: the summary used (new or previous), or None.
        summarized: ``seq`` of the messages newly folded into the summary on this turn.
        truncated: True when the newest message's text was cut to fit.
        error: a summarization failure the policy recovered from by trimming, or None.
        exact: True when ``prompt_tokens`` reproduces the API's count for this model; False
            when it is an estimate (a model convkit does not know exactly).
    """

    messages: tuple[Message, ...]
    prompt_tokens: int
    budget: int
    first_seq: int | None = None
    dropped: tuple[int, ...] = ()
    summary: Summary | None = None
    summarized: tuple[int, ...] = ()
    truncated: bool = False
    error: SummarizationError | None = None
    exact: bool = True


@frozen(kw_only=True)
class SummaryRequest:
    """What a summarizer is asked to do: fold ``messages`` into ``previous``.

    ``as_messages()`` gives a ready chat request for a completions client.
    """

    previous: str | None
    messages: tuple[Message, ...]
    prompt: str
    model: str | None
    max_tokens: int

    def as_messages(self) -> list[Message]:
        """The chat messages that ask a model for the new summary."""
        lines = []
        for m in self.messages:
            who = m.role if m.name is None else f"{m.role} ({m.name})"
            text = m.text
            if m.tool_calls:
                text += "".join(f"\n[calls {c.name}({c.arguments})]" for c in m.tool_calls)
            lines.append(f"{who}: {text}")
        body = "\n".join(lines)
        prev = self.previous or "(none yet)"
        return [
            Message.system(self.prompt),
            Message.user(f"Summary so far:\n{prev}\n\nNew messages:\n{body}"),
        ]


DEFAULT_SUMMARY_PROMPT = (
    "You maintain a running summary of a conversation. Given the summary so far and the "
    "messages that follow it, write an updated summary that keeps every fact, decision, name, "
    "number and open question a later reply could need. Be concise; write plain prose."
)

#: ``f(SummaryRequest) -> str``, or an async function returning ``str``.
Summarizer = Callable[[SummaryRequest], Union[str, Awaitable[str]]]
