"""Fixtures of the convkit-usage tests: a loopback server and a database on each backend.

PostgreSQL comes from ``$CONVKIT_TEST_POSTGRES_URL`` (default: the server on 127.0.0.1:5432,
trust auth). One throwaway database is created per test session and dropped at the end. When
the server cannot be reached the PostgreSQL variants are skipped, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from convkit.store import upgrade

# Installed plugins (this one included) are not loaded from entry points while tests run:
# each test registers exactly the plugins it means to.
sys._called_from_test = True  # type: ignore[attr-defined]

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[URL]:
    """A throwaway PostgreSQL database at convkit's schema, for the whole session."""
    admin = make_url(os.environ.get("CONVKIT_TEST_POSTGRES_URL", DEFAULT_PG))
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", pool_size=1)
    name = f"convkit_usage_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc).splitlines()[0]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable: {reason}")
    url = admin.set(database=name)
    try:
        upgrade(url)
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _empty(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("TRUNCATE convkit_summaries, convkit_messages, convkit_threads CASCADE")
            )
            conn.execute(text("DROP TABLE IF EXISTS convkit_usage"))
            conn.execute(text("DROP TABLE IF EXISTS convkit_usage_alembic_version"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL:
    """A database at convkit's schema with no usage table yet: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        url = make_url(f"sqlite:///{tmp_path / 'chat.sqlite3'}")
        upgrade(url)
        return url
    url: URL = request.getfixturevalue("postgres_database")
    _empty(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A SQLite database at convkit's schema."""
    url = make_url(f"sqlite:///{tmp_path / 'chat.sqlite3'}")
    upgrade(url)
    return url


@pytest.fixture(autouse=True)
def _fresh_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import convkit_usage

    monkeypatch.delenv(convkit_usage.PRICES_ENV, raising=False)
    convkit_usage.clear_prices()
    yield
    convkit_usage.clear_prices()
