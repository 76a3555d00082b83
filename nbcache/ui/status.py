"""The one line a cached cell shows: what was restored or computed, its size, its time."""

from __future__ import annotations

import time

from ..run.report import CellReport
from ..units import format_duration, format_size

__all__ = ["status_line"]


def status_line(report: CellReport, *, prefix: str = "nbcache: ") -> str:
    """``nbcache: restored df, model (812 MB) in 0.41 s · computed in 3 min on 2026-11-21``."""
    names = _names(report.names)
    if report.outcome == "restored":
        size = f" ({format_size(report.size)})" if report.size else ""
        when = time.strftime("%Y-%m-%d", time.localtime(report.computed_at))
        return (
            f"{prefix}restored {names}{size} in {format_duration(report.seconds)} · "
            f"computed in {format_duration(report.computed_seconds)} on {when}"
        )
    if report.where == "no-store":
        where = "kept in memory (--no-store)"
    elif report.where == "memory" or not report.size:
        where = "kept in memory"
    else:
        where = f"stored ({format_size(report.size)})"
    return f"{prefix}computed {names} in {format_duration(report.seconds)} · {where}"


def _names(names: tuple[str, ...], limit: int = 6) -> str:
    if not names:
        return "no variables"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
