"""convkit-usage: the tokens and cost of every completions call, per thread, model and day.

Every call a conversation sends — user turns, tool follow-ups and summaries — is recorded
as one row of the ``convkit_usage`` table in the conversation's own database: the prompt,
cached-prompt, completion and reasoning tokens the server reported, and the cost from the
price table (:mod:`convkit_usage._prices`; NULL for a model without a price). Calls a plugin
answers without the API (a cache hit) cost nothing and are not recorded.

``convkit usage`` prints the report (``--json``/``--csv``); :func:`report` returns it.

Example::

    from convkit import Conversation
    import convkit_usage

    conv = Conversation("gpt-5-mini", plugins=[convkit_usage])   # or install the entry point
    conv.send("Hello!")
    for row in convkit_usage.report(thread=conv.thread_id):
        print(row.day, row.model, row.calls, row.prompt_tokens, row.cost_usd)
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from attrs import frozen

from convkit.chat import ChatRequest, ChatResponse
from convkit.hookspecs import CallContext, OutgoingRequest, hookimpl
from convkit.messages import Usage
from convkit.store import StoredMessage
from convkit_usage._prices import (
    BUILTIN_PRICES,
    PRICES_ENV,
    Price,
    PriceError,
    clear_prices,
    cost_nanousd,
    find_price,
    prices,
    set_prices,
)
from convkit_usage._schema import HEAD_REVISION, TABLE_NAME, VERSION_TABLE

__all__ = [
    "BUILTIN_PRICES",
    "HEAD_REVISION",
    "NAME",
    "PRICES_ENV",
    "TABLE_NAME",
    "VERSION_TABLE",
    "CallRecord",
    "Price",
    "PriceError",
    "UsageRow",
    "clear_prices",
    "finalize_request",
    "migrate",
    "prepare_request",
    "prices",
    "process_response",
    "record_for",
    "register_commands",
    "report",
    "set_prices",
    "turn_stored",
]

#: The plugin's name: entry point, ``plugin_settings`` key and ``context.state_for`` key.
NAME = "usage"

log = logging.getLogger("convkit_usage")


# --------------------------------------------------------------------------- hooks
#
# Which calls reach the API: ``finalize_request`` is the last hook before sending, for turns,
# tool follow-ups and summaries alike. A wrapper sees its outcome: None means the request will
# be sent; an answer means a plugin answered it (nothing sent, nothing billed). A plugin may
# also answer in ``prepare_request``, which then skips ``finalize_request``: that hook clears the
# flag first. ``process_response`` (or, for a stream cut short, ``turn_stored``) then records the
# call the flag says was sent, and clears it.


@hookimpl(tryfirst=True)
def prepare_request(context: CallContext) -> None:
    """A new turn or tool follow-up: nothing of it has been sent yet."""
    context.state_for(NAME)["sent"] = False


@hookimpl(wrapper=True)
def finalize_request(request: OutgoingRequest, context: CallContext) -> Generator[None, Any, Any]:
    """Note whether the request goes to the API (no plugin answered it)."""
    answer = yield
    context.state_for(NAME)["sent"] = answer is None
    return answer


@hookimpl(tryfirst=True)
def process_response(response: ChatResponse, request: ChatRequest, context: CallContext) -> Any:
    """Record the call's usage as the server reported it (before any plugin replaces it).

    Returns None (the response is kept); for an :class:`~convkit.store.AsyncStore` it returns
    an awaitable the async conversation awaits (the write goes through the async engine).
    """
    if not context.state_for(NAME).pop("sent", False):
        return None
    record = record_for(
        context,
        model=request.model,
        usage=response.usage,
        response_model=response.model,
        response_id=response.id,
        status="complete",
    )
    return _write(context, record)


@hookimpl
def turn_stored(
    messages: Sequence[StoredMessage], usage: Usage | None, context: CallContext
) -> Any:
    """Record a call whose stream was cut short (``process_response`` never ran for it)."""
    if not context.state_for(NAME).pop("sent", False):
        return None
    if not any(m.status == "incomplete" for m in messages):  # pragma: no cover - defensive
        return None
    stored_model = messages[0].metadata.get("model") if messages else None
    record = record_for(
        context,
        model=context.model,
        usage=usage,
        response_model=stored_model if isinstance(stored_model, str) else None,
        response_id=None,
        status="incomplete",
    )
    return _write(context, record)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``convkit usage`` (the report) and ``convkit usage migrate``."""
    from convkit_usage._cli import add_commands

    add_commands(cli)


# --------------------------------------------------------------------------- records


@frozen(kw_only=True)
class CallRecord:
    """One completions call, as written to the usage table.

    Token figures are what the server reported (None when it reported no usage); the cost is
    in billionths of a US dollar, None when the model has no price or the usage is unknown.
    """

    created_at: datetime
    day: str
    thread_id: str | None
    purpose: str
    model: str
    response_model: str | None
    response_id: str | None
    status: str
    prompt_tokens: int | None
    cached_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    total_tokens: int | None
    cost_nanousd: int | None

    def as_row(self) -> dict[str, Any]:
        """The values of the table row."""
        return {
            "created_at": self.created_at,
            "day": self.day,
            "thread_id": self.thread_id,
            "purpose": self.purpose,
            "model": self.model,
            "response_model": self.response_model,
            "response_id": self.response_id,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_nanousd": self.cost_nanousd,
        }


def _detail(usage: Usage, group: str, key: str) -> int:
    details = usage.extra.get(group)
    if not isinstance(details, Mapping):
        return 0
    value = details.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def record_for(
    context: CallContext,
    *,
    model: str,
    usage: Usage | None,
    response_model: str | None,
    response_id: str | None,
    status: str,
    now: datetime | None = None,
) -> CallRecord:
    """Build the record of one call: the reported usage and its cost under today's prices."""
    created = now or datetime.now(timezone.utc)
    cost: int | None = None
    if usage is None:
        figures: dict[str, int | None] = dict.fromkeys(
            ("prompt", "cached", "completion", "reasoning", "total")
        )
    else:
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        figures = {
            "prompt": usage.prompt_tokens,
            "cached": cached,
            "completion": usage.completion_tokens,
            "reasoning": _detail(usage, "completion_tokens_details", "reasoning_tokens"),
            "total": usage.total_tokens,
        }
        price = find_price(prices(context.settings_for(NAME)), response_model, model)
        if price is not None:
            cost = cost_nanousd(
                price,
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=cached,
                completion_tokens=usage.completion_tokens,
            )
    return CallRecord(
        created_at=created,
        day=created.astimezone(timezone.utc).date().isoformat(),
        thread_id=context.thread_id,
        purpose=context.purpose,
        model=model,
        response_model=response_model or None,
        response_id=response_id or None,
        status=status,
        prompt_tokens=figures["prompt"],
        cached_tokens=figures["cached"],
        completion_tokens=figures["completion"],
        reasoning_tokens=figures["reasoning"],
        total_tokens=figures["total"],
        cost_nanousd=cost,
    )


def _write(context: CallContext, record: CallRecord) -> Any:
    from convkit.store import AsyncStore, Store

    store = context.store
    if isinstance(store, Store):
        from convkit_usage._db import write_sync

        write_sync(store.engine, record)
        return None
    if isinstance(store, AsyncStore):
        from convkit_usage._db import write_async

        return write_async(store.engine, record)
    log.debug("no convkit store on this conversation: usage not recorded")
    return None


# --------------------------------------------------------------------------- report


@frozen(kw_only=True)
class UsageRow:
    """One line of the report: the calls of one thread, model and day, summed.

    ``cost_usd`` sums the priced calls (None when none was priced); ``unpriced_calls`` says
    how many calls had no price (or no reported usage) and are not in it.
    """

    day: str
    thread_id: str | None
    model: str
    calls: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None
    unpriced_calls: int


def report(
    url: Any = None,
    *,
    thread: str | None = None,
    since: date | str | None = None,
    model: str | None = None,
) -> list[UsageRow]:
    """The usage report of a database (None: ``$CONVKIT_DATABASE_URL`` or the default file).

    Rows are grouped by UTC day, thread and model, ordered by day, thread and model; ``since``
    (a date or ``YYYY-MM-DD``) keeps that day and later.
    """
    from convkit.store import Store
    from convkit_usage._db import query_report

    day = since.isoformat() if isinstance(since, date) else since
    with Store(url) as store:
        return query_report(store.engine, thread=thread, since=day, model=model)


def migrate(url: Any = None) -> tuple[str | None, str | None]:
    """Create or upgrade the usage table ahead of time; return (revision before, after)."""
    from convkit.store import Store
    from convkit_usage._db import WRITE_OPTIONS
    from convkit_usage._schema import upgrade_on

    with Store(url) as store, store.engine.execution_options(**WRITE_OPTIONS).begin() as conn:
        return upgrade_on(conn)
