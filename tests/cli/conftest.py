"""Fixtures for the ``convkit`` command: a loopback model, a temp database and config, and a
runner that calls the command in a subprocess with them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convkit.testing import FakeChatServer, echo_responder

#: The API key every test passes by env: it must appear in no output.
SECRET_KEY = "sk-cli-test-9f8e7d6c5b4a-secret"


class Runner:
    """Runs ``python -m convkit.cli ...`` with the test's environment; records every output."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.outputs: list[tuple[tuple[str, ...], str]] = []

    @property
    def db_url(self) -> str:
        return self.env["CONVKIT_DATABASE_URL"]

    def __call__(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - subprocess.run's name
        env: dict[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the command; ``env`` adds variables (None removes one)."""
        merged = {**self.env, **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "convkit.cli", *args],
            env={k: v for k, v in merged.items() if v is not None},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        self.outputs.append((args, done.stdout + done.stderr))
        return done


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    """The loopback OpenAI-protocol server, echoing the last user message by default."""
    with FakeChatServer(default_responder=echo_responder) as s:
        yield s


@pytest.fixture
def cli(tmp_path: Path, server: FakeChatServer) -> Iterator[Runner]:
    """A runner whose environment points at ``server`` and a temp database and config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "CONVKIT_")) and k not in ("NO_COLOR", "COLUMNS")
    }
    env.update(
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=SECRET_KEY,
        CONVKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        CONVKIT_CONFIG=str(tmp_path / "config.toml"),
        CONVKIT_PLUGINS="",
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    runner = Runner(env, tmp_path)
    yield runner
    for args, text in runner.outputs:
        assert SECRET_KEY not in text, f"the API key appeared in the output of {args}"
        if "--debug" not in args:
            assert "Traceback" not in text, f"a traceback from {args}:\n{text}"


@pytest.fixture
def store(cli: Runner) -> Iterator[Any]:
    """A store on the runner's database (created and migrated)."""
    from convkit.store import Store

    with Store(cli.db_url, create_tables=True) as s:
        yield s
