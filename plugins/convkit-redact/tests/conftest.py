"""Fixtures of convkit-redact's tests: a loopback server that echoes, a fresh SQLite store.

Installed plugins are not loaded from their entry points here: each test lists the plugins
its conversations use (one test loads the entry point, in a child process).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from convkit.plugins import load_plugins
from convkit.store import Store
from convkit.testing import FakeChatServer, echo_responder

load_plugins(only=())

#: The API key the conversations send (a test checks it is not what gets masked).
FAKE_KEY = "fake-key-for-tests"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    """A loopback server answering anything unscripted with the last user message."""
    with FakeChatServer(default_responder=echo_responder) as s:
        yield s


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'redact.sqlite3'}"
    Store(url, create_tables=True).close()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store on that file."""
    with Store(db_url) as s:
        yield s
