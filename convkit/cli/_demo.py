"""``convkit demo``: the main job on the embedded defaults (see :mod:`convkit.demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from convkit.cli import add_connection_options, settings
from convkit.cli._errors import UsageError

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from convkit.demo import check_options, run_demo

    url = settings(args)["database_url"]
    try:
        check_options(database_url=url, max_prompt_tokens=args.budget)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return run_demo(database_url=url, max_prompt_tokens=args.budget, plain=args.plain)


def register(subparsers: Any) -> None:
    """Add ``convkit demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="a real multi-turn conversation against convkit's loopback OpenAI-protocol server",
    )
    add_connection_options(demo)
    demo.add_argument(
        "--budget",
        type=int,
        help="prompt-token budget (default: the demo model's small window, to show summaries)",
    )
    demo.add_argument("--plain", action="store_true", help="plain text, no colour (for logs)")
    demo.set_defaults(handler=_demo)
