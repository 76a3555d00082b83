"""The one line a cached cell shows: what was restored or computed, its size, its time.

Drawn from the runner's :class:`~nbcache.run.report.CellReport`, once as text (what
terminals, saved notebooks and nbconvert show) and once as a small widget with the
same words.  The size is the entry's size in the store, the figure the cache browser
and ``%nbcache list`` show for the same entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..run.report import CellReport
from ..units import format_duration, format_size
from .theme import escape, style_widget

__all__ = ["names_text", "publish_status", "status_html", "status_line", "status_widget"]

NAMES_SHOWN = 4  # names listed in full; past one more, "a, b, c and 9 more"
# Storing that took less than this is left out of a computed cell's line: it changes
# nothing the user could notice of what the cell cost.
STORE_SECONDS_SHOWN = 0.1
IMPORTS_NOTE = "imports only: a restore imports them again, so caching saves no time here"


def names_text(names: Sequence[str], limit: int = NAMES_SHOWN) -> str:
    """``df, model``; ``a, b, c and 9 more`` past ``limit`` + 1 names; ``no variables``."""
    if not names:
        return "no variables"
    if len(names) <= limit + 1:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])} and {len(names) - limit + 1} more"


def _where(report: CellReport) -> str:
    if report.where == "no-store":
        return "kept in memory (--no-store)"
    if report.where == "memory" or not report.size:
        return "kept in memory"
    if report.store_seconds >= STORE_SECONDS_SHOWN:
        return f"{format_size(report.size)} stored in {format_duration(report.store_seconds)}"
    return f"{format_size(report.size)} stored"


def _noted(line: str, report: CellReport) -> str:
    return f"{line} · {IMPORTS_NOTE}" if report.only_imports else line


def status_line(report: CellReport, *, prefix: str = "nbcache: ") -> str:
    """``nbcache: restored df, model (812 MB) in 0.41 s · computed in 3 min on 2026-11-21``;
    ``nbcache: computed answer in 1.0 s · 821 B stored``; ``nbcache: computed big in
    3.5 s · 2.0 GB stored in 4.5 s`` (the store's time, when it is worth saying);
    ``nbcache: resumed at step 412 of 1000, saved 3 min ago · restored total, history
    (8.0 MB) in 0.1 s``."""
    names = names_text(report.names)
    resumed = report.resumed
    if report.outcome == "resumed":
        text = resumed.text if resumed is not None else "resumed at a checkpoint"
        if not report.names:
            return f"{prefix}{text}"
        size = f" ({format_size(report.size)})" if report.size else ""
        return f"{prefix}{text} · restored {names}{size} in {format_duration(report.seconds)}"
    if report.outcome == "restored":
        size = f" ({format_size(report.size)})" if report.size else ""
        when = time.strftime("%Y-%m-%d", time.localtime(report.computed_at))
        return _noted(
            f"{prefix}restored {names}{size} in {format_duration(report.seconds)} · "
            f"computed in {format_duration(report.computed_seconds)} on {when}",
            report,
        )
    line = f"{prefix}computed {names} in {format_duration(report.seconds)} · {_where(report)}"
    return _noted(f"{line} · {resumed.text}" if resumed is not None else line, report)


def status_html(report: CellReport) -> str:
    """The status line as the widget shows it: a chip, then the words of the text line
    with the names in bold; every name in the tooltip."""
    line = escape(status_line(report, prefix=""))
    shown = escape(names_text(report.names))
    line = line.replace(shown, f"<b>{shown}</b>", 1)
    # a resumed cell goes on running: its chip is a running one until it reports again
    chip = {"restored": "hit", "resumed": "running"}.get(report.outcome, "done")
    return (
        f'<div class="nbcache-status-line" title="{escape(", ".join(report.names))}">'
        f'<span class="nbcache-chip" data-state="{chip}">nbcache</span> '
        f'<span class="nbcache-status-text">{line}</span></div>'
    )


def status_widget(report: CellReport) -> Any:
    """The status line as a widget (needs ipywidgets)."""
    import ipywidgets as w

    body = w.HTML(value=status_html(report))
    body.add_class("nbcache-status-body")
    box = w.VBox([style_widget(), body])
    box.add_class("nbcache-status")
    return box


def publish_status(
    report: CellReport,
    widgets: bool,
    publish: Callable[[dict[str, Any], dict[str, Any] | None], None],
) -> None:
    """Show the status line: a widget in a Jupyter front end, whose ``text/plain`` is the
    line itself; the line alone elsewhere."""
    line = status_line(report)
    metadata = {"nbcache": {"status": True}}
    if not widgets:
        publish({"text/plain": line}, metadata)
        return
    bundle = dict(status_widget(report)._repr_mimebundle_() or {})
    bundle["text/plain"] = line
    publish(bundle, metadata)
