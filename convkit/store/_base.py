"""What ``Store`` and ``AsyncStore`` share: argument checking and building the operations.

Each public method of the two shells is one line: ``self._run(self._prepare_x(...))``. The
``_prepare_*`` methods here validate every argument (raising before any transaction starts) and
return the sans-IO operation from :mod:`convkit.store._sql` plus whether it writes.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar

import attrs
from attrs import field, frozen
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from convkit.context._budget import counting_key
from convkit.context._values import ReadPlan
from convkit.errors import SchemaVersionError, StoreError
from convkit.messages import Message, MessageLike, Usage, as_message
from convkit.store import _sql
from convkit.store._engine import display_url, redact, resolve_url
from convkit.store._jsonl import parse_export
from convkit.store._recent import DEFAULT_MAX_ROWS, RecentRows
from convkit.store._rows import ROW_FORMAT
from convkit.store._values import (
    MAX_ENCODING_LENGTH,
    MAX_MODEL_LENGTH,
    MAX_ROLE_LENGTH,
    Status,
    StoredMessage,
    StoreValueError,
    Summary,
    Thread,
    ThreadPage,
    check_json,
    check_metadata,
    check_name,
    check_seq,
    check_status,
    check_text,
    check_thread_id,
    looks_like_secret_value,
    message_payload,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["UNSET", "NewMessage", "TokenCounterLike", "Unset", "database_errors"]

T = TypeVar("T")


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Marks an argument that was not given (where None is a meaningful value).
UNSET: Final = Unset.UNSET


class TokenCounterLike(Protocol):
    """What the store needs from a token counter (:class:`convkit.tokens.TokenCounter` has it)."""

    @property
    def encoding_name(self) -> str:
        """Name of the tokenizer encoding the counts are made with."""
        ...

    def count_message(self, msg: Message) -> int:
        """Prompt tokens ``msg`` adds, per-message overhead included."""
        ...


@frozen(kw_only=True)
class NewMessage:
    """A message to append together with what the store should record about it.

    Example::

        store.append_many(thread.id, [
            NewMessage(message=call, usage=response_usage),
            NewMessage(message=Message.tool("22C", tool_call_id="call_1")),
        ])

    Attributes:
        tokens: a precomputed count (counted with the store's counter when None).
        status: ``"incomplete"`` for what a broken stream left behind.
    """

    message: MessageLike
    tokens: int | None = None
    status: Status = "complete"
    usage: Usage | Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = field(default=None)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _usage(value: Usage | Mapping[str, Any] | None, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Usage):
        usage = value
    elif isinstance(value, Mapping):
        try:
            usage = Usage.from_openai(value)
        except (TypeError, ValueError) as exc:
            raise StoreValueError(f"invalid usage: {exc}", field=where) from None
    else:
        raise StoreValueError(
            f"usage must be a Usage or a mapping, got {type(value).__name__}", field=where
        )
    payload: dict[str, Any] = check_json(usage.to_openai(), where)
    return payload


def _title(value: object) -> str | None:
    title = check_text(value, "title", optional=True)
    if title is not None and looks_like_secret_value(title):
        raise StoreValueError(
            "title looks like an API key; credentials are never stored", field="title"
        )
    return title


def _describe(exc: DBAPIError, url: URL) -> str:
    # The driver's own first line ("integer out of range", "connection refused"): SQLAlchemy's
    # text would add the statement and its parameters, which hold message content.
    orig = exc.orig if exc.orig is not None else exc
    try:
        lines = str(orig).strip().splitlines()
    except Exception:  # a driver exception whose str() fails is still reported, by its type
        lines = []
    detail = f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__
    return redact(f"database error on {display_url(url)}: {detail}", url)


def _is_alembic_error(exc: BaseException) -> bool:
    # Alembic is imported only by schema work; if it was never imported it raised nothing.
    import sys

    util = sys.modules.get("alembic.util.exc")
    return util is not None and isinstance(exc, util.CommandError)


@contextmanager
def database_errors(url: URL) -> Iterator[None]:
    """Re-raise a database error escaping a store operation as :class:`~convkit.StoreError`.

    Both shells run every operation (and the schema check on open) inside this, so callers
    catch one exception tree whatever the backend: a driver error, any other SQLAlchemy error
    (a pool that timed out waiting for a connection), and a migration that Alembic refused
    (:class:`~convkit.SchemaVersionError`). The driver's exception stays available as
    ``__cause__``; the message names the URL with its credentials masked, and never them.
    Errors the operations translate themselves (a duplicate thread id) never reach it.
    """
    try:
        yield
    except DBAPIError as exc:
        raise StoreError(_describe(exc, url)) from exc
    except SQLAlchemyError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        text = f"database error on {display_url(url)}: {type(exc).__name__}: {first}"
        raise StoreError(redact(text, url)) from exc
    except Exception as exc:
        if not _is_alembic_error(exc):
            raise
        text = f"schema migration refused on {display_url(url)}: {exc}"
        raise SchemaVersionError(redact(text, url)) from exc


def _lines(source: Iterable[str] | str | IO[str]) -> Iterable[str]:
    # Records end with "\n" only: str.splitlines() would also split at U+2028, U+2029, U+0085
    # and other separators, which JSON strings may hold raw.
    if isinstance(source, str):
        return source.split("\n")
    return source


class StoreBase:
    """State and argument checking shared by :class:`Store` and :class:`AsyncStore`."""

    url: URL

    def __init__(
        self,
        url: str | URL | None,
        *,
        model: str,
        counter: TokenCounterLike | None,
        keep_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.url, self._is_default = resolve_url(url)
        self.model = model
        self._counter = counter
        self._key: str | None = None
        if isinstance(keep_rows, bool) or not isinstance(keep_rows, int) or keep_rows < 0:
            raise StoreValueError(
                f"keep_rows must be an integer >= 0, got {keep_rows!r}", field="keep_rows"
            )
        #: The newest rows of recently read windows (:mod:`convkit.store._recent`).
        self.recent = RecentRows(keep_rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({display_url(self.url)!r})"

    # ---- token counting

    @property
    def counter(self) -> TokenCounterLike:
        """The counter appends are counted with (created from ``model`` on first use)."""
        if self._counter is None:
            from convkit.tokens import TokenCounter

            self._counter = TokenCounter(self.model)
        return self._counter

    @property
    def encoding_name(self) -> str:
        """The encoding new token counts are made with."""
        return self.counter.encoding_name

    @property
    def counting_key(self) -> str:
        """The counting rules new token counts are made with (encoding and overheads)."""
        key = self._key
        if key is None:
            key = self._key = check_name(
                counting_key(self.counter), "counted_with", MAX_ENCODING_LENGTH
            )
        return key

    def _count(self, message: Message, where: str) -> int:
        # A custom counter is checked like a caller's count: the column is a 32-bit integer.
        return check_seq(self.counter.count_message(message), where)

    def _recount(self, stored: StoredMessage) -> StoredMessage:
        # Counts made under other rules (the store's model changed since, or a model with the
        # same encoding but other per-message overheads) are redone for the window's rows
        # only; the rows themselves keep what was counted at append. A row without a key
        # (stored before revision 0004) was counted under unknown rules: recounted too.
        key = self.counting_key
        if stored.counted_with == key:
            return stored
        return attrs.evolve(
            stored,
            tokens=self.counter.count_message(stored.message),
            encoding=self.encoding_name,
            counted_with=key,
        )

    def _message_row(
        self, item: NewMessage | MessageLike, index: int | None, now: datetime
    ) -> tuple[dict[str, Any], tuple[Any, ...]]:
        spec = item if isinstance(item, NewMessage) else NewMessage(message=item)
        where = "message" if index is None else f"messages[{index}]"
        message = as_message(spec.message, index)
        check_name(message.role, f"{where}.role", MAX_ROLE_LENGTH)
        payload = message_payload(message, where)
        if spec.tokens is None:
            tokens = self._count(message, f"{where}.tokens")
        else:
            tokens = check_seq(spec.tokens, f"{where}.tokens")
        usage = _usage(spec.usage, f"{where}.usage")
        metadata = check_metadata(spec.metadata, f"{where}.metadata")
        encoding = check_name(self.encoding_name, "encoding", MAX_ENCODING_LENGTH)
        # A caller's count is taken to follow the store's rules, as the store's own would.
        key = self.counting_key
        status = check_status(spec.status)
        row = {
            "role": message.role,
            "message": payload,
            "tokens": tokens,
            "encoding": encoding,
            "status": status,
            "usage": usage,
            "created_at": now,
            "metadata": metadata or None,
            "format": ROW_FORMAT,  # checked above: trusted when read back
            "counted_with": key,
        }
        # What the value handed back after the insert is built from (no re-read needed).
        parts = (message, tokens, encoding, status, usage, now, metadata, key)
        return row, parts

    # ---- operations: (op, writes?)

    def _prepare_create_thread(
        self, title: str | None, metadata: Mapping[str, Any] | None, thread_id: str | None
    ) -> _sql.Op[Thread]:
        now = _now()
        values = {
            "id": uuid.uuid4().hex if thread_id is None else check_thread_id(thread_id),
            "title": _title(title),
            "metadata": check_metadata(metadata),
            "created_at": now,
            "updated_at": now,
            "last_seq": 0,
        }
        return _sql.create_thread(values)

    def _prepare_update_thread(self, thread_id: str, title: Any, metadata: Any) -> _sql.Op[Thread]:
        check_thread_id(thread_id)
        values: dict[str, Any] = {"updated_at": _now()}
        if title is not UNSET:
            values["title"] = _title(title)
        if metadata is not UNSET:
            values["metadata"] = check_metadata(metadata)
        return _sql.update_thread(thread_id, values)

    def _prepare_list_threads(
        self,
        dialect: str,
        limit: int,
        cursor: str | None,
        metadata: Mapping[str, Any] | None,
        order: Literal["created", "updated"],
    ) -> _sql.Op[ThreadPage]:
        if order not in ("created", "updated"):
            raise StoreValueError(
                f"order must be 'created' or 'updated', got {order!r}", field="order"
            )
        check_seq(limit, "limit", minimum=1)
        wanted = check_json(metadata or {}, "metadata")
        if not isinstance(wanted, dict):
            raise StoreValueError("the metadata filter is a mapping", field="metadata")
        for key, value in wanted.items():
            if isinstance(value, (dict, list)):
                raise StoreValueError(
                    "metadata filters compare top-level keys with strings, numbers, booleans "
                    "or None",
                    field=f"metadata.{key}",
                )
        decoded = None if cursor is None else _sql.decode_cursor(cursor, order)
        return _sql.list_threads(
            dialect=dialect, limit=limit, order=order, cursor=decoded, metadata=wanted
        )

    def _prepare_append(
        self, thread_id: str, items: list[NewMessage | MessageLike], single: bool, dialect: str
    ) -> tuple[_sql.Op[int], Callable[[int], list[StoredMessage]]]:
        """Return the append operation and how to build the stored values from the first seq."""
        check_thread_id(thread_id)
        now = _now()
        prepared = [self._message_row(it, None if single else i, now) for i, it in enumerate(items)]

        def stored(first_seq: int) -> list[StoredMessage]:
            return [
                StoredMessage(
                    thread_id=thread_id,
                    seq=first_seq + i,
                    message=message,
                    tokens=tokens,
                    encoding=encoding,
                    status=status,
                    usage=Usage.from_openai(usage) if usage is not None else None,
                    created_at=created_at,
                    metadata=metadata,
                    counted_with=key,
                )
                for i, (_, parts) in enumerate(prepared)
                for message, tokens, encoding, status, usage, created_at, metadata, key in (parts,)
            ]

        return _sql.append(thread_id, [row for row, _ in prepared], now, dialect), stored

    def _prepare_messages(
        self,
        thread_id: str,
        last: int | None,
        after_seq: int | None,
        limit: int | None,
        dialect: str,
    ) -> _sql.Op[list[StoredMessage]]:
        check_thread_id(thread_id)
        if last is not None:
            check_seq(last, "last")
        if limit is not None:
            check_seq(limit, "limit")
        after = 0 if after_seq is None else check_seq(after_seq, "after_seq")
        return _sql.messages(
            thread_id, last=last, after_seq=after, limit=limit, join=dialect == "sqlite"
        )

    def _prepare_window(
        self,
        thread_id: str,
        budget: int | ReadPlan,
        after_seq: int | None,
        include_incomplete: bool,
        dialect: str,
    ) -> _sql.Op[list[StoredMessage]]:
        check_thread_id(thread_id)
        if isinstance(budget, ReadPlan):
            if after_seq is None:
                after_seq = budget.after_seq
            budget = budget.budget
        check_seq(budget, "budget", maximum=None)  # never stored: any size is fine
        after = 0 if after_seq is None else check_seq(after_seq, "after_seq")
        return _sql.window(
            thread_id,
            budget,
            after_seq=after,
            include_incomplete=include_incomplete,
            recount=self._recount,
            count=self.counter.count_message,
            recent=self.recent,
            counted_with=self.counting_key,
            join=dialect == "sqlite",
        )

    def _prepare_fork(
        self, thread_id: str, at_seq: int | None, title: Any, metadata: Mapping[str, Any] | None
    ) -> _sql.Op[Thread]:
        check_thread_id(thread_id)
        if at_seq is not None:
            check_seq(at_seq, "at_seq")
        now = _now()
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "metadata": None if metadata is None else check_metadata(metadata),
            "created_at": now,
            "updated_at": now,
        }
        if title is not UNSET:
            values["title"] = _title(title)
        return _sql.fork(thread_id, at_seq, values)

    def _prepare_put_summary(self, thread_id: str, summary: Summary) -> _sql.Op[Summary]:
        check_thread_id(thread_id)
        if not isinstance(summary, Summary):
            raise StoreValueError(
                f"put_summary takes a convkit.Summary, got {type(summary).__name__}",
                field="summary",
            )
        text = check_text(summary.text, "text")
        assert text is not None
        if summary.tokens <= 0:
            # One rendering, one count: what the summary's message costs in a prompt.
            tokens = self._count(summary.as_message(), "tokens")
            counted_with: str | None = counting_key(self.counter)
        else:
            tokens, counted_with = check_seq(summary.tokens, "tokens"), summary.counted_with
        if counted_with is not None:
            counted_with = check_name(counted_with, "counted_with", MAX_ENCODING_LENGTH)
        values = {
            "covers_through_seq": check_seq(
                summary.covers_through_seq, "covers_through_seq", minimum=1
            ),
            "text": text,
            "model": check_text(summary.model, "model", optional=True, max_length=MAX_MODEL_LENGTH),
            "tokens": tokens,
            "counted_with": counted_with,
            "created_at": _now(),
        }
        return _sql.put_summary(thread_id, values)

    def _prepare_import(
        self, source: Iterable[str] | str | IO[str], thread_id: str | None
    ) -> _sql.Op[Thread]:
        parsed = parse_export(_lines(source))
        values = {
            "id": uuid.uuid4().hex if thread_id is None else check_thread_id(thread_id),
            "title": _title(parsed.title),
            "metadata": parsed.metadata,
            "created_at": parsed.created_at,
            "updated_at": parsed.updated_at,
            "last_seq": len(parsed.messages),
        }
        return _sql.import_thread(values, parsed.messages, parsed.summaries)
