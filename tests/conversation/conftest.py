"""Fixtures of the conversation tests: a fresh SQLite store (and PostgreSQL where asked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convkit.store import Store
from convkit.testing import FakeChatServer
from convkit.testing.pytest_plugin import FAKE_API_KEY
from tests.store.conftest import (  # noqa: F401 - fixtures shared with the store tests
    backend,
    pgbouncer_url,
    postgres_server,
    postgres_url,
    store_url,
)

__all__ = ["FAKE_API_KEY"]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLite file URL, migrated."""
    url = f"sqlite:///{tmp_path / 'conv.sqlite3'}"
    Store(url, create_tables=True).close()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store on a fresh SQLite file."""
    with Store(db_url) as s:
        yield s


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    """A loopback server whose unmatched requests are answered by echoing the user."""
    from convkit.testing import echo_responder

    with FakeChatServer(default_responder=echo_responder) as s:
        yield s
