"""``convkit usage``: the report by day, thread and model (text, ``--json`` or ``--csv``), and
``convkit usage migrate``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import date
from decimal import Decimal
from typing import Any

__all__ = ["add_commands", "render_csv", "render_json", "render_text"]

_URL_HELP = (
    "SQLAlchemy URL of the convkit database (default: $CONVKIT_DATABASE_URL, else the SQLite "
    "file in the user data directory)"
)

#: Columns of the report, in order (JSON keys and CSV header).
COLUMNS = (
    "day",
    "thread_id",
    "model",
    "calls",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_calls",
)


def _day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def add_commands(cli: Any) -> None:
    """Register ``usage`` (and its ``migrate`` action) on the ``convkit`` subparsers."""
    usage = cli.add_parser(
        "usage",
        help="token usage and cost per day, thread and model (convkit-usage)",
        description="Token usage and cost of every completions call, per day, thread and "
        "model. Costs are in US dollars; '-' (JSON null) where no call was priced.",
    )
    usage.add_argument("--url", help=_URL_HELP)
    usage.add_argument("--thread", help="only this thread")
    usage.add_argument("--since", type=_day, help="only this UTC day (YYYY-MM-DD) and later")
    usage.add_argument("--model", help="only this model (as requested)")
    shape = usage.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON")
    shape.add_argument("--csv", action="store_true", help="print CSV")
    usage.set_defaults(handler=_with_database_errors(_report))
    actions = usage.add_subparsers(dest="usage_command", metavar="ACTION")
    migrate = actions.add_parser(
        "migrate", help="create or upgrade the usage table (safe to repeat)"
    )
    migrate.add_argument("--url", help=_URL_HELP)
    migrate.set_defaults(handler=_with_database_errors(_migrate))


def _with_database_errors(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        from convkit_usage._prices import PriceError

        try:
            return int(handler(args))
        except (SQLAlchemyError, ArgumentError) as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            print(f"convkit usage: database error: {first}", file=sys.stderr)
            return 1  # an error, not a usage error (convkit's exit codes: 0, 1 error, 2 usage)
        except PriceError as exc:
            print(f"convkit usage: {exc}", file=sys.stderr)
            return 1

    return run


def _report(args: argparse.Namespace) -> int:
    from convkit_usage import report

    rows = report(args.url, thread=args.thread, since=args.since, model=args.model)
    if args.json:
        sys.stdout.write(render_json(rows))
    elif args.csv:
        sys.stdout.write(render_csv(rows))
    else:
        sys.stdout.write(render_text(rows))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from convkit_usage import HEAD_REVISION, migrate

    before, after = migrate(args.url)
    if before == after:
        print(f"usage table already at {after} (newest: {HEAD_REVISION})")
    else:
        print(f"usage table upgraded {before or '(none)'} -> {after}")
    return 0


def _cost(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.9f}"


def _dicts(rows: Any) -> list[dict[str, Any]]:
    return [{name: getattr(r, name) for name in COLUMNS} for r in rows]


def render_json(rows: Any) -> str:
    """The report as JSON: ``{"rows": [...], "totals": {...}}``; costs as numbers or null."""
    out = []
    for d in _dicts(rows):
        d["cost_usd"] = None if d["cost_usd"] is None else float(d["cost_usd"])
        out.append(d)
    totals = _totals(rows)
    totals["cost_usd"] = None if totals["cost_usd"] is None else float(totals["cost_usd"])
    return json.dumps({"rows": out, "totals": totals}, indent=2) + "\n"


def render_csv(rows: Any) -> str:
    """The report as CSV with a header row; an empty cost cell where nothing was priced."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for d in _dicts(rows):
        d["cost_usd"] = _cost(d["cost_usd"])
        d["thread_id"] = d["thread_id"] or ""
        writer.writerow([d[name] for name in COLUMNS])
    return buffer.getvalue()


def _totals(rows: Any) -> dict[str, Any]:
    rows = list(rows)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    return {
        "calls": sum(r.calls for r in rows),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "cached_tokens": sum(r.cached_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "total_tokens": sum(r.total_tokens for r in rows),
        "cost_usd": sum(costs, Decimal(0)) if costs else None,
        "unpriced_calls": sum(r.unpriced_calls for r in rows),
    }


def render_text(rows: Any) -> str:
    """The report as an aligned table with a total line."""
    rows = list(rows)
    if not rows:
        return "no usage recorded\n"
    header = ("day", "thread", "model", "calls", "prompt", "cached", "completion", "cost USD")
    lines = [header]
    for r in rows:
        cost = "-" if r.cost_usd is None else f"{r.cost_usd:.6f}"
        if r.cost_usd is not None and r.unpriced_calls:
            cost += f" (+{r.unpriced_calls} unpriced)"
        lines.append(
            (
                r.day,
                r.thread_id or "-",
                r.model,
                str(r.calls),
                str(r.prompt_tokens),
                str(r.cached_tokens),
                str(r.completion_tokens),
                cost,
            )
        )
    t = _totals(rows)
    total_cost = "-" if t["cost_usd"] is None else f"{t['cost_usd']:.6f}"
    lines.append(
        (
            "total",
            "",
            "",
            str(t["calls"]),
            str(t["prompt_tokens"]),
            str(t["cached_tokens"]),
            str(t["completion_tokens"]),
            total_cost,
        )
    )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {3, 4, 5, 6}
    out = []
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"
