"""SQLAlchemy 2.x row classes (the schema), kept apart from the attrs values, and converters.

The row classes describe the tables; the migrations in ``migrations/versions`` create exactly
these (a test compares the two). Column limits come from ``_values`` (``MAX_ROLE_LENGTH``...),
where the same constants validate every value before it is written. ``*_from_row`` build the
frozen values the API returns.

Validate on the way in, trust on the way out. Every message row convkit writes carries
``format`` = :data:`ROW_FORMAT`: its payload is ``Message.to_openai()`` of a message that passed
every check, its usage ``Usage.to_openai()`` of a checked usage. Such rows are turned back into
values without running the checks again (:func:`trusted_message`); a row without a format (written
before revision 0002) or with an unknown one goes through the full ``Message.from_openai``.
Reads select plain columns (SQLAlchemy Core, no ORM identity map) and unpack them positionally
(:data:`MESSAGE_COLUMNS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    cast,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from convkit.messages import Message, ToolCall, Usage, part_from_openai
from convkit.store._values import (
    EMPTY_MAPPING,
    MAX_ENCODING_LENGTH,
    MAX_MODEL_LENGTH,
    MAX_ROLE_LENGTH,
    StoredMessage,
    Summary,
    Thread,
    dump_json,
)

__all__ = [
    "MESSAGE_COLUMNS",
    "ROW_FORMAT",
    "THREAD_COLUMNS",
    "Base",
    "MessageRow",
    "SummaryRow",
    "ThreadRow",
    "UTCDateTime",
    "message_from_row",
    "messages_from_rows",
    "summary_from_row",
    "thread_from_row",
    "trusted_message",
]

#: Format of the message rows this convkit writes (``convkit_messages.format``): rows at this
#: format were validated on the way in and are trusted on the way out.
ROW_FORMAT = 1


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC text (which still sorts correctly) and made aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)  # one tzinfo object on every backend

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc = timezone.utc

        # The text SQLAlchemy's SQLite DATETIME writes ("2026-12-01 15:31:46.123456", which
        # sorts as time does), made by isoformat in C.
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.astimezone(utc).isoformat(" ", "microseconds")[:26]

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite hands back the text SQLAlchemy wrote ("2026-12-01 15:31:46.123456"):
        # datetime.fromisoformat (C) parses it with the offset appended (giving the
        # timezone.utc singleton) ~8x faster than the generic regex-based processor followed
        # by .replace(tzinfo=...), which matters on every row read.
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value + "+00:00")

        return process


class JSONText(TypeDecorator[Any]):
    """JSON kept as the text convkit wrote (compact, exact), decoded with ``json.loads``.

    Used for thread metadata on PostgreSQL: ``jsonb`` would rewrite numbers (``1e16`` comes back
    as ``10000000000000000``, ``-0.0`` as ``0``), while text returns every value exactly as given.
    ``list_threads`` filters cast it to ``jsonb`` (an expression index serves the cast).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else dump_json(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# Thread metadata: SQLite's JSON is text already (stored as convkit serialized it); PostgreSQL
# gets text too, for the same exactness (see JSONText). Message payloads are plain JSON, which
# PostgreSQL also keeps as text.
MetadataJSON = JSON().with_variant(JSONText(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of convkit's tables."""


class ThreadRow(Base):
    """One row of ``convkit_threads``; ``last_seq`` is the per-thread sequence counter."""

    __tablename__ = "convkit_threads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", MetadataJSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    parent_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("convkit_threads.id", name="fk_convkit_threads_parent")
    )
    fork_seq: Mapped[int | None] = mapped_column(Integer)
    # Incremented in the same transaction as each insert, so seq is gap-free and unique.
    last_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: A random id given when the row is created (create, fork, import), never changed: the
    #: rows of one incarnation never change (messages are append-only), so rows read before
    #: may be reused (revision 0005). NULL only for rows written by hand.
    incarnation: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_convkit_threads_created", "created_at", "id"),
        # Deliberately no index on updated_at: every append moves updated_at, and keeping such
        # an index current cost appends 25-35% of their rate with synchronous=FULL (measured on
        # SQLite; on PostgreSQL it would also rule out HOT updates of the thread row).
        # list_threads(order="updated") sorts instead (benchmarks/README.md).
        Index("ix_convkit_threads_parent", "parent_id"),
        # PostgreSQL also has ix_convkit_threads_metadata, a GIN index on (metadata::jsonb)
        # for list_threads filters; it is created by migration 0002 only (an expression index
        # on one backend, which the models cannot declare for both).
        CheckConstraint("last_seq >= 0", name="ck_convkit_threads_last_seq"),
    )


class MessageRow(Base):
    """One row of ``convkit_messages``; the primary key ``(thread_id, seq)`` is the walk index."""

    __tablename__ = "convkit_messages"

    thread_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("convkit_threads.id", ondelete="CASCADE", name="fk_convkit_messages_thread"),
        primary_key=True,
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(MAX_ROLE_LENGTH), nullable=False)
    message: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    encoding: Mapped[str] = mapped_column(String(MAX_ENCODING_LENGTH), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # none_as_null: Python None is stored as SQL NULL, not the JSON text 'null'.
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON(none_as_null=True))
    # ROW_FORMAT for rows convkit validated before writing; NULL for rows older than 0002.
    format: Mapped[int | None] = mapped_column(SmallInteger)
    #: The counting rules ``tokens`` was made with (``convkit.context.counting_key``); NULL for
    #: rows older than 0004 (rules unknown: recounted for a window).
    counted_with: Mapped[str | None] = mapped_column(String(MAX_ENCODING_LENGTH))

    __table_args__ = (
        CheckConstraint("status IN ('complete', 'incomplete')", name="ck_convkit_messages_status"),
        CheckConstraint("seq >= 1", name="ck_convkit_messages_seq"),
    )


class SummaryRow(Base):
    """One row of ``convkit_summaries``: a summary of a thread up to ``covers_through_seq``."""

    __tablename__ = "convkit_summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("convkit_threads.id", ondelete="CASCADE", name="fk_convkit_summaries_thread"),
        nullable=False,
    )
    covers_through_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str | None] = mapped_column(String(MAX_MODEL_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    #: The counting rules ``tokens`` was made with (``convkit.context.counting_key``).
    counted_with: Mapped[str | None] = mapped_column(String(MAX_ENCODING_LENGTH))

    __table_args__ = (
        Index("ix_convkit_summaries_thread", "thread_id", "covers_through_seq", "id"),
    )


_threads = ThreadRow.__table__.c
_messages = MessageRow.__table__.c

#: The thread columns every read selects (table columns: Core, no ORM entity loading),
#: labelled like :class:`ThreadRow`'s attributes.
THREAD_COLUMNS = (
    _threads.id,
    _threads.title,
    _threads.metadata.label("meta"),
    _threads.created_at,
    _threads.updated_at,
    _threads.parent_id,
    _threads.fork_seq,
    _threads.last_seq,
    _threads.incarnation,
)

#: The message columns reads select, in the order :func:`message_from_row` unpacks them.
MESSAGE_COLUMNS = (
    _messages.seq,
    # As text on both backends (psycopg would decode json itself, value by value): a page of
    # payloads is decoded in one json.loads call (messages_from_rows).
    cast(_messages.message, Text).label("message"),
    _messages.tokens,
    _messages.encoding,
    _messages.status,
    # usage and metadata are NULL on most rows: read as text and decoded here when present,
    # they cost no result processor call per row.
    cast(_messages.usage, Text).label("usage"),
    _messages.created_at,
    cast(_messages.metadata, Text).label("meta"),
    _messages.format,
    _messages.counted_with,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_from_sqlite_text = datetime.fromisoformat
_KNOWN_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "refusal"})
_new = object.__new__
_NO_NULLS: frozenset[str] = frozenset()


def _setters(cls: type, *names: str) -> tuple[Any, ...]:
    # The slot descriptors' own __set__: what a frozen attrs class's __init__ does through
    # object.__setattr__, minus the attribute lookup by name (about half the cost per field,
    # and a read sets 17 fields a row).
    return tuple(cls.__dict__[n].__set__ for n in names)


(_m_role, _m_content, _m_name, _m_calls, _m_call_id, _m_refusal, _m_extra, _m_nulls) = _setters(
    Message,
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "extra",
    "explicit_nulls",
)
(
    _s_thread,
    _s_seq,
    _s_message,
    _s_tokens,
    _s_encoding,
    _s_status,
    _s_usage,
    _s_created,
    _s_meta,
    _s_counted,
) = _setters(
    StoredMessage,
    "thread_id",
    "seq",
    "message",
    "tokens",
    "encoding",
    "status",
    "usage",
    "created_at",
    "metadata",
    "counted_with",
)
_u_prompt, _u_completion, _u_total, _u_extra = _setters(
    Usage, "prompt_tokens", "completion_tokens", "total_tokens", "extra"
)


def trusted_message(d: Mapping[str, Any]) -> Message:
    """Rebuild a :class:`Message` from a payload convkit validated when it was written.

    The same value ``Message.from_openai(d)`` returns (a test holds the two to each other), made
    without the role and shape checks: the payload is ``to_openai()`` of a message that passed
    them. Content parts and tool calls are rebuilt by their own constructors, which check little.
    """
    content = d.get("content")
    if content is not None and not isinstance(content, str):
        content = tuple(part_from_openai(p, f"content[{i}]") for i, p in enumerate(content))
    calls = d.get("tool_calls")
    if calls is not None:
        calls = tuple(ToolCall.from_openai(c, f"tool_calls[{i}]") for i, c in enumerate(calls))
    m: Message = _new(Message)
    _m_role(m, d["role"])
    _m_content(m, content)
    if len(d) == 2 and content is not None:  # {"role": ..., "content": ...}: most rows
        _m_name(m, None)
        _m_calls(m, None)
        _m_call_id(m, None)
        _m_refusal(m, None)
        _m_extra(m, _EMPTY)
        _m_nulls(m, _NO_NULLS)
        return m
    unknown = {k: v for k, v in d.items() if k not in _KNOWN_KEYS}
    _m_name(m, d.get("name"))
    _m_calls(m, calls)
    _m_call_id(m, d.get("tool_call_id"))
    _m_refusal(m, d.get("refusal"))
    _m_extra(m, MappingProxyType(unknown) if unknown else _EMPTY)
    _m_nulls(m, frozenset(k for k in _KNOWN_KEYS if k in d and d[k] is None))
    return m


def _trusted_usage(d: Mapping[str, Any]) -> Usage:
    u: Usage = _new(Usage)
    extra = {k: v for k, v in d.items() if k not in _USAGE_KEYS}
    _u_prompt(u, d.get("prompt_tokens", 0))
    _u_completion(u, d.get("completion_tokens", 0))
    _u_total(u, d.get("total_tokens", 0))
    _u_extra(u, MappingProxyType(extra) if extra else _EMPTY)
    return u


_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


def thread_from_row(row: Any) -> Thread:
    """Build the :class:`Thread` value of a row (a :class:`ThreadRow` or a selected row)."""
    return Thread(
        id=row.id,
        title=row.title,
        metadata=row.meta or {},
        created_at=row.created_at,
        updated_at=row.updated_at,
        parent_id=row.parent_id,
        fork_seq=row.fork_seq,
        last_seq=row.last_seq,
    )


def message_from_row(row: Sequence[Any], thread_id: str, payload: Any = None) -> StoredMessage:
    """Build the :class:`StoredMessage` of a row selected with :data:`MESSAGE_COLUMNS` first.

    ``thread_id`` is the thread the row is read for (a fork's id, for history it shares);
    ``payload`` is the decoded message column, when the caller decoded a page at once.
    ``created_at`` may be an aware datetime or the text SQLite stores (naive UTC).
    """
    if payload is None:
        payload = json.loads(row[1])
    usage, fmt = row[5], row[8]
    if fmt == ROW_FORMAT:
        message = trusted_message(payload)
        usage_value = None if usage is None else _trusted_usage(json.loads(usage))
    else:  # written by an older convkit: check it as any outside input
        message = Message.from_openai(payload)
        usage_value = None if usage is None else Usage.from_openai(json.loads(usage))
    meta = row[7]
    if meta is not None:
        meta = json.loads(meta)
    stored: StoredMessage = _new(StoredMessage)
    _s_thread(stored, thread_id)
    _s_seq(stored, row[0])
    _s_message(stored, message)
    _s_tokens(stored, row[2])
    _s_encoding(stored, row[3])
    _s_status(stored, row[4])
    _s_usage(stored, usage_value)
    created = row[6]
    if created.__class__ is str:  # SQLite's text, as its driver returns it (the raw path)
        created = _from_sqlite_text(created + "+00:00")
    _s_created(stored, created)  # aware UTC values (UTCDateTime hands out the same)
    _s_meta(stored, MappingProxyType(meta) if meta else EMPTY_MAPPING)
    _s_counted(stored, row[9])
    return stored


def messages_from_rows(rows: Sequence[Sequence[Any]], thread_id: str) -> list[StoredMessage]:
    """:func:`message_from_row` over a page, the payloads decoded in one ``json.loads`` call."""
    if not rows:
        return []
    payloads = json.loads("[" + ",".join([r[1] for r in rows]) + "]")
    return [message_from_row(r, thread_id, p) for r, p in zip(rows, payloads, strict=True)]


def summary_from_row(row: SummaryRow, thread_id: str | None = None) -> Summary:
    """Build the :class:`Summary` value of a row (``thread_id`` overrides, for forks)."""
    return Summary(
        thread_id=thread_id or row.thread_id,
        covers_through_seq=row.covers_through_seq,
        text=row.text,
        tokens=row.tokens,
        counted_with=row.counted_with,
        model=row.model,
        created_at=row.created_at,
    )
