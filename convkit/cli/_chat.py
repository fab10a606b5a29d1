"""``convkit chat``: a REPL on a stored thread, streaming each reply as it arrives.

Input is read with prompt_toolkit on a terminal (line editing, history kept in the user data
directory); when stdin is not a terminal, lines are read as they come, so scripts can pipe a
conversation in. Ctrl-C while a reply streams stops it (what arrived is stored as an incomplete
reply, by the conversation) and returns to the prompt; Ctrl-C at the prompt clears the line;
Ctrl-D (end of input) exits.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

from convkit.cli import _one_line, _scrub, add_connection_options, open_client, open_store, settings
from convkit.cli._errors import CommandError, UsageError

if TYPE_CHECKING:
    from convkit.conversation import Conversation
    from convkit.turn import Reply

__all__ = ["SLASH_COMMANDS", "register"]

#: The REPL's commands, with their help lines (``/help`` prints them in this order).
SLASH_COMMANDS: dict[str, str] = {
    "/help": "this list",
    "/threads": "the most recent threads (* marks this one)",
    "/switch ID": "continue another thread (an id or a unique prefix of a recent one)",
    "/fork": "continue on a fork of this thread (the original stays as it is)",
    "/regenerate": "answer the last message again, on a fork",
    "/edit SEQ [TEXT]": "replace user message SEQ with TEXT, on a fork, and answer it",
    "/summary": "the stored summary of older messages, if any",
    "/window": "what the last request held: tokens, messages, dropped, summarized",
    "/tokens": "the thread's stored token counts, and the model's window",
    "/model [NAME]": "show or change the model",
    "/system [TEXT]": "show or set the system prompt (/system --clear removes it)",
    "/exit": "leave (Ctrl-D too)",
}


class _Reader:
    """Lines from the user: prompt_toolkit on a terminal, plain reads otherwise."""

    def __init__(self, history_path: str | None) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty()
        self._session: Any = None
        if self.tty:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.history import FileHistory, InMemoryHistory

            history: Any = InMemoryHistory()
            if history_path is not None:
                with contextlib.suppress(OSError):  # an unwritable data dir: keep going
                    history = FileHistory(history_path)
            self._session = PromptSession(history=history)

    def read(self, prompt: str, default: str = "") -> str:
        """One line; EOFError at the end of input, KeyboardInterrupt on Ctrl-C."""
        if self._session is not None:
            text = self._session.prompt(prompt, default=default)
            return str(text)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


def _history_path() -> str | None:
    from pathlib import Path

    import platformdirs

    try:
        folder = Path(platformdirs.user_data_dir("convkit"))
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder / "chat_history")


class Chat:
    """One REPL session: the store and client stay open, the conversation moves between threads."""

    def __init__(self, args: argparse.Namespace, out: IO[str] | None = None) -> None:
        self.args = args
        self.out = out or sys.stdout
        config = settings(args)
        self.model: str = config["model"]
        # A resumed thread keeps the model it was talked to with, unless one is configured.
        self.model_given = config.sources["model"] != "default"
        self.system: str | None = config["system"]
        self.base_url: str = config["base_url"]
        self.store = open_store(args, model=self.model)
        try:
            self.client = open_client(args)
        except BaseException:
            self.store.close()
            raise
        self.last: Reply | None = None
        self.conv: Conversation | None = None
        self.reader = _Reader(_history_path())

    # ---- output

    def say(self, text: str = "") -> None:
        """Write a line."""
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """A line about what convkit did (dim on a terminal)."""
        if self.reader.tty:
            self.out.write(f"\x1b[2m{text}\x1b[0m\n")
        else:
            self.out.write(f"[{text}]\n")
        self.out.flush()

    # ---- the conversation

    def _policy(self, model: str) -> Any:
        from convkit.context import Summarize, TrimOldest

        budget = self.args.budget
        if self.args.summarize:
            return Summarize(model, max_prompt_tokens=budget)
        return TrimOldest(model, max_prompt_tokens=budget) if budget else None

    def open(self, thread: str | None, *, system: str | None = None) -> None:
        """Start the conversation on ``thread`` (None: a new one)."""
        from convkit.conversation import Conversation

        if self.conv is not None:
            self.model = self.conv.model
            self.conv.close()
        if thread is not None and not self.model_given:
            self.model = self._stored_model(thread) or self.model
        self.conv = Conversation(
            self.model,
            store=self.store,
            client=self.client,
            thread=thread,
            system=system,
            policy=self._policy(self.model),
        )
        self.last = None

    def _stored_model(self, thread_id: str) -> str | None:
        from convkit.turn import META_KEY

        own = self.store.get_thread(thread_id).metadata.get(META_KEY)
        model = own.get("model") if isinstance(own, Mapping) else None
        return model if isinstance(model, str) and model else None

    def start(self) -> None:
        """Open the thread the flags ask for and print where we are."""
        args = self.args
        thread_id: str | None = None
        if args.thread:
            thread_id = self.store.get_thread(args.thread).id
        elif args.resume_latest:
            page = self.store.list_threads(limit=1, order="updated")
            if not page.threads:
                raise CommandError("no thread to continue: start one with `convkit chat`")
            thread_id = page.threads[0].id
        self.open(thread_id, system=self.system)
        self._banner(resumed=thread_id is not None)

    def _banner(self, *, resumed: bool) -> None:
        conv = self._conv
        if resumed:
            thread = self.store.get_thread(conv.thread_id)
            state = f"resumed, {thread.last_seq} messages"
        else:
            state = "new"
        self.note(
            f"thread {conv.thread_id} ({state}) · {conv.model} via {self.base_url} · "
            "/help for commands, Ctrl-D to leave"
        )

    @property
    def _conv(self) -> Conversation:
        assert self.conv is not None
        return self.conv

    def turn(self, text: str) -> None:
        """Send ``text`` and stream the reply; Ctrl-C stops it (stored as incomplete)."""
        stream = self._conv.stream(text)
        try:
            for delta in stream:
                self.out.write(delta)
                self.out.flush()
        except KeyboardInterrupt:
            stream.close()
            self.out.write("\n")
            stored = self._conv.history(1)
            where = f" as seq {stored[-1].seq}" if stored and stored[-1].role == "assistant" else ""
            self.note(f"interrupted: the partial reply is stored{where}, marked incomplete")
            self.last = None
            return
        finally:
            stream.close()
        self.out.write("\n")
        self.last = stream.reply
        self._after_reply(stream.reply)

    def _after_reply(self, reply: Reply) -> None:
        w = reply.window
        if w is None:
            return
        bits = []
        if w.dropped:
            bits.append(f"{w.dropped} older messages left out")
        if w.summary_through:
            bits.append(f"summary through seq {w.summary_through} sent")
        if w.summarized:
            bits.append(f"seq {w.summarized[0]}-{w.summarized[-1]} folded into the summary")
        if w.summary_error is not None:
            bits.append(f"summarizing failed, trimmed instead: {w.summary_error}")
        if reply.tool_calls:
            names = ", ".join(c.name for c in reply.tool_calls)
            bits.append(f"the model asked for tools ({names}); chat runs none")
        if bits:
            self.note("; ".join(bits))

    def show_reply(self, reply: Reply) -> None:
        """Print a whole (non-streamed) reply."""
        self.say(reply.text)
        self._after_reply(reply)

    # ---- the loop

    def run(self) -> int:
        """Read and answer until /exit or the end of input."""
        self.start()
        while True:
            try:
                line = self.reader.read("you> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                if self.reader.tty:
                    self.say()
                return 0
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    if self.command(text) == "exit":
                        return 0
                else:
                    self.turn(text)
            except KeyboardInterrupt:
                self.say()
                self.note("interrupted")
            except CommandError as exc:
                self.note(str(exc))
            except Exception as exc:
                from convkit.errors import ConvkitError

                if not isinstance(exc, ConvkitError):
                    raise
                self.note(f"error: {_scrub(_one_line(exc))}")

    def command(self, text: str) -> str | None:
        """Run one slash command; ``"exit"`` ends the loop."""
        name, _, rest = text.partition(" ")
        rest = rest.strip()
        handlers: dict[str, Callable[[str], str | None]] = {
            "/help": self._help,
            "/threads": self._threads,
            "/switch": self._switch,
            "/fork": self._fork,
            "/regenerate": self._regenerate,
            "/edit": self._edit,
            "/summary": self._summary,
            "/window": self._window,
            "/tokens": self._tokens,
            "/model": self._model,
            "/system": self._system,
            "/exit": lambda _: "exit",
            "/quit": lambda _: "exit",
        }
        handler = handlers.get(name)
        if handler is None:
            raise UsageError(f"unknown command {name}; /help lists them")
        return handler(rest)

    def _help(self, _: str) -> None:
        width = max(len(k) for k in SLASH_COMMANDS)
        for usage, what in SLASH_COMMANDS.items():
            self.say(f"  {usage:<{width}}  {what}")

    def _threads(self, _: str) -> None:
        page = self.store.list_threads(limit=10, order="updated")
        for t in page:
            mark = "*" if t.id == self._conv.thread_id else " "
            self.say(f"{mark} {t.id}  {t.last_seq:>5} messages  {t.title or ''}".rstrip())
        if all(t.id != self._conv.thread_id for t in page):
            self.note(f"this thread ({self._conv.thread_id}) is stored with its first message")

    def _find(self, prefix: str) -> str:
        from convkit.errors import ThreadNotFoundError

        try:
            return self.store.get_thread(prefix).id
        except ThreadNotFoundError:
            pass
        matches: list[str] = []
        cursor = None
        for _ in range(5):  # the 500 most recent threads
            page = self.store.list_threads(limit=100, cursor=cursor, order="updated")
            matches += [t.id for t in page if t.id.startswith(prefix)]
            cursor = page.next_cursor
            if not cursor:
                break
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CommandError(f"no thread {prefix!r}")
        raise CommandError(f"{prefix!r} matches {len(matches)} threads: give more of the id")

    def _switch(self, rest: str) -> None:
        if not rest:
            raise UsageError("usage: /switch ID")
        self.open(self._find(rest))
        self._banner(resumed=True)

    def _fork(self, _: str) -> None:
        old = self._conv.thread_id
        fork = self.store.fork(old)
        self.open(fork.id)
        self.note(f"on fork {fork.id} of {old} (at seq {fork.fork_seq})")

    def _regenerate(self, _: str) -> None:
        old = self._conv.thread_id
        reply = self._conv.regenerate()
        self.last = reply
        self.show_reply(reply)
        self.note(
            f"answered again on fork {self._conv.thread_id}; the previous answer stays on {old}"
        )

    def _edit(self, rest: str) -> None:
        seq_text, _, text = rest.partition(" ")
        if not seq_text.isdigit():
            raise UsageError("usage: /edit SEQ [TEXT]")
        seq = int(seq_text)
        text = text.strip()
        if not text:
            rows = self.store.messages(self._conv.thread_id, after_seq=seq - 1, limit=1)
            if not rows or rows[0].role != "user":
                raise CommandError(f"seq {seq} is not a user message")
            if not self.reader.tty:
                raise UsageError("usage: /edit SEQ TEXT")
            text = self.reader.read("edit> ", default=rows[0].message.text).strip()
            if not text:
                raise CommandError("nothing to send")
        old = self._conv.thread_id
        reply = self._conv.edit(seq, text)
        self.last = reply
        self.show_reply(reply)
        self.note(f"edited on fork {self._conv.thread_id}; {old} keeps the original")

    def _summary(self, _: str) -> None:
        summary = self.store.get_summary(self._conv.thread_id)
        if summary is None:
            self.note(
                "no summary yet" + ("" if self.args.summarize else " (start with --summarize)")
            )
            return
        self.note(f"summary through seq {summary.covers_through_seq}, {summary.tokens} tokens")
        self.say(summary.text)

    def _window(self, _: str) -> None:
        if self.last is None or self.last.window is None:
            self.note("no request yet in this session")
            return
        w = self.last.window
        reported = (
            "not reported" if w.reported_prompt_tokens is None else str(w.reported_prompt_tokens)
        )
        self.say(
            f"  prompt tokens  {w.prompt_tokens} predicted, {reported} reported "
            f"({'exact' if w.exact else 'estimated'}), budget {w.budget}"
        )
        self.say(f"  messages sent  {w.messages} (from seq {w.first_seq}), {w.dropped} left out")
        through = f"through seq {w.summary_through}" if w.summary_through else "none"
        self.say(
            f"  summary        {through}"
            + (
                f"; seq {w.summarized[0]}-{w.summarized[-1]} folded in after the reply"
                if w.summarized
                else ""
            )
        )
        if w.calibration != 1.0:
            self.say(f"  calibration    budgets divided by {w.calibration:.3f}")

    def _tokens(self, _: str) -> None:
        from convkit.models import resolve

        thread = self._conv.thread_id
        rows = self.store.messages(thread)
        total = sum(m.tokens for m in rows)
        info = resolve(self._conv.model)
        self.say(f"  {len(rows)} messages, {total} tokens stored (counted once, on entry)")
        self.say(
            f"  {info.name}: context window {info.context_window:,}, max output "
            f"{info.max_output_tokens:,}, {'exact' if info.exact else 'estimated'} counts"
        )
        if self.last is not None and self.last.usage is not None:
            u = self.last.usage
            self.say(
                f"  last reply: {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens"
            )

    def _model(self, rest: str) -> None:
        if rest:
            self._conv.model = rest
            self.model = rest
        from convkit.models import resolve

        info = resolve(self._conv.model)
        self.note(
            f"model {self._conv.model} (context {info.context_window:,}, "
            f"{'exact' if info.exact else 'estimated'} counts)"
        )

    def _system(self, rest: str) -> None:
        if not rest:
            self._conv.history(1)  # loads the stored system prompt of a resumed thread
            current = self._conv.system
            self.note("no system prompt" if current is None else f"system: {current}")
            return
        self._conv.set_system(None if rest == "--clear" else rest)
        self.note("system prompt cleared" if rest == "--clear" else "system prompt set")

    def close(self) -> None:
        """Close the conversation, the client and the store."""
        if self.conv is not None:
            self.conv.close()
        self.client.close()
        self.store.close()


def _chat(args: argparse.Namespace) -> int:
    if args.thread and args.resume_latest:
        raise UsageError("give --thread or --continue, not both")
    if args.budget is not None and args.budget < 1:
        raise UsageError("--budget must be a positive number of tokens")
    chat = Chat(args)
    try:
        return chat.run()
    finally:
        chat.close()


def register(subparsers: Any) -> None:
    """Add ``convkit chat``."""
    chat = subparsers.add_parser(
        "chat", help="talk to a model on a stored thread (new, --thread ID or --continue)"
    )
    chat.add_argument("--thread", "-t", metavar="ID", help="resume this thread")
    chat.add_argument(
        "--continue",
        "-c",
        dest="resume_latest",
        action="store_true",
        help="resume the most recently updated thread",
    )
    chat.add_argument("--system", "-s", help="system prompt (stored with the thread)")
    chat.add_argument("--budget", type=int, help="prompt-token budget (default: the model's)")
    chat.add_argument(
        "--summarize",
        action="store_true",
        help="fold old turns into a rolling summary instead of dropping them",
    )
    add_connection_options(chat, model=True, endpoint=True)
    chat.set_defaults(handler=_chat)
