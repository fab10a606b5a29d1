"""``Store``: the synchronous shell (SQLAlchemy ``Engine`` and ``Session``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from convkit._drive import drive as run_steps
from convkit.context._values import ReadPlan
from convkit.messages import MessageLike, Usage
from convkit.store import _sql
from convkit.store._base import (
    UNSET,
    NewMessage,
    StoreBase,
    TokenCounterLike,
    Unset,
    database_errors,
)
from convkit.store._engine import (
    HEAD_REVISION,
    WRITE,
    check_schema,
    configures_pool,
    current_revision,
    display_url,
    ensure_sqlite_dir,
    make_sync_engine,
    run_upgrade,
)
from convkit.store._raw import RawRunner
from convkit.store._recent import DEFAULT_MAX_ROWS
from convkit.store._values import StoredMessage, Summary, Thread, ThreadPage

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL


def _write_line(out: IO[str], line: str) -> None:
    out.write(line + "\n")


__all__ = ["Store", "SyncRunner"]

T = TypeVar("T")


def drive(op: _sql.Op[T], session: Session | Connection) -> T:
    """Run a sans-IO operation on a session or connection (inside its transaction)."""

    def execute(q: _sql.Q) -> Any:
        if q.params is None:
            return session.execute(q.stmt)
        return session.execute(q.stmt, q.params)

    return run_steps(op, execute)


class SyncRunner:
    """Runs operations, each in its own transaction, on a sync engine.

    :class:`Store` runs everything through one; :class:`~convkit.store.AsyncStore` runs its
    SQLite operations through one in worker threads (one thread hop per operation, where
    aiosqlite would take several per statement).
    """

    def __init__(self, engine: Engine, *, keep_connections: bool = True) -> None:
        self.engine = engine
        self.write_engine = engine.execution_options(**WRITE)
        self._reads = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._writes = sessionmaker(self.write_engine, expire_on_commit=False, autoflush=False)
        # SQLite: Core operations run on the driver connection (see convkit.store._raw), kept
        # by the thread between operations unless the caller configured the pool.
        self._raw = (
            RawRunner(engine, keep_connections=keep_connections)
            if engine.dialect.name == "sqlite"
            else None
        )

    def close(self) -> None:
        """Close the connections threads keep between operations (SQLite files)."""
        if self._raw is not None:
            self._raw.close()

    def run(self, op: _sql.Op[T], *, write: bool, core: bool) -> T:
        """Run ``op`` in a transaction: a bare connection for Core-only operations."""
        if core and self._raw is not None and self._raw.usable():
            return self._raw.run(op, write=write)
        if core:
            # Core statements only (every operation but the summaries'): a bare connection
            # skips the ORM session's bookkeeping, which was most of a read's cost.
            with (self.write_engine if write else self.engine).begin() as conn:
                return drive(op, conn)
        maker = self._writes if write else self._reads
        with maker() as session, session.begin():
            return drive(op, session)


class Store:
    """Threads, messages and summaries in a SQL database, synchronously.

    Example::

        from convkit.store import Store

        with Store() as store:  # the default SQLite file, created and upgraded on open
            thread = store.create_thread(title="demo")
            store.append(thread.id, {"role": "user", "content": "Hello"})
            store.append(thread.id, {"role": "assistant", "content": "Hi!"})
            for stored in store.window(thread.id, budget=8000):
                print(stored.seq, stored.tokens, stored.message.text)

    Args:
        url: any SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``); None
            means ``$CONVKIT_DATABASE_URL`` or else the default SQLite file in the user data
            directory. Only that default file upgrades its schema by itself.
        model: the model whose tokenizer counts appended messages.
        counter: a ready token counter (anything with ``count_message`` and ``encoding_name``);
            overrides ``model``.
        create_tables: create or upgrade the schema on open (otherwise an out-of-date schema
            raises :class:`~convkit.SchemaVersionError` naming ``convkit db upgrade``).
        engine_options: extra keyword arguments for :func:`sqlalchemy.create_engine`.
        keep_rows: how many rows of recently read windows are kept in memory, over all
            threads, so that the next ``window()`` of a thread fetches only the rows appended
            since (see ``docs/storage.md``); 0 keeps none.

    Every method runs in its own transaction. Close the store (or use ``with``) to release
    the connection pool.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        model: str = "gpt-4o",
        counter: TokenCounterLike | None = None,
        create_tables: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        keep_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self._base = StoreBase(url, model=model, counter=counter, keep_rows=keep_rows)
        self.url = self._base.url
        ensure_sqlite_dir(self.url)
        self.engine: Engine = make_sync_engine(self.url, engine_options)
        self._dialect = self.engine.dialect.name
        self._runner = SyncRunner(self.engine, keep_connections=not configures_pool(engine_options))
        try:
            self._open(create_tables or self._base._is_default)
        except BaseException:
            self._runner.close()
            self.engine.dispose()
            raise

    def _open(self, upgrade: bool) -> None:
        with database_errors(self.url):
            with self.engine.connect() as conn:
                if current_revision(conn) == HEAD_REVISION:
                    return
                if not upgrade:
                    check_schema(conn, self.url)
            self.upgrade()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({display_url(self.url)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (pooled, or kept by a thread); the store can still be used."""
        self._runner.close()
        self.engine.dispose()

    def upgrade(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest revision; return (revision before, revision after)."""
        with database_errors(self.url), self.engine.execution_options(**WRITE).begin() as conn:
            return run_upgrade(conn)

    @property
    def counter(self) -> TokenCounterLike:
        """The token counter appends are counted with."""
        return self._base.counter

    def _run(self, op: _sql.Op[T], *, write: bool, core: bool = False) -> T:
        """Run one operation in its own transaction; database errors become StoreError."""
        with database_errors(self.url):
            return self._runner.run(op, write=write, core=core)

    # ---- threads

    def create_thread(
        self,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        """Create an empty thread (``thread_id`` defaults to a random 32-hex id)."""
        return self._run(
            self._base._prepare_create_thread(title, metadata, thread_id), write=True, core=True
        )

    def get_thread(self, thread_id: str) -> Thread:
        """Return a thread; raise :class:`~convkit.ThreadNotFoundError` if there is none."""
        return self._run(_sql.get_thread(thread_id), write=False, core=True)

    def list_threads(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        order: Literal["created", "updated"] = "created",
    ) -> ThreadPage:
        """One page of threads, newest first; ``metadata`` keeps threads whose keys equal these."""
        op = self._base._prepare_list_threads(
            self.engine.dialect.name, limit, cursor, metadata, order
        )
        return self._run(op, write=False, core=True)

    def update_thread(
        self,
        thread_id: str,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | Unset | None = UNSET,
    ) -> Thread:
        """Set a thread's title and/or replace its metadata; return the updated thread."""
        return self._run(
            self._base._prepare_update_thread(thread_id, title, metadata), write=True, core=True
        )

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread with its messages and summaries (its forks keep their history)."""
        try:
            self._run(_sql.delete_thread(thread_id), write=True, core=True)
        finally:  # also when the call failed or was cancelled: what was kept goes either way
            self._base.recent.deleted(thread_id)

    def fork(
        self,
        thread_id: str,
        at_seq: int | None = None,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
    ) -> Thread:
        """Start a thread sharing ``thread_id``'s history up to ``at_seq`` (default: all of it).

        Nothing is copied: the fork reads its parent's rows up to the fork point, then its own,
        whose ``seq`` continues from ``at_seq + 1``. Title and metadata default to the parent's.
        """
        return self._run(
            self._base._prepare_fork(thread_id, at_seq, title, metadata), write=True, core=True
        )

    # ---- messages

    def append(
        self,
        thread_id: str,
        message: MessageLike,
        *,
        tokens: int | None = None,
        status: Literal["complete", "incomplete"] = "complete",
        usage: Usage | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> StoredMessage:
        """Append one message; return it as stored, with its ``seq`` and token count."""
        item = NewMessage(
            message=message, tokens=tokens, status=status, usage=usage, metadata=metadata
        )
        op, stored = self._base._prepare_append(thread_id, [item], True, self._dialect)
        return stored(self._run(op, write=True, core=True))[0]

    def append_many(
        self, thread_id: str, messages: Iterable[NewMessage | MessageLike]
    ) -> list[StoredMessage]:
        """Append several messages in one transaction (all or none); return them as stored."""
        items = list(messages)
        if not items:
            self.get_thread(thread_id)
            return []
        op, stored = self._base._prepare_append(thread_id, items, False, self._dialect)
        return stored(self._run(op, write=True, core=True))

    def messages(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """Messages in chronological order: all, the ``last`` N, or those after ``after_seq``.

        ``last`` and ``after_seq`` combine (the newest N after a seq); ``limit`` caps a forward
        read from ``after_seq``. Only the rows returned are read.
        """
        return self._run(
            self._base._prepare_messages(thread_id, last, after_seq, limit, self._dialect),
            write=False,
            core=True,
        )

    def window(
        self,
        thread_id: str,
        budget: int | ReadPlan,
        *,
        after_seq: int | None = None,
        include_incomplete: bool = True,
    ) -> list[StoredMessage]:
        """The messages a request may carry: the newest user turn, then what fits ``budget``.

        ``budget`` is a token count or a policy's :class:`~convkit.context.ReadPlan`
        (``policy.read_plan(...)``: the budget left after the system prompt, summary, tools
        and the reply's reserve, and the summary's ``covers_through_seq``), so that a turn
        reads exactly the rows it may send, once. Only messages after ``after_seq`` are read.

        The window follows convkit's one rule for windows (see ``docs/conversations.md``): the
        newest user turn (every message from the newest ``user`` message to the end) is
        always included, even when it alone exceeds ``budget`` (the caller's policy decides
        whether to truncate or raise :class:`~convkit.ContextOverflowError`); older whole
        units are added newest-first while they fit, stopping at the first that does not;
        a tool call and its results are kept together, unanswered calls are removed and
        orphaned results dropped; incomplete rows are kept as text (their tool calls removed)
        unless ``include_incomplete=False``; the window starts on a user message. A thread
        without a user message gets only what fits. Only the window's rows are read.
        """
        op = self._base._prepare_window(
            thread_id, budget, after_seq, include_incomplete, self._dialect
        )
        return self._run(op, write=False, core=True)

    # ---- summaries

    def put_summary(self, thread_id: str, summary: Summary) -> Summary:
        """Store ``summary`` (its ``tokens`` counted when 0) and return it as stored.

        A summary covering less than one already stored never replaces it:
        :meth:`get_summary` returns the one covering the most history.
        """
        op = self._base._prepare_put_summary(thread_id, summary)
        return self._run(op, write=True)

    def get_summary(self, thread_id: str) -> Summary | None:
        """The summary covering the most of the thread (forks see their parent's), or None."""
        return self._run(_sql.get_summary(thread_id), write=False)

    def list_summaries(self, thread_id: str) -> list[Summary]:
        """Every summary visible in the thread, by coverage."""
        return self._run(_sql.list_summaries(thread_id), write=False)

    # ---- export / import

    def export_thread(self, thread_id: str, out: IO[str]) -> None:
        """Write a thread as JSON lines to ``out`` (format in ``docs/storage.md``)."""
        self._run(_sql.export_lines(thread_id, lambda line: _write_line(out, line)), write=False)

    def import_thread(
        self, source: Iterable[str] | str | IO[str], *, thread_id: str | None = None
    ) -> Thread:
        """Create a new thread from an export, checked whole before anything is written."""
        return self._run(self._base._prepare_import(source, thread_id), write=True, core=True)
