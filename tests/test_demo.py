"""The main job: `convkit demo` holds a real conversation over HTTP and the store."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from convkit import hookimpl
from convkit.demo import SCRIPT, run_demo
from convkit.messages import Message
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
    assert "convkit-redact is not installed" in text  # said, not silently skipped
    with Store(url) as store:
        (thread,) = store.list_threads().threads
        assert thread.title == "convkit demo" and thread.metadata["demo"] is True
        stored = store.messages(thread.id)
        roles = [m.role for m in stored]
        assert roles.count("user") == len(SCRIPT)
        assert "tool" in roles
        assert all(m.usage is not None for m in stored if m.role == "assistant")
        assert store.get_summary(thread.id) is not None


class Placeholders:
    """A stand-in redaction plugin: the e-mail address never reaches the server."""

    ADDRESS = "ana.silva@example.com"

    @hookimpl
    def finalize_request(self, request: Any, context: Any) -> None:
        request.messages[:] = [
            attrs.evolve(m, content=m.content.replace(self.ADDRESS, "<EMAIL_1>"))
            if m.role == "user" and isinstance(m.content, str)
            else m
            for m in request.messages
        ]

    @hookimpl
    def process_response(self, response: Any) -> Any:
        if "<EMAIL_1>" not in response.text:
            return None
        text = response.text.replace("<EMAIL_1>", self.ADDRESS)
        return attrs.evolve(response, message=Message.assistant(text))


def test_demo_shows_what_a_plugin_changed(
    tmp_path: Path, register_plugin: Callable[..., str]
) -> None:
    register_plugin(Placeholders(), name="placeholders")
    out = io.StringIO()
    assert run_demo(database_url=f"sqlite:///{tmp_path / 'p.db'}", out=out) == 0
    text = out.getvalue()
    assert "plugin    placeholders (registered in code)" in text
    assert "a plugin changed the request: the server received " in text
    assert "Please send the itinerary to <EMAIL_1> when" in text
    assert "a plugin changed the reply: stored as " in text
    assert "Noted: I'll send it to ana.silva@example.com once" in text
    assert "every prompt counted exactly: True" in text  # the edited request was recounted


@pytest.mark.parametrize("budget", [-5, 0, 10_000])
def test_bad_options_are_refused_before_anything_is_created(tmp_path: Path, budget: int) -> None:
    db = tmp_path / "never.db"
    with pytest.raises(ValueError, match="--budget must be between"):
        run_demo(database_url=f"sqlite:///{db}", max_prompt_tokens=budget)
    assert not db.exists()
    with pytest.raises(ValueError, match="not a database URL"):
        run_demo(database_url="not a url")


def test_demo_command_runs_from_the_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "CONVKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    code = "import sys; from convkit.cli import main; sys.exit(main(['demo']))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "every prompt counted exactly: True" in out.stdout
