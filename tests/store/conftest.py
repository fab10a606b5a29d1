"""Fixtures of the store tests: every test taking ``store_url`` runs on three backends.

- ``sqlite``: a fresh file per test.
- ``postgresql``: the server of ``$CONVKIT_TEST_POSTGRES_URL`` (default: 127.0.0.1:5432). One
  fresh, uniquely named database is created per test session, migrated once and dropped at the
  end; each test starts from empty tables.
- ``pgbouncer``: the same database through PgBouncer in transaction pooling mode, on
  ``$CONVKIT_TEST_PGBOUNCER_PORT`` (default 6432) of the same host (``.ci/run`` starts it).

When a server cannot be reached its variants are skipped, except under ``CI=true``, where they
fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from convkit.store import Store, upgrade
from convkit.tokens import TokenCounter

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql", "pgbouncer"]
PGBOUNCER_PORT = int(os.environ.get("CONVKIT_TEST_PGBOUNCER_PORT", "6432"))


def _admin_url() -> URL:
    return make_url(os.environ.get("CONVKIT_TEST_POSTGRES_URL", DEFAULT_PG))


def _unreachable(reason: str, what: str = "PostgreSQL") -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"{what} not reachable: {reason}")


def through_pgbouncer(url: URL) -> URL:
    """The same database, reached through PgBouncer."""
    return url.set(port=PGBOUNCER_PORT)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin: URL) -> None:
        self.admin = admin
        self.engine = create_engine(admin, isolation_level="AUTOCOMMIT", pool_size=1)
        self.created: list[str] = []

    def create(self, prefix: str = "convkit_test") -> URL:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.admin.set(database=name)

    def drop(self, url: URL) -> None:
        name = url.database
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(self.admin.set(database=name))
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server, or a skip (a failure under CI=true) when it is not there."""
    server = PostgresServer(_admin_url())
    try:
        with server.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        server.engine.dispose()
        _unreachable(str(exc).splitlines()[0])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> URL:
    """A database created for this test session, at the newest schema."""
    url = postgres_server.create()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def pgbouncer_url(postgres_url: URL) -> URL:
    """The session's database through PgBouncer (skipped, or failed under CI, if not there)."""
    url = through_pgbouncer(postgres_url)
    engine = create_engine(url, pool_size=1, connect_args={"prepare_threshold": None})
    try:
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("SHOW transaction_isolation").scalar()
            assert mode is not None
    except OperationalError as exc:
        _unreachable(str(exc).splitlines()[0], f"PgBouncer on port {PGBOUNCER_PORT}")
    finally:
        engine.dispose()
    return url


def _truncate(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("TRUNCATE convkit_summaries, convkit_messages, convkit_threads CASCADE")
            )
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this variant."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> URL:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL database."""
    if backend == "sqlite":
        url = make_url(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        upgrade(url)
        return url
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    if backend == "pgbouncer":
        return request.getfixturevalue("pgbouncer_url")  # type: ignore[no-any-return]
    return url


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[URL]:
    """A database without convkit's tables (dropped afterwards on PostgreSQL)."""
    if backend == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create("convkit_empty")
    if backend == "pgbouncer":
        request.getfixturevalue("pgbouncer_url")  # skips (or fails) without PgBouncer
    try:
        yield through_pgbouncer(url) if backend == "pgbouncer" else url
    finally:
        server.drop(url)  # directly: DROP DATABASE ... WITH (FORCE) also ends PgBouncer's links


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """The counter stores use by default (gpt-4o, o200k_base)."""
    return TokenCounter("gpt-4o")


@pytest.fixture
def store(store_url: URL, counter: TokenCounter) -> Iterator[Store]:
    """An open sync store on an empty database."""
    with Store(store_url, counter=counter) as s:
        yield s
