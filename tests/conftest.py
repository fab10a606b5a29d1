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


def _hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    # No per-example deadline: these machines are noisy and a slow example is not a bug. Under
    # CI the examples are derived from each test's name, so a run is reproducible.
    settings.register_profile("dev", deadline=None)
    settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


_hypothesis_profiles()
