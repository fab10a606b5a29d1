"""The ``convkit`` command.

Subcommands are registered in :data:`COMMANDS`: each entry names a function that adds its
subparser and sets ``handler`` (a function taking the parsed arguments and returning an exit
code). Add a command by writing one such function and listing it there.

Example::

    $ convkit demo
    $ convkit db upgrade --url postgresql+psycopg://app@db/chat
    $ convkit db current
    $ convkit plugins

Installed plugins add their own subcommands through the ``register_commands`` hook.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from convkit.errors import ConvkitError

__all__ = ["COMMANDS", "build_parser", "main"]

Subparsers = Any  # argparse's _SubParsersAction is private; keep the annotation honest


def _db_url(args: argparse.Namespace) -> Any:
    from convkit.store import default_url

    return args.url if args.url is not None else default_url()


def _database_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Report a database failure (unreachable server, bad URL) as one line, exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        try:
            return handler(args)
        except (SQLAlchemyError, ArgumentError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"convkit: database error: {first}", file=sys.stderr)
            return 2

    return run


@_database_errors
def _db_upgrade(args: argparse.Namespace) -> int:
    from convkit.store import HEAD_REVISION, upgrade
    from convkit.store._engine import display_url, resolve_url

    url = _db_url(args)
    before, after = upgrade(url)
    shown = display_url(resolve_url(url)[0])
    if before == after:
        print(f"{shown}: already at schema {after} (newest: {HEAD_REVISION})")
    else:
        print(f"{shown}: upgraded schema {before or '(empty)'} -> {after}")
    return 0


@_database_errors
def _db_current(args: argparse.Namespace) -> int:
    from convkit.store import HEAD_REVISION, schema_revision
    from convkit.store._engine import display_url, resolve_url

    url = _db_url(args)
    revision = schema_revision(url)
    shown = display_url(resolve_url(url)[0])
    if revision == HEAD_REVISION:
        state = "up to date"
    elif revision is None:
        state = "no convkit tables; run `convkit db upgrade`"
    else:
        state = f"needs `convkit db upgrade` to {HEAD_REVISION}"
    print(f"{shown}: schema {revision or '(none)'} ({state})")
    return 0 if revision == HEAD_REVISION else 1


def _register_db(subparsers: Subparsers) -> None:
    db = subparsers.add_parser("db", help="manage the conversation database")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    url_help = (
        "SQLAlchemy URL (default: $CONVKIT_DATABASE_URL, else the SQLite file in the user "
        "data directory)"
    )
    up = actions.add_parser("upgrade", help="apply schema migrations (safe to repeat)")
    up.add_argument("--url", help=url_help)
    up.set_defaults(handler=_db_upgrade)
    cur = actions.add_parser("current", help="show the schema revision (exit 1 if not up to date)")
    cur.add_argument("--url", help=url_help)
    cur.set_defaults(handler=_db_current)


def _demo(args: argparse.Namespace) -> int:
    from convkit.demo import run_demo

    return run_demo(database_url=args.url, max_prompt_tokens=args.budget)


def _register_demo(subparsers: Subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run an end-to-end conversation against convkit's loopback OpenAI-protocol server",
    )
    demo.add_argument(
        "--url",
        help="SQLAlchemy URL of the store (default: $CONVKIT_DATABASE_URL, else the SQLite file "
        "in the user data directory)",
    )
    demo.add_argument(
        "--budget", type=int, default=300, help="prompt-token budget (small, to show summaries)"
    )
    demo.set_defaults(handler=_demo)


def _plugins(args: argparse.Namespace) -> int:
    from convkit.plugins import plugin_info

    infos = plugin_info()
    if args.json:
        import json

        rows = [
            {
                "name": i.name,
                "status": i.status,
                "source": i.source,
                "distribution": i.distribution,
                "version": i.version,
                "module": i.module,
                "hooks": list(i.hooks),
                "error": i.error,
            }
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
    elif not infos:
        print("no plugins loaded")
    for info in [] if args.json else infos:
        origin = info.source
        if info.distribution:
            origin += f", {info.distribution} {info.version}"
        if info.module:
            origin += f", {info.module}"
        if info.status == "loaded":
            print(f"{info.name} ({origin})")
            print(f"  hooks: {', '.join(info.hooks) or '(none)'}")
        else:
            print(f"{info.name} ({origin}): {info.status}: {info.error}")
    return 1 if any(i.status == "failed" for i in infos) else 0


def _register_plugins(subparsers: Subparsers) -> None:
    plugins = subparsers.add_parser(
        "plugins",
        help="list the plugins: where each comes from, its version, the hooks it implements "
        "(exit 1 if one failed to load)",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=_plugins)


#: Functions that each add one subcommand (and its ``handler``) to the parser.
COMMANDS: list[Callable[[Subparsers], None]] = [_register_db, _register_demo, _register_plugins]


def _plugin_commands(subparsers: Subparsers) -> None:
    """Let plugins add subcommands; one that fails is reported and the others still work."""
    from convkit.plugins import PluginHost

    for error in PluginHost().notify("register_commands", cli=subparsers):
        print(f"convkit: warning: {error}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="convkit", description="Conversations with OpenAI-compatible endpoints."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    _plugin_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convkit`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConvkitError as exc:
        print(f"convkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
