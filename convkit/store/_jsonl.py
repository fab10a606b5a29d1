"""The JSON-lines export format of a thread: building and checking records (pure: no I/O).

One JSON object per line:

1. a header ``{"type": "thread", "format": "convkit.thread", "version": 1, ...}``;
2. one ``{"type": "message", "seq": ...}`` record per message, ``seq`` ascending from 1, gap-free;
3. one ``{"type": "summary", ...}`` record per summary.

``docs/storage.md`` documents every field. :func:`parse_export` checks a whole file before the
store writes anything, so a bad line imports nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from attrs import frozen

from convkit.errors import InvalidMessageError
from convkit.messages import Message, Usage
from convkit.store._values import (
    MAX_ENCODING_LENGTH,
    MAX_MODEL_LENGTH,
    MAX_ROLE_LENGTH,
    StoredMessage,
    StoreValueError,
    Summary,
    Thread,
    check_json,
    check_metadata,
    check_name,
    check_seq,
    check_status,
    check_text,
    check_time,
    dump_json,
    message_payload,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "ParsedExport",
    "message_record",
    "parse_export",
    "summary_record",
    "thread_record",
]

FORMAT = "convkit.thread"
VERSION = 1


def _ts(value: datetime) -> str:
    return value.isoformat()


def thread_record(thread: Thread) -> str:
    """The header line of an export."""
    return dump_json(
        {
            "type": "thread",
            "format": FORMAT,
            "version": VERSION,
            "id": thread.id,
            "title": thread.title,
            "metadata": dict(thread.metadata),
            "created_at": _ts(thread.created_at),
            "updated_at": _ts(thread.updated_at),
            "parent_id": thread.parent_id,
            "fork_seq": thread.fork_seq,
            "message_count": thread.last_seq,
        }
    )


def message_record(m: StoredMessage) -> str:
    """The line of one message."""
    return dump_json(
        {
            "type": "message",
            "seq": m.seq,
            "message": m.message.to_openai(),
            "tokens": m.tokens,
            "encoding": m.encoding,
            "status": m.status,
            "usage": m.usage.to_openai() if m.usage is not None else None,
            "created_at": _ts(m.created_at),
            "metadata": dict(m.metadata),
            "counted_with": m.counted_with,
        }
    )


def summary_record(s: Summary) -> str:
    """The line of one summary."""
    return dump_json(
        {
            "type": "summary",
            "covers_through_seq": s.covers_through_seq,
            "text": s.text,
            "tokens": s.tokens,
            "model": s.model,
            "created_at": None if s.created_at is None else _ts(s.created_at),
            "counted_with": s.counted_with,
        }
    )


@frozen(kw_only=True)
class ParsedExport:
    """A checked export: header fields and the column values of its messages and summaries."""

    title: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    messages: list[dict[str, Any]]
    summaries: list[dict[str, Any]]


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise StoreValueError(f"missing {key!r}", field=where)
    return record[key]


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise StoreValueError("expected an ISO 8601 timestamp string", field=where)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise StoreValueError(f"not an ISO 8601 timestamp: {value!r}", field=where) from None
    return check_time(parsed, where)


def _count(value: Any, where: str) -> int:
    return check_seq(value, where, minimum=0)


def parse_export(lines: Iterable[str]) -> ParsedExport:
    """Check a whole export and return what to insert; raise :class:`StoreValueError` if bad.

    Every problem in the records — including any message the message parser rejects or trips
    on — is reported as :class:`StoreValueError` naming the line.
    """
    header: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise StoreValueError(f"not JSON: {exc}", field=where) from None
        except RecursionError:
            raise StoreValueError(
                "not JSON this convkit can read: nested too deeply", field=where
            ) from None
        if not isinstance(record, dict):
            raise StoreValueError("a record is a JSON object", field=where)
        kind = record.get("type")
        if header is None:
            if kind != "thread" or record.get("format") != FORMAT:
                raise StoreValueError(
                    f"the first record must be the thread header of format {FORMAT!r}", field=where
                )
            if record.get("version") != VERSION:
                raise StoreValueError(
                    f"unsupported export version {record.get('version')!r} (this convkit reads "
                    f"version {VERSION})",
                    field=where,
                )
            header = record
        elif kind == "message":
            messages.append(_message(record, where, expected_seq=len(messages) + 1))
        elif kind == "summary":
            summaries.append(_summary(record, where))
        else:
            raise StoreValueError(f"unknown record type {kind!r}", field=where)
    if header is None:
        raise StoreValueError("empty export: no thread header")
    for s in summaries:
        if s["covers_through_seq"] > len(messages):
            raise StoreValueError(
                f"a summary covers seq {s['covers_through_seq']} but the export has "
                f"{len(messages)} messages",
                field="summary",
            )
    title = check_text(header.get("title"), "line 1.title", optional=True)
    return ParsedExport(
        title=title,
        metadata=check_metadata(header.get("metadata"), "line 1.metadata"),
        created_at=_time(_field(header, "created_at", "line 1"), "line 1.created_at"),
        updated_at=_time(_field(header, "updated_at", "line 1"), "line 1.updated_at"),
        messages=messages,
        summaries=summaries,
    )


def _message(record: dict[str, Any], where: str, *, expected_seq: int) -> dict[str, Any]:
    seq = check_seq(_field(record, "seq", where), f"{where}.seq", minimum=1)
    if seq != expected_seq:
        raise StoreValueError(
            f"messages must run seq 1, 2, 3... without gaps; expected {expected_seq}, got {seq}",
            field=f"{where}.seq",
        )
    raw = _field(record, "message", where)
    try:
        message = Message.from_openai(raw)
    # Whatever the parser trips on in a file is a bad file: a type it did not expect (a list
    # where a string belongs), a value out of range, nesting too deep for it.
    except (InvalidMessageError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise StoreValueError(f"invalid message: {exc}", field=f"{where}.message") from None
    usage = record.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise StoreValueError("usage must be an object or null", field=f"{where}.usage")
        try:
            usage = Usage.from_openai(check_json(usage, f"{where}.usage")).to_openai()
        except (TypeError, ValueError) as exc:
            raise StoreValueError(f"invalid usage: {exc}", field=f"{where}.usage") from None
    check_name(message.role, f"{where}.message.role", MAX_ROLE_LENGTH)
    encoding = check_name(
        _field(record, "encoding", where), f"{where}.encoding", MAX_ENCODING_LENGTH
    )
    return {
        "seq": seq,
        "role": message.role,
        "message": message_payload(message, f"{where}.message"),
        "tokens": _count(_field(record, "tokens", where), f"{where}.tokens"),
        "encoding": encoding,
        "status": check_status(record.get("status", "complete")),
        "usage": usage,
        "created_at": _time(_field(record, "created_at", where), f"{where}.created_at"),
        "metadata": check_metadata(record.get("metadata"), f"{where}.metadata") or None,
        "counted_with": _key(record, where),
    }


def _key(record: dict[str, Any], where: str) -> str | None:
    # Optional (exports before it was recorded have none: the counts' rules are unknown).
    key = record.get("counted_with")
    if key is None:
        return None
    return check_name(key, f"{where}.counted_with", MAX_ENCODING_LENGTH)


def _summary(record: dict[str, Any], where: str) -> dict[str, Any]:
    model = record.get("model")
    return {
        "covers_through_seq": check_seq(
            _field(record, "covers_through_seq", where), f"{where}.covers_through_seq", minimum=1
        ),
        "text": check_text(_field(record, "text", where), f"{where}.text"),
        "tokens": _count(_field(record, "tokens", where), f"{where}.tokens"),
        "model": check_text(model, f"{where}.model", optional=True, max_length=MAX_MODEL_LENGTH),
        "created_at": _time(_field(record, "created_at", where), f"{where}.created_at"),
        "counted_with": _key(record, where),
    }
