"""The public surface: complete, sorted, documented, and light to import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import convkit


def test_all_is_sorted_and_unique() -> None:
    assert list(convkit.__all__) == sorted(set(convkit.__all__))


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in convkit.__all__:
        obj = getattr(convkit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_import_is_light() -> None:
    code = (
        "import sys, convkit\n"
        "heavy = [m for m in ('httpx', 'sqlalchemy', 'alembic', 'tiktoken', 'psycopg', 'aiosqlite')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
