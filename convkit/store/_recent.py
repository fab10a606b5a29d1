"""The newest rows of recently read threads, kept so the next window fetches only what is new.

A chat server reads a thread's window once per turn, and between two turns the window moves by
a message or two. Building a row into a :class:`~convkit.store.StoredMessage` (decoding its
JSON, rebuilding the message) costs more than the database read itself, so rebuilding the same
hundred rows every turn is most of a store-backed turn. :class:`RecentRows` keeps, per thread,
the run of rows the last window walked (newest first); the next window of that thread reads
the thread row, fetches the rows appended since, and walks the kept ones before reading any
older row from the database. It keeps what that window chose too (its units, budget, floor
and rule, a :class:`Choice`): when the next window asks for no more budget under the same floor
and rule, and every row appended since is a message of text (no tool call or result), the
window is chosen again from those units and the new rows, without walking the thread
(``convkit.store._sql._choose_again`` says why that is the walk's window).

Why the kept rows are still right: messages are append-only (no operation updates or deletes a
row of a live thread), so a row ``(thread_id, seq)`` never changes while the thread row that
owns it lives. A thread deleted and created again under the same id, or imported, gets a new
``incarnation`` (revision 0005); rows kept for another incarnation, or for a thread with none,
are never used. Appends from other processes are seen (the thread row's ``last_seq`` says how
far to fetch), as are appends through any other store object.

Bounded: at most ``max_rows`` rows in all, over the most recently read threads (least recently
read dropped first); a window longer than ``max_rows // 4`` rows is not kept. Safe to share
between threads (each entry is immutable once made; the index is locked).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from convkit.context._groups import Picked
from convkit.store._values import StoredMessage

__all__ = ["DEFAULT_MAX_ROWS", "Choice", "Kept", "RecentRows"]

#: Rows kept by default, over all threads (a row is a few hundred bytes to a few kilobytes).
DEFAULT_MAX_ROWS = 20_000


class Choice(NamedTuple):
    """What the last window of a thread chose (its units, oldest first, as a
    :class:`~convkit.context._groups.Picked`) and how: its history budget and floor (the
    leading rows' tokens and seqs already taken off) and its rule."""

    picked: Picked
    budget: int
    after_seq: int
    include_incomplete: bool


class Kept:
    """The newest rows of one thread as a window walk read them: contiguous seqs, newest first.

    Refuses (``ValueError``) rows that are not one lineage's: ``newest`` must run down from the
    thread's ``last_seq`` without a gap, ``lead`` up from seq 1, the two apart.
    """

    __slots__ = ("choice", "incarnation", "lead", "newest", "top")

    def __init__(
        self,
        incarnation: str,
        newest: Sequence[StoredMessage],
        lead: Sequence[StoredMessage] = (),
        *,
        last_seq: int,
        choice: Choice | None = None,
    ) -> None:
        self.incarnation = incarnation
        #: What the window that read these rows chose from them (None: not known).
        self.choice = choice
        self.newest = tuple(newest)
        #: The thread's leading system / developer rows (its prefix), oldest first.
        self.lead = tuple(lead)
        n = len(self.newest)
        if (
            not n
            or [m.seq for m in self.newest] != list(range(last_seq, last_seq - n, -1))
            or [m.seq for m in self.lead] != list(range(1, len(self.lead) + 1))
            or (self.lead and self.lead[-1].seq >= self.newest[-1].seq)
        ):
            raise ValueError("not one lineage's rows: newest from last_seq down, lead from 1")
        #: The seq of the newest row kept: the thread's ``last_seq`` when it was read.
        self.top = last_seq

    @property
    def bottom(self) -> int:
        """The seq of the oldest row kept."""
        return self.newest[-1].seq

    def on_top(
        self, fresh: Sequence[StoredMessage], *, down_to: int, choice: Choice | None
    ) -> Kept:
        """These rows with ``fresh`` (the rows appended since, newest first) on top, the ones
        below seq ``down_to`` left out, and ``choice``: a window's next run, checking only what
        is new (the rest was checked when it was kept). ``ValueError`` as the constructor."""
        last_seq = self.top + len(fresh)
        for i, m in enumerate(fresh):
            if m.seq != last_seq - i:
                raise ValueError("not one lineage's rows: fresh rows from last_seq down")
        newest = (*fresh, *self.newest)[: max(1, last_seq - down_to + 1)]
        kept: Kept = object.__new__(Kept)
        kept.incarnation = self.incarnation
        kept.choice = choice
        kept.newest = newest
        kept.lead = self.lead
        kept.top = last_seq
        return kept


class RecentRows:
    """Per-thread runs of newest rows, least recently read dropped first (see the module)."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        # Bumped by every deletion (:meth:`deleted`): a window read that began before one
        # keeps nothing (it may have read the deleted thread's rows before the delete).
        self._deletions = 0

    def get(self, thread_id: str, incarnation: str | None) -> Kept | None:
        """What is kept for this incarnation of the thread, or None."""
        if incarnation is None or not self.max_rows:
            return None
        with self._lock:
            kept = self._kept.get(thread_id)
            if kept is None:
                return None
            if kept.incarnation != incarnation:  # deleted and created again, or imported
                self._drop(thread_id)
                return None
            self._kept.move_to_end(thread_id)
            return kept

    def peek(self, thread_id: str) -> Kept | None:
        """What is kept for the thread, whatever its incarnation: a hint, read without the
        lock (:meth:`get` checks the incarnation, under it)."""
        return self._kept.get(thread_id) if self.max_rows else None

    def put(
        self,
        thread_id: str,
        incarnation: str | None,
        newest: Sequence[StoredMessage],
        lead: Sequence[StoredMessage] = (),
        *,
        last_seq: int,
        choice: Choice | None = None,
        since: int | None = None,
    ) -> None:
        """Keep ``newest`` (rows newest first, from the thread's ``last_seq`` down), the
        thread's leading system rows ``lead`` and what the window chose from them, if small
        enough and one lineage's rows (else forget what was kept for the thread)."""
        size = len(newest) + len(lead)
        if incarnation is None or size > self.max_rows // 4:
            self.forget(thread_id)
            return
        try:
            kept = Kept(incarnation, newest, lead, last_seq=last_seq, choice=choice)
        except ValueError:  # an empty walk, or a read that raced a change of the lineage
            self.forget(thread_id)
            return
        self.replace(thread_id, kept, since=since)

    def replace(self, thread_id: str, kept: Kept, *, since: int | None = None) -> None:
        """Keep ``kept`` for the thread (one :meth:`put` made, or :meth:`Kept.on_top`), if
        small enough (else forget what was kept for the thread) and, given ``since`` (the
        :meth:`mark` taken before the read), if no thread was deleted since."""
        size = len(kept.newest) + len(kept.lead)
        if size > self.max_rows // 4:
            self.forget(thread_id)
            return
        with self._lock:
            if since is not None and since != self._deletions:
                return  # a delete ran while this was read: the rows may be the deleted ones
            self._drop(thread_id)
            self._kept[thread_id] = kept
            self._rows += size
            while self._rows > self.max_rows and self._kept:
                self._drop(next(iter(self._kept)))

    def mark(self) -> int:
        """A mark to take before a read whose rows may be kept (see :meth:`replace`)."""
        return self._deletions

    def deleted(self, thread_id: str) -> None:
        """Drop what is kept for the thread, deleted (or found missing), and keep nothing
        from a read that began before."""
        with self._lock:
            self._deletions += 1
            self._drop(thread_id)

    def forget(self, thread_id: str) -> None:
        """Drop what is kept for the thread (too large to keep, or read while its lineage
        changed); a deleted thread goes through :meth:`deleted`."""
        with self._lock:
            self._drop(thread_id)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._kept.clear()
            self._rows = 0

    def __len__(self) -> int:
        """How many rows are kept, over all threads."""
        return self._rows

    def _drop(self, thread_id: str) -> None:
        kept = self._kept.pop(thread_id, None)
        if kept is not None:
            self._rows -= len(kept.newest) + len(kept.lead)
