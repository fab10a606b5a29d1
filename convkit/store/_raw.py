"""SQLite operations run straight on the driver connection (the sync shell's fast path).

The operations of :mod:`convkit.store._sql` yield SQLAlchemy Core statements. On SQLite a
statement is cheap to execute (microseconds), and SQLAlchemy's machinery around it is not: a
``Connection`` with its transaction, the execution context and the result object cost about as
much again as reading fifty rows. :class:`RawRunner` runs the same operations, statement for
statement, on the pooled connection's ``sqlite3`` connection instead:

* each statement is compiled once for the dialect (the module-level statements of ``_sql``
  are compiled on first use and kept; others are compiled per call), with SQLAlchemy's own
  bind and result processors, so values go in and come out exactly as through SQLAlchemy;
* the transaction is the driver's ``BEGIN`` / ``BEGIN IMMEDIATE`` and ``COMMIT``, as the
  engine's ``begin`` event would issue them; the connection comes from the engine's pool (its
  size and ``pool_timeout`` apply) and goes back to it;
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

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError

from convkit._drive import drive
from convkit.store import _sql

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["RawResult", "RawRunner"]

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


# The statements built once in _sql (they live as long as the module): compiled once each.
_PREBUILT = {id(s): s for s in _sql.PREBUILT}
# Message pages: read by position (message_from_row), never by name: plain tuples.
_POSITIONAL = {id(s) for s in _sql.MESSAGE_PAGES}


class RawRunner:
    """Runs operations on a SQLite engine's driver connections, each in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._plans: dict[tuple[int, tuple[str, ...]], _Plan] = {}

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
        """Run ``op`` in one transaction on a pooled connection's driver connection."""
        fairy = self.engine.raw_connection()
        try:
            dbapi = fairy.driver_connection
            assert dbapi is not None
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
        finally:
            fairy.close()
