"""The reliability suite: faults, crashes, fuzzing and secret checks (``pytest -m reliability``).

Every test here is marked ``reliability`` (so the suite runs alone) and runs in the normal test
run too. Each one pins a defect a hostile review found, or a class of them, and fails without
its fix.
"""

from __future__ import annotations

import pytest

# The store fixtures (every backend: SQLite, PostgreSQL, PgBouncer), shared with tests/store.
from tests.store.conftest import (  # noqa: F401
    backend,
    counter,
    empty_url,
    pgbouncer_url,
    postgres_server,
    postgres_url,
    store,
    store_url,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
