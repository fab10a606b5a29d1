"""The main job: `convkit demo` holds a real conversation over HTTP and the store."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from convkit.demo import SCRIPT, run_demo
from convkit.store import Store


def test_demo_converses_stores_and_counts_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = io.StringIO()
    assert run_demo(database_url=url, out=out) == 0
    text = out.getvalue()
    assert "every prompt counted exactly: True" in text
    assert "MISMATCH" not in text
    assert "[calls get_weather" in text
    assert "summarized through seq" in text
    with Store(url) as store:
        (thread,) = store.list_threads().threads
        stored = store.messages(thread.id)
        roles = [m.role for m in stored]
        assert roles.count("user") == len(SCRIPT)
        assert "tool" in roles
        assert all(m.usage is not None for m in stored if m.role == "assistant")
        assert store.get_summary(thread.id) is not None


def test_demo_command_runs_from_the_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "CONVKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    code = "import sys; from convkit.cli import main; sys.exit(main(['demo']))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "every prompt counted exactly: True" in out.stdout
