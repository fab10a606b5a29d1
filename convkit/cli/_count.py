"""``convkit count FILE`` (prompt tokens of a messages file) and ``convkit models``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from convkit.cli import add_connection_options, settings
from convkit.cli._errors import CommandError, UsageError
from convkit.cli._ui import print_json, table

__all__ = ["register_count", "register_models"]


def _read_json(name: str, what: str) -> Any:
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as f:
                text = f.read()
    except FileNotFoundError:
        raise CommandError(f"{what} {name}: no such file") from None
    except UnicodeDecodeError:
        raise CommandError(f"{what} {name}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} {name}: not JSON ({exc})") from None
    except RecursionError:
        raise CommandError(f"{what} {name}: JSON nested too deeply") from None


def _count(args: argparse.Namespace) -> int:
    from convkit.tokens import TokenCounter

    data = _read_json(args.file, "messages file")
    tools: Any = None
    tool_choice: Any = None
    if isinstance(data, dict):  # a whole request body
        if not isinstance(data.get("messages"), list):
            raise CommandError(
                f"messages file {args.file}: expected a JSON list of messages or an object "
                "with a 'messages' list"
            )
        tools, tool_choice = data.get("tools"), data.get("tool_choice")
        model_in_file = data.get("model") if isinstance(data.get("model"), str) else None
        data = data["messages"]
    elif isinstance(data, list):
        model_in_file = None
    else:
        raise CommandError(
            f"messages file {args.file}: expected a JSON list of messages or an object with a "
            "'messages' list"
        )
    if args.tools is not None:
        if args.tools == "-" and args.file == "-":
            raise UsageError("--tools and the messages cannot both come from stdin")
        tools = _read_json(args.tools, "tools file")
        if isinstance(tools, dict) and isinstance(tools.get("tools"), list):
            tools = tools["tools"]
        if not isinstance(tools, list):
            raise CommandError(f"tools file {args.tools}: expected a JSON list of tools")
    config = settings(args)
    model = (
        config["model"]
        if config.sources["model"] != "default" or model_in_file is None
        else model_in_file
    )
    counter = TokenCounter(model)
    result = counter.measure(data, tools=tools, tool_choice=tool_choice)
    if args.json:
        print_json(
            {
                "model": model,
                "prompt_tokens": result.tokens,
                "exact": result.exact,
                "reasons": list(result.reasons),
                "messages": len(data),
                "tools": len(tools or ()),
                "encoding": counter.info.encoding,
            }
        )
        return 0
    state = "exact" if result.exact else "estimated"
    print(f"{result.tokens} prompt tokens for {model} ({state})")
    for reason in result.reasons:
        print(f"  estimated: {reason}")
    return 0


def register_count(subparsers: Any) -> None:
    """Add ``convkit count``."""
    count = subparsers.add_parser(
        "count",
        help="count the prompt tokens of a JSON messages file (or a request body), exact or "
        "estimated",
    )
    count.add_argument(
        "file", metavar="FILE", help="a JSON list of messages, or a request body; - for stdin"
    )
    count.add_argument("--tools", metavar="FILE", help="a JSON list of tool definitions")
    add_connection_options(count, model=True, database=False)
    count.add_argument("--json", action="store_true", help="print JSON")
    count.set_defaults(handler=_count)


def _model_row(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "context_window": info.context_window,
        "max_output_tokens": info.max_output_tokens,
        "encoding": info.encoding,
        "exact": info.exact,
        "safety_margin": info.safety_margin,
        "source": info.source,
    }


def _models(args: argparse.Namespace) -> int:
    from convkit.models import registry

    if args.name:
        known = args.name in registry
        rows = [_model_row(registry.resolve(args.name))]
        if not args.json and not known:
            print(
                f"{args.name} is not in the registry: counts use the fallback entry "
                "(estimated, with a safety margin); register it with CONVKIT_MODELS=FILE"
            )
    else:
        rows = [_model_row(info) for info in registry]
    if args.json:
        print_json(rows)
        return 0
    table(
        ["model", "context", "max output", "encoding", "counts"],
        [
            [
                r["name"],
                f"{r['context_window']:,}",
                f"{r['max_output_tokens']:,}",
                r["encoding"],
                "exact" if r["exact"] else f"estimated (+{r['safety_margin']:.0%} margin)",
            ]
            for r in rows
        ],
        right=(1, 2),
    )
    return 0


def register_models(subparsers: Any) -> None:
    """Add ``convkit models``."""
    models = subparsers.add_parser(
        "models",
        help="the model registry: context windows, max output, encodings, exact or estimated",
    )
    models.add_argument("name", nargs="?", help="show how this one name resolves")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(handler=_models)
