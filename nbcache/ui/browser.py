"""The cache browser: the store's entries as a sortable, filterable table that pages.

:class:`BrowserState` is the table without any widget: the records, the filter, the
sort, the page and the selection; :class:`CacheBrowser` draws it with built-in
ipywidgets controls (column heads that sort, a filter box, a checkbox per row, Pin,
Delete and Prune with a confirmation, a pager) and acts on the cache.  Only one page
of rows exists as widgets, so a store of 10,000 entries costs what 25 cost in the
front end; the records are read once per refresh, and sorting, filtering and paging
are done in Python on that list.

A checkpoint of an unfinished cell run is a *partial* entry: its row names the cell
and says how far the run got and how old the checkpoint is (``partial · step 412 of
1000 · saved 3 min ago``), as ``%nbcache list`` does.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cache.ledger import EntryRecord
from ..run.report import age_text
from ..units import format_duration, format_size
from .cards import short_path, shown_with_text
from .listing import entries_table
from .theme import escape, style_widget

__all__ = [
    "COLUMNS",
    "BrowserState",
    "CacheBrowser",
    "Column",
    "Partial",
    "browser_text",
    "partial_of",
    "totals_html",
    "totals_text",
]

PAGE = 25  # rows a page
NAME_MAX = 36  # characters the name column widens to, at most, for the page's longest name
_ids = itertools.count(1)


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


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _total(records: Sequence[EntryRecord]) -> str:
    return format_size(sum(r.size for r in records))


def totals_text(records: Sequence[EntryRecord], location: str, limit: int | None) -> str:
    """The totals as a sentence: ``3 entries, 2.4 MB of a 10.0 GB limit, in .nbcache;
    they have saved 4 min 12 s of computing so far.``"""
    if not records:
        return f"The store {location} is empty."
    size = _total(records)
    of = f" of a {format_size(limit)} limit" if limit else " (no size limit)"
    saved = sum(saved_seconds(r) for r in records)
    text = f"{_plural(len(records), 'entry', 'entries')}, {size}{of}, in {location}"
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
        f'<div class="nbcache-totals"><b>{_plural(len(records), "entry", "entries")}</b>, '
        f"<b>{escape(_total(records))}</b>{of}, in {where}{tail}</div>"
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


_EMPTY = (
    '<div class="nbcache-empty"><b>No cached results yet.</b><br>'
    "Put <code>%%cache</code> on the first line of a slow cell: after it runs, its "
    "result shows up here.</div>"
)


class CacheBrowser:
    """The store's entries as a table, with Pin, Delete and Prune acting on the store."""

    def __init__(
        self, cache: Any, display: Callable[[Any], Any], limit: Callable[[], int | None]
    ) -> None:
        """``display`` shows the browser; what it returns, if it has ``update`` (IPython's
        display handle), gets the new text form after each refresh."""
        import ipywidgets as w

        self.cache = cache
        self._limit = limit
        self.state = BrowserState()
        self.totals = w.HTML()
        self.filter = w.Text(placeholder="Filter by name or code", continuous_update=True)
        self.filter.observe(lambda change: self._filtered(change["new"]), "value")
        self.count = w.HTML()
        self.pin = w.Button(description="Pin", tooltip="Keep the selected entries out of eviction")
        self.delete = w.Button(description="Delete", tooltip="Remove the selected entries")
        self.prune = w.Button(description="Prune…")
        self.reload = w.Button(description="Refresh", tooltip="Read the store again")
        self.reload.on_click(lambda _b: self.refresh_asked())
        self.pin.on_click(lambda _b: self.pin_selected())
        self.delete.on_click(lambda _b: self.ask("delete"))
        self.prune.on_click(lambda _b: self.ask("prune"))
        tools = w.HBox([self.filter, self.count, self.pin, self.delete, self.prune, self.reload])
        self.question = w.HTML()
        self.confirm = w.Button(description="Delete", button_style="danger")
        self.keep = w.Button(description="Keep them")
        self.confirm.on_click(lambda _b: self.do_asked())
        self.keep.on_click(lambda _b: self.ask(None))
        self.confirmation = w.HBox([self.question, self.confirm, self.keep])
        self.confirmation.layout.display = "none"
        self._asked: str | None = None
        self.message = w.HTML()
        self.heads = [w.Button(description=c.head, tooltip=f"Sort by {c.head}") for c in COLUMNS]
        for column, head in zip(COLUMNS, self.heads, strict=True):
            head.on_click(lambda _b, c=column.id: self.sort_by(c))
        self.page_box = w.Checkbox(value=False, indent=False, tooltip="Select this page")
        self.page_box.observe(lambda change: self._select_page(change["new"]), "value")
        head_row = self.head_row = w.HBox([self.page_box, w.GridBox(self.heads)])
        self.rows = [w.HBox([w.Checkbox(value=False, indent=False), w.HTML()]) for _ in range(PAGE)]
        for index, row in enumerate(self.rows):
            tick = row.children[0]
            tick.observe(lambda change, i=index: self._tick_row(i, change["new"]), "value")
        self.empty = w.HTML(value=_EMPTY)
        grid = w.VBox([head_row, *self.rows, self.empty])
        scroll = w.Box([grid])
        self.prev = w.Button(description="‹ Previous")
        self.next = w.Button(description="Next ›")
        self.prev.on_click(lambda _b: self.turn(-1))
        self.next.on_click(lambda _b: self.turn(1))
        self.where = w.HTML()
        pager = w.HBox([self.prev, self.where, self.next])
        # The name column is as wide as this page's longest name (up to NAME_MAX): a rule
        # of this browser's own, in a hidden stylesheet widget of its own.
        self._scope = f"nbcache-b{next(_ids)}"
        self.sizing = w.HTML()
        self.sizing.add_class("nbcache-style")
        self.box = w.VBox(
            [
                style_widget(),
                self.sizing,
                self.totals,
                tools,
                self.confirmation,
                self.message,
                scroll,
                pager,
            ]
        )
        self.box.add_class(self._scope)
        for widget, part in (
            (self.box, "browser"),
            (self.totals, "browser-totals"),
            (tools, "browser-tools"),
            (self.filter, "browser-filter"),
            (self.count, "browser-selected"),
            (self.pin, "browser-pin"),
            (self.delete, "browser-delete"),
            (self.prune, "browser-prune"),
            (self.reload, "browser-refresh"),
            (self.confirmation, "browser-confirm"),
            (self.confirm, "browser-confirm-yes"),
            (self.keep, "browser-confirm-no"),
            (self.message, "browser-message"),
            (scroll, "browser-scroll"),
            (grid, "browser-grid"),
            (head_row, "row"),
            (head_row, "row-head"),
            (head_row.children[1], "heads"),
            (self.empty, "browser-empty"),
            (pager, "browser-pager"),
            (self.prev, "browser-prev"),
            (self.next, "browser-next"),
            (self.where, "browser-where"),
        ):
            widget.add_class(f"nbcache-{part}")
        buttons = (self.pin, self.delete, self.prune, self.reload, self.keep, self.prev, self.next)
        for button in buttons:
            button.add_class("nbcache-plain")
        for column, head in zip(COLUMNS, self.heads, strict=True):
            head.add_class("nbcache-th")
            head.add_class(f"nbcache-th-{column.id}")
            if column.numeric:
                head.add_class("nbcache-num")
        for row in self.rows:
            row.add_class("nbcache-row")
            row.add_class("nbcache-browser-row")
        self._filling = False
        self._handle: Any = None
        self.refresh()
        self._handle = display(shown_with_text(self.box, self.text))

    # -- reading the store

    @property
    def location(self) -> str:
        store = getattr(self.cache, "store", None)
        return short_path(str(store.location)) if store is not None else "memory only"

    @property
    def text(self) -> str:
        """The browser's text form, as of its last refresh."""
        return browser_text(self.state.records, self.location, self._limit())

    def refresh_asked(self) -> None:
        """The Refresh button: what others stored or removed since, and say so."""
        before = len(self.state.records)
        self.refresh()
        after = len(self.state.records)
        change = after - before
        self.message.value = f"Read the store again: {_plural(after, 'entry', 'entries')}" + (
            f" ({change:+,})." if change else ", as before."
        )

    def refresh(self) -> None:
        """Read the records again and redraw everything, the text form too."""
        self.state.load(self.cache.ledger.records())
        self.totals.value = totals_html(self.state.records, self.location, self._limit())
        self.draw()
        update = getattr(self._handle, "update", None)
        if update is not None:
            update(shown_with_text(self.box, self.text))

    # -- drawing

    def draw(self) -> None:
        """Redraw the heads, the page of rows, the pager and the buttons."""
        state = self.state
        for column, head in zip(COLUMNS, self.heads, strict=True):
            sorted_here = column.id == state.sort
            arrow = (" ▼" if state.descending else " ▲") if sorted_here else ""
            head.description = column.head + arrow
            (head.add_class if sorted_here else head.remove_class)("nbcache-sorted")
        rows = state.rows
        self._filling = True
        try:
            for row, rec in zip(self.rows, [*rows, *[None] * (PAGE - len(rows))], strict=True):
                box, cells = row.children
                if rec is None:
                    row.layout.display = "none"
                    continue
                row.layout.display = None
                cells.value = row_html(rec)
                box.value = rec.key in state.selected
                (row.add_class if box.value else row.remove_class)("nbcache-row-selected")
            self.page_box.value = bool(rows) and all(r.key in state.selected for r in rows)
        finally:
            self._filling = False
        self._size_names(rows)
        self._draw_empty()
        self._draw_pager()
        self._draw_buttons()

    def _size_names(self, rows: Sequence[EntryRecord]) -> None:
        widest = max((len(name_text(rec)) for rec in rows), default=0)
        chars = min(max(widest + 1, 12), NAME_MAX)
        rule = f"<style>.{self._scope} {{ --nbcache-name: {chars}ch; }}</style>"
        if self.sizing.value != rule:
            self.sizing.value = rule

    def _draw_empty(self) -> None:
        state = self.state
        if state.shown:
            self.empty.layout.display = "none"
            self.head_row.layout.display = None
            return
        self.empty.layout.display = None
        self.head_row.layout.display = None if state.records else "none"
        if state.records:
            self.empty.value = (
                f'<div class="nbcache-empty">No entry matches <b>{escape(state.query)}</b>.</div>'
            )
        else:
            self.empty.value = _EMPTY

    def _draw_pager(self) -> None:
        state, shown = self.state, len(self.state.shown)
        first = state.page * PAGE + 1 if shown else 0
        last = min((state.page + 1) * PAGE, shown)
        of = f"{shown:,}" + (f" matching, of {len(state.records):,}" if state.query else "")
        self.where.value = f"{first:,}–{last:,} of {of}" if shown else ""
        self.prev.disabled = state.page == 0
        self.next.disabled = state.page >= state.pages - 1
        self.prev.layout.display = self.next.layout.display = None if state.pages > 1 else "none"

    def _draw_buttons(self) -> None:
        chosen = self.state.chosen
        self.count.value = (
            f"{_plural(len(chosen), 'entry', 'entries')} selected ({_total(chosen)})"
            if chosen
            else ""
        )
        self.delete.disabled = not chosen
        self.pin.disabled = not chosen
        self.pin.description = "Unpin" if chosen and all(r.pinned for r in chosen) else "Pin"
        limit = self._limit()
        self.prune.disabled = not limit or not self.state.records
        self.prune.tooltip = (
            f"Remove the least valuable entries until the store fits {format_size(limit)}"
            if limit
            else "No size limit is set (NBCACHE_MAX_SIZE), so there is nothing to prune to"
        )

    # -- what the user does

    def _filtered(self, query: str) -> None:
        self.state.filter(query)
        self.draw()

    def sort_by(self, column: str) -> None:
        self.state.sort_by(column)
        self.state.page = 0
        self.draw()

    def turn(self, step: int) -> None:
        self.state.turn(step)
        self.draw()

    def select(self, keys: Sequence[str], selected: bool = True) -> None:
        """Select (or unselect) entries by key, as ticking their rows does."""
        if selected:
            self.state.selected.update(keys)
        else:
            self.state.selected.difference_update(keys)
        self.draw()

    def _tick_row(self, index: int, value: bool) -> None:
        if self._filling:
            return
        rows = self.state.rows
        if index < len(rows):
            self.select([rows[index].key], value)

    def _select_page(self, value: bool) -> None:
        if not self._filling:
            self.select([r.key for r in self.state.rows], value)

    def ask(self, action: str | None) -> None:
        """Ask before deleting or pruning (None: the question is withdrawn)."""
        self._asked = action
        if action is None:
            self.confirmation.layout.display = "none"
            return
        if action == "delete":
            chosen = self.state.chosen
            if not chosen:
                return
            what = _plural(len(chosen), "entry", "entries")
            made = (
                "The cell or call that made it"
                if len(chosen) == 1
                else "The cells and calls that made them"
            )
            self.question.value = (
                f"Delete <b>{what}</b> ({_total(chosen)}) from the store? {made} will compute "
                "again next time."
            )
            self.confirm.description = f"Delete {what}"
        else:
            limit = self._limit()
            if not limit:
                return
            self.question.value = (
                f"Prune the store to its limit of <b>{format_size(limit)}</b>? The entries "
                "that save the least time per byte go first; pinned entries stay."
            )
            self.confirm.description = "Prune"
        self.keep.description = "Cancel"
        self.confirmation.layout.display = None

    def do_asked(self) -> None:
        """Carry out what the confirmation asked about."""
        action, self._asked = self._asked, None
        self.confirmation.layout.display = "none"
        if action == "delete":
            self.delete_selected()
        elif action == "prune":
            self.prune_to_limit()

    def delete_selected(self) -> None:
        chosen = self.state.chosen
        for rec in chosen:
            self.cache.remove(rec.key)
        self.state.selected.clear()
        self.message.value = (
            f"Deleted {_plural(len(chosen), 'entry', 'entries')} ({_total(chosen)})."
        )
        self.refresh()

    def pin_selected(self) -> None:
        chosen = self.state.chosen
        pin = not all(r.pinned for r in chosen)
        ledger = self.cache.ledger
        for rec in chosen:
            (ledger.pin if pin else ledger.unpin)(rec.key)
        what = _plural(len(chosen), "entry", "entries")
        self.message.value = (
            f"Pinned {what}: eviction and Prune leave them alone." if pin else f"Unpinned {what}."
        )
        self.refresh()

    def prune_to_limit(self) -> None:
        before = {r.key: r for r in self.state.records}
        removed = self.cache.ledger.prune(max_size=self._limit())
        gone = [before[k] for k in removed if k in before]
        self.message.value = (
            f"Pruned {_plural(len(removed), 'entry', 'entries')} ({_total(gone)})."
            if removed
            else "Nothing to prune: the store is within its limit."
        )
        self.refresh()
