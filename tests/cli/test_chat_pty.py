"""``convkit chat`` in a real pseudo-terminal: typing, streaming, slash commands, Ctrl-C in the
middle of a reply, Ctrl-D, and resuming in a new process with ``--continue``.

The child gets the pty as its controlling terminal (a new session, then TIOCSCTTY), so Ctrl-C
typed while a reply streams is the kernel's SIGINT, as in a real terminal. Every read waits for
an expected text with a deadline; nothing measures time.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from typing import Any

import pytest

from convkit.testing import FakeChatServer, Reply

from .conftest import Runner

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

# The child makes the pty its controlling terminal, then becomes the command.
_SPAWN = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'convkit.cli', *sys.argv[1:]])"
)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>()][0-9A-B]?")
DEADLINE = 30.0  # seconds to wait for an expected text before the test fails


class Terminal:
    """A child process on a pty: type into it, wait for text to appear."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SPAWN, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
            start_new_session=True,
        )
        os.close(slave)
        self.seen = ""  # everything read, escape sequences removed
        self._pos = 0  # where the next expect() starts looking

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the pty
            return False
        if not data:
            return False
        self.seen += _ANSI.sub("", data.decode("utf-8", "replace")).replace("\r", "")
        return True

    def expect(self, text: str) -> str:
        """Wait until ``text`` appears after the previous match; return what came before it."""
        import time

        end = time.monotonic() + DEADLINE
        while True:
            at = self.seen.find(text, self._pos)
            if at >= 0:
                before = self.seen[self._pos : at]
                self._pos = at + len(text)
                return before
            left = end - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.5)) and self.proc.poll() is not None):
                if self.seen.find(text, self._pos) >= 0:
                    continue
                raise AssertionError(
                    f"{text!r} did not appear; the terminal showed:\n{self.seen[-3000:]}"
                )

    def wait(self) -> int:
        while self._read(0.2):
            pass
        code = self.proc.wait(timeout=DEADLINE)
        while self._read(0.05):
            pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(cli: Runner) -> Any:
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        term = Terminal(list(args), cli.env)
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()
        cli.outputs.append((("chat",), term.seen))  # checked for secrets and tracebacks


def test_chat_in_a_terminal_streams_interrupts_and_resumes(
    terminal: Any, server: FakeChatServer, store: Any
) -> None:
    slow = "This reply is long and will be cut off by the user in the middle " * 4
    server.enqueue(
        Reply.text("Hello there, traveller!", chunk_size=4),
        Reply.text(slow, chunk_size=5, stall_after_chunks=3, stall_seconds=60),
    )
    term = terminal("chat", "--system", "Be brief.")
    term.expect("(new)")
    term.expect("you>")
    term.type("hi\r")
    term.expect("Hello there, traveller!")
    term.expect("you>")
    term.type("/window\r")
    term.expect("prompt tokens")
    assert "predicted" in term.expect("messages sent")
    term.expect("you>")
    term.type("/help\r")
    term.expect("/regenerate")
    term.expect("you>")

    term.type("tell me everything\r")
    term.expect("This reply")  # the first chunks streamed; the server now stalls
    term.type("\x03")  # Ctrl-C, as the kernel delivers it: SIGINT
    term.expect("interrupted: the partial reply is stored as seq 4, marked incomplete")
    term.expect("you>")
    term.type("\x04")  # Ctrl-D leaves
    assert term.wait() == 0

    (thread,) = store.list_threads().threads
    rows = store.messages(thread.id)
    assert [(m.role, m.status) for m in rows] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    partial = rows[3].message.text
    assert partial.startswith("This reply") and slow.startswith(partial) and partial != slow

    again = terminal("chat", "--continue")
    again.expect(f"thread {thread.id} (resumed, 4 messages)")
    again.expect("you>")
    again.type("and now?\r")
    again.expect("and now?")  # what was typed
    again.expect("and now?")  # the echo responder repeats the newest user message
    again.expect("you>")
    again.type("/exit\r")
    assert again.wait() == 0
    sent = server.requests[-1].messages
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert {"role": "assistant", "content": partial} in sent  # the partial reply is context
    assert store.get_thread(thread.id).last_seq == 6


def test_ctrl_c_at_the_prompt_clears_the_line_and_keeps_going(
    terminal: Any, server: FakeChatServer, store: Any
) -> None:
    term = terminal("chat")
    term.expect("you>")
    term.type("half a thought")
    term.type("\x03")
    term.expect("you>")
    term.type("/threads\r")
    term.expect("is stored with its first message")
    term.expect("you>")
    term.type("/exit\r")
    assert term.wait() == 0
    assert server.requests == []  # nothing was sent
