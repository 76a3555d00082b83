"""The task card of a background cell, as ipywidgets or as plain text lines.

Which one is decided explicitly, never guessed from what happens to be
imported: widgets when the shell is a Jupyter kernel and ipywidgets imports,
text otherwise; ``NBCACHE_WIDGETS=1`` or ``0`` overrides it.  ipywidgets is
imported only when a widget card is made.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ..tasks.futures import Task
from ..units import format_duration

__all__ = ["CacheBrowser", "TextCard", "WidgetCard", "browse", "make_card", "widgets_wanted"]

_STYLE = {
    "queued": "info",
    "running": "info",
    "cancelling": "warning",
    "done": "success",
    "failed": "danger",
    "cancelled": "warning",
}


def widgets_wanted(shell: Any) -> bool:
    """Widgets in a Jupyter kernel with ipywidgets installed; NBCACHE_WIDGETS overrides."""
    forced = os.environ.get("NBCACHE_WIDGETS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _tag(*widgets: tuple[Any, str]) -> None:
    """CSS classes ``nbcache-<part>``, for styling and for tests that drive a browser."""
    for widget, part in widgets:
        widget.add_class(f"nbcache-{part}")


def _elapsed_text(task: Task[Any]) -> str:
    """``12 s``, or ``12 s · about 28 s left`` when a past run of the same cell is known."""
    text = format_duration(task.elapsed)
    if task.state == "cancelling":
        return text + " · stopping at its next progress step"
    if task.expected and task.state == "running":
        left = task.expected - task.elapsed
        text += f" · about {format_duration(left)} left" if left > 0 else " · taking longer"
    return text


_OWN_CODE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _failure_text(task: Task[Any]) -> str:
    """The failure's traceback from the user's code on: nbcache's own leading frames
    (running the body, waiting for a worker) tell the user nothing."""
    exc = task.future.exception()
    if exc is None:
        return ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_OWN_CODE):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class TextCard:
    """A task's card as lines of text: started, then how it ended."""

    def __init__(self, task: Task[Any], show: Callable[[str], None]) -> None:
        self.task = task
        self._show = show
        self.note = ""
        self._ended = False
        self._cancelling = False
        show(f"nbcache: {task.name} runs in the background (%nbcache wait to block on it)")

    def output(self, kind: str, *payload: Any) -> None:
        """Output of the body, kept for the end (text has nowhere else to put it)."""

    def update(self, task: Task[Any]) -> None:
        if task.state == "cancelling" and not self._cancelling:
            self._cancelling = True
            self._show(f"nbcache: {task.name} cancelling: it stops at its next progress step")
        if task.state in ("done", "failed", "cancelled") and not self._ended:
            self._ended = True
            line = f"nbcache: {task.name} {task.state} after {format_duration(task.elapsed)}"
            self._show(line + (f" · {self.note}" if self.note else ""))
            if task.state == "failed":
                self._show(_failure_text(task))


class WidgetCard:
    """A task's card: name, state, progress bar, elapsed time, Cancel, and its output."""

    def __init__(self, task: Task[Any], display: Callable[[Any], None]) -> None:
        import ipywidgets as w

        self.task = task
        self.note = ""
        self.name = w.Label(value=task.name)
        self.state = w.Label(value=task.state)
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info")
        self.elapsed = w.Label(value="")
        self.cancel = w.Button(description="Cancel", icon="stop", button_style="warning")
        self.cancel.on_click(lambda _button: task.cancel())
        self.out = w.Output()
        self.pane = w.Accordion(children=[self.out], titles=("output",))
        self.box = w.VBox(
            [w.HBox([self.name, self.bar, self.state, self.elapsed, self.cancel]), self.pane]
        )
        _tag(
            (self.box, "card"),
            (self.name, "card-name"),
            (self.state, "card-state"),
            (self.bar, "card-bar"),
            (self.elapsed, "card-elapsed"),
            (self.cancel, "card-cancel"),
        )
        self._stop = threading.Event()
        display(self.box)
        threading.Thread(target=self._tick, name="nbcache-card", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            if self.task.state in ("running", "cancelling"):
                self.elapsed.value = _elapsed_text(self.task)

    def output(self, kind: str, *payload: Any) -> None:
        """Thread-safe: appends to the card's own output, whatever cell runs now."""
        if kind == "stdout":
            self.out.append_stdout(payload[0])
        elif kind == "stderr":
            self.out.append_stderr(payload[0])
        elif kind == "display":
            self.out.append_display_data(payload[0])

    def update(self, task: Task[Any]) -> None:
        state = task.state
        self.state.value = state + (f" · {self.note}" if self.note and state == "done" else "")
        if task.total_steps:
            self.bar.max = task.total_steps
            self.bar.value = min(task.done_steps, task.total_steps)
        if self.bar.bar_style != "danger":  # a failure is never painted over
            self.bar.bar_style = _STYLE[state]
        if state == "cancelling":
            self.cancel.disabled = True  # asked once; the worker has yet to let go
            self.elapsed.value = _elapsed_text(task)
        if state in ("done", "failed", "cancelled"):
            self._stop.set()
            self.cancel.disabled = True
            self.elapsed.value = format_duration(task.elapsed)
            if state == "done":
                self.bar.max = max(self.bar.max, 1)
                self.bar.value = self.bar.max
            if state == "failed":
                self.out.append_stderr(_failure_text(task))
                self.pane.selected_index = 0


def make_card(
    task: Task[Any], widgets: bool, display: Callable[[Any], None], show: Callable[[str], None]
) -> TextCard | WidgetCard:
    """A card for ``task``, shown now, that follows the task's changes."""
    card: TextCard | WidgetCard = WidgetCard(task, display) if widgets else TextCard(task, show)
    task.on_change(card.update)
    return card


class CacheBrowser:
    """The store's entries as a table, with Delete and Prune buttons that act on the store."""

    def __init__(self, cache: Any, display: Callable[[Any], None]) -> None:
        import ipywidgets as w

        self.cache = cache
        self.table = w.HTML()
        self.totals = w.Label()
        self.choice = w.Select(options=[], rows=6, description="entry")
        self.delete = w.Button(description="Delete", icon="trash", button_style="danger")
        self.prune = w.Button(description="Prune to limit", icon="scissors")
        self.message = w.Label()
        self.delete.on_click(lambda _b: self.delete_selected())
        self.prune.on_click(lambda _b: self.prune_to_limit())
        self.box = w.VBox(
            [self.totals, self.table, w.HBox([self.choice, self.delete, self.prune]), self.message]
        )
        _tag(
            (self.box, "browser"),
            (self.table, "browser-table"),
            (self.choice, "browser-choice"),
            (self.delete, "browser-delete"),
            (self.prune, "browser-prune"),
            (self.message, "browser-message"),
        )
        self.refresh()
        display(self.box)

    def refresh(self) -> None:
        from html import escape

        from .listing import summary_lines

        records = sorted(self.cache.records(), key=lambda r: r.last_used, reverse=True)
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{escape(str(cell))}</td>" for cell in _browser_row(rec))
            + "</tr>"
            for rec in records
        )
        head = "".join(f"<th>{h}</th>" for h in _BROWSER_HEAD)
        self.table.value = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        self.totals.value = " · ".join(
            line.split(":", 1)[1].strip() for line in summary_lines(self.cache)[:4]
        )
        self.choice.options = [(f"{r.label or r.key[:12]} ({r.key[:8]})", r.key) for r in records]

    def delete_selected(self) -> None:
        key = self.choice.value
        if key:
            self.cache.remove(key)
            self.message.value = f"deleted {key[:12]}"
        self.refresh()

    def prune_to_limit(self) -> None:
        from ..cache.default import max_size

        removed = self.cache.prune(max_size=max_size())
        self.message.value = f"pruned {len(removed)} entries"
        self.refresh()


_BROWSER_HEAD = (
    "name",
    "first line",
    "size",
    "created",
    "last used",
    "uses",
    "computed in",
    "saved",
)


def _browser_row(rec: Any) -> tuple[str, ...]:
    from ..units import format_size
    from .listing import when

    return (
        rec.label or rec.key[:12],
        rec.first_line,
        format_size(rec.size),
        when(rec.created),
        when(rec.last_used),
        str(rec.uses),
        format_duration(rec.compute_seconds),
        format_duration(rec.compute_seconds * rec.uses),
    )


def browse(cache: Any = None, widgets: bool | None = None) -> Any:
    """Show the cache browser: a widget in a Jupyter kernel, a text table elsewhere.

    Returns the :class:`CacheBrowser` (or the table's lines as text).
    """
    from ..cache.default import default_cache
    from .listing import entries_table, summary_lines

    cache = cache or default_cache()
    if widgets is None:
        shell = _current_shell()
        widgets = widgets_wanted(shell)
    if widgets:
        from IPython.display import display

        return CacheBrowser(cache, display)
    records = cache.records()
    text = "\n".join([*summary_lines(cache), "", *(entries_table(records) if records else [])])
    print(text)
    return text


def _current_shell() -> Any:
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None
