"""The cache browser: the store's entries as a sortable, filterable table that pages.

:class:`CacheBrowser` draws a :class:`~nbcache.ui.browserstate.BrowserState` (the table
without any widget: the records, the filter, the sort, the page and the selection) with
built-in ipywidgets controls (column heads that sort, a filter box, a checkbox per row,
Pin, Delete and Prune with a confirmation, a pager) and acts on the cache.  Only one page
of rows exists as widgets, so a store of 10,000 entries costs what 25 cost in the
front end; the records are read once per refresh.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from ..cache.ledger import EntryRecord
from ..units import format_size
from .browserstate import (
    COLUMNS,
    PAGE,
    BrowserState,
    browser_text,
    name_text,
    plural,
    row_html,
    size_of,
    totals_html,
)
from .cards import short_path, shown_with_text
from .theme import escape, style_widget

__all__ = ["CacheBrowser"]

NAME_MAX = 36  # characters the name column widens to, at most, for the page's longest name
_ids = itertools.count(1)


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
        tools = self._make_tools(w)
        self.confirmation = self._make_confirmation(w)
        self._asked: str | None = None
        self.message = w.HTML()
        scroll, grid = self._make_table(w)
        pager = self._make_pager(w)
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
        self._add_classes(tools, scroll, grid, pager)
        self._filling = False
        self._handle: Any = None
        self.refresh()
        self._handle = display(shown_with_text(self.box, self.text))

    # -- the widgets

    def _make_tools(self, w: Any) -> Any:
        """The filter box, the selection's size, and the buttons that act on the store."""
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
        return w.HBox([self.filter, self.count, self.pin, self.delete, self.prune, self.reload])

    def _make_confirmation(self, w: Any) -> Any:
        """The question asked before Delete or Prune, hidden until then."""
        self.question = w.HTML()
        self.confirm = w.Button(description="Delete", button_style="danger")
        self.keep = w.Button(description="Keep them")
        self.confirm.on_click(lambda _b: self.do_asked())
        self.keep.on_click(lambda _b: self.ask(None))
        confirmation = w.HBox([self.question, self.confirm, self.keep])
        confirmation.layout.display = "none"
        return confirmation

    def _make_table(self, w: Any) -> tuple[Any, Any]:
        """The column heads that sort, one page of rows with a checkbox each, and what an
        empty table says: the scrolling box and the grid inside it."""
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
        return w.Box([grid]), grid

    def _make_pager(self, w: Any) -> Any:
        self.prev = w.Button(description="‹ Previous")
        self.next = w.Button(description="Next ›")
        self.prev.on_click(lambda _b: self.turn(-1))
        self.next.on_click(lambda _b: self.turn(1))
        self.where = w.HTML()
        return w.HBox([self.prev, self.where, self.next])

    def _add_classes(self, tools: Any, scroll: Any, grid: Any, pager: Any) -> None:
        """The CSS classes the stylesheet (ui/theme.py) finds each part by."""
        head_row = self.head_row
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
        self.message.value = f"Read the store again: {plural(after, 'entry', 'entries')}" + (
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
            f"{plural(len(chosen), 'entry', 'entries')} selected ({size_of(chosen)})"
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
            what = plural(len(chosen), "entry", "entries")
            made = (
                "The cell or call that made it"
                if len(chosen) == 1
                else "The cells and calls that made them"
            )
            self.question.value = (
                f"Delete <b>{what}</b> ({size_of(chosen)}) from the store? {made} will compute "
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
            f"Deleted {plural(len(chosen), 'entry', 'entries')} ({size_of(chosen)})."
        )
        self.refresh()

    def pin_selected(self) -> None:
        chosen = self.state.chosen
        pin = not all(r.pinned for r in chosen)
        ledger = self.cache.ledger
        for rec in chosen:
            (ledger.pin if pin else ledger.unpin)(rec.key)
        what = plural(len(chosen), "entry", "entries")
        self.message.value = (
            f"Pinned {what}: eviction and Prune leave them alone." if pin else f"Unpinned {what}."
        )
        self.refresh()

    def prune_to_limit(self) -> None:
        before = {r.key: r for r in self.state.records}
        removed = self.cache.ledger.prune(max_size=self._limit())
        gone = [before[k] for k in removed if k in before]
        self.message.value = (
            f"Pruned {plural(len(removed), 'entry', 'entries')} ({size_of(gone)})."
            if removed
            else "Nothing to prune: the store is within its limit."
        )
        self.refresh()
