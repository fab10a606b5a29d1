"""Fixtures of convkit-cache's tests: a loopback server, and a convkit database on SQLite or
PostgreSQL (a throwaway database on the server at ``$CONVKIT_TEST_POSTGRES_URL``, default
127.0.0.1:5432; skipped when it cannot be reached, except under ``CI=true``, where that fails).

Installed plugins are not loaded from their entry points here: each test lists the plugins
its conversations use (the two-process test loads the entry point in its child process).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from convkit.plugins import load_plugins
from convkit.store import upgrade
from convkit.testing import FakeChatServer, echo_responder
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

load_plugins(only=())

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    """A loopback server answering anything unscripted with the last user message."""
    with FakeChatServer(default_responder=echo_responder) as s:
        yield s


@pytest.fixture(scope="session")
def postgres_admin() -> URL:
    """The PostgreSQL server's admin URL, or a skip (a failure under CI=true)."""
    admin = make_url(os.environ.get("CONVKIT_TEST_POSTGRES_URL", DEFAULT_PG))
    engine = create_engine(admin)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc).splitlines()[0]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable: {reason}")
    finally:
        engine.dispose()
    return admin


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated convkit database: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
        upgrade(url)
        yield url
        return
    admin: URL = request.getfixturevalue("postgres_admin")
    name = f"convkit_cache_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin.set(database=name)
        upgrade(url)
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
