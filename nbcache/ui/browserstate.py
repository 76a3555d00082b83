"""The cache browser's table without widgets: its columns, the records with the filter,
the sort, the page and the selection (:class:`BrowserState`), and the totals and rows
as text and HTML.

Sorting, filtering and paging are done in Python on the list of records read once per
refresh; :mod:`nbcache.ui.browser` draws one page of it with ipywidgets.

A checkpoint of an unfinished cell run is a *partial* entry: its row names the cell
and says how far the run got and how old the checkpoint is (``partial · step 412 of
1000 · saved 3 min ago``), as ``%nbcache list`` does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cache.ledger import EntryRecord
from ..run.report import age_text
from ..units import format_duration, format_size
from .listing import entries_table
from .theme import escape

__all__ = [
    "COLUMNS",
    "PAGE",
    "BrowserState",
    "Column",
    "Partial",
    "browser_text",
    "entry_name",
    "name_text",
    "partial_of",
    "plural",
    "row_html",
    "saved_seconds",
    "short_when",
    "size_of",
    "totals_html",
    "totals_text",
]

PAGE = 25  # rows a page


@dataclass(frozen=True)
class Column:
    """One column: its id, its head, what it sorts by, how a cell reads."""

    id: str
    head: str
    key: Callable[[EntryRecord], Any]
    text: Callable[[EntryRecord], str]
    numeric: bool = False
    tip: Callable[[EntryRecord], str] | None = None


# The label a checkpoint is stored under (see nbcache.run.checkpoint): the only part of
# its record that says what it is, and the same words %nbcache list shows.
_PARTIAL = re.compile(r"^partial: (?P<name>.*) \(step (?P<step>\d+)(?: of (?P<total>\d+))?\)$")


@dataclass(frozen=True)
class Partial:
    """A checkpoint of a cell run that did not finish: the cell, the step, its age."""

    name: str
    step: int
    total: int | None
    age: float  # seconds since it was saved

    @property
    def text(self) -> str:
        """``partial · step 412 of 1000 · saved 3 min ago``."""
        of = f" of {self.total:,}" if self.total is not None else ""
        return f"partial · step {self.step:,}{of} · saved {age_text(self.age)} ago"


def partial_of(rec: EntryRecord, now: float | None = None) -> Partial | None:
    """The checkpoint ``rec`` is, or None for a finished entry."""
    found = _PARTIAL.match(rec.label)
    if found is None:
        return None
    total = found.group("total")
    age = max(0.0, (time.time() if now is None else now) - rec.created)
    return Partial(
        found.group("name"), int(found.group("step")), int(total) if total else None, age
    )


def entry_name(rec: EntryRecord) -> str:
    """An entry's name: its label (``-n NAME``, a function), else its key's start."""
    return rec.label or rec.key[:12]


def saved_seconds(rec: EntryRecord) -> float:
    """Computing the entry's uses did not have to do."""
    return rec.compute_seconds * rec.uses


def short_when(stamp: float, now: float | None = None) -> str:
    """``today 14:05``, ``yesterday 09:12``, ``Nov 21 14:05``, ``2025-11-21``."""
    now = time.time() if now is None else now
    then, today = time.localtime(stamp), time.localtime(now)
    days = (
        time.mktime((*today[:3], 0, 0, 0, 0, 0, -1)) - time.mktime((*then[:3], 0, 0, 0, 0, 0, -1))
    ) / 86400
    if round(days) == 0:
        return time.strftime("today %H:%M", then)
    if round(days) == 1:
        return time.strftime("yesterday %H:%M", then)
    if then.tm_year == today.tm_year:
        return time.strftime("%b %d %H:%M", then)
    return time.strftime("%Y-%m-%d", then)


def _full_when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


COLUMNS: tuple[Column, ...] = (
    Column("name", "name", lambda r: entry_name(r).lower(), entry_name),
    # a cell's first statement past its imports, a memoized call with its arguments
    Column("code", "code", lambda r: r.first_line.lower(), lambda r: r.first_line),
    Column("size", "size", lambda r: r.size, lambda r: format_size(r.size), True),
    Column(
        "created",
        "created",
        lambda r: r.created,
        lambda r: short_when(r.created),
        False,
        lambda r: _full_when(r.created),
    ),
    Column(
        "last_used",
        "last used",
        lambda r: r.last_used,
        lambda r: short_when(r.last_used),
        False,
        lambda r: _full_when(r.last_used),
    ),
    Column("uses", "uses", lambda r: r.uses, lambda r: f"{r.uses:,}", True),
    Column(
        "saved",
        "time saved",
        saved_seconds,
        lambda r: format_duration(saved_seconds(r)),
        True,
        lambda r: f"computed in {format_duration(r.compute_seconds)}, used {r.uses:,} times",
    ),
)
_BY_ID = {column.id: column for column in COLUMNS}


@dataclass
class BrowserState:
    """The table without widgets: what is shown, in which order, and what is selected."""

    records: list[EntryRecord] = field(default_factory=list)
    query: str = ""
    sort: str = "last_used"
    descending: bool = True
    page: int = 0
    selected: set[str] = field(default_factory=set)
    _shown: list[EntryRecord] | None = None

    def load(self, records: Sequence[EntryRecord]) -> None:
        """New records (after a refresh): keep the selection of entries still there."""
        self.records = list(records)
        keys = {r.key for r in self.records}
        self.selected &= keys
        self._shown = None
        self.page = min(self.page, max(self.pages - 1, 0))

    def filter(self, query: str) -> None:
        self.query = query
        self.page = 0
        self._shown = None

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; again by the same column turns the order round."""
        if column == self.sort:
            self.descending = not self.descending
        else:
            self.sort = column
            self.descending = _BY_ID[column].numeric or column in ("created", "last_used")
        self._shown = None

    @property
    def shown(self) -> list[EntryRecord]:
        """The records that match the filter, in the chosen order."""
        if self._shown is None:
            words = self.query.lower().split()
            rows = [r for r in self.records if all(w in _haystack(r) for w in words)]
            rows.sort(key=_BY_ID[self.sort].key, reverse=self.descending)
            self._shown = rows
        return self._shown

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.shown) // PAGE))

    def turn(self, step: int) -> None:
        self.page = min(max(self.page + step, 0), self.pages - 1)

    @property
    def rows(self) -> list[EntryRecord]:
        """The records on the current page."""
        return self.shown[self.page * PAGE : (self.page + 1) * PAGE]

    @property
    def chosen(self) -> list[EntryRecord]:
        return [r for r in self.records if r.key in self.selected]


def _haystack(rec: EntryRecord) -> str:
    return f"{rec.label} {rec.first_line} {rec.identity} {rec.key}".lower()


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def size_of(records: Sequence[EntryRecord]) -> str:
    return format_size(sum(r.size for r in records))


def totals_text(records: Sequence[EntryRecord], location: str, limit: int | None) -> str:
    """The totals as a sentence: ``3 entries, 2.4 MB of a 10.0 GB limit, in .nbcache;
    they have saved 4 min 12 s of computing so far.``"""
    if not records:
        return f"The store {location} is empty."
    size = size_of(records)
    of = f" of a {format_size(limit)} limit" if limit else " (no size limit)"
    saved = sum(saved_seconds(r) for r in records)
    text = f"{plural(len(records), 'entry', 'entries')}, {size}{of}, in {location}"
    if saved:
        return f"{text}; they have saved {format_duration(saved)} of computing so far."
    return f"{text}; none has been used again yet."


def browser_text(records: Sequence[EntryRecord], location: str, limit: int | None) -> str:
    """The browser as text: the totals sentence, then a table of the entries (what a
    terminal shows, and a saved notebook without widget state)."""
    lines = [f"nbcache: {totals_text(records, location, limit)}"]
    if records:
        lines += ["", *entries_table(records)]
    return "\n".join(lines)


def totals_html(records: Sequence[EntryRecord], location: str, limit: int | None) -> str:
    """:func:`totals_text` with its figures in bold."""
    where = f'<code class="nbcache-totals-where">{escape(location)}</code>'
    if not records:
        return f'<div class="nbcache-totals">The store {where} is empty.</div>'
    of = f" of a {escape(format_size(limit))} limit" if limit else " (no size limit)"
    saved = sum(saved_seconds(r) for r in records)
    tail = (
        f"; they have saved <b>{escape(format_duration(saved))}</b> of computing so far."
        if saved
        else "; none has been used again yet."
    )
    return (
        f'<div class="nbcache-totals"><b>{plural(len(records), "entry", "entries")}</b>, '
        f"<b>{escape(size_of(records))}</b>{of}, in {where}{tail}</div>"
    )


def name_text(rec: EntryRecord) -> str:
    """What a row's name cell says, as plain text (for the column's width)."""
    partial = partial_of(rec)
    text = f"{partial.name} {partial.text}" if partial is not None else entry_name(rec)
    return text + (" pinned" if rec.pinned else "")


def row_html(rec: EntryRecord) -> str:
    """One row's cells, laid out by the same grid as the column heads."""
    cells = []
    partial = partial_of(rec)
    for column in COLUMNS:
        text = column.text(rec)
        tip = column.tip(rec) if column.tip is not None else text
        css = "nbcache-num" if column.numeric else f"nbcache-{column.id}"
        body = escape(text)
        if column.id == "code" and not text:
            body, tip = "—", "stored before nbcache recorded a call's arguments"
        if column.id == "name" and partial is not None:
            body = (
                f'{escape(partial.name)} <span class="nbcache-partial" title="a checkpoint of '
                'a run that did not finish: running the cell again resumes here">'
                f"{escape(partial.text)}</span>"
            )
            tip = f"{partial.name}: {partial.text}"
        if column.id == "name" and rec.pinned:
            body += ' <span class="nbcache-pin" title="pinned: eviction leaves it">pinned</span>'
            tip += " (pinned)"
        cells.append(f'<span class="{css}" title="{escape(tip)}">{body}</span>')
    return f'<div class="nbcache-cols">{"".join(cells)}</div>'
