"""The log a driven kernel writes, one JSON record per cell it ran or warned in, read by
the driver that started it (``nbcache run`` and papermill's engine)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["first_code_line", "logged_warnings", "read_log", "warnings_of"]


def read_log(log: str, offset: int = 0) -> list[dict[str, Any]]:
    """The records a driven kernel wrote to its cell log ``log`` from ``offset`` on."""
    try:
        with open(log, encoding="utf-8") as f:
            f.seek(offset)
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def logged_warnings(nb: Any, log: str, offset: int = 0) -> list[tuple[int | None, str, str]]:
    """The warnings in the cell log ``log`` from ``offset`` on, each with its cell of ``nb``."""
    return warnings_of(nb, [r for r in read_log(log, offset) if "warning" in r])


def warnings_of(nb: Any, records: list[dict[str, Any]]) -> list[tuple[int | None, str, str]]:
    """Each warning record with the cell it came from (its index and first line)."""
    where = {str(c.get("id")): (i, c) for i, c in enumerate(nb.cells)}
    out: list[tuple[int | None, str, str]] = []
    for record in records:
        index, cell = where.get(str(record.get("cell_id")), (None, None))
        first = first_code_line(cell.source) if cell is not None else ""
        out.append((index, first, str(record["warning"]).strip()))
    return out


def first_code_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 40 else line[:39] + "…"
