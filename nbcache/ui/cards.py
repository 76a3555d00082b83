"""The card of a background cell: a widget in a Jupyter front end, lines of text elsewhere.

Both forms are drawn from one :class:`CardView`, a plain record of what the card says
(name, state, progress, times, the result, the failure), built from the task by
:func:`card_view`; only :class:`WidgetCard` imports ipywidgets.

The widget card is a ``VBox`` of a few built-in controls: one ``HTML`` widget for the
text and the bar (styled by :mod:`nbcache.ui.theme`), a Cancel ``Button`` that is
there only while cancelling can still act, and an ``Output`` in an ``Accordion`` that
opens while output arrives and folds when the task ends.  All of it is widget state,
so a page reload, or a notebook closed and opened again while the task runs, shows the
live card with all of its output.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..run.report import CellReport
from ..tasks.task import Task
from ..units import format_duration, format_size
from .status import names_text
from .theme import escape, style_widget

__all__ = ["CardView", "TextCard", "WidgetCard", "card_view", "make_card", "render_card"]

ENDED = ("done", "failed", "cancelled")
TICK = 0.25  # seconds between redraws of a running card (progress can come much faster)
_OWN_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@dataclass(frozen=True)
class CardView:
    """What a task card says, in plain data (the widget and the text are drawn from it)."""

    name: str
    state: str
    done_steps: int
    total_steps: int | None
    elapsed: float
    rate: float | None  # steps a second
    left: float | None  # seconds, estimated
    result: CellReport | None  # what the body made, once it was kept
    location: str  # where the store is, for the result line
    error: str  # ``ValueError: late failure``
    traceback: str
    resumed: str = ""  # ``resumed at step 412 of 1000, saved 3 min ago``; "": from the start

    @property
    def fraction(self) -> float | None:
        """How far the bar is filled, 0..1; None when there is no telling (no total)."""
        if self.state == "done":
            return 1.0
        if self.total_steps:
            return min(self.done_steps / self.total_steps, 1.0)
        return None

    @property
    def count(self) -> str:
        """``37 / 100 · 9.8 it/s``; ``37 steps``; "" before any progress."""
        if not self.total_steps and not self.done_steps:
            return ""
        text = (
            f"{self.done_steps:,} / {self.total_steps:,}"
            if self.total_steps
            else (f"{self.done_steps:,} steps")
        )
        if self.rate and self.state not in ENDED:
            text += " · " + (
                f"{self.rate:.1f} it/s" if self.rate >= 0.5 else f"{1 / self.rate:.1f} s/it"
            )
        return text

    @property
    def timing(self) -> str:
        """``elapsed 12 s · about 28 s left``, ``took 1.0 s``, ``waiting to start``."""
        took = format_duration(self.elapsed)
        if self.state == "queued":
            return "waiting to start"
        if self.state == "running":
            if self.left is None:
                return f"elapsed {took}"
            if self.left <= 0:
                return f"elapsed {took} · taking longer than last time"
            return f"elapsed {took} · about {format_duration(self.left)} left"
        if self.state == "cancelling":
            return f"elapsed {took} · stopping at its next progress step"
        verb = {"done": "took", "failed": "failed after", "cancelled": "cancelled after"}
        return f"{verb[self.state]} {took}"

    @property
    def outcome(self) -> str:
        """What a done task made, as text: ``computed x, y · 821 B stored in .nbcache``."""
        if self.state != "done":
            return ""
        if self.result is None:
            return ""
        made = f"computed {names_text(self.result.names)}"
        if self.result.where != "store" or not self.result.size:
            why = " (--no-store)" if self.result.where == "no-store" else ""
            return f"{made} · kept in memory{why}"
        where = f" in {self.location}" if self.location else ""
        return f"{made} · {format_size(self.result.size)} stored{where}"


def card_view(task: Task[Any], result: CellReport | None = None, location: str = "") -> CardView:
    """The card of ``task`` as it is now."""
    state = task.state
    elapsed = task.elapsed
    rate = task.rate
    left: float | None = None
    if state == "running":
        if task.total_steps and rate:
            left = (task.total_steps - task.done_steps) / rate
        elif task.expected:
            left = task.expected - elapsed
    error = tb = ""
    if state == "failed":
        exc = task.future.exception()
        if exc is not None:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            tb = failure_text(task)
    resumed = task.resumed
    if not resumed and result is not None and result.resumed is not None:
        resumed = result.resumed.text
    return CardView(
        task.name,
        state,
        task.done_steps,
        task.total_steps,
        elapsed,
        rate,
        left,
        result,
        location,
        error,
        tb,
        resumed,
    )


def failure_text(task: Task[Any]) -> str:
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
    shown = traceback.TracebackException(type(exc), exc, tb)
    cells = _cell_files()
    for frame in shown.stack:
        if frame.filename in cells:  # IPython's own name for a cell: Cell In[5]
            frame.filename = f"Cell In[{cells[frame.filename]}]"
    return "".join(shown.format())


def _cell_files() -> dict[str, int]:
    """The files IPython compiled cells into, and the cells' numbers."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    mapping = getattr(getattr(shell, "compile", None), "_filename_map", None)
    return dict(mapping) if isinstance(mapping, dict) else {}


# -- the text card ------------------------------------------------------------------


def text_lines(view: CardView) -> list[str]:
    """The card as the text twin says it, when the task has ended (or it is starting)."""
    if view.state not in ENDED:
        return [f"nbcache: {view.name} runs in the background (%nbcache wait to block on it)"]
    line = f"nbcache: {view.name} {view.state} after {format_duration(view.elapsed)}"
    if view.outcome:
        line += f" · {view.outcome}"
    if view.resumed:
        line += f" · {view.resumed}"
    if view.state == "failed" and view.traceback:
        return [line, view.traceback]
    return [line]


def plain_text(view: CardView) -> str:
    """The card's ``text/plain``, what a notebook saved without widget state shows: the
    running line while it runs, then how it ended, with the error's line if it failed."""
    line = text_lines(view)[0]
    if view.state == "failed" and view.error:
        return f"{line}\n{view.error}"
    return line


class TextCard:
    """A task's card as lines of text: started, then how it ended."""

    def __init__(self, task: Task[Any], show: Callable[[str], None]) -> None:
        self.task = task
        self._show = show
        self.result: CellReport | None = None
        self._ended = False
        self._cancelling = False
        self._resumed = ""
        show(text_lines(card_view(task))[0])

    def finished(self, report: CellReport) -> None:
        """What the body made, for the line that says the task ended."""
        self.result = report

    def output(self, kind: str, *payload: Any) -> None:
        """Output of the body, kept for the end (text has nowhere else to put it)."""

    def update(self, task: Task[Any]) -> None:
        if task.resumed and not self._resumed and task.state not in ENDED:
            self._resumed = task.resumed  # said at once: the end may be hours away
            self._show(f"nbcache: {task.name} {task.resumed}")
        if task.state == "cancelling" and not self._cancelling:
            self._cancelling = True
            self._show(f"nbcache: {task.name} cancelling: it stops at its next progress step")
        if task.state in ENDED and not self._ended:
            self._ended = True
            for line in text_lines(card_view(task, self.result, store_location())):
                self._show(line)


# -- the widget card ----------------------------------------------------------------


def render_card(view: CardView) -> str:
    """The card's text and bar as HTML (the body of the card's ``HTML`` widget)."""
    fraction = view.fraction
    busy = fraction is None and view.state in ("running", "cancelling")
    width = 0.0 if fraction is None else fraction * 100
    bar = (
        f'<div class="nbcache-card-bar" data-state="{view.state}"'
        f'{" data-busy" if busy else ""} role="progressbar"'
        f' aria-valuenow="{width:.0f}" aria-valuemin="0" aria-valuemax="100">'
        f'<div class="nbcache-card-fill" style="width: {width:.1f}%"></div></div>'
    )
    count = f'<span class="nbcache-card-count">{escape(view.count)}</span>' if view.count else ""
    parts = [
        f'<div class="nbcache-progress">{bar}{count}</div>',
        f'<div class="nbcache-card-time">{escape(view.timing)}</div>',
    ]
    if view.resumed:
        parts.append(f'<div class="nbcache-card-resumed">{escape(view.resumed)}</div>')
    if view.outcome:
        parts.append(f'<div class="nbcache-card-result">{_bold_names(view)}</div>')
    if view.error:
        parts.append(f'<div class="nbcache-card-error">{escape(view.error)}</div>')
        parts.append(f'<pre class="nbcache-card-tb">{escape(view.traceback.rstrip())}</pre>')
    return "".join(parts)


def _bold_names(view: CardView) -> str:
    text = escape(view.outcome)
    if view.result is not None and view.result.names:
        shown = escape(names_text(list(view.result.names)))
        text = text.replace(shown, f"<b>{shown}</b>", 1)
    return text


def render_head(view: CardView) -> str:
    """The card's first line: the name in full (an ellipsis and a tooltip only past 60
    characters or the card's width) and the state as a chip."""
    label = "cancelling…" if view.state == "cancelling" else view.state
    return (
        f'<div class="nbcache-head"><span class="nbcache-card-name" title="{escape(view.name)}">'
        f"{escape(view.name)}</span> "
        f'<span class="nbcache-chip nbcache-card-state" data-state="{view.state}">'
        f"{escape(label)}</span></div>"
    )


class _Shown:
    """A widget displayed with a text twin as its ``text/plain``: what terminals,
    nbconvert and viewers without the widget's state show instead of a repr."""

    def __init__(self, widget: Any, text: str) -> None:
        self.widget = widget
        self.text = text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.text
        return bundle


def shown_with_text(widget: Any, text: str) -> Any:
    """``widget`` to display, with ``text`` as what non-widget front ends show."""
    return _Shown(widget, text)


class WidgetCard:
    """A task's card: name, state chip, Cancel, progress bar with count and rate, times,
    the result once done, the traceback on failure, and the cell's output."""

    def __init__(self, task: Task[Any], display: Callable[[Any], Any]) -> None:
        """``display`` shows the card; what it returns, if it has ``update`` (IPython's
        display handle), replaces the card's text form when the task ends."""
        import ipywidgets as w

        self.task = task
        self.result: CellReport | None = None
        self.location = ""
        view = card_view(task)
        self.head = w.HTML(value=render_head(view))
        self.cancel = w.Button(description="Cancel", tooltip="Stop at the next progress step")
        self.cancel.on_click(lambda _button: task.cancel())
        self.top = w.HBox([self.head, self.cancel])
        self.body = w.HTML(value=render_card(view))
        self.out = w.Output()
        self.pane = w.Accordion(children=[self.out], titles=("output",), selected_index=None)
        self.pane.layout.display = "none"  # until there is output to show
        self.box = w.VBox([style_widget(), self.top, self.body, self.pane])
        for widget, part in (
            (self.box, "card"),
            (self.top, "card-top"),
            (self.head, "card-head"),
            (self.cancel, "card-cancel"),
            (self.body, "card-body"),
            (self.pane, "card-pane"),
            (self.out, "card-output"),
        ):
            widget.add_class(f"nbcache-{part}")
        self._lines = 0
        self._state = view.state
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._ended = False
        self._text = plain_text(view)
        self._handle = display(shown_with_text(self.box, self._text))
        threading.Thread(target=self._tick, name="nbcache-card", daemon=True).start()

    def finished(self, report: CellReport) -> None:
        """What the body made, shown on the card's second line once the task is done."""
        self.location = store_location()
        self.result = report
        if self._ended:
            self._retell()

    def _tick(self) -> None:
        """Redraw a running card a few times a second: its clock moves, and progress that
        comes thousands of times a second costs a few messages, not thousands."""
        last = 0.0
        while not self._stop.wait(TICK):
            if self.task.state in ("running", "cancelling") and (
                self._dirty.is_set() or time.monotonic() - last >= 1.0
            ):
                self._dirty.clear()
                last = time.monotonic()
                self._draw()

    def _draw(self) -> None:
        with self._lock:
            if self._ended and self.task.state not in ENDED:
                return
            view = card_view(self.task, self.result, self.location)
            head, body = render_head(view), render_card(view)
            if self.head.value != head:
                self.head.value = head
            if self.body.value != body:
                self.body.value = body

    def output(self, kind: str, *payload: Any) -> None:
        """Thread-safe: appends to the card's own output, whatever cell runs now, and
        opens the output pane."""
        if kind == "stdout":
            self.out.append_stdout(payload[0])
        elif kind == "stderr":
            self.out.append_stderr(payload[0])
        elif kind == "display":
            self.out.append_display_data(payload[0])
        else:
            return
        self._lines += str(payload[0]).count("\n") if kind != "display" else 1
        if self.pane.layout.display == "none":
            self.pane.layout.display = None
            self.pane.selected_index = 0
        title = f"output · {self._lines} line{'s' if self._lines != 1 else ''}"
        if kind != "display" and self.pane.get_title(0) != title:
            self.pane.set_title(0, title)

    def update(self, task: Task[Any]) -> None:
        """Follow the task: state changes draw at once, progress at the next tick."""
        state = task.state
        if state not in ENDED and state != "cancelling" and not self._changed_state(state):
            self._dirty.set()
            return
        if state == "cancelling" or state in ENDED:
            self.top.children = (self.head,)  # Cancel is there only while it can act
        if state in ENDED:
            self._stop.set()
            self._ended = True
            if self.pane.layout.display != "none":
                self.pane.selected_index = None  # folded: the result line says the rest
        self._draw()
        if state in ENDED:
            self._retell()

    def _retell(self) -> None:
        """Replace the card's text form with how the task ended: a notebook saved
        without widget state would otherwise say it still runs."""
        update = getattr(self._handle, "update", None)
        text = plain_text(card_view(self.task, self.result, self.location))
        if update is None or text == self._text:
            return
        self._text = text
        update(shown_with_text(self.box, text))

    def _changed_state(self, state: str) -> bool:
        before, self._state = self._state, state
        return before != state


def store_location() -> str:
    """The default store's location as a user reads it: relative to the working folder
    when inside it, ``~/...`` inside the home folder."""
    from ..cache.default import default_cache

    store = default_cache().store
    return short_path(str(store.location)) if store is not None else ""


def short_path(location: str) -> str:
    """``.nbcache`` for a folder in the working folder, ``~/x`` in the home folder."""
    if "://" in location:
        return location
    here = os.getcwd() + os.sep
    if location.startswith(here):
        return location[len(here) :]
    home = os.path.expanduser("~") + os.sep
    return "~" + os.sep + location[len(home) :] if location.startswith(home) else location


def make_card(
    task: Task[Any], widgets: bool, display: Callable[[Any], Any], show: Callable[[str], None]
) -> TextCard | WidgetCard:
    """A card for ``task``, shown now, that follows the task's changes."""
    card: TextCard | WidgetCard = WidgetCard(task, display) if widgets else TextCard(task, show)
    task.on_change(card.update)
    return card
