"""Terminal output for the commands: rich when on a terminal, plain text otherwise, stable JSON.

``rich`` renders tables, colour and progress bars only when the stream is a terminal (and
``NO_COLOR`` is unset); piped output stays plain text a script can read, and ``--json`` output
is one JSON document with the keys documented in ``docs/cli.md``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["Progress", "console", "print_json", "progress", "table"]


def console(stream: IO[str] | None = None, *, plain: bool = False) -> Any:
    """A rich Console on ``stream`` (stdout): styled on a terminal, plain text otherwise."""
    from rich.console import Console

    stream = stream or sys.stdout
    tty = stream.isatty() and not plain
    return Console(
        file=stream,
        force_terminal=tty or None,
        no_color=not tty or None,
        highlight=False,
        soft_wrap=not tty,
        emoji=False,
        markup=True,
        color_system="auto" if tty else None,
    )


def print_json(value: Any, stream: IO[str] | None = None) -> None:
    """Print ``value`` as indented JSON (keys in the order given: the documented order)."""
    out = stream or sys.stdout
    out.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    stream: IO[str] | None = None,
    *,
    right: Sequence[int] = (),
) -> None:
    """Print rows: a rich table on a terminal, tab-free aligned columns otherwise."""
    out = stream or sys.stdout
    if out.isatty():
        from rich.table import Table

        t = Table(*headers, box=None, pad_edge=False, header_style="bold")
        for i in right:
            t.columns[i].justify = "right"
        for row in rows:
            t.add_row(*("" if c is None else str(c) for c in row))
        console(out).print(t)
        return
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        parts = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(r))
        ]
        out.write("  ".join(parts).rstrip() + "\n")


class Progress:
    """Advance a progress display (a no-op when stderr is not a terminal)."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar, self._task = bar, task
        self.done = 0

    def advance(self, n: int = 1, *, total: int | None = None) -> None:
        """Count ``n`` more items done (and set the total when it becomes known)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, total=total)


@contextmanager
def progress(what: str, total: int | None = None) -> Iterator[Progress]:
    """A progress bar on stderr while long work runs, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield Progress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(sys.stderr),
        transient=True,
    ) as bar:
        yield Progress(bar, bar.add_task(what, total=total))
