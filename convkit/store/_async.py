"""``AsyncStore``: the asynchronous shell (SQLAlchemy ``AsyncEngine`` and ``AsyncSession``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from convkit._drive import adrive
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
    is_memory,
    make_async_engine,
    make_sync_engine,
    run_upgrade,
)
from convkit.store._recent import DEFAULT_MAX_ROWS
from convkit.store._sync import SyncRunner
from convkit.store._values import StoredMessage, Summary, Thread, ThreadPage
from convkit.store._workers import Workers

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine


def _write_line(out: IO[str], line: str) -> None:
    out.write(line + "\n")


__all__ = ["AsyncStore"]

T = TypeVar("T")

# Worker threads of an AsyncStore on a SQLite file: readers run side by side in WAL mode; the
# one writer at a time is SQLite's rule anyway.
_SQLITE_THREADS = 4


async def drive(op: _sql.Op[T], session: AsyncSession | AsyncConnection) -> T:
    """Run a sans-IO operation on an async session or connection (inside its transaction)."""

    async def execute(q: _sql.Q) -> Any:
        if q.params is None:
            return await session.execute(q.stmt)
        return await session.execute(q.stmt, q.params)

    return await adrive(op, execute)


class AsyncStore:
    """Threads, messages and summaries in a SQL database, for asyncio.

    The same methods as :class:`~convkit.store.Store`, awaited. Sync-style URLs are mapped to an
    async driver (``sqlite://`` to ``sqlite+aiosqlite://``; ``postgresql+psycopg://`` serves both).

    Example::

        from convkit.store import AsyncStore

        async with AsyncStore("sqlite:///chat.db", create_tables=True) as store:
            thread = await store.create_thread(title="demo")
            await store.append(thread.id, {"role": "user", "content": "Hello"})
            window = await store.window(thread.id, budget=8000)

    The schema is checked (and, for the default SQLite file or with ``create_tables``, upgraded)
    on entering ``async with`` or on the first call. Close with ``await store.aclose()``.
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
        ensure_sqlite_dir(self._base.url)
        self.engine: AsyncEngine = make_async_engine(self._base.url, engine_options)
        self.url = self.engine.url
        self._dialect = self.engine.dialect.name
        self._write_engine = self.engine.execution_options(**WRITE)
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._writes = async_sessionmaker(
            self._write_engine, expire_on_commit=False, autoflush=False
        )
        self._upgrade_on_open = create_tables or self._base._is_default
        self._ready = False
        #: SQLite files only: the sync engine the operations run on, in worker threads.
        self.thread_engine: Engine | None = None
        self._threads: SyncRunner | None = None
        self._workers: Workers | None = None
        if self._dialect == "sqlite" and not is_memory(self._base.url):
            # aiosqlite hops to its worker thread for every cursor call (execute, fetch,
            # close: ~90 us a statement measured, an append takes five statements); one hop
            # per operation onto a thread running the sync driver costs ~50 us in all.
            options = dict(engine_options or {})
            options["connect_args"] = {
                "check_same_thread": False,
                **options.get("connect_args", {}),
            }
            self.thread_engine = make_sync_engine(self._base.url, options)
            self._threads = SyncRunner(
                self.thread_engine, keep_connections=not configures_pool(engine_options)
            )

    async def _open(self) -> None:
        with database_errors(self.url):
            async with self.engine.connect() as conn:
                revision = await conn.run_sync(current_revision)
                if revision != HEAD_REVISION and not self._upgrade_on_open:
                    await conn.run_sync(check_schema, self._base.url)
            if revision != HEAD_REVISION:
                await self.upgrade()
        self._ready = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({display_url(self.url)!r})"

    async def __aenter__(self) -> AsyncStore:
        if not self._ready:
            try:
                await self._open()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (pooled, or kept by a thread); the store can still be used."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()  # idle by now: every operation was awaited
        if self._threads is not None:
            self._threads.close()
        if self.thread_engine is not None:
            self.thread_engine.dispose()
        await self.engine.dispose()

    async def upgrade(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest revision; return (revision before, revision after)."""
        with database_errors(self.url):
            async with self.engine.execution_options(**WRITE).begin() as conn:
                return await conn.run_sync(run_upgrade)

    @property
    def counter(self) -> TokenCounterLike:
        """The token counter appends are counted with."""
        return self._base.counter

    async def _run(self, op: _sql.Op[T], *, write: bool, core: bool = False) -> T:
        """Run one operation in its own transaction; database errors become StoreError."""
        if not self._ready:
            try:
                await self._open()
            except BaseException:
                op.close()
                raise
        if self._threads is not None:
            if self._workers is None:
                self._workers = Workers(_SQLITE_THREADS, "convkit-sqlite")
            run = partial(self._threads.run, op, write=write, core=core)
            with database_errors(self.url):
                return await self._workers.run(run)
        with database_errors(self.url):
            if core:
                # Core statements only: a bare connection skips the ORM session's bookkeeping.
                engine = self._write_engine if write else self.engine
                async with engine.begin() as conn:
                    return await drive(op, conn)
            maker = self._writes if write else self._reads
            async with maker() as session, session.begin():
                return await drive(op, session)

    # ---- threads

    async def create_thread(
        self,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        """Create an empty thread (``thread_id`` defaults to a random 32-hex id)."""
        op = self._base._prepare_create_thread(title, metadata, thread_id)
        return await self._run(op, write=True, core=True)

    async def get_thread(self, thread_id: str) -> Thread:
        """Return a thread; raise :class:`~convkit.ThreadNotFoundError` if there is none."""
        return await self._run(_sql.get_thread(thread_id), write=False, core=True)

    async def list_threads(
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
        return await self._run(op, write=False, core=True)

    async def update_thread(
        self,
        thread_id: str,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | Unset | None = UNSET,
    ) -> Thread:
        """Set a thread's title and/or replace its metadata; return the updated thread."""
        op = self._base._prepare_update_thread(thread_id, title, metadata)
        return await self._run(op, write=True, core=True)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread with its messages and summaries (its forks keep their history)."""
        try:
            await self._run(_sql.delete_thread(thread_id), write=True, core=True)
        finally:  # also when the call failed or was cancelled: what was kept goes either way
            self._base.recent.deleted(thread_id)

    async def fork(
        self,
        thread_id: str,
        at_seq: int | None = None,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
    ) -> Thread:
        """Start a thread sharing ``thread_id``'s history up to ``at_seq`` (see ``Store.fork``)."""
        op = self._base._prepare_fork(thread_id, at_seq, title, metadata)
        return await self._run(op, write=True, core=True)

    # ---- messages

    async def append(
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
        return stored(await self._run(op, write=True, core=True))[0]

    async def append_many(
        self, thread_id: str, messages: Iterable[NewMessage | MessageLike]
    ) -> list[StoredMessage]:
        """Append several messages in one transaction (all or none); return them as stored."""
        items = list(messages)
        if not items:
            await self.get_thread(thread_id)
            return []
        op, stored = self._base._prepare_append(thread_id, items, False, self._dialect)
        return stored(await self._run(op, write=True, core=True))

    async def messages(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """Messages in chronological order: all, the ``last`` N, or those after ``after_seq``."""
        op = self._base._prepare_messages(thread_id, last, after_seq, limit, self._dialect)
        return await self._run(op, write=False, core=True)

    async def window(
        self,
        thread_id: str,
        budget: int | ReadPlan,
        *,
        after_seq: int | None = None,
        include_incomplete: bool = True,
    ) -> list[StoredMessage]:
        """The newest user turn, whatever its size, then older messages fitting ``budget``.

        See :meth:`Store.window <convkit.store.Store.window>`.
        """
        op = self._base._prepare_window(
            thread_id, budget, after_seq, include_incomplete, self._dialect
        )
        return await self._run(op, write=False, core=True)

    # ---- summaries

    async def put_summary(self, thread_id: str, summary: Summary) -> Summary:
        """Store ``summary`` (its ``tokens`` counted when 0) and return it as stored.

        A summary covering less than one already stored never replaces it:
        :meth:`get_summary` returns the one covering the most history.
        """
        op = self._base._prepare_put_summary(thread_id, summary)
        return await self._run(op, write=True)

    async def get_summary(self, thread_id: str) -> Summary | None:
        """The summary covering the most of the thread (forks see their parent's), or None."""
        return await self._run(_sql.get_summary(thread_id), write=False)

    async def list_summaries(self, thread_id: str) -> list[Summary]:
        """Every summary visible in the thread, by coverage."""
        return await self._run(_sql.list_summaries(thread_id), write=False)

    # ---- export / import

    async def export_thread(self, thread_id: str, out: IO[str]) -> None:
        """Write a thread as JSON lines to ``out`` (format in ``docs/storage.md``)."""
        op = _sql.export_lines(thread_id, lambda line: _write_line(out, line))
        await self._run(op, write=False)

    async def import_thread(
        self, source: Iterable[str] | str | IO[str], *, thread_id: str | None = None
    ) -> Thread:
        """Create a new thread from an export, checked whole before anything is written."""
        return await self._run(self._base._prepare_import(source, thread_id), write=True, core=True)
