"""Shared test configuration."""

from __future__ import annotations

import sys

import pytest

# Plugins installed through entry points are not loaded while convkit's own tests run.
sys._called_from_test = True  # type: ignore[attr-defined]


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (anyio's pytest plugin ships with httpx's anyio dependency)."""
    return "asyncio"
