"""The README's quickstart runs as written, against the loopback server, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from convkit.testing import FakeChatServer, echo_responder

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README has no quickstart code block"
    return match.group(1)


def test_the_quickstart_runs(tmp_path: Path) -> None:
    code = quickstart()
    assert len(code.strip().splitlines()) < 20
    prelude = 'long_history = [{"role": "user", "content": f"message {i}"} for i in range(50)]\n'
    with FakeChatServer(default_responder=echo_responder) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test-readme",
            "XDG_DATA_HOME": str(tmp_path),  # the embedded store's default file lands here
            "CONVKIT_PLUGINS": "",  # the core's behaviour, whatever plugins are installed
        }
        env.pop("CONVKIT_DATABASE_URL", None)
        out = subprocess.run(
            [sys.executable, "-c", prelude + code],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "Where is my order?" in out.stdout  # the echo server's reply, printed
        assert len(server.requests) == 2
        assert server.requests[1].body["stream"] is True
    assert list(tmp_path.rglob("*.sqlite3")) or list(tmp_path.rglob("*.db"))
