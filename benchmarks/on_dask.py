"""Background work on dask: what nbcache adds to a bare ``client.submit`` of the same function.

On one LocalCluster (two worker processes on 127.0.0.1), the same notebook
function ``work(n)`` (a few milliseconds of Python) runs:

- in a ``%%cache -b -f --executor dask`` cell, timed from running the cell to
  ``%nbcache wait`` returning: its inputs pickled to a worker, the body run there,
  its variables merged into the namespace and its entry stored (fsync on);
- through ``memoize(work).submit(n)`` with ``nbcache.configure(executor=client)``,
  timed until the future's result, which is stored before the future finishes;
- through a bare ``client.submit(work, n, pure=False).result()``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from nbcache import configure

from .cells import _run, _shell
from .common import Contender, Group, Row, Settings, Target, measure

__all__ = ["GROUP", "NAMES"]

D_CELL = "%%cache -b --executor dask, to variables merged and stored"
D_SUBMIT = "memoize(work).submit(n) on dask, to result stored"
D_BARE = "bare client.submit(work, n, pure=False).result()"
D_CELL_OVER = "overhead of the background cell"
D_SUBMIT_OVER = "overhead of memoize(...).submit"

NAMES = (D_CELL, D_SUBMIT, D_BARE, D_CELL_OVER, D_SUBMIT_OVER)

SETUP = (
    "import nbcache\nN = 20_000\n"
    "def work(n):\n    return sum(i * i for i in range(n))\n"
    "memo_work = nbcache.memoize(work)\n"
)
CELL = "%%cache -b -q -f --executor dask -n on_dask\nout = work(N)\n"
OVERHEAD_TARGET = Target("<=", 0.05, "≤ 50 ms")


def run(settings: Settings) -> list[Row]:
    from distributed import Client, LocalCluster

    settings.say("dask: starting a LocalCluster of 2 worker processes")
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        _shell(settings) as shell,
    ):
        configure(executor=client)
        try:
            return _measure(settings, shell, client)
        finally:
            configure()


def _measure(settings: Settings, shell: Any, client: Any) -> list[Row]:
    _run(shell, SETUP)
    ns = shell.user_ns
    expected = ns["work"](ns["N"])

    def cell(_i: int) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):  # the text card's two lines
            _run(shell, CELL)
            shell.run_line_magic("nbcache", "wait on_dask")
        return ns["out"]

    def submit(_i: int) -> Any:
        return ns["memo_work"].submit(ns["N"]).result()

    def bare(_i: int) -> Any:
        return client.submit(ns["work"], ns["N"], pure=False).result()

    def check(_i: int, result: Any) -> None:
        if result != expected:
            raise RuntimeError(f"dask benchmark: got {result!r}, expected {expected!r}")

    def forget(i: int, result: Any) -> None:
        check(i, result)
        ns["memo_work"].cache_clear(store=True)  # the next submit computes again

    contenders = [
        Contender(D_CELL, cell, check),
        Contender(D_SUBMIT, submit, forget),
        Contender(D_BARE, bare, check),
    ]
    for contender in contenders:  # untimed: workers import nbcache, the executor starts
        assert contender.after is not None
        contender.after(0, contender.run(0))
    timings = measure(settings, contenders, prefault_bytes=0, label="dask: ")

    def overhead(row: str, timed: str, versus: str) -> Row:
        added = timings[timed].best - timings[D_BARE].best
        return Row("dask", row, share=added, unit="s", target=OVERHEAD_TARGET, versus=versus)

    return [
        *(Row("dask", name, tuple(timings[name].times)) for name in (D_CELL, D_SUBMIT, D_BARE)),
        overhead(D_CELL_OVER, D_CELL, "cell − bare"),
        overhead(D_SUBMIT_OVER, D_SUBMIT, "submit − bare"),
    ]


GROUP = Group(
    "dask",
    "background cells and submitted calls on dask",
    run,
    notes=(
        "One LocalCluster of two worker processes (one thread each) on 127.0.0.1, started "
        "for the group; the same notebook function work(20_000) in every contender. "
        "Each contender runs once untimed first (workers import nbcache, nbcache checks "
        "them and subscribes to their progress reports).",
        "Cell: from running `%%cache -b -q -f --executor dask` (forced miss) to "
        "`%nbcache wait` returning, so the time covers hashing the inputs, pickling them "
        "to the worker, the body, bringing the variables back, merging them and storing "
        "the entry (with fsync). Submit: `memoize(work).submit(N).result()` with "
        "`nbcache.configure(executor=client)`, the store entry removed between runs "
        "(untimed). Bare: `client.submit(work, N, pure=False).result()`.",
        "Overhead rows: the contender's best time minus the bare submit's best time.",
    ),
)
