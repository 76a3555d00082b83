"""What nbcache itself spends on each cell a whole-notebook run restores.

``nbcache run`` sends the cells that may restore to the kernel in one request, and
the kernel restores them one after the other (:mod:`nbcache.notebooks.batchside`):
each is transformed, keyed, checked against its entry's signed header and put back,
then run through IPython's ``run_cell`` so that history, ``Out`` and the prompt
counter are as a plain run leaves them. This group times that request in this
process, as the kernel runs it:

1. a fresh ``InteractiveShell`` set up as the kernel of ``nbcache run`` is (auto mode
   ``lazy``, a cell log, nbcache's hooks of a driven kernel) runs the notebook's
   cells once, storing every one;
2. each round, a fresh shell on a new ``Cache`` of that store (as a new kernel: nothing
   in memory) gets the cells with the last one edited, as the driver sends them after
   an edit of the last cell, and ``batchside.restore`` restores every cell before it.
   Its CPU time (``time.process_time``) over the cells it restored is the row;
3. the same cells' text run plain, nbcache not loaded, each under ``if False:``
   (transformed, parsed, compiled, stored in the history, never executed): what IPython
   costs a cell of a plain run besides its body, which is not nbcache's.

nbcache's own time per restored cell is the first minus the third.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import textwrap
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .common import Group, Row, Settings, Target, environ, nbcache_environ
from .notebook_overhead import CELLS, SETUP

__all__ = ["GROUP", "NOTEBOOKS", "SMALL", "restore_batch", "run"]

# Forty one- and two-line cells, each reading the cell before it: the shape that makes
# a notebook's restores many and its bodies cheap.
SMALL: tuple[str, ...] = (
    "import math\nimport json",
    *(
        f"v{i} = {i} * 3 + (v{i - 1} if {i} > 1 else 0)\nprint('v{i}', v{i})"
        if i % 3 == 0
        else (
            f"v{i} = [k * {i} for k in range(20)]"
            if i % 3 == 1
            else f"v{i} = math.sqrt({i}) + len(v{i - 1})\nv{i}"
        )
        for i in range(1, 40)
    ),
)
NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "notebook_overhead's cells": (SETUP.strip(), *CELLS),
    "forty small cells": SMALL,
}
EDIT = "_nbcache_edit = {}\n"

BATCH = "restore request, CPU per restored cell"
PLAIN = "plain IPython, the same cells unexecuted, CPU per cell"
OWN = "nbcache's own CPU per restored cell"
NAMES = (BATCH, PLAIN, OWN)
TARGET = Target("<=", 0.001, "< 1 ms")


@contextlib.contextmanager
def _shell(store: Path | None) -> Iterator[Any]:
    """A fresh shell; with ``store``, as the kernel ``nbcache run`` drives (nbcache loaded
    in auto mode from the environment, its hooks, a new Cache on ``store``)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # leave the user's IPython history alone
    shell = InteractiveShell.instance(config=config)
    shown = warnings.showwarning  # the driven kernel's hooks divert nbcache's warnings
    try:
        if store is not None:
            from nbcache.notebooks import kernelside
            from tests.shells import KernelSession

            shell.run_line_magic("load_ext", "nbcache")
            kernelside.load(shell)
            # the kernel's start-up line that loaded nbcache ran as a cell: its post-run
            # hooks have seen the modules loaded at start before the first request
            shell.events.trigger("post_run_cell", None)
            shell.run_line_magic("nbcache", f"dir {store}")
            shell.kernel = SimpleNamespace(session=KernelSession())
        yield shell
    finally:
        if store is not None:
            del shell.kernel  # set after nbcache loaded: its editor's comm never opened
            shell.run_line_magic("unload_ext", "nbcache")
        shell.history_manager.end_session()
        InteractiveShell.clear_instance()
        warnings.showwarning = shown


def restore_batch(shell: Any, cells: Sequence[str], folder: Path) -> tuple[float, int]:
    """``batchside.restore`` of ``cells`` (ids ``c0``...) in ``shell``: its CPU seconds
    and how many cells it restored."""
    from nbcache.notebooks import batchside

    given, said = folder / "cells.json", folder / "said.json"
    cells_json = [{"index": i, "id": f"c{i}", "source": s} for i, s in enumerate(cells)]
    given.write_text(json.dumps(cells_json), encoding="utf-8")
    start = time.process_time()
    batchside.restore(str(given), str(said))
    cpu = time.process_time() - start
    return cpu, len(json.loads(said.read_text(encoding="utf-8"))["cells"])


def _restored(cells: Sequence[str], folder: Path, rounds: int) -> list[float]:
    """CPU seconds per restored cell of each round's restore request."""
    store = folder / "store"
    out = []
    with environ(NBCACHE_AUTO="lazy", NBCACHE_AUTO_LOG=str(folder / "cells.log")):
        with _shell(store) as shell:
            for i, cell in enumerate(cells):
                _must(shell.run_cell(cell, store_history=True, cell_id=f"c{i}"))
        for r in range(rounds):
            edited = [*cells[:-1], EDIT.format(r) + cells[-1]]
            with _shell(store) as shell:
                cpu, restored = restore_batch(shell, edited, folder)
                if restored != len(cells) - 1:
                    raise RuntimeError(f"{restored} of {len(cells) - 1} cells restored")
                last = len(cells) - 1
                _must(shell.run_cell(edited[-1], store_history=True, cell_id=f"c{last}"))
            out.append(cpu / restored)
    return out


def _plain(cells: Sequence[str], rounds: int) -> list[float]:
    """CPU seconds per cell of IPython running each cell's text unexecuted, plain."""
    texts = ["if False:\n" + textwrap.indent(cell, "    ") + "\n" for cell in cells]
    out = []
    with _shell(None) as shell:
        for _ in range(rounds):
            start = time.process_time()
            for text in texts:
                _must(shell.run_cell(text, store_history=True))
            out.append((time.process_time() - start) / len(texts))
    return out


def _must(result: Any) -> None:
    if not result.success:
        error = result.error_before_exec or result.error_in_exec
        raise RuntimeError(f"benchmark cell failed: {error!r}")


def run(settings: Settings) -> list[Row]:
    folder = settings.directory / "restored-cells"
    rounds = max(3, settings.repeat)
    rows: list[Row] = []
    try:
        with (
            nbcache_environ(folder / "unused", NBCACHE_AUTO=None, NBCACHE_RUN_BATCHES=None),
            contextlib.redirect_stdout(io.StringIO()),
            _cwd(folder),
        ):
            for name, cells in NOTEBOOKS.items():
                settings.say(f"restored_cells: {name}")
                where = folder / f"{len(rows)}"
                where.mkdir(parents=True)
                batch = _restored(cells, where, rounds)
                plain = _plain(cells[:-1], rounds)
                rows += _rows(f"{name} ({len(cells)} cells)", batch, plain, len(cells) - 1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    before = os.getcwd()
    os.chdir(folder)  # what a cell writes lands in the benchmark's folder
    try:
        yield
    finally:
        os.chdir(before)


def _rows(group: str, batch: list[float], plain: list[float], restored: int) -> list[Row]:
    own = min(batch) - min(plain)
    return [
        Row(group, BATCH, tuple(batch), cpu=tuple(batch), versus=f"{restored} cells restored"),
        Row(group, PLAIN, tuple(plain), cpu=tuple(plain)),
        Row(
            group,
            OWN,
            share=own,
            unit="s",
            target=TARGET,
            versus=f"best / best; medians: {_ms(statistics.median(batch))} - "
            f"{_ms(statistics.median(plain))}",
        ),
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


GROUP = Group(
    "restored_cells",
    "nbcache's own CPU per cell a whole-notebook run restores",
    run,
    notes=(
        "In this process, as the kernel of `nbcache run` does after an edit of the last "
        "cell: a fresh InteractiveShell with nbcache loaded in auto mode `lazy` (its cell "
        "log and the hooks of a driven kernel) on a new Cache of a store the same cells "
        "filled, restoring every cell before the edited one in one "
        "`nbcache.notebooks.batchside.restore` call, as the driver's one request does. "
        "Times are CPU seconds (time.process_time) per restored cell; at least 3 rounds.",
        "Plain: the same cells' text in a shell without nbcache, each under `if False:` "
        "(IPython transforms, parses and compiles it and stores it in its history, the "
        "body never runs): what IPython costs a cell of a plain run besides the body. "
        "nbcache's own: the best restore minus the best plain cell. A shell outside a "
        "kernel prints a replayed output instead of sending it, so the kernel's messages "
        "are not in these times.",
        "Notebooks: notebook_overhead's setup and thirty cells, and forty small cells of "
        "one or two lines (see benchmarks/restored_cells.py).",
    ),
)
