"""The task card of a background cell, as ipywidgets or as plain text lines.

Which one is decided explicitly, never guessed from what happens to be
imported: widgets when the shell is a Jupyter kernel and ipywidgets imports,
text otherwise; ``NBCACHE_WIDGETS=1`` or ``0`` overrides it.  ipywidgets is
imported only when a widget card is made.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .futures import Task
from .units import format_duration

__all__ = ["TextCard", "WidgetCard", "make_card", "widgets_wanted"]

_STYLE = {
    "queued": "info",
    "running": "info",
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


def _failure_text(task: Task[Any]) -> str:
    exc = task.future.exception()
    if exc is None:
        return ""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class TextCard:
    """A task's card as lines of text: started, then how it ended."""

    def __init__(self, task: Task[Any], show: Callable[[str], None]) -> None:
        self.task = task
        self._show = show
        self.note = ""
        self._ended = False
        show(f"nbcache: {task.name} runs in the background (%nbcache wait to block on it)")

    def output(self, kind: str, *payload: Any) -> None:
        """Output of the body, kept for the end (text has nowhere else to put it)."""

    def update(self, task: Task[Any]) -> None:
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
        self._stop = threading.Event()
        display(self.box)
        threading.Thread(target=self._tick, name="nbcache-card", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            if self.task.state == "running":
                self.elapsed.value = format_duration(self.task.elapsed)

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
