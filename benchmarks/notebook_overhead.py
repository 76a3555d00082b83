"""What ``%%cache`` adds to every small cell of a notebook.

Thirty small, everyday cells (assignments, a little numpy and pandas, prints, a
function defined and called) run in a fresh ``InteractiveShell``:

- plain, without the extension;
- each under ``%%cache`` on an empty store (every cell a miss);
- again in a fresh shell of the same process (hits from the memory layer, as
  when a notebook is re-run in the same kernel);
- again in a fresh shell whose cache is a new ``Cache`` on the same store
  (``%nbcache dir``), so every hit is read from the store, as after a restart;
- for context, the misses again on another empty store with ``NBCACHE_FSYNC=0``.

Each cell is timed on its own around ``shell.run_cell``; the overhead of a cell
is its best wrapped time minus its best plain time, over ``--repeat`` rounds.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import Group, Row, Settings, Target, environ, nbcache_environ

__all__ = ["CELLS", "GROUP", "NAMES", "run"]

SETUP = "import numpy as np\nimport pandas as pd\n"

CELLS: tuple[str, ...] = (
    "n = 1000",
    "xs = list(range(n))",
    "total = sum(xs)\ntotal",
    'print(f"total = {total}")',
    "squares = [x * x for x in xs]",
    "a = np.arange(n, dtype=np.float64)",
    "b = np.sqrt(a) + 1.0",
    "mean_b = float(b.mean())\nprint(mean_b)",
    "def scale(v, k=2.0):\n    return v * k",
    "c = scale(b)",
    "c.shape",
    'df = pd.DataFrame({"x": a[:100], "y": b[:100]})',
    'df["z"] = df.x + df.y',
    "df.head()",
    "summary = df.describe()",
    'words = "the quick brown fox jumps over the lazy dog".split()',
    "counts = {w: words.count(w) for w in words}",
    "longest = max(words, key=len)\nprint(longest)",
    "m = np.eye(10) * 3",
    "inv = np.linalg.inv(m)",
    "det = float(np.linalg.det(m))",
    "def fib(k):\n    x, y = 0, 1\n    for _ in range(k):\n        x, y = y, x + y\n    return x",
    "f30 = fib(30)\nf30",
    'config = {"lr": 0.01, "epochs": 5, "name": "run-1"}',
    "label = f\"{config['name']}-{config['epochs']}\"",
    'grouped = df.assign(g=df.index % 3).groupby("g").z.sum()',
    "rng = np.random.default_rng(0)\nsample = rng.normal(size=200)",
    "hist, edges = np.histogram(sample, bins=10)",
    "print(hist.sum(), len(edges))",
    'result = {"total": total, "det": det, "fib": f30, "mean": mean_b}\nresult',
)

PLAIN = "plain cell, no extension"
MISS = "%%cache miss (empty store)"
HIT_MEMORY = "%%cache hit, same process (memory)"
HIT_STORE = "%%cache hit, new Cache on the store (as after a restart)"
MISS_NO_FSYNC = "%%cache miss, NBCACHE_FSYNC=0 (empty store)"
NAMES = (PLAIN, MISS, HIT_MEMORY, HIT_STORE, MISS_NO_FSYNC)

TARGET = Target("<=", 0.005, "≤ 5 ms")


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # leave the user's IPython history alone
    return InteractiveShell.instance(config=config)


def _close(shell: Any, extension: bool) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    if extension:
        shell.run_line_magic("unload_ext", "nbcache")
    shell.history_manager.end_session()
    InteractiveShell.clear_instance()


def _phase(
    cells: Sequence[str], store: Path | None, wrap: bool, new_cache: bool
) -> tuple[list[float], str]:
    """Seconds of each cell in a fresh shell, and everything it printed."""
    out = io.StringIO()
    seconds = []
    gc.collect()
    with contextlib.redirect_stdout(out):
        shell = _shell()
        try:
            _must(shell.run_cell(SETUP, store_history=True))
            if wrap:
                shell.run_line_magic("load_ext", "nbcache")
                if new_cache:
                    shell.run_line_magic("nbcache", f"dir {store}")
            for cell in cells:
                source = f"%%cache\n{cell}\n" if wrap else f"{cell}\n"
                start = time.perf_counter()
                result = shell.run_cell(source, store_history=True)
                seconds.append(time.perf_counter() - start)
                _must(result)
        finally:
            _close(shell, wrap)
    return seconds, out.getvalue()


def _must(result: Any) -> None:
    if not result.success:
        error = result.error_before_exec or result.error_in_exec
        raise RuntimeError(f"benchmark cell failed: {error!r}")


def run(settings: Settings, cells: Sequence[str] | None = None) -> list[Row]:
    chosen = list(cells if cells is not None else CELLS)
    folder = settings.directory / "notebook-overhead"
    try:
        with nbcache_environ(folder / "unused"):
            return _measure(settings, folder, chosen)
    finally:
        _reset_default_cache()
        shutil.rmtree(folder, ignore_errors=True)


def _reset_default_cache() -> None:
    """Point the process-wide cache back at the environment's store (LocalStore is lazy:
    this creates no folder)."""
    location = os.environ.get("NBCACHE_DIR") or ".nbcache"
    with contextlib.redirect_stdout(io.StringIO()):
        shell = _shell()
        try:
            shell.run_line_magic("load_ext", "nbcache")
            shell.run_line_magic("nbcache", f"dir {location}")
        finally:
            _close(shell, True)


def _measure(settings: Settings, folder: Path, cells: list[str]) -> list[Row]:
    times: dict[str, list[list[float]]] = {name: [] for name in NAMES}
    restored: dict[str, list[int]] = {name: [] for name in NAMES}
    for r in range(settings.repeat):
        store = folder / f"store-{r}"
        phases = (
            (PLAIN, False, False, store, "1"),
            (MISS, True, True, store, "1"),  # a new Cache on the new, empty store
            (HIT_MEMORY, True, False, store, "1"),  # the same Cache: hits from memory
            (HIT_STORE, True, True, store, "1"),  # a new Cache on the store: hits from files
            (MISS_NO_FSYNC, True, True, folder / f"no-fsync-{r}", "0"),
        )
        for name, wrap, new_cache, where, fsync in phases:
            settings.say(f"notebook_overhead: {name} ({r + 1}/{settings.repeat})")
            with environ(NBCACHE_FSYNC=fsync):
                seconds, printed = _phase(cells, where, wrap, new_cache)
            times[name].append(seconds)
            restored[name].append(printed.count("nbcache: restored"))
    return _rows(times, restored, len(cells))


def _rows(times: dict[str, list[list[float]]], restored: dict[str, list[int]], n: int) -> list[Row]:
    def best_per_cell(name: str) -> list[float]:
        return [min(run[c] for run in times[name]) for c in range(n)]

    plain = best_per_cell(PLAIN)
    group = f"per cell ({n} cells)"
    rows = [
        Row(
            group,
            PLAIN,
            tuple(statistics.median(run) for run in times[PLAIN]),
            share=statistics.median(plain),
            unit="s",
            versus=f"median per cell; all {n}: {sum(plain) * 1000:.0f} ms",
        )
    ]
    for name in NAMES[1:]:
        wrapped = best_per_cell(name)
        overhead = [w - p for w, p in zip(wrapped, plain, strict=True)]
        worst = max(range(n), key=lambda c: overhead[c])
        hits = min(restored[name])
        what = "" if name in (MISS, MISS_NO_FSYNC) else f"; {hits}/{n} restored"
        rows.append(
            Row(
                group,
                name,
                tuple(statistics.median(run) for run in times[name]),
                share=statistics.median(overhead),
                unit="s",
                target=None if name == MISS_NO_FSYNC else TARGET,
                versus=(
                    f"median overhead per cell; worst {overhead[worst] * 1000:.1f} ms "
                    f"(cell {worst + 1}){what}"
                ),
            )
        )
    return rows


GROUP = Group(
    "notebook_overhead",
    "what %%cache adds to each small cell",
    lambda settings: run(settings),
    notes=(
        f"{len(CELLS)} small cells (assignments, numpy, pandas, prints, a function defined and "
        "called; see benchmarks/notebook_overhead.py) after an untimed `import numpy as np, "
        "pandas as pd`, each timed around shell.run_cell in a fresh "
        "InteractiveShell.instance() (history in memory). Best and Median are the median "
        "cell's time in each round.",
        "The figure is the median over the cells of (the cell's best time under %%cache - its "
        "best time plain), over --repeat rounds; worst names the cell with the largest "
        "overhead. The plain shell has no extension loaded.",
        "Miss: %load_ext nbcache and %nbcache dir on a new, empty store, with max_size 10 GB "
        "(the default). Memory hits: a fresh shell in the same process, whose process-wide "
        "cache still holds the values. Store hits: a fresh shell and `%nbcache dir` on the same "
        "store, so a new Cache reads every entry from its file, as after a kernel restart. "
        "'restored' counts the cells whose status line said so.",
        "The last row repeats the misses with NBCACHE_FSYNC=0 on another empty store, for "
        "context: by default each miss fsyncs its entry file and its folder, which on a VM's "
        "virtual disk can take from under 1 ms to several ms, depending on other I/O.",
    ),
)
