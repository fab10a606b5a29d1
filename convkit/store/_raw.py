"""SQLite operations run straight on the driver connection (the sync shell's fast path).

The operations of :mod:`convkit.store._sql` yield SQLAlchemy Core statements. On SQLite a
statement is cheap to execute (microseconds), and SQLAlchemy's machinery around it is not: a
``Connection`` with its transaction, the execution context and the result object cost about as
much again as reading fifty rows. :class:`RawRunner` runs the same operations, statement for
statement, on a ``sqlite3`` connection (the thread's kept one, or a pooled one) instead:

* each statement is compiled once for the dialect (the module-level statements of ``_sql``
  are compiled on first use and kept; others are compiled per call), with SQLAlchemy's own
  bind and result processors, so values go in and come out exactly as through SQLAlchemy;
* the transaction is the driver's ``BEGIN`` / ``BEGIN IMMEDIATE`` and ``COMMIT``, as the
  engine's ``begin`` event would issue them;
* a thread keeps the connection it ran on for its next operations (:class:`HeldConnections`:
  up to the pool's size of threads at a time, on a SQLite file with SQLAlchemy's default
  ``QueuePool``); other threads, and other pools, take a connection from the engine's pool
  (its size and ``pool_timeout`` apply) and give it back;
* a driver error is raised as the SQLAlchemy exception SQLAlchemy would raise for it
  (``IntegrityError``...), so the operations and ``database_errors`` see what they always see;
* an engine with statement logging (``echo``) or statement event listeners runs through
  SQLAlchemy as before (:meth:`RawRunner.usable`), so they see every statement.

Rows come back as tuples, with attribute access where the statement's rows are looked at by
name (threads); message pages (read by position, many at a time) come back exactly as the
driver returns them, timestamps as SQLite's text (:func:`~convkit.store._rows.message_from_row`
reads it).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import QueuePool

from convkit._drive import drive
from convkit.store import _sql
from convkit.store._engine import is_memory

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["HeldConnections", "RawResult", "RawRunner"]

T = TypeVar("T")
_Processor = Callable[[Any], Any] | None


class RawResult:
    """What an operation receives for a statement: the part of ``Result`` the operations use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        """Every row."""
        return self._rows

    def first(self) -> Any:
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        """The only row, or None; more than one is an error."""
        if len(self._rows) > 1:
            raise ValueError("more than one row where at most one was expected")
        return self.first()

    def one(self) -> Any:
        """The only row; none or more than one is an error."""
        if len(self._rows) != 1:
            raise ValueError(f"{len(self._rows)} rows where exactly one was expected")
        return self._rows[0]

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None


class _Plan:
    """A statement compiled for SQLite: its SQL, how to bind parameters and process rows."""

    __slots__ = ("binds", "defaults", "processors", "row", "sql")

    def __init__(self, compiled: SQLCompiler, dialect: Any, positional: bool) -> None:
        self.sql = str(compiled)
        processors = compiled._bind_processors
        self.binds: list[tuple[str, _Processor]] = [
            (name, processors.get(name))  # type: ignore[misc]  # one processor a name here
            for name in (compiled.positiontup or ())
        ]
        # Values embedded in the statement (``literal(...)``, ``col == value``) and defaults.
        self.defaults = {
            k: v for k, v in compiled.construct_params(_check=False).items() if v is not None
        }
        columns = compiled._result_columns
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        # Message pages are handed over as the driver returns them: message_from_row reads
        # SQLite's timestamp text itself, cheaper than a second pass over every row here.
        for i, col in enumerate(() if positional else columns):
            proc = col[3]._cached_result_processor(dialect, None)
            if proc is not None:
                self.processors.append((i, proc))
        self.row: Callable[[Sequence[Any]], Any] | None = None
        if columns and not positional:
            self.row = namedtuple("Row", [c[0] for c in columns], rename=True)._make  # type: ignore[attr-defined]

    def args(self, params: Mapping[str, Any] | None) -> list[Any]:
        values = {**self.defaults, **params} if params else self.defaults
        return [
            proc(values.get(name)) if proc is not None else values.get(name)
            for name, proc in self.binds
        ]

    def rows(self, fetched: list[Any]) -> list[Any]:
        processors = self.processors
        if processors:  # thread rows (a few at a time): message pages have none
            out = []
            for r in fetched:
                values = list(r)
                for i, proc in processors:
                    values[i] = proc(values[i])
                out.append(values)
            fetched = out
        if self.row is not None:
            make = self.row
            fetched = [make(r) for r in fetched]
        return fetched


class _Held:
    """One thread's kept connection (``conn`` None once it was closed or given up)."""

    __slots__ = ("__weakref__", "busy", "conn", "finalizer", "generation")

    def __init__(self, generation: int) -> None:
        self.conn: Any = None
        self.busy = True  # reserved by the thread opening it
        self.generation = generation
        self.finalizer: weakref.finalize[Any, Any] | None = None

    def drop(self) -> Any:
        """Give up the connection (the caller closes it): return it, or None."""
        conn, self.conn = self.conn, None
        if self.finalizer is not None:
            self.finalizer.detach()
            self.finalizer = None
        return conn


def _close(conn: Any) -> None:
    with suppress(Exception):  # closing is all that is left to do with it
        conn.close()


def _close_in(pid: int, conn: Any) -> None:
    # A kept connection whose thread is gone. In a forked child (the parent's other threads'
    # values are dropped there) it stays open and unused: SQLite's rule is that a connection is
    # not carried across a fork, closing included.
    if os.getpid() == pid:
        _close(conn)
    else:
        _inherited.append(conn)


# Every HeldConnections alive, for the fork handler; the connections a forked child inherited,
# left open and unused for as long as the child lives.
_all_held: weakref.WeakSet[HeldConnections] = weakref.WeakSet()
_inherited: list[Any] = []


class HeldConnections:
    """SQLite connections kept by the threads that use them, one a thread, up to ``limit``.

    Taking a connection from SQLAlchemy's pool and giving it back costs ~10 µs an operation
    (measured on a 2-core machine), as much as the statements of a small read. A thread's first
    operation takes a connection from the engine (the engine's ``connect`` listeners set it
    up), detaches it from the pool and keeps it: its next operations run on it directly. With
    ``limit`` threads keeping one, :meth:`take` returns None and the operation runs on the
    pool as before. A kept connection is closed when its thread ends, when a failure leaves it
    in doubt, and by :meth:`close` (at once when idle, after its operation otherwise). A forked
    child leaves the parent's connections alone and opens its own.
    """

    def __init__(self, engine: Engine, limit: int) -> None:
        self.engine = engine
        self.limit = limit
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._generation = 0
        _all_held.add(self)

    def __len__(self) -> int:
        """How many connections are kept now (those being opened included)."""
        return len(self._held)

    def take(self) -> _Held | None:
        """This thread's connection, marked busy; None when ``limit`` threads keep one."""
        held: _Held | None = getattr(self._local, "held", None)
        stale = None
        with self._lock:
            if held is not None:
                if held.conn is not None and held.generation == self._generation:
                    held.busy = True
                    return held
                stale = held.drop()
                self._held.discard(held)
                self._local.held = None
            if len(self._held) >= self.limit:
                return None
            held = _Held(self._generation)
            self._held.add(held)
        if stale is not None:
            _close(stale)
        try:
            fairy = self.engine.raw_connection()  # set up by the engine's connect listeners
            conn = fairy.driver_connection
            fairy.detach()  # out of the pool's count: this thread owns it now
        except BaseException:
            with self._lock:
                self._held.discard(held)
            raise
        held.conn = conn
        # Closed when the thread ends (its thread-local value is dropped then).
        held.finalizer = weakref.finalize(held, _close_in, os.getpid(), conn)
        self._local.held = held
        return held

    def give_back(self, held: _Held, *, keep: bool) -> None:
        """End ``held``'s operation; close it unless ``keep`` and no :meth:`close` came since."""
        with self._lock:
            held.busy = False
            if keep and held.generation == self._generation:
                return
            conn = held.drop()
            self._held.discard(held)
        if conn is not None:
            _close(conn)

    def close(self) -> None:
        """Close the idle kept connections now, the busy ones when their operation ends."""
        with self._lock:
            self._generation += 1
            idle = [h for h in self._held if not h.busy]
            conns = [h.drop() for h in idle]
            for h in idle:
                self._held.discard(h)
        for conn in conns:
            if conn is not None:
                _close(conn)

    def _after_fork(self) -> None:
        # In the child: the parent's connections stay open and unused; every thread opens anew.
        self._lock = threading.Lock()
        for h in list(self._held):
            conn = h.drop()
            if conn is not None:
                _inherited.append(conn)
        self._held = weakref.WeakSet()
        self._generation += 1


def _after_fork_in_child() -> None:
    for held in list(_all_held):
        held._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def keeps_connections(engine: Engine) -> int:
    """How many threads may keep a connection of ``engine`` (0: none; see HeldConnections).

    A SQLite file on SQLAlchemy's default ``QueuePool`` only (as many threads as the pool's
    ``pool_size``): an in-memory database lives in its one connection, and a pool the caller
    chose (``NullPool``...) is the caller's to run. (The shells also keep nothing when their
    ``engine_options`` configure the pool: its limits then bound every connection.)
    """
    if engine.dialect.name != "sqlite" or type(engine.pool) is not QueuePool:
        return 0
    if is_memory(engine.url):
        return 0
    return max(engine.pool.size(), 0)


# The statements built once in _sql (they live as long as the module): compiled once each.
_PREBUILT = {id(s): s for s in _sql.PREBUILT}
# Message pages: read by position (message_from_row), never by name: plain tuples.
_POSITIONAL = {id(s) for s in _sql.MESSAGE_PAGES}


class RawRunner:
    """Runs operations on a SQLite engine's driver connections, each in its own transaction."""

    def __init__(self, engine: Engine, *, keep_connections: bool = True) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._plans: dict[tuple[int, tuple[str, ...]], _Plan] = {}
        limit = keeps_connections(engine) if keep_connections else 0
        #: The connections threads keep between operations (None: every operation uses the pool).
        self.held = HeldConnections(engine, limit) if limit else None

    def _plan(self, stmt: Any, params: Mapping[str, Any] | None) -> _Plan:
        keys = tuple(params) if params else ()
        key = (id(stmt), keys)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        compiled = stmt.compile(
            dialect=self.dialect,
            column_keys=list(keys) or None,
            compile_kwargs={"render_postcompile": True},  # IN (...) rendered out
        )
        plan = _Plan(compiled, self.dialect, id(stmt) in _POSITIONAL)
        if id(stmt) in _PREBUILT:
            self._plans[key] = plan
        return plan

    def _execute(self, dbapi: Any, q: _sql.Q) -> RawResult:
        params = q.params
        try:
            if isinstance(params, list):  # executemany
                plan = self._plan(q.stmt, params[0])
                cursor = dbapi.executemany(plan.sql, [plan.args(p) for p in params])
            else:
                one: Mapping[str, Any] | None = params  # type: ignore[assignment]
                plan = self._plan(q.stmt, one)
                cursor = dbapi.execute(plan.sql, plan.args(one))
            fetched = cursor.fetchall() if cursor.description is not None else []
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap(str(q.stmt), exc) from exc
        return RawResult(plan.rows(fetched), cursor.rowcount)

    def _wrap(self, sql: str, exc: Exception) -> BaseException:
        # The exception class SQLAlchemy raises for this driver error (IntegrityError...).
        return DBAPIError.instance(
            sql, None, exc, self.dialect.loaded_dbapi.Error, dialect=self.dialect
        )

    def usable(self) -> bool:
        """Whether the engine may be bypassed: no statement events listened to, no echo.

        Statement logging and ``before_cursor_execute``-style listeners see every statement
        through SQLAlchemy, as they always did: with any of them the shell runs operations
        there instead (the same statements).
        """
        d = self.engine.dispatch
        return not (
            self.engine.echo
            or d.before_execute
            or d.after_execute
            or d.before_cursor_execute
            or d.after_cursor_execute
        )

    def run(self, op: _sql.Op[T], *, write: bool) -> T:
        """Run ``op`` in one transaction: on this thread's kept connection, or a pooled one."""
        kept = self.held
        held = kept.take() if kept is not None else None
        if kept is None or held is None:
            fairy = self.engine.raw_connection()
            try:
                dbapi = fairy.driver_connection
                assert dbapi is not None
                return self._transaction(dbapi, op, write)
            finally:
                fairy.close()
        keep = False
        try:
            value = self._transaction(held.conn, op, write)
            keep = True
            return value
        except DBAPIError as exc:
            # A refused row leaves the connection as it was; another driver error may not.
            keep = isinstance(exc, IntegrityError) and not held.conn.in_transaction
            raise
        except Exception:
            keep = not held.conn.in_transaction  # the operation's own error (no such thread)
            raise
        finally:
            # An interrupt, or a failure that left the connection in doubt: it is closed, and
            # the thread's next operation opens another.
            kept.give_back(held, keep=keep)

    def close(self) -> None:
        """Close the kept connections (the busy ones when their operation ends)."""
        if self.held is not None:
            self.held.close()

    def _transaction(self, dbapi: Any, op: _sql.Op[T], write: bool) -> T:
        try:
            try:
                dbapi.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except self.dialect.loaded_dbapi.Error as exc:
                raise self._wrap("BEGIN", exc) from exc
            try:
                value = drive(op, lambda q: self._execute(dbapi, q))
                dbapi.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
                raise
            return value
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap("COMMIT", exc) from exc
