"""A cell that prints 20 MB (in lines of 1 KB), in real kernels: plain, under ``%%cache``
and under ``nbcache run``.

Each round, in this process, through nbclient with the ``python3`` kernel:

1. plain: the one-cell notebook as ``jupyter execute`` runs it;
2. ``%%cache``: the same cell under ``%%cache`` after a ``%load_ext nbcache`` cell, on
   an empty store (a miss: the output is recorded and stored as it shows);
3. ``nbcache run`` (``nbcache.notebooks.runner.run_notebook``) on an empty store;
4. ``nbcache run`` again on that store (the cell restores), for context.

Times are wall seconds of the whole run, kernel start and stop included; the cell
rows are the cell's own time, from the kernel's messages nbclient records
(``iopub.execute_input`` to ``shell.execute_reply``).
"""

from __future__ import annotations

import datetime
import importlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from nbcache.units import format_size

from .common import Group, Row, Settings, at_most, nbcache_environ, write_notebook

__all__ = ["GROUP", "NAMES", "PRINT_BYTES", "run"]

PRINT_BYTES = 20_000_000
LINE = 1024  # bytes a print writes, newline included
TIMEOUT = 600

PLAIN = "plain run (jupyter execute)"
CACHE = "%%cache, empty store"
RUN = "nbcache run, empty store"
RUN_AGAIN = "nbcache run again (restores)"
CACHE_VS = "%%cache / plain, whole run"
RUN_VS = "nbcache run / plain, whole run"
PLAIN_CELL = "plain: the cell alone"
CACHE_CELL = "%%cache: the cell alone"
RUN_CELL = "nbcache run: the cell alone"
NAMES = (
    PLAIN,
    CACHE,
    RUN,
    RUN_AGAIN,
    CACHE_VS,
    RUN_VS,
    PLAIN_CELL,
    CACHE_CELL,
    RUN_CELL,
)

TARGET = at_most(1.2)


def cell(nbytes: int) -> str:
    """A cell that prints ``nbytes`` in lines of :data:`LINE` bytes."""
    return f"for _ in range({max(1, nbytes // LINE)}):\n    print('x' * {LINE - 1})\n"


def _nbformat() -> Any:
    return importlib.import_module("nbformat")  # untyped: kept at arm's length


def _cell_seconds(nb: Any) -> float:
    """The last code cell's own time, as the kernel's messages date it."""
    timing = nb.cells[-1].metadata["execution"]

    def at(name: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(str(timing[name]).replace("Z", "+00:00"))

    return (at("shell.execute_reply") - at("iopub.execute_input")).total_seconds()


def _plain(path: Path) -> tuple[float, float]:
    """``jupyter execute PATH`` in this process: the whole run's seconds and the cell's."""
    from nbclient import NotebookClient

    nbformat = _nbformat()

    start = time.perf_counter()
    nb = nbformat.read(os.fspath(path), as_version=4)
    NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    nbformat.write(nb, os.fspath(path.with_suffix(".out.ipynb")))  # as jupyter execute does
    return time.perf_counter() - start, _cell_seconds(nb)


_RUNS: list[str] = []


def _nbcache(path: Path, store: Path) -> tuple[float, float, str]:
    """``nbcache run PATH`` in this process: the run's seconds, the cell's, and the
    outcome of the cell."""
    from nbcache.notebooks.runner import run_notebook

    # A variable of nbcache's own that differs on every run keys the notebook record
    # apart, so a rerun is never the no-kernel notebook hit: this row measures a restored
    # cell's output replayed in a kernel.
    _RUNS.append(path.name)
    os.environ["NBCACHE_BENCHMARK_RUN"] = str(len(_RUNS))
    try:
        start = time.perf_counter()
        nb, summary = run_notebook(path, out=path.with_suffix(".out.ipynb"), store=str(store))
        seconds = time.perf_counter() - start
    finally:
        os.environ.pop("NBCACHE_BENCHMARK_RUN", None)
    if summary.error:
        raise RuntimeError(f"nbcache run {path.name} stopped: {summary.error}")
    return seconds, _cell_seconds(nb), summary.cells[-1].outcome


def run(settings: Settings) -> list[Row]:
    folder = settings.directory / "printing"
    rounds = max(1, min(settings.repeat, 3))
    body = cell(PRINT_BYTES)
    got: dict[str, list[float]] = {name: [] for name in NAMES}
    outcome = ""
    try:
        for r in range(rounds):
            work = folder / f"{r}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            with nbcache_environ(work / "cache-store", NBCACHE_AUTO=None):
                settings.say(f"printing: plain ({r + 1}/{rounds})")
                write_notebook([body], work / "plain.ipynb")
                seconds, alone = _plain(work / "plain.ipynb")
                got[PLAIN].append(seconds)
                got[PLAIN_CELL].append(alone)
                settings.say(f"printing: %%cache ({r + 1}/{rounds})")
                write_notebook(["%load_ext nbcache", "%%cache\n" + body], work / "cache.ipynb")
                seconds, alone = _plain(work / "cache.ipynb")
                got[CACHE].append(seconds)
                got[CACHE_CELL].append(alone)
                settings.say(f"printing: nbcache run ({r + 1}/{rounds})")
                write_notebook([body], work / "run.ipynb")
                seconds, alone, _ = _nbcache(work / "run.ipynb", work / "run-store")
                got[RUN].append(seconds)
                got[RUN_CELL].append(alone)
                seconds, _, outcome = _nbcache(work / "run.ipynb", work / "run-store")
                got[RUN_AGAIN].append(seconds)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _rows(got, outcome)


def _rows(got: dict[str, list[float]], outcome: str) -> list[Row]:
    group = f"a cell that prints {format_size(PRINT_BYTES)}"
    plain, cache, run_ = min(got[PLAIN]), min(got[CACHE]), min(got[RUN])
    return [
        Row(group, PLAIN, tuple(got[PLAIN])),
        Row(group, CACHE, tuple(got[CACHE])),
        Row(group, RUN, tuple(got[RUN])),
        Row(group, RUN_AGAIN, tuple(got[RUN_AGAIN]), versus=f"the cell {outcome}"),
        Row(group, CACHE_VS, share=cache / plain, target=TARGET, versus="best / best"),
        Row(group, RUN_VS, share=run_ / plain, target=TARGET, versus="best / best"),
        Row(group, PLAIN_CELL, tuple(got[PLAIN_CELL])),
        Row(group, CACHE_CELL, tuple(got[CACHE_CELL])),
        Row(group, RUN_CELL, tuple(got[RUN_CELL])),
    ]


GROUP = Group(
    "printing",
    "a cell that prints 20 MB: plain, %%cache and nbcache run",
    run,
    notes=(
        "One code cell prints 20 MB in lines of 1 KB (`print('x' * 1023)` in a loop), in a "
        "fresh python3 kernel each run, through nbclient in this process; at most 3 rounds.",
        "Plain: nbclient's NotebookClient (what `jupyter execute` does), the executed "
        "notebook written. %%cache: a `%load_ext nbcache` cell, then the cell under "
        "`%%cache` on an empty store, run the same way. nbcache run: "
        "nbcache.notebooks.runner.run_notebook on an empty store, then again (the cell "
        "restores).",
        "Whole-run times include the kernel's start and stop and nbcache's import in the "
        "kernel; the cell rows are the cell's own time from the kernel's messages. An entry "
        "keeps the first and the last million characters of a cell's output "
        "(nbcache.run.output), so the restore shows 2 MB and says what it left out.",
    ),
)
