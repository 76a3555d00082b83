"""``nbcache run --plan``: what a run would do with each cell, and why, computed in a
fresh kernel of the kind the run uses (so keys see the same modules and settings),
without executing any cell body."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..units import format_duration
from .runner import absolute_store, execute, kernel_environment, read_notebook, require_python

__all__ = ["NotebookPlan", "plan_notebook"]


@dataclass(frozen=True)
class NotebookPlan:
    """One row per code cell: ``index`` (among the notebook's cells), ``action``,
    ``reasons``, ``seconds`` (its last run), ``first_line``."""

    rows: list[dict[str, Any]]
    error: str | None = None

    def lines(self) -> list[str]:
        if self.error:
            return [f"nbcache run --plan: {self.error}"]
        out = []
        for row in self.rows:
            took = f" ({format_duration(row['seconds'])})" if row.get("seconds") is not None else ""
            why = "; ".join(row["reasons"])
            out.append(
                f"cell {row['index'] + 1} `{row['first_line']}`: {row['action']}{took}: {why}"
            )
        runs = [r for r in self.rows if r["action"] == "run"]
        counts = f"{len(self.rows) - len(runs)} restore, {len(runs)} run"
        out.append(f"nbcache run --plan: {counts}, {_estimate(runs)}")
        return out


def _estimate(runs: list[dict[str, Any]]) -> str:
    """How long the cells that run should take, from their past runs; a cell that never
    ran with this store gives nothing to estimate from, which is said, not counted as 0."""
    if not runs:
        return "nothing to run"
    known = [r["seconds"] for r in runs if r.get("seconds") is not None]
    if not known:
        return "no estimate: no cell to run has run before with this store"
    took = format_duration(sum(known))
    if len(known) < len(runs):
        never = len(runs) - len(known)
        return (
            f"expected to take more than {took} (the past runs of {len(known)} of them; "
            f"{never} never ran with this store)"
        )
    return f"expected to take about {took} (from past runs)"


def plan_notebook(
    path: str | os.PathLike[str],
    *,
    store: str | None = None,
    kernel: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> NotebookPlan:
    """The plan of ``nbcache run`` on the notebook at ``path`` with these options."""
    import importlib

    nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
    source = Path(path)
    nb = read_notebook(source, parameters)
    require_python(nb, source, kernel)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with tempfile.TemporaryDirectory(prefix="nbcache-plan-") as scratch:
        cells_file = os.path.join(scratch, "cells.json")
        rows_file = os.path.join(scratch, "plan.json")
        with open(cells_file, "w", encoding="utf-8") as f:
            cells = [{"id": c.get("id"), "source": c.source, "number": i + 1} for i, c in code]
            json.dump(cells, f)
        request = nbformat.v4.new_notebook()
        request.cells = [
            nbformat.v4.new_code_cell(
                f"%nbcache plan --cells {json.dumps(cells_file)} --json {json.dumps(rows_file)}"
            )
        ]
        env = kernel_environment(store=absolute_store(store))
        env.pop("NBCACHE_AUTO", None)  # the request itself is no cell of the notebook
        error = execute(request, source.parent, env, kernel=kernel)
        if error is not None:
            return NotebookPlan([], error)
        with open(rows_file, encoding="utf-8") as f:
            rows = json.load(f)
    by_cell = {row["index"]: row for row in rows}
    out = []
    for position, (index, _cell) in enumerate(code):
        row = by_cell.get(position)
        if row is not None:
            out.append({**row, "index": index})
    return NotebookPlan(out)
