"""Every store operation, written once as a sans-IO generator of SQL statements.

An operation is a generator that yields :class:`Q` (a statement and its parameters), receives
the buffered :class:`~sqlalchemy.engine.Result`, and finally returns its value. The sync
:class:`~convkit.store.Store` drives it with a ``Session``, the :class:`~convkit.store.AsyncStore`
with an ``AsyncSession`` (``await session.execute(...)``), so the SQL, the fork lineage walk and
the window algorithm exist once. A database error is thrown back into the generator, which may
translate it (a duplicate thread id becomes :class:`StoreValueError`).

All inputs are validated by the callers *before* an operation starts: an operation that raises
leaves its transaction rolled back, so nothing is half written.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import (
    Executable,
    Integer,
    Row,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Result
from sqlalchemy.exc import IntegrityError

from convkit.context import _groups
from convkit.errors import ThreadNotFoundError
from convkit.messages import Message
from convkit.store._jsonl import message_record, summary_record, thread_record
from convkit.store._recent import Choice, Kept, RecentRows
from convkit.store._rows import (
    MESSAGE_COLUMNS,
    ROW_FORMAT,
    THREAD_COLUMNS,
    MessageRow,
    SummaryRow,
    ThreadRow,
    UTCDateTime,
    message_from_row,
    messages_from_rows,
    summary_from_row,
    thread_from_row,
)
from convkit.store._values import StoredMessage, StoreValueError, Summary, Thread, ThreadPage

__all__ = ["MESSAGE_PAGES", "PREBUILT", "Op", "Q", "Segment"]

T = TypeVar("T")

threads_t: Table = ThreadRow.__table__  # type: ignore[assignment]  # declarative gives Table
messages_t: Table = MessageRow.__table__  # type: ignore[assignment]
summaries_t: Table = SummaryRow.__table__  # type: ignore[assignment]


class Q(NamedTuple):
    """One statement for the shell to execute (``params``: a list means executemany)."""

    stmt: Executable
    params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None


Op = Generator[Q, Result[Any], T]


class Segment(NamedTuple):
    """Rows of thread ``thread_id`` with ``floor < seq <= cap`` belong to the history.

    ``seq`` is gap-free along a lineage, so a segment holds exactly ``cap - floor`` rows and
    any seq range of it is read by an index range scan on ``(thread_id, seq)`` without a LIMIT:
    the plan cannot depend on what the planner believes about the thread's size. ``cap`` None
    (no upper bound known) falls back to LIMIT queries.
    """

    thread_id: str
    cap: int | None
    floor: int = 0


# Pages of the newest-first walk grow geometrically: small windows cost one small query,
# big ones a handful, never the whole thread.
_FIRST_PAGE = 64
_MAX_PAGE = 2048
_EXPORT_PAGE = 1000


def _grow(page: int) -> int:
    return min(page * 2, _MAX_PAGE)


# --------------------------------------------------------------------------- threads


_THREAD = select(*THREAD_COLUMNS).where(ThreadRow.id == bindparam("tid"))
_THREAD_LOCKED = _THREAD.with_for_update()
# What a lineage needs of each thread row (no title, metadata or timestamps to decode).
_LINEAGE = select(
    ThreadRow.id, ThreadRow.parent_id, ThreadRow.fork_seq, ThreadRow.last_seq, ThreadRow.incarnation
).where(ThreadRow.id == bindparam("tid"))


def _thread_row(thread_id: str, stmt: Any = _THREAD) -> Op[Row[Any]]:
    # _THREAD_LOCKED takes a row lock on PostgreSQL (SQLite ignores it; its write
    # transactions are exclusive); _LINEAGE reads only what a lineage needs.
    row = (yield Q(stmt, {"tid": thread_id})).one_or_none()
    if row is None:
        raise ThreadNotFoundError(thread_id)
    return row


def lineage(thread_id: str, *, full: bool = False) -> Op[tuple[Row[Any], list[Segment]]]:
    """Return a thread's row and the segments its history is read from, newest first.

    The row holds the columns a lineage needs (``id``, ``parent_id``, ``fork_seq``,
    ``last_seq``, ``incarnation``), or all of :data:`THREAD_COLUMNS` with ``full``. The newest
    segment is capped at the thread's ``last_seq`` as read here, so every read of one
    operation sees the same history even if an append commits in between.
    """
    row = yield from _thread_row(thread_id, _THREAD if full else _LINEAGE)
    return row, (yield from _segments_of(row))


def _segments_of(row: Any) -> Op[list[Segment]]:
    """The segments of the lineage whose newest thread row is ``row`` (its ancestors read)."""
    found = [(row.id, row.last_seq)]
    cap, parent_id = row.fork_seq, row.parent_id
    while parent_id is not None and cap is not None and cap > 0:
        parent = yield from _thread_row(parent_id, _LINEAGE)
        if cap > (parent.fork_seq or 0):
            found.append((parent.id, cap))
        if parent.fork_seq is not None:
            cap = min(cap, parent.fork_seq)
        parent_id = parent.parent_id
    # Each segment's rows lie above the next (older) one's cap: that cap is its floor.
    segments = [
        Segment(tid, top, found[i + 1][1] if i + 1 < len(found) else 0)
        for i, (tid, top) in enumerate(found)
    ]
    return segments


def create_thread(values: dict[str, Any]) -> Op[Thread]:
    """Insert a thread row built by the caller, with a new incarnation."""
    try:
        yield Q(insert(threads_t).values(**values, incarnation=uuid.uuid4().hex))
    except IntegrityError:
        raise StoreValueError(
            f"a thread with id {values['id']!r} already exists", field="thread_id"
        ) from None
    return thread_from_row((yield Q(_THREAD, {"tid": values["id"]})).one())


def get_thread(thread_id: str) -> Op[Thread]:
    """Read one thread."""
    return thread_from_row((yield from _thread_row(thread_id)))


def update_thread(thread_id: str, values: dict[str, Any]) -> Op[Thread]:
    """Change a thread's title and/or metadata (``values`` holds the columns to set)."""
    result = yield Q(update(threads_t).where(threads_t.c.id == thread_id).values(**values))
    if result.rowcount == 0:  # type: ignore[attr-defined]  # CursorResult under the hood
        raise ThreadNotFoundError(thread_id)
    return thread_from_row((yield from _thread_row(thread_id)))


def _encode_cursor(order: str, when: datetime, thread_id: str) -> str:
    raw = json.dumps([order, when.isoformat(), thread_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[datetime, str]:
    """Decode a :class:`ThreadPage` cursor made for the same ``order``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, when, thread_id = json.loads(raw)
        if kind != order or not isinstance(thread_id, str):
            raise ValueError(kind)
        return datetime.fromisoformat(when), thread_id
    except (ValueError, TypeError):
        raise StoreValueError(
            "not a cursor returned by list_threads with this order", field="cursor"
        ) from None


def _metadata_filter(dialect: str, wanted: Mapping[str, Any]) -> list[Any]:
    if not wanted:
        return []
    if dialect == "postgresql":
        # jsonb containment on the metadata text cast to jsonb: JSON equality of each key
        # (numbers compare by value), served by the GIN index ix_convkit_threads_metadata on
        # exactly this expression.
        return [cast(threads_t.c.metadata, JSONB).contains(dict(wanted))]
    conds = []
    for key, value in wanted.items():
        each = func.json_each(ThreadRow.meta).table_valued("key", "type", "atom").alias()
        if value is None:
            match = each.c.type == "null"
        elif value is True or value is False:
            match = each.c.type == ("true" if value else "false")
        elif isinstance(value, (int, float)):
            match = and_(each.c.type.in_(("integer", "real")), each.c.atom == value)
        else:
            match = and_(each.c.type == "text", each.c.atom == value)
        conds.append(exists(select(1).select_from(each).where(each.c.key == key, match)))
    return conds


def list_threads(
    *,
    dialect: str,
    limit: int,
    order: Literal["created", "updated"],
    cursor: tuple[datetime, str] | None,
    metadata: Mapping[str, Any],
) -> Op[ThreadPage]:
    """One page of threads, newest first (keyset pagination on ``(time, id)``).

    Each order has an index on ``(time, id)``; the cursor is a row-value comparison on the same
    pair, so a page is a backwards index range scan of ``limit + 1`` entries however deep it is.
    """
    col = ThreadRow.created_at if order == "created" else ThreadRow.updated_at
    stmt = select(*THREAD_COLUMNS).where(*_metadata_filter(dialect, metadata))
    if cursor is not None:
        when, last_id = cursor
        stmt = stmt.where(
            tuple_(col, ThreadRow.id) < tuple_(literal(when, UTCDateTime()), literal(last_id))
        )
    stmt = stmt.order_by(col.desc(), ThreadRow.id.desc()).limit(limit + 1)
    rows = (yield Q(stmt)).all()
    more = len(rows) > limit
    threads = tuple(thread_from_row(r) for r in rows[:limit])
    next_cursor = None
    if more and threads:
        last = threads[-1]
        next_cursor = _encode_cursor(
            order, last.created_at if order == "created" else last.updated_at, last.id
        )
    return ThreadPage(threads=threads, next_cursor=next_cursor)


def _copy_messages(target: str, source: str, low: int, high: int) -> Q:
    cols = [c.name for c in messages_t.columns]
    src = select(
        *[literal(target).label("thread_id") if n == "thread_id" else messages_t.c[n] for n in cols]
    ).where(messages_t.c.thread_id == source, messages_t.c.seq > low, messages_t.c.seq <= high)
    return Q(insert(messages_t).from_select(cols, src))


def _copy_summaries(target: str, source: str, high: int) -> Q:
    cols = [c.name for c in summaries_t.columns if c.name != "id"]
    src = (
        select(
            *[
                literal(target).label("thread_id") if n == "thread_id" else summaries_t.c[n]
                for n in cols
            ]
        )
        .where(summaries_t.c.thread_id == source, summaries_t.c.covers_through_seq <= high)
        .order_by(summaries_t.c.id)
    )
    return Q(insert(summaries_t).from_select(cols, src))


def delete_thread(thread_id: str) -> Op[None]:
    """Delete a thread with its messages and summaries; its forks keep their history.

    A fork reads shared history from its parent, so before the parent goes each child receives
    a copy of the rows it was sharing from the parent itself (not from further ancestors) and is
    re-attached to the grandparent.
    """
    row = yield from _thread_row(thread_id, _THREAD_LOCKED)
    children = (
        yield Q(select(*THREAD_COLUMNS).where(ThreadRow.parent_id == thread_id).with_for_update())
    ).all()
    low = row.fork_seq or 0
    for child in children:
        child_fork = child.fork_seq or 0
        if child_fork > low:
            yield _copy_messages(child.id, thread_id, low, child_fork)
        yield _copy_summaries(child.id, thread_id, child_fork)
        if row.parent_id is None:
            new_parent, new_fork = None, None
        else:
            new_parent, new_fork = row.parent_id, min(child_fork, low)
        yield Q(
            update(threads_t)
            .where(threads_t.c.id == child.id)
            .values(parent_id=new_parent, fork_seq=new_fork)
        )
    yield Q(delete(summaries_t).where(summaries_t.c.thread_id == thread_id))
    yield Q(delete(messages_t).where(messages_t.c.thread_id == thread_id))
    yield Q(delete(threads_t).where(threads_t.c.id == thread_id))


def fork(thread_id: str, at_seq: int | None, values: dict[str, Any]) -> Op[Thread]:
    """Create a thread sharing ``thread_id``'s history up to ``at_seq`` (no rows copied)."""
    parent = yield from _thread_row(thread_id, _THREAD_LOCKED)
    point = parent.last_seq if at_seq is None else at_seq
    if point > parent.last_seq:
        raise StoreValueError(
            f"thread {thread_id!r} has {parent.last_seq} messages; cannot fork at seq {point}",
            field="at_seq",
        )
    if values.get("title", ...) is ...:
        values["title"] = parent.title
    if values.get("metadata") is None:
        values["metadata"] = parent.meta
    values.update(parent_id=parent.id, fork_seq=point, last_seq=point)
    return (yield from create_thread(values))


# --------------------------------------------------------------------------- messages


# The append statements are built once: appending is the hot path, and a prebuilt statement
# skips construction and cache-key generation on every call.
_BUMP = (
    update(threads_t)
    .where(threads_t.c.id == bindparam("tid"))
    .values(
        last_seq=threads_t.c.last_seq + bindparam("n", type_=Integer),
        updated_at=bindparam("now", type_=UTCDateTime),
    )
    .returning(threads_t.c.last_seq)
)
# SQLite: the counter read, then set, under the transaction's write lock (BEGIN IMMEDIATE: one
# writer). An UPDATE ... RETURNING costs SQLite ~10 µs more than this pair (it gathers its rows
# in a temporary table first), on every append.
_LAST_SEQ = select(threads_t.c.last_seq).where(threads_t.c.id == bindparam("tid"))
_SET_LAST = (
    update(threads_t)
    .where(threads_t.c.id == bindparam("tid"))
    .values(
        last_seq=bindparam("last", type_=Integer),
        updated_at=bindparam("now", type_=UTCDateTime),
    )
)
_INSERT = insert(messages_t)
_ROW_COLUMNS = [c.name for c in messages_t.columns]


def _append_one_cte() -> Executable:
    # PostgreSQL: counter bump and insert in one statement (one round trip, one row lock).
    bumped = (
        update(threads_t)
        .where(threads_t.c.id == bindparam("tid"))
        .values(last_seq=threads_t.c.last_seq + 1, updated_at=bindparam("now", type_=UTCDateTime))
        .returning(threads_t.c.last_seq)
        .cte("bumped")
    )
    # Parameter names are prefixed: a parameter named like a thread column ("metadata",
    # "created_at") would otherwise become a SET clause of the UPDATE.
    values = [
        bumped.c.last_seq
        if name == "seq"
        else bindparam(f"m_{name}", type_=messages_t.c[name].type)
        for name in _ROW_COLUMNS
    ]
    return (
        insert(messages_t)
        .from_select(_ROW_COLUMNS, select(*values).select_from(bumped))
        .returning(messages_t.c.seq)
    )


_APPEND_ONE_CTE = _append_one_cte()


def append(thread_id: str, rows: list[dict[str, Any]], now: datetime, dialect: str) -> Op[int]:
    """Insert ``rows`` at the end of the thread; return the first ``seq`` assigned.

    The counter update and the insert commit together: on PostgreSQL the UPDATE holds the
    thread's row lock until commit; on SQLite the transaction began IMMEDIATE (one writer), so
    the counter is read, then set, with no other writer in between. Concurrent appenders queue
    up and ``seq`` stays unique and gap-free.
    """
    for row in rows:
        row["thread_id"] = thread_id
    if dialect == "postgresql" and len(rows) == 1:
        params = {f"m_{k}": v for k, v in rows[0].items()}
        seq = (yield Q(_APPEND_ONE_CTE, {**params, "tid": thread_id, "now": now})).scalar()
        if seq is None:
            raise ThreadNotFoundError(thread_id)
        rows[0]["seq"] = seq
        return int(seq)
    if dialect == "sqlite":
        before = (yield Q(_LAST_SEQ, {"tid": thread_id})).scalar()
        if before is None:
            raise ThreadNotFoundError(thread_id)
        last = before + len(rows)
        yield Q(_SET_LAST, {"tid": thread_id, "last": last, "now": now})
    else:
        last = (yield Q(_BUMP, {"tid": thread_id, "n": len(rows), "now": now})).scalar()
        if last is None:
            raise ThreadNotFoundError(thread_id)
    first: int = last - len(rows) + 1
    for i, row in enumerate(rows):
        row["seq"] = first + i
    yield Q(_INSERT, rows if len(rows) > 1 else rows[0])
    return first


_MESSAGES = select(*MESSAGE_COLUMNS)
_m = messages_t.c
# The page statements are built once (no construction or cache-key work per call) and take
# the seq range as parameters: ``lo < seq <= hi`` of one thread, an index range scan.
_IN_RANGE = _MESSAGES.where(
    _m.thread_id == bindparam("tid"),
    _m.seq > bindparam("lo", type_=Integer),
    _m.seq <= bindparam("hi", type_=Integer),
)
_RANGE_ASC = _IN_RANGE.order_by(_m.seq)
_RANGE_DESC = _IN_RANGE.order_by(_m.seq.desc())


def _page(segment: Segment, *, below: int | None, above: int, limit: int | None, desc: bool) -> Q:
    """Rows of ``segment`` with ``above < seq <= below``, at most ``limit`` of them.

    With the segment's cap known the limit becomes a seq range (the rows are gap-free), so the
    statement has no LIMIT for the planner to misjudge: it is an index range scan of exactly
    the rows returned, on a fresh table as on an analyzed one.
    """
    upper = (
        segment.cap
        if below is None
        else (below if segment.cap is None else min(below, segment.cap))
    )
    lower = max(above, segment.floor)
    if upper is not None:
        if limit is not None:
            if desc:
                lower = max(lower, upper - limit)
            else:
                upper = min(upper, lower + limit)  # upper is a seq: no overflow
        params = {"tid": segment.thread_id, "lo": lower, "hi": upper}
        return Q(_RANGE_DESC if desc else _RANGE_ASC, params)
    # No cap known (a segment built by hand): bounded by LIMIT instead.
    stmt = _MESSAGES.where(_m.thread_id == segment.thread_id, _m.seq > lower)
    stmt = stmt.order_by(_m.seq.desc() if desc else _m.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return Q(stmt)


def walk_newest_first(
    segments: Sequence[Segment],
    visit: Callable[[Row[Any], Any], bool],
    *,
    after_seq: int = 0,
    first_page: int = _FIRST_PAGE,
    below: int | None = None,
) -> Op[None]:
    """Feed rows (:data:`~convkit.store._rows.MESSAGE_COLUMNS`) newest-first to ``visit``.

    ``visit(row, payload)`` gets each row with its message column decoded.

    Rows come in growing pages, each a seq range, until ``visit`` returns False or the history
    ends. ``below`` starts the walk at that ``seq`` (inclusive) instead of at the newest row.
    """
    page = first_page
    for segment in segments:
        upper = (
            below
            if segment.cap is None
            else (segment.cap if below is None else min(below, segment.cap))
        )
        bottom = max(after_seq, segment.floor)
        if upper is not None and upper <= bottom:
            continue  # nothing of this segment lies in the range walked
        while True:
            result = yield _page(segment, below=upper, above=after_seq, limit=page, desc=True)
            rows: Sequence[Any] = result.all()
            # The page's payloads in one json.loads call (a third of the cost, row by row).
            payloads: list[Any] = (
                json.loads("[" + ",".join([r[1] for r in rows]) + "]") if rows else []
            )
            for r, payload in zip(rows, payloads, strict=True):
                if not visit(r, payload):
                    return
            if not rows:
                break
            upper = rows[-1][0] - 1
            if upper <= bottom or (segment.cap is None and len(rows) < page):
                break
            page = _grow(page)


# SQLite: messages() of a thread that is not a fork in one statement, the thread row (its
# last_seq placing the range) joined to the rows of the range. One row with NULL message
# columns when the range is empty, none when the thread does not exist. SQLite keeps the outer
# table of a LEFT JOIN outer, so the inner side is always the range scan on (thread_id, seq).
# No ORDER BY: with statistics saying the threads table is tiny SQLite may scan it instead of
# using its key, then sort the join; the rows are put in seq order here (a linear pass).
# PostgreSQL gets two statements instead: with the bound known only at run time, its planner
# may hash-join the whole thread (seen after ANALYZE on a skewed table); a range of constants
# is an index range scan whatever the statistics say.
_t = threads_t.c
# One lower bound, the larger of the two: given two, SQLite ranges the index on one of them,
# and took last_seq - last (far below the rows when only after_seq bounds the read), so
# messages(after_seq=...) walked the thread from its first row.
_IN_THREAD_RANGE = and_(
    _m.thread_id == _t.id,
    _m.seq
    > func.max(_t.last_seq - bindparam("last", type_=Integer), bindparam("lo", type_=Integer)),
    _m.seq <= bindparam("hi", type_=Integer),
)
_NEWEST = (
    select(*MESSAGE_COLUMNS, _t.last_seq, _t.parent_id, _t.fork_seq)
    .select_from(threads_t.outerjoin(messages_t, _IN_THREAD_RANGE))
    .where(_t.id == bindparam("tid"))
)
_N = len(MESSAGE_COLUMNS)  # where _NEWEST's thread columns start
# SQLite, a window with kept rows: the thread row (what a lineage needs of it) and the rows
# appended since the kept ones, in one statement, as _NEWEST does for messages().
_LINEAGE_AND_NEW = (
    select(*MESSAGE_COLUMNS, _t.id, _t.parent_id, _t.fork_seq, _t.last_seq, _t.incarnation)
    .select_from(threads_t.outerjoin(messages_t, _IN_THREAD_RANGE))
    .where(_t.id == bindparam("tid"))
)


class _LineageRow(NamedTuple):
    """The columns of a thread row a lineage needs, as ``_LINEAGE`` reads them."""

    id: str
    parent_id: str | None
    fork_seq: int | None
    last_seq: int
    incarnation: str | None


_by_seq = itemgetter(0)
_ALL = 2**31 - 1  # "no bound" for the seq parameters (seq is a 32-bit column)


#: The statements built once, at import: a shell may compile each once and keep it.
PREBUILT = (
    _THREAD,
    _THREAD_LOCKED,
    _LINEAGE,
    _BUMP,
    _LAST_SEQ,
    _SET_LAST,
    _INSERT,
    _APPEND_ONE_CTE,
    _RANGE_ASC,
    _RANGE_DESC,
    _NEWEST,
    _LINEAGE_AND_NEW,
)
#: Of those, the ones whose rows are message pages, read by position only (never by name).
MESSAGE_PAGES = (_RANGE_ASC, _RANGE_DESC, _NEWEST, _LINEAGE_AND_NEW)


def messages(
    thread_id: str, *, last: int | None, after_seq: int, limit: int | None, join: bool = False
) -> Op[list[StoredMessage]]:
    """Messages in chronological order: the ``last`` newest, or those after ``after_seq``.

    The thread's ``last_seq`` says where every wanted row is: the newest N are the seq range
    ``(last_seq - N, last_seq]``, one range query per segment it touches. With ``join``
    (SQLite), a thread that is not a fork (or whose wanted range lies after its fork point) is
    read in one statement. A read of the whole thread takes the light lineage read and plain
    range queries instead: joined, the thread's columns and the join ride on every row (2-4 ms
    of a ~50 ms read at 10,000 rows, measured).
    """
    if not join or (last is None and limit is None and after_seq == 0):
        return (yield from _messages_by_segment(thread_id, last, after_seq, limit))
    hi = _ALL if last is not None or limit is None else min(_ALL, after_seq + limit)
    params = {"tid": thread_id, "last": _ALL if last is None else last, "lo": after_seq, "hi": hi}
    rows = list((yield Q(_NEWEST, params)).all())
    if not rows:
        raise ThreadNotFoundError(thread_id)
    head: Any = rows[0]
    last_seq, parent_id, fork_seq = head[_N], head[_N + 1], head[_N + 2]
    low = after_seq if last is None else max(after_seq, last_seq - last)
    if parent_id is None or fork_seq is None or low >= fork_seq:
        if head[0] is None:
            return []
        rows.sort(key=_by_seq)
        return messages_from_rows(rows, thread_id)
    # A fork whose wanted range reaches into shared history: read it segment by segment.
    return (yield from _messages_by_segment(thread_id, last, after_seq, limit))


def _messages_by_segment(
    thread_id: str, last: int | None, after_seq: int, limit: int | None
) -> Op[list[StoredMessage]]:
    row, segments = yield from lineage(thread_id)
    high: int = row.last_seq
    low = after_seq if last is None else max(after_seq, high - last)
    if last is None and limit is not None:
        high = min(high, low + limit)
    out: list[StoredMessage] = []
    for segment in reversed(segments):  # oldest segment first
        top = high if segment.cap is None else min(high, segment.cap)
        if top <= max(low, segment.floor):
            continue
        page = (yield _page(segment, below=top, above=low, limit=None, desc=False)).all()
        out.extend(messages_from_rows(page, thread_id))
    return out


def _newest_user_seq(
    segments: Sequence[Segment], below: int, above: int, *, include_incomplete: bool
) -> Op[int | None]:
    """The ``seq`` of the newest user message in (above, below), or None (one query a segment)."""
    for segment in segments:
        stmt = select(MessageRow.seq).where(
            MessageRow.thread_id == segment.thread_id,
            MessageRow.role == "user",
            MessageRow.seq < below,
        )
        if above > 0:
            stmt = stmt.where(MessageRow.seq > above)
        if segment.cap is not None:
            stmt = stmt.where(MessageRow.seq <= segment.cap)
        if not include_incomplete:
            stmt = stmt.where(MessageRow.status == "complete")
        seq = (yield Q(stmt.order_by(MessageRow.seq.desc()).limit(1))).scalar()
        if seq is not None:
            return int(seq)
    return None


#: Rows appended since a kept run was read, beyond which the window is read afresh.
_MAX_NEW = 512
_LEAD_PAGE = 8


def _leading_rows(
    thread_id: str,
    segments: Sequence[Segment],
    recount: Callable[[StoredMessage], StoredMessage],
) -> Op[list[StoredMessage]]:
    """The lineage's first rows while they are ``system`` / ``developer``: the thread's prefix.

    Read oldest-first in small pages (one page for a thread with a system prompt or none).
    """
    lead: list[StoredMessage] = []
    for segment in reversed(segments):  # the oldest segment first
        low = max(segment.floor, lead[-1].seq if lead else 0)
        while segment.cap is None or low < segment.cap:
            page = (yield _page(segment, below=None, above=low, limit=_LEAD_PAGE, desc=False)).all()
            for stored in messages_from_rows(page, thread_id):
                if stored.message.role not in _groups.PREFIX_ROLES:
                    return lead
                lead.append(recount(stored))
            if len(page) < _LEAD_PAGE:
                break
            low = lead[-1].seq
    return lead


def window(
    thread_id: str,
    budget: int,
    *,
    after_seq: int,
    include_incomplete: bool,
    recount: Callable[[StoredMessage], StoredMessage],
    count: Callable[[Message], int],
    recent: RecentRows | None = None,
    counted_with: str | None = None,
    join: bool = False,
) -> Op[list[StoredMessage]]:
    """The newest user turn, whatever its size, then older whole units that fit ``budget``.

    Rows are read newest-first in pages, by the reading rule of
    :class:`convkit.context._groups.Tail`, and the window is chosen by the one rule that the
    policies use too (:func:`convkit.context._groups.select`). When the budget runs out before
    a user message is seen, one query finds the newest user message further back: if there is
    one, the walk goes on down to it (all of it belongs to the window); if there is none, the
    window is what fitted. Either way only the window's rows are read.

    With ``recent``, the rows the previous window of this thread walked are reused: only the
    rows appended since are fetched, then the kept rows are walked, then older rows are read
    if the window reaches below them (:mod:`convkit.store._recent` says why they are right).
    When what the previous window chose can be chosen from again (:func:`_choose_again`),
    nothing is walked. The window carries ``counted_with``, the counting key of its rows.
    With ``join`` (SQLite) and rows kept, the thread row and the rows appended since come in
    one statement (:data:`_LINEAGE_AND_NEW`).
    """
    new_rows: tuple[int, list[Any]] | None = None  # (the seq they lie above, the rows)
    since = None if recent is None else recent.mark()  # before the first read
    peek = None if recent is None or not join else recent.peek(thread_id)
    try:
        if peek is not None:
            lo = max(after_seq, peek.top)
            params = {"tid": thread_id, "last": _ALL, "lo": lo, "hi": lo + _MAX_NEW}
            rows = list((yield Q(_LINEAGE_AND_NEW, params)).all())
            if not rows:
                raise ThreadNotFoundError(thread_id)
            row: Any = _LineageRow(*rows[0][_N:])
            segments = yield from _segments_of(row)
            new_rows = (lo, [r for r in rows if r[0] is not None])
        else:
            row, segments = yield from lineage(thread_id)
    except ThreadNotFoundError:
        if recent is not None:
            recent.deleted(thread_id)  # deleted elsewhere: what was kept for it goes too
        raise
    kept = None if recent is None else recent.get(thread_id, row.incarnation)
    if kept is not None and not (kept.top <= row.last_seq <= kept.top + _MAX_NEW):
        kept = None
    # The thread's leading system / developer rows are its prefix: always in the window,
    # first, their tokens taken from the budget (a policy keeps them the same way).
    lead = (
        list(kept.lead)
        if kept is not None
        else (yield from _leading_rows(thread_id, segments, recount))
    )
    if lead:
        budget = max(0, budget - sum(m.tokens for m in lead))
        after_seq = max(after_seq, lead[-1].seq)
    tail = _groups.Tail(budget, include_incomplete=include_incomplete, recount=count)
    walked: list[StoredMessage] = []  # every row fed to the tail, newest first, contiguous
    pending: list[StoredMessage] = []

    def feed(stored: StoredMessage) -> bool:
        walked.append(stored)
        if tail.take(stored):
            return True
        pending.append(stored)
        return False

    def visit(r: Row[Any], payload: Any) -> bool:
        return feed(recount(message_from_row(r, thread_id, payload)))

    if kept is None:
        yield from walk_newest_first(segments, visit, after_seq=after_seq)
    else:
        # What was appended since (the newest segment only: kept rows reach its top) ...
        fresh: list[StoredMessage] = []

        def collect(r: Row[Any], payload: Any) -> bool:
            fresh.append(recount(message_from_row(r, thread_id, payload)))
            return True

        floor = max(after_seq, kept.top)
        if (
            new_rows is not None
            and new_rows[0] == floor
            and floor >= segments[0].floor  # all of them in the thread's own rows
            and len(new_rows[1]) == row.last_seq - floor
        ):
            for r in sorted(new_rows[1], key=_by_seq, reverse=True):
                collect(r, None)
        else:
            yield from walk_newest_first(segments, collect, after_seq=floor)
        if len(fresh) == row.last_seq - floor:  # every row since, as the thread row says
            again = _choose_again(kept, fresh, budget, after_seq, include_incomplete)
            if again is not None:
                assert recent is not None  # what was kept came from it
                # Rows below the window are not needed again by a window like this one (one
                # with a larger budget reads them back from the database).
                low = again.entries[0].seq if again.entries else row.last_seq
                choice = Choice(again, budget, after_seq, include_incomplete)
                try:
                    recent.replace(
                        thread_id, kept.on_top(fresh, down_to=low, choice=choice), since=since
                    )
                except ValueError:  # a read that raced a change of the lineage
                    recent.forget(thread_id)
                return _groups.Chosen(
                    [*lead, *again.entries], counted_with=counted_with, lead=len(lead)
                )
        n = tail.extend(fresh)
        walked.extend(fresh[:n])
        if n < len(fresh):
            walked.append(fresh[n])
            pending.append(fresh[n])  # refused: what the anchor search starts from
        if not pending:
            # ... then the kept rows above after_seq (kept.newest[i] has seq top - i), in one
            # call, then older ones from the database if the window reaches below them.
            usable = kept.newest[: max(0, kept.top - after_seq)]
            n = tail.extend(usable)
            walked.extend(usable[:n])
            if n < len(usable):
                walked.append(usable[n])
                pending.append(usable[n])  # refused: what the anchor search starts from
            elif len(usable) == len(kept.newest) and kept.bottom - 1 > after_seq:
                yield from walk_newest_first(
                    segments, visit, after_seq=after_seq, below=kept.bottom - 1
                )
    if tail.needs_anchor:
        last_seq = walked[-1].seq
        anchor = yield from _newest_user_seq(
            segments, last_seq, after_seq, include_incomplete=include_incomplete
        )
        if anchor is not None:
            tail.anchor_exists()
            tail.take(pending.pop())
            # One page reaches the anchor and the message before it; more only for tool results.
            yield from walk_newest_first(
                segments,
                visit,
                after_seq=after_seq,
                below=last_seq - 1,
                first_page=last_seq - anchor + 1,
            )
    units, left_out = _groups.units_of(tail.entries, count, include_incomplete=include_incomplete)
    chosen, picked = _groups.choose(units, left_out, budget, over_budget="keep")
    if recent is not None:
        # Kept only if these are one lineage's rows (RecentRows.put checks): on PostgreSQL each
        # statement sees the latest commits, and an ancestor deleted mid-read moves its rows
        # into this thread, which this read may then miss; that must not outlive this read.
        recent.put(
            thread_id,
            row.incarnation,
            walked,
            lead,
            last_seq=row.last_seq,
            choice=Choice(picked, budget, after_seq, include_incomplete),
            since=since,
        )
    # A policy fits these without walking them again (and, when it counts as the store does,
    # without looking at each).
    return _groups.Chosen([*lead, *chosen.kept], counted_with=counted_with, lead=len(lead))


def _choose_again(
    kept: Kept,
    fresh: Sequence[StoredMessage],
    budget: int,
    after_seq: int,
    include_incomplete: bool,
) -> _groups.Picked | None:
    """The window chosen from the previous window's units and the rows appended since, when
    that is the window a walk would choose; else None (then the thread is walked).

    It is when the previous window was chosen with the same floor (``after_seq``) and rule,
    with at least this ``budget``, and every row since is a unit of its own (no tool result
    or call, which could join or change a kept unit): the new rows only push the window's
    oldest end up, so no older row can come back into it, and the units it keeps are the
    previous ones, unchanged (tests/store/test_store_recent.py drives both reads side by
    side through random histories).
    """
    choice = kept.choice
    if (
        choice is None
        or choice.after_seq != after_seq
        or choice.include_incomplete != include_incomplete
        or choice.budget < budget
        or not all(_groups.unit_of_its_own(m.message) for m in fresh)
    ):
        return None
    new = [
        _groups.Unit((stored,), stored.tokens, stored.message.role == "user")
        for stored in reversed(fresh)  # oldest first
        if include_incomplete or stored.status != "incomplete"
    ]
    return _groups.choose_on_top(choice.picked, new, budget)


def export_lines(thread_id: str, emit: Callable[[str], None]) -> Op[None]:
    """Stream a thread as JSON lines to ``emit``, history flattened across forks, in pages."""
    row, segments = yield from lineage(thread_id, full=True)
    emit(thread_record(thread_from_row(row)))
    after = 0
    for segment in reversed(segments):
        while True:
            stmt = _page(segment, below=None, above=after, limit=_EXPORT_PAGE, desc=False)
            rows = (yield stmt).all()
            for stored in messages_from_rows(rows, thread_id):
                emit(message_record(stored))
            if rows:
                after = rows[-1][0]
            if len(rows) < _EXPORT_PAGE or (segment.cap is not None and after >= segment.cap):
                break
    for summary in (yield from list_summaries(thread_id, segments)):
        emit(summary_record(summary))


# --------------------------------------------------------------------------- summaries


def _summaries_stmt(segment: Segment) -> Any:
    stmt = select(SummaryRow).where(SummaryRow.thread_id == segment.thread_id)
    if segment.cap is not None:
        stmt = stmt.where(SummaryRow.covers_through_seq <= segment.cap)
    return stmt


def get_summary(thread_id: str) -> Op[Summary | None]:
    """The summary covering the most history (the newest such, on ties) visible in a thread."""
    _, segments = yield from lineage(thread_id)
    best: SummaryRow | None = None
    for segment in segments:
        stmt = (
            _summaries_stmt(segment)
            .order_by(SummaryRow.covers_through_seq.desc(), SummaryRow.id.desc())
            .limit(1)
        )
        row = (yield Q(stmt)).scalars().first()
        if row is not None and (best is None or row.covers_through_seq > best.covers_through_seq):
            best = row
    return None if best is None else summary_from_row(best, thread_id)


def list_summaries(thread_id: str, segments: Sequence[Segment] | None = None) -> Op[list[Summary]]:
    """Every summary visible in a thread, oldest coverage first."""
    if segments is None:
        _, segments = yield from lineage(thread_id)
    found: list[SummaryRow] = []
    for segment in reversed(segments):
        found.extend((yield Q(_summaries_stmt(segment).order_by(SummaryRow.id))).scalars().all())
    found.sort(key=lambda r: r.covers_through_seq)
    return [summary_from_row(r, thread_id) for r in found]


def put_summary(thread_id: str, values: dict[str, Any]) -> Op[Summary]:
    """Store a summary; ``covers_through_seq`` must not exceed the thread's last ``seq``."""
    row = yield from _thread_row(thread_id)
    covers = values["covers_through_seq"]
    if covers > row.last_seq:
        raise StoreValueError(
            f"thread {thread_id!r} has {row.last_seq} messages; "
            f"a summary cannot cover seq {covers}",
            field="covers_through_seq",
        )
    values["thread_id"] = thread_id
    yield Q(insert(summaries_t).values(**values))
    return Summary(
        thread_id=thread_id,
        covers_through_seq=covers,
        text=values["text"],
        tokens=values["tokens"],
        counted_with=values["counted_with"],
        model=values["model"],
        created_at=values["created_at"],
    )


def import_thread(
    thread_values: dict[str, Any],
    message_rows: list[dict[str, Any]],
    summary_rows: list[dict[str, Any]],
) -> Op[Thread]:
    """Insert a whole checked export as a new thread, in one transaction."""
    tid = thread_values["id"]
    thread = yield from create_thread(thread_values)
    for i in range(0, len(message_rows), _EXPORT_PAGE):
        # parse_export checked every message as append does: the rows are at ROW_FORMAT.
        chunk = [
            {**r, "thread_id": tid, "format": ROW_FORMAT}
            for r in message_rows[i : i + _EXPORT_PAGE]
        ]
        yield Q(insert(messages_t), chunk)
    if summary_rows:
        yield Q(insert(summaries_t), [{**r, "thread_id": tid} for r in summary_rows])
    return thread
