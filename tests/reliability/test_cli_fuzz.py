"""The `convkit` command on generated argument lists (200 examples, a command and up to four
arbitrary words or strings after it): an exit code of 0, 1 or 2, a short message, no
traceback, no secret."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convkit.cli import main

WORDS = [
    "count", "models", "config", "show", "path", "threads", "list", "show", "rm", "rename",
    "export", "import", "db", "current", "plugins", "--json", "--tools", "--model", "--limit",
    "--cursor", "--all", "--yes", "--metadata", "gpt-4o", "nope", "-", "0", "-5", "1e309",
    "team=red", "=", "\u2028", "\x00", "é", "%s", "../x", "",
]  # fmt: skip


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("CONVKIT_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("CONVKIT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fuzz-secret-0123456789")
    monkeypatch.setenv("CONVKIT_PLUGINS", "")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return (code if isinstance(code, int) else 2), out.getvalue(), err.getvalue()


COMMANDS = [
    ["count"], ["models"], ["config", "show"], ["config", "path"], ["threads", "list"],
    ["threads", "show"], ["threads", "export"], ["threads", "import"], ["threads", "rename"],
    ["db", "current"], ["plugins"], [],
]  # fmt: skip

ARGV = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(COMMANDS),
    st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=4),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
def test_any_argument_list_ends_in_an_exit_code_and_a_clear_line(
    isolated: Path, argv: list[str]
) -> None:
    if argv[:1] == ["threads"] and "rm" in argv:
        argv = [a for a in argv if a != "--yes"]  # never delete without being asked twice
    code, out, err = _run(argv)
    assert code in (0, 1, 2)
    assert "Traceback" not in out + err
    assert "sk-fuzz-secret" not in out + err
    lines = err.strip().split("\n")  # (arguments may hold \r or U+2028: not line breaks here)
    if code == 2:  # a usage error: argparse's usage, then one line naming the error
        assert "error:" in lines[-1], err
    elif code == 1:  # an error: one line (`db current` answers on stdout, exit 1 by design)
        assert (err.strip() and len(lines) == 1) or (argv[:2] == ["db", "current"] and out), (
            out,
            err,
        )
