"""``nbcache run --plan``: what a run would do with each cell, and why, computed in a
fresh kernel of the kind the run uses (so keys see the same modules and settings),
without executing any cell body."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache.default import default_cache
from ..run.plan import PlanRow, plan
from ..units import format_duration
from . import nbjson
from .runner import absolute_store, execute, kernel_environment, read_notebook, require_python
from .unchanged import Restored, Whole

__all__ = ["NotebookPlan", "plan_notebook", "write_plan"]


@dataclass(frozen=True)
class NotebookPlan:
    """One row per code cell, numbered as the notebook's cells are (Markdown counted)."""

    rows: list[PlanRow]
    error: str | None = None
    # the notebook is unchanged since its record was made: the run starts no kernel
    unchanged: bool = False

    def lines(self) -> list[str]:
        if self.error:
            return [f"nbcache run --plan: {self.error}"]
        out = [row.line() for row in self.rows]
        runs = [r for r in self.rows if r.action == "run"]
        depends = [r for r in self.rows if r.action == "depends"]
        restores = len(self.rows) - len(runs) - len(depends)
        counts = f"{len(self.rows)} code cells: {restores} restore, {len(runs)} run"
        if depends:
            counts += f", {len(depends)} run or restore"
        out.append(f"nbcache run --plan: {counts}; {_estimate(runs, depends)}")
        if self.unchanged:
            out.append(f"nbcache run --plan: {NO_KERNEL}")
        return out


NO_KERNEL = "unchanged: no kernel would start; every cell restores from the notebook's record"


def _unchanged_rows(nb: Any, done: Restored) -> list[PlanRow]:
    """The rows of a notebook the run writes from its record: each cell restores, as the
    run's record of it will say (the run's ``why`` says "started" where this says
    "would start")."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    rows = []
    for index, why, seconds in done.cells:
        cell = nb.cells[index]
        first = cell.source.strip().splitlines()[0][:80]
        why = why.replace("no kernel started", "no kernel would start")
        row = PlanRow(code.index(index), index + 1, cell.get("id"), first, "restore", (why,))
        rows.append(dataclasses.replace(row, seconds=seconds, decided="restore"))
    return rows


def write_plan(cells_file: str, rows_file: str) -> None:
    """In the kernel ``nbcache run --plan`` starts: plan the cells in ``cells_file`` (a
    JSON list of ``{"id", "source", "number"}``) against this kernel's cache and write
    the rows to ``rows_file`` as JSON. Nothing of the cells runs."""
    import IPython

    shell: Any = IPython.get_ipython()
    with open(cells_file, encoding="utf-8") as f:
        given = json.load(f)
    cells = [(c.get("id"), str(c["source"])) for c in given]
    numbers = [int(c.get("number", i + 1)) for i, c in enumerate(given)]
    # What IPython put in the namespace when it started, as a fresh kernel has it.
    hidden = getattr(shell, "user_ns_hidden", {})
    initial = {k: v for k, v in shell.user_ns.items() if k in hidden}
    # %matplotlib runs here as in the run: this kernel is a scratch one, gone after the plan
    replay = functools.partial(shell.run_line_magic, "matplotlib")
    rows = plan(cells, default_cache(), shell.transform_cell, initial, numbers, replay)
    with open(rows_file, "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(row) for row in rows], f)


def _estimate(runs: list[PlanRow], depends: list[PlanRow]) -> str:
    """How long the cells that execute should take, from their past runs: every cell that
    runs (those that always run included), and, as an upper bound, those that may restore.
    A cell never timed with this store gives nothing to estimate from, which is said, not
    counted as 0."""
    if not runs and not depends:
        return "nothing to run"
    said = _seconds(runs, "the cells that run") if runs else "nothing certain to run"
    if depends:
        said += f"; {_seconds(depends, 'those that may restore instead')}"
    return said


def _seconds(rows: list[PlanRow], what: str) -> str:
    known = [r.seconds for r in rows if r.seconds is not None]
    if not known:
        return f"no estimate for {what}: none has run before with this store"
    took = format_duration(sum(known))
    if len(known) < len(rows):
        never = len(rows) - len(known)
        return f"more than {took} for {what} ({never} of {len(rows)} never timed with this store)"
    return f"about {took} for {what} (from past runs)"


def plan_notebook(
    path: str | os.PathLike[str],
    *,
    store: str | None = None,
    kernel: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> NotebookPlan:
    """The plan of ``nbcache run`` on the notebook at ``path`` with these options."""
    import importlib

    source = Path(path)
    # nbformat only for a kernel: importing it takes seconds (see nbcache.notebooks.nbjson)
    nb = (None if parameters else nbjson.read(source)) or read_notebook(source, parameters)
    require_python(nb, source, kernel)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with tempfile.TemporaryDirectory(prefix="nbcache-plan-") as scratch:
        # the run's environment, its cell log included, names the record the run reads
        log = os.path.join(scratch, "cells.jsonl")
        env = kernel_environment(store=absolute_store(store), log=log)
        whole = Whole.of(nb, source.parent, env, kernel)
        done = whole.would_restore(nb) if whole is not None else None
        if done is not None:
            return NotebookPlan(_unchanged_rows(nb, done), unchanged=True)
        cells_file = os.path.join(scratch, "cells.json")
        rows_file = os.path.join(scratch, "plan.json")
        with open(cells_file, "w", encoding="utf-8") as f:
            cells = [{"id": c.get("id"), "source": c.source, "number": i + 1} for i, c in code]
            json.dump(cells, f)
        nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
        request = nbformat.v4.new_notebook()
        request.cells = [
            nbformat.v4.new_code_cell(
                "from nbcache.notebooks.plan import write_plan\n"
                f"write_plan({cells_file!r}, {rows_file!r})"
            )
        ]
        env.pop("NBCACHE_AUTO", None)  # the request itself is no cell of the notebook
        env.pop("NBCACHE_AUTO_LOG", None)
        error = execute(request, source.parent, env, kernel=kernel)
        if error is not None:
            return NotebookPlan([], error)
        with open(rows_file, encoding="utf-8") as f:
            rows = json.load(f)
    return NotebookPlan([PlanRow(**row) for row in rows])
