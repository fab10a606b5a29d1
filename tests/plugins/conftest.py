"""Fixtures for the plugin tests: an isolated plugin manager and fake installed distributions."""

from __future__ import annotations

import importlib.metadata
import sys
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from convkit import plugins


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """convkit.plugins with a new, empty manager and nothing loaded yet (restored afterwards).

    Entry points are not skipped (``sys._called_from_test`` is removed for the test) and come
    only from the distributions ``fake_dist`` writes.
    """
    monkeypatch.setattr(plugins, "pm", plugins._Manager())
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "_sources", {})
    monkeypatch.setattr(plugins, "_failures", {})
    monkeypatch.setattr(plugins, "_models_done", weakref.WeakSet())
    monkeypatch.setattr(plugins, "_trace", False)
    monkeypatch.setattr(plugins, "_entry_points", list)
    monkeypatch.delenv(plugins.ALLOWLIST_ENV, raising=False)
    monkeypatch.delenv(plugins.TRACE_ENV, raising=False)
    monkeypatch.delattr(sys, "_called_from_test")
    return plugins


FakeDist = Callable[..., dict[str, str]]


@pytest.fixture
def fake_dist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: ModuleType
) -> Iterator[FakeDist]:
    """Install a fake distribution on ``sys.path``: ``fake_dist(dist, version, {ep: source})``.

    Each entry point gets its own module (unique name, returned as ``{ep: module name}``) with
    the given source; ``convkit.plugins`` sees exactly these entry points, read through
    ``importlib.metadata`` from the distribution's ``entry_points.txt``.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(dist: str, version: str, sources: dict[str, str]) -> dict[str, str]:
        modules = {
            ep: f"fakeplugin_{ep.replace('-', '_')}_{uuid.uuid4().hex[:8]}" for ep in sources
        }
        for ep, source in sources.items():
            (tmp_path / f"{modules[ep]}.py").write_text(source)
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {modules[ep]}\n" for ep in sources)
        (info / "entry_points.txt").write_text(f"[convkit]\n{lines}")
        created.extend(modules.values())
        importlib.invalidate_caches()
        return modules

    def entry_points() -> list[importlib.metadata.EntryPoint]:
        found = []
        for d in importlib.metadata.distributions(path=[str(tmp_path)]):
            found.extend(d.entry_points.select(group="convkit"))
        return sorted(found, key=lambda ep: ep.name)

    monkeypatch.setattr(fresh_plugins, "_entry_points", entry_points)
    yield make
    for name in created:
        sys.modules.pop(name, None)
