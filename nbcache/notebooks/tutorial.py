"""``python -m nbcache tutorial [PATH]``: run a notebook twice headless, each in a fresh kernel.

The first run computes every ``%%cache`` cell and stores it; the second run,
in a new kernel just as after a restart, restores them.  For each run this
prints how long the whole run took and the status line of each cached cell.
The kernels are this interpreter's own (see :mod:`nbcache.notebooks.kernels`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..settings import store_location
from ..units import format_duration
from .kernels import NotebookUnavailable, execute_notebook, require, status_lines

__all__ = ["DEFAULT_NOTEBOOK", "run_tutorial"]

DEFAULT_NOTEBOOK = os.path.join("notebooks", "quickstart.ipynb")
RUNS = ("run 1 (fresh kernel)", "run 2 (restarted kernel)")


def _store_for_kernels() -> str:
    """The store the command's user means: NBCACHE_DIR, or .nbcache here, made absolute
    because the kernel starts in the notebook's folder."""
    location = store_location()
    return location if "://" in location else os.path.abspath(location)


def _failure(run: str, exc: BaseException) -> str:
    """One readable line for a run that stopped."""
    from nbclient.exceptions import CellExecutionError

    if isinstance(exc, CellExecutionError):
        where = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc).strip().splitlines()[-1]
        return f"nbcache: {run} stopped: a cell raised {where}"
    return f"nbcache: {run} stopped: {type(exc).__name__}: {exc}"


def run_tutorial(
    path: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    runs: Sequence[str] = RUNS,
) -> int:
    """Run the notebook at ``path`` once per entry of ``runs``, each in a fresh kernel, on
    the default store; print each run's time and cached cells' status lines.

    ``out`` saves the notebook as the last run left it.  Returns the exit code: 0, 1 when
    a run stopped, 2 when the notebook or the packages to run it are missing.
    """
    notebook = Path(path if path is not None else DEFAULT_NOTEBOOK)
    if not notebook.is_file():
        print(
            f"nbcache: no notebook at {notebook}: run this from the folder that holds "
            f"{DEFAULT_NOTEBOOK}, or give the notebook's path",
            file=sys.stderr,
        )
        return 2
    try:
        require()
    except NotebookUnavailable as exc:
        print(f"nbcache: {exc}", file=sys.stderr)
        return 2
    import nbformat
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    store = _store_for_kernels()
    env = {**os.environ, "NBCACHE_DIR": store}
    print(f"nbcache tutorial: {notebook}, store {store}")
    executed: Any = None
    computed: list[int] = []
    for run in runs:
        nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        try:
            executed = execute_notebook(nb, cwd=notebook.resolve().parent, env=env)
        except (CellControlSignal, DeadKernelError, RuntimeError) as exc:
            print(_failure(run, exc), file=sys.stderr)
            return 1
        lines = status_lines(executed)
        print(f"{run}: {format_duration(time.perf_counter() - start)}")
        for count, line in lines:
            print(f"  In [{count}]: {line}")
        if not lines:
            print("  (no %%cache cell showed a status line)")
        computed.append(sum(line.startswith("nbcache: computed") for _, line in lines))
    if len(computed) > 1 and computed[0] == 0:
        print(
            "run 1 restored too: this store already held the notebook's results; point "
            "NBCACHE_DIR at an empty folder to watch a cold run"
        )
    if out is not None and executed is not None:
        nbformat.write(executed, os.fspath(out))  # type: ignore[no-untyped-call]
        print(f"saved the executed notebook to {out}")
    return 0
