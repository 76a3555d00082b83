"""``%%cache`` in an InteractiveShell: what a hit costs, what a restore costs, what a miss adds.

- a hit for a cell with small outputs, restored from the store (a fresh
  process-wide cache each run, as after a kernel restart);
- a hit for a cell that made a 100 MB array, against running the cell again
  and against ``pickle.load`` of the same variables (all ipycache's hit does);
- restoring a cell that made ``--size`` bytes of arrays, against ``np.load``;
- the overhead a miss adds (hashing the input, checking it for in-place
  changes, storing the result) to a cell that reads a ``--size`` array and
  runs for one second.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import set_default_cache
from nbcache.keys.scope import analyze, cell_key

from .common import Contender, Group, Row, Settings, Target, at_least, measure

__all__ = ["GROUP", "NAMES"]

_SECRET = "nbcache-benchmark-secret-not-for-real-use"

C_SMALL = "%%cache hit, small outputs (store)"
C_100 = "%%cache hit, 100 MB array (store)"
C_100_RERUN = "re-running the 100 MB cell"
C_100_PICKLE = "pickle.load of the 100 MB variable"
C_BIG = "%%cache hit, restoring --size of arrays (store)"
C_BIG_NPLOAD = "np.load of the same array"
C_MISS = "%%cache -f on a 1 s cell reading a --size array"
C_MISS_PLAIN = "the same cell without %%cache"
C_MISS_SHARE = "miss overhead, share of the 1 s cell"
C_KEY = "building the cell's key (hashing the input)"
C_KEY_SHARE = "key building, share of the 1 s cell"

NAMES = (
    C_SMALL,
    C_100,
    C_100_RERUN,
    C_100_PICKLE,
    C_BIG,
    C_BIG_NPLOAD,
    C_MISS,
    C_MISS_PLAIN,
    C_MISS_SHARE,
    C_KEY,
    C_KEY_SHARE,
)

SMALL_CELL = "%%cache -q -n small\ntotal = sum(range(1000))\nprint(total)\ntotal\n"
HUNDRED_CELL = (
    "%%cache -q -n hundred\n"
    "hundred = np.random.default_rng(0).random(12_500_000)\n"
    "hundred_mean = float(hundred.mean())\n"
)
BIG_CELL = "%%cache -q -n big\nbig = np.random.default_rng(1).random(N)\n"
MISS_CELL = "%%cache -q -f -n slow\ntime.sleep(1.0)\nresult = float(data[:1000].sum())\n"


@contextmanager
def _shell(settings: Settings) -> Iterator[InteractiveShell]:
    saved = {k: os.environ.get(k) for k in ("NBCACHE_DIR", "NBCACHE_SECRET", "NBCACHE_MAX_SIZE")}
    os.environ.update(
        NBCACHE_DIR=str(settings.directory / "cells-store"),
        NBCACHE_SECRET=_SECRET,
        NBCACHE_MAX_SIZE="none",
    )
    set_default_cache(None)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    shell.run_cell("import time\nimport numpy as np\n")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "nbcache")
        InteractiveShell.clear_instance()
        set_default_cache(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run(shell: InteractiveShell, cell: str) -> Any:
    result = shell.run_cell(cell, silent=True)
    if not result.success:
        raise RuntimeError(f"benchmark cell failed: {result.error_in_exec!r}")
    return result.result


def _restored(shell: InteractiveShell, cell: str) -> Any:
    """A hit from the store: a fresh process-wide cache, as after a kernel restart."""
    set_default_cache(None)
    return _run(shell, cell)


def run(settings: Settings) -> list[Row]:
    with _shell(settings) as shell:
        return _measure(settings, shell)


def _measure(settings: Settings, shell: InteractiveShell) -> list[Row]:
    n = max(1, settings.size // 8)
    big_cell = BIG_CELL.replace("N", str(n))
    for cell in (SMALL_CELL, HUNDRED_CELL, big_cell):
        _run(shell, cell)  # the misses that store, untimed
    pickled = settings.directory / "hundred.pkl"
    with open(pickled, "wb") as f:
        pickle.dump({"hundred": shell.user_ns["hundred"], "mean": 0.5}, f, protocol=5)
    npy = settings.directory / "big.npy"
    np.save(npy, shell.user_ns["big"])
    plain_hundred = HUNDRED_CELL.split("\n", 1)[1]
    timings = measure(
        settings,
        [
            Contender(C_SMALL, lambda i: _restored(shell, SMALL_CELL)),
            Contender(C_100, lambda i: _restored(shell, HUNDRED_CELL)),
            Contender(C_100_RERUN, lambda i: _run(shell, plain_hundred)),
            Contender(C_100_PICKLE, lambda i: pickle.loads(pickled.read_bytes())),
            Contender(C_BIG, lambda i: _restored(shell, big_cell)),
            Contender(C_BIG_NPLOAD, lambda i: np.load(npy)),
        ],
        label="cells: ",
    )
    shell.user_ns.pop("big", None)
    shell.user_ns["data"] = np.random.default_rng(2).random(n)
    code = analyze(shell.transform_cell(MISS_CELL.split("\n", 1)[1]))
    miss = measure(
        settings,
        [
            Contender(C_MISS, lambda i: _run(shell, MISS_CELL)),
            Contender(C_MISS_PLAIN, lambda i: _run(shell, MISS_CELL.split("\n", 1)[1])),
            Contender(C_KEY, lambda i: cell_key(code, shell.user_ns)),
        ],
        prefault_bytes=0,
        label="cells: ",
    )
    return _rows(timings, miss, n * 8)


def _rows(timings: Any, miss: Any, big_bytes: int) -> list[Row]:
    def times(name: str, source: Any = timings) -> tuple[float, ...]:
        return tuple(source[name].times)

    small_target = Target("<=", 0.005, "≤ 5 ms")
    overhead = miss[C_MISS].best - miss[C_MISS_PLAIN].best
    return [
        Row(
            "cells",
            C_SMALL,
            times(C_SMALL),
            share=timings[C_SMALL].best,
            unit="s",
            target=small_target,
        ),
        Row("cells", C_100, times(C_100), 100_000_000),
        Row(
            "cells",
            C_100_RERUN,
            times(C_100_RERUN),
            100_000_000,
            ratio=timings[C_100_RERUN].best / timings[C_100].best,
            versus="nbcache's speed / this",
        ),
        Row(
            "cells",
            C_100_PICKLE,
            times(C_100_PICKLE),
            100_000_000,
            ratio=timings[C_100_PICKLE].best / timings[C_100].best,
            versus="nbcache's speed / this",
        ),
        Row("cells", C_BIG, times(C_BIG), big_bytes),
        Row(
            "cells",
            C_BIG_NPLOAD,
            times(C_BIG_NPLOAD),
            big_bytes,
            ratio=timings[C_BIG_NPLOAD].best / timings[C_BIG].best,
            target=at_least(0.8),
            versus="nbcache's speed / this",
        ),
        Row("cells", C_MISS, times(C_MISS, miss)),
        Row("cells", C_MISS_PLAIN, times(C_MISS_PLAIN, miss)),
        Row(
            "cells",
            C_MISS_SHARE,
            share=max(0.0, overhead) / miss[C_MISS_PLAIN].best,
            target=Target("<=", 0.10, "≤ 10 %"),
        ),
        Row("cells", C_KEY, times(C_KEY, miss)),
        Row(
            "cells",
            C_KEY_SHARE,
            share=miss[C_KEY].best / miss[C_MISS_PLAIN].best,
            target=Target("<=", 0.10, "≤ 10 %"),
        ),
    ]


GROUP = Group(
    "cells",
    "%%cache in an IPython shell",
    run,
    notes=(
        "Hits are restored from the store with a fresh process-wide cache each run, as "
        "after a kernel restart; the memory layer would be faster still.",
        "pickle.load of the 100 MB variable is all ipycache's hit does: no signature, no "
        "output replay, no check that the inputs or code are the same.",
        "The miss overhead is the time %%cache -f adds to a cell that sleeps 1 s and reads a "
        "--size array: hashing the input for the key, hashing it again afterwards to catch "
        "in-place changes (never stale: a cell may mutate what it reads), and storing the "
        "(small) result. Key building alone is the first of those.",
    ),
    disk_factor=1.3,
    memory_factor=3.5,
)
