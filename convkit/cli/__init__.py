"""The ``convkit`` command.

Subcommands are registered in :data:`COMMANDS`: each entry is a function that adds its
subparser (argparse) and sets ``handler`` — a function taking the parsed arguments and
returning an exit code. Installed plugins add theirs through the ``register_commands`` hook
with the same contract. Add a command by writing one such function and listing it there.

Example::

    $ convkit chat --continue
    $ convkit threads list --meta project=lisbon --json
    $ convkit count request.json --model gpt-4o
    $ convkit db upgrade --db postgresql+psycopg://app@db/chat

Conventions (``docs/cli.md``): exit code 0 when the command did its job, 1 when it failed,
2 for a usage error; a failure is one line on stderr (``--debug`` adds the traceback); no
secret appears in any output; ``--json`` output keeps its documented keys.

Settings come from flags, then environment variables, then the config file
(:mod:`convkit.cli._config`); a handler gets them with :func:`settings`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from convkit.cli._config import Config, plugin_allowlist, resolve
from convkit.cli._errors import CommandError, UsageError

if TYPE_CHECKING:
    from convkit.client import ChatClient
    from convkit.store import Store

__all__ = [
    "COMMANDS",
    "CommandError",
    "UsageError",
    "add_connection_options",
    "build_parser",
    "main",
    "open_client",
    "open_store",
    "printable",
    "settings",
]

Subparsers = Any  # argparse's _SubParsersAction is private; keep the annotation honest

_seen_secrets: list[str] = []


def add_connection_options(
    parser: argparse.ArgumentParser,
    *,
    model: bool = False,
    endpoint: bool = False,
    database: bool = True,
) -> None:
    """Add the shared ``--model``, ``--base-url`` and ``--db`` flags a command needs."""
    if model:
        parser.add_argument(
            "--model", "-m", help="model name (default: $CONVKIT_MODEL, config, gpt-4o-mini)"
        )
    if endpoint:
        parser.add_argument(
            "--base-url",
            help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, config, OpenAI's)",
        )
    if database:
        parser.add_argument(
            "--db",
            "--url",
            dest="database_url",
            metavar="URL",
            help="SQLAlchemy URL of the store (default: $CONVKIT_DATABASE_URL, config, the "
            "SQLite file in the user data directory)",
        )


def settings(args: argparse.Namespace) -> Config:
    """The resolved settings of this run: flags in ``args``, then env, then the config file."""
    cached = getattr(args, "_convkit_config", None)
    if isinstance(cached, Config):
        return cached
    flags = {
        key: getattr(args, key, None) for key in ("model", "base_url", "database_url", "system")
    }
    config = resolve(flags)
    _seen_secrets.extend(config.secrets())
    args._convkit_config = config
    return config


def _check_database_url(url: str | None) -> None:
    """Refuse a URL convkit cannot open before anything is created (one clear line)."""
    if url is None:
        return
    from convkit.demo import database_url_problem

    problem = database_url_problem(url)
    if problem is not None:
        raise UsageError(problem)


def open_store(args: argparse.Namespace, *, model: str | None = None) -> Store:
    """Open the configured store (the default SQLite file creates and upgrades itself)."""
    from convkit.store import Store

    config = settings(args)
    url = config["database_url"]
    _check_database_url(url)
    return Store(url, model=model or config["model"])


def open_client(args: argparse.Namespace) -> ChatClient:
    """A client for the configured endpoint and key."""
    from convkit.client import ChatClient

    config = settings(args)
    return ChatClient(base_url=config["base_url"], api_key=config["api_key"])


def _plugin_commands(subparsers: Subparsers) -> None:
    """Let plugins add subcommands; one that fails is reported and the others still work."""
    from convkit.plugins import PluginHost

    for error in PluginHost().notify("register_commands", cli=subparsers):
        print(f"convkit: warning: {error}", file=sys.stderr)


_CONTROLS = {
    **{c: f"\\x{c:02x}" for c in range(0x20) if c not in (0x09,)},
    0x7F: "\\x7f",
    0x85: "\\x85",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def printable(text: str) -> str:
    """``text`` with line breaks and control characters escaped, so a message stays one line.

    Arguments and file names come from the user: echoed raw, a newline in one would split an
    error in two (or forge a second line).
    """
    return text.translate(_CONTROLS)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors echo the user's words on one line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = _Parser(
        prog="convkit",
        description="Conversations with OpenAI-compatible endpoints: chat, threads, counting.",
        epilog="Settings: flags, then environment variables, then the config file "
        "(`convkit config path`). Exit codes: 0 ok, 1 error, 2 usage error.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a failure (any position)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    _plugin_commands(subparsers)
    return parser


def _scrub(text: str) -> str:
    for secret in {*_seen_secrets, os.environ.get("OPENAI_API_KEY") or ""}:
        if len(secret) >= 4:
            text = text.replace(secret, "****")
    return text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr; return the exit code."""
    from convkit.errors import ConvkitError

    code = 1
    if isinstance(exc, CommandError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, ConvkitError):
        message = _one_line(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror}"
    else:
        message = _database_message(exc) or (
            f"unexpected {type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)"
        )
    print(f"convkit: error: {printable(_scrub(message))}", file=sys.stderr)
    return code


def _database_message(exc: BaseException) -> str | None:
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    if isinstance(exc, (SQLAlchemyError, ArgumentError)):
        return f"database error: {_one_line(exc)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convkit`` command; return its exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_in
    args_in = [a for a in args_in if a != "--debug"]
    try:
        allowed = plugin_allowlist()
        if allowed is not None:
            from convkit.plugins import load_plugins

            load_plugins(only=allowed)
        args = build_parser().parse_args(args_in)
        handler: Callable[[argparse.Namespace], int | None] = args.handler
        return handler(args) or 0
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("convkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`convkit threads list | head`): nothing left to say to it.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the dead stream
        return 1
    except Exception as exc:
        if debug:
            import traceback

            print(_scrub("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return _report(exc)


def _registered() -> list[Callable[[Subparsers], None]]:
    from convkit.cli import _chat, _count, _db, _demo, _misc, _threads

    return [
        _chat.register,
        _threads.register,
        _count.register_count,
        _count.register_models,
        _db.register,
        _demo.register,
        _misc.register_plugins,
        _misc.register_config,
    ]


#: Functions that each add one subcommand (and its ``handler``) to the parser.
COMMANDS: list[Callable[[Subparsers], None]] = _registered()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
