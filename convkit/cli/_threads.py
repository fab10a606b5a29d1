"""``convkit threads list|show|export|import|rm|rename``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from convkit.cli import add_connection_options, open_store
from convkit.cli._errors import CommandError, UsageError
from convkit.cli._ui import print_json, progress, table

__all__ = ["register", "thread_json"]


def _meta_filter(pairs: list[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta {pair!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)  # true, 3, "x" ... as JSON; anything else as text
        except ValueError:
            value = raw
        found[key] = value
    return found


def thread_json(thread: Any) -> dict[str, Any]:
    """A thread as ``--json`` output shows it (keys documented in docs/cli.md)."""
    return {
        "id": thread.id,
        "title": thread.title,
        "messages": thread.last_seq,
        "created_at": thread.created_at.isoformat(),
        "updated_at": thread.updated_at.isoformat(),
        "parent_id": thread.parent_id,
        "fork_seq": thread.fork_seq,
        "metadata": dict(thread.metadata),
    }


def _when(value: Any) -> str:
    return str(value.astimezone().strftime("%Y-%m-%d %H:%M"))


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    meta = _meta_filter(args.meta)
    with open_store(args) as store:
        page = store.list_threads(
            limit=args.limit, cursor=args.cursor, metadata=meta, order=args.order
        )
    if args.json:
        print_json({"threads": [thread_json(t) for t in page], "next_cursor": page.next_cursor})
        return 0
    if not page.threads:
        print("no threads" + (" match" if meta else ""))
    else:
        table(
            ["id", "messages", "updated", "title"],
            [[t.id, t.last_seq, _when(t.updated_at), t.title or ""] for t in page],
            right=(1,),
        )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def _text(message: Any) -> str:
    text = message.text or ""
    if message.tool_calls:
        calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
        text = (text + " " if text else "") + f"[calls {calls}]"
    return text


def _show(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_store(args) as store:
        thread = store.get_thread(args.thread)
        if args.last is not None:
            rows = store.messages(thread.id, last=args.last)
        else:
            rows = store.messages(thread.id, after_seq=args.after, limit=args.limit)
        summary = store.get_summary(thread.id)
    shown_last = rows[-1].seq if rows else args.after
    more = shown_last < thread.last_seq
    if args.json:
        print_json(
            {
                "thread": thread_json(thread),
                "summary": None
                if summary is None
                else {
                    "covers_through_seq": summary.covers_through_seq,
                    "tokens": summary.tokens,
                    "text": summary.text,
                },
                "messages": [
                    {
                        "seq": m.seq,
                        "role": m.role,
                        "tokens": m.tokens,
                        "status": m.status,
                        "message": m.to_openai(),
                        "usage": None if m.usage is None else m.usage.to_openai(),
                        "created_at": m.created_at.isoformat(),
                    }
                    for m in rows
                ],
                "next_after": shown_last if more else None,
            }
        )
        return 0
    print(f"thread {thread.id}  {thread.title or '(untitled)'}")
    lineage = (
        f", forked from {thread.parent_id} at seq {thread.fork_seq}" if thread.parent_id else ""
    )
    print(f"  {thread.last_seq} messages, created {_when(thread.created_at)}{lineage}")
    if summary is not None:
        print(f"  summary through seq {summary.covers_through_seq} ({summary.tokens} tokens)")
    table(
        ["seq", "role", "tokens", "text"],
        [
            [
                m.seq,
                m.role + ("*" if m.status == "incomplete" else ""),
                m.tokens,
                _text(m.message).replace("\n", " "),
            ]
            for m in rows
        ],
        right=(0, 2),
    )
    total = sum(m.tokens for m in rows)
    print(
        f"{len(rows)} messages shown, {total} tokens"
        + (" (* incomplete)" if any(m.status == "incomplete" for m in rows) else "")
    )
    if more:
        print(f"more: --after {shown_last}", file=sys.stderr)
    return 0


def _all_threads(store: Any) -> Iterator[Any]:
    cursor = None
    while True:
        page = store.list_threads(limit=200, cursor=cursor)
        yield from page
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def _export(args: argparse.Namespace) -> int:
    if bool(args.threads) == args.all:
        raise UsageError("give thread ids or --all (not both)")
    out: IO[str]
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        with open_store(args) as store:
            ids = args.threads or [t.id for t in _all_threads(store)]
            with progress("exporting threads", total=len(ids)) as bar:
                for thread_id in ids:
                    store.export_thread(thread_id, out)
                    count += 1
                    bar.advance()
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        print(f"exported {count} thread{'s' * (count != 1)} to {args.output}", file=sys.stderr)
    return 0


def _split_exports(lines: Iterable[str], name: str) -> Iterator[list[str]]:
    """Cut a file of concatenated exports at each thread header line."""
    current: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            kind = json.loads(line).get("type")
        except (ValueError, AttributeError):
            raise CommandError(f"{name}: line {n} is not a JSON object") from None
        if kind == "thread" and current:
            yield current
            current = []
        current.append(line.rstrip("\n"))
    if current:
        yield current


def _read_lines(name: str) -> list[str]:
    # File iteration splits on "\n" only (never on U+2028 or U+0085 inside a JSON string).
    try:
        if name == "-":
            return list(sys.stdin)
        with open(name, encoding="utf-8", newline="\n") as f:
            return list(f)
    except FileNotFoundError:
        raise CommandError(f"{name}: no such file") from None
    except UnicodeDecodeError:
        raise CommandError(f"{name}: not UTF-8 text") from None


def _import(args: argparse.Namespace) -> int:
    groups = list(_split_exports(_read_lines(args.file), args.file))
    if not groups:
        raise CommandError(f"{args.file}: no thread in the file")
    imported: list[Any] = []
    with open_store(args) as store, progress("importing threads", total=len(groups)) as bar:
        for i, lines in enumerate(groups, 1):
            keep = json.loads(lines[0]).get("id") if args.keep_ids else None
            try:
                thread = store.import_thread(lines, thread_id=keep)
            except Exception as exc:
                done = f" ({len(imported)} imported before it)" if imported else ""
                raise CommandError(f"{args.file}: thread {i}: {exc}{done}") from exc
            imported.append(thread)
            bar.advance()
    if args.json:
        print_json({"imported": [thread_json(t) for t in imported]})
    else:
        for t in imported:
            print(f"imported {t.id} ({t.last_seq} messages) {t.title or ''}".rstrip())
    return 0


def _rm(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to delete without --yes (stdin is not a terminal)")
        answer = input(f"delete {len(args.threads)} thread(s) and their messages? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    with open_store(args) as store:
        for thread_id in args.threads:
            store.get_thread(thread_id)  # a typo fails before anything is deleted
        for thread_id in args.threads:
            store.delete_thread(thread_id)
            print(f"deleted {thread_id}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        thread = store.update_thread(args.thread, title=args.title or None)
    if args.json:
        print_json(thread_json(thread))
    else:
        print(f"{thread.id}: {thread.title or '(untitled)'}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``convkit threads``."""
    threads = subparsers.add_parser("threads", help="list, show, export, import, delete, rename")
    actions = threads.add_subparsers(dest="threads_command", required=True, metavar="ACTION")

    ls = actions.add_parser("list", help="threads, newest first, one page at a time")
    ls.add_argument("--limit", type=int, default=20, help="threads per page (20)")
    ls.add_argument("--cursor", help="the page after this cursor (printed as `more:`)")
    ls.add_argument(
        "--meta",
        action="append",
        metavar="KEY=VALUE",
        help="keep threads whose metadata has KEY equal to VALUE (JSON, else text); repeatable",
    )
    ls.add_argument("--order", choices=["created", "updated"], default="updated")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_list)

    show = actions.add_parser("show", help="a thread's messages with their token counts")
    show.add_argument("thread", metavar="ID")
    show.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this seq")
    show.add_argument("--limit", type=int, default=50, help="messages per page (50)")
    show.add_argument("--last", type=int, metavar="N", help="the newest N messages instead")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show)

    export = actions.add_parser("export", help="write threads as JSON lines")
    export.add_argument("threads", nargs="*", metavar="ID")
    export.add_argument("--all", action="store_true", help="every thread")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(handler=_export)

    imp = actions.add_parser("import", help="create threads from a JSON-lines export")
    imp.add_argument("file", metavar="FILE", help="an export (one or many threads); - for stdin")
    imp.add_argument(
        "--keep-ids", action="store_true", help="keep the exported ids (default: new ids)"
    )
    imp.add_argument("--json", action="store_true", help="print JSON")
    imp.set_defaults(handler=_import)

    rm = actions.add_parser("rm", help="delete threads (their forks keep their history)")
    rm.add_argument("threads", nargs="+", metavar="ID")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask")
    rm.set_defaults(handler=_rm)

    rename = actions.add_parser("rename", help="set a thread's title ('' clears it)")
    rename.add_argument("thread", metavar="ID")
    rename.add_argument("title", metavar="TITLE")
    rename.add_argument("--json", action="store_true", help="print JSON")
    rename.set_defaults(handler=_rename)

    for p in (ls, show, export, imp, rm, rename):
        add_connection_options(p)
