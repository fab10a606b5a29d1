"""SQLAlchemy 2.x row classes (the schema), kept apart from the attrs values, and converters.

The row classes describe the tables; the migration in ``migrations/versions`` creates exactly
these (a test compares the two). Column limits come from ``_values`` (``MAX_ROLE_LENGTH``...),
where the same constants validate every value before it is written. ``*_from_row`` build the
frozen values the API returns.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from convkit.messages import Message, Usage
from convkit.store._values import (
    MAX_ENCODING_LENGTH,
    MAX_MODEL_LENGTH,
    MAX_ROLE_LENGTH,
    StoredMessage,
    Summary,
    Thread,
)

__all__ = [
    "Base",
    "MessageRow",
    "SummaryRow",
    "ThreadRow",
    "UTCDateTime",
    "message_from_row",
    "summary_from_row",
    "thread_from_row",
]


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


# Thread metadata is JSONB on PostgreSQL so list_threads can filter with @> (GIN-indexable).
# Message payloads stay plain JSON: stored byte for byte, cheaper to insert than jsonb.
MetadataJSON = JSON().with_variant(JSONB(), "postgresql")


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

    __table_args__ = (
        Index("ix_convkit_threads_created", "created_at", "id"),
        # Deliberately no index on updated_at: every append moves updated_at, and keeping such
        # an index current doubled the pages each append writes (measured on SQLite).
        Index("ix_convkit_threads_parent", "parent_id"),
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


def thread_from_row(row: ThreadRow) -> Thread:
    """Build the :class:`Thread` value of a row."""
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


def message_from_row(row: MessageRow, thread_id: str | None = None) -> StoredMessage:
    """Build the :class:`StoredMessage` of a row (``thread_id`` overrides, for forks)."""
    return StoredMessage(
        thread_id=thread_id or row.thread_id,
        seq=row.seq,
        message=Message.from_openai(row.message),
        tokens=row.tokens,
        encoding=row.encoding,
        status=row.status,  # type: ignore[arg-type]  # the check constraint keeps it valid
        usage=Usage.from_openai(row.usage) if row.usage is not None else None,
        created_at=row.created_at,
        metadata=row.meta or {},
    )


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
