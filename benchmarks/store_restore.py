"""Restoring a large array in a fresh process: nbcache's mapped restore against np.load.

A kernel that restarts and restores a cell's 1 GB array pays for it once, in a process
that has never seen it.  Each timed run is therefore a new Python process, which
imports everything first (untimed), then restores the value once and reports the
seconds, its CPU time and how much its resident memory grew.  The files come from
the page cache: the parent reads each through before the children start.

Used by :mod:`benchmarks.store_io`, whose table shows these rows; run alone as
``python -m benchmarks.store_restore WHO ROOT KEY NPY`` it is the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import Row, Target, at_least, at_most

__all__ = ["FRESH_NAMES", "NB", "NP", "Restored", "cell_entry", "fresh_rows", "restore_in_child"]

NB = "nbcache"
NP = "np.load"
GROUP_FRESH = "restore in a fresh process (page cache)"
FRESH_TARGET = at_least(2.0)
RESIDENT_TARGET = at_most(0.10)
NB_FRESH = "nbcache `Cache.lookup` of a %%cache entry, mapped"
NP_FRESH = "np.load"
NB_FRESH_SUM = "nbcache restore, then a.sum()"
NP_FRESH_SUM = "np.load, then a.sum()"
NB_RESIDENT = "resident memory the nbcache restore added, ÷ array"
NP_RESIDENT = "resident memory np.load added, ÷ array"
FRESH_NAMES = (NB_FRESH, NP_FRESH, NB_FRESH_SUM, NP_FRESH_SUM, NB_RESIDENT, NP_RESIDENT)
_TIMEOUT = 300.0  # seconds one child may take, imports included
_STATUS = "/proc/self/status"


def cell_entry(array: Any) -> dict[str, Any]:
    """What a ``%%cache`` cell that made ``a = ...`` stores: its variables and the rest."""
    return {"vars": {"a": array}, "deleted": [], "outputs": [], "result": None, "digests": {}}


@dataclass
class Restored:
    """What the children of one reader measured, run by run."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)  # bytes of resident memory the restore added
    summed: list[float] = field(default_factory=list)  # seconds of a.sum() right after


def restore_in_child(who: str, root: Path, key: str, npy: Path, into: Restored) -> None:
    """Run one child that restores with ``who`` and add what it measured to ``into``."""
    project = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.store_restore", who, str(root), key, str(npy)]
    done = subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"the {who} restore child failed: {last}")
    event = json.loads(done.stdout.strip().splitlines()[-1])
    into.times.append(float(event["seconds"]))
    into.cpu.append(float(event["cpu"]))
    into.grown.append(int(event["grown"]))
    into.summed.append(float(event["summed"]))


def fresh_rows(fresh: dict[str, Restored], nbytes: int) -> list[Row]:
    """The table's rows: times, times with a full read after, and resident memory added."""
    ours, numpy = fresh[NB], fresh[NP]
    with_sum = [t + s for t, s in zip(ours.times, ours.summed, strict=True)]
    numpy_sum = [t + s for t, s in zip(numpy.times, numpy.summed, strict=True)]

    def resident(name: str, restored: Restored, target: Target | None) -> Row:
        return Row(GROUP_FRESH, name, share=max(restored.grown) / nbytes, target=target)

    return [
        Row(GROUP_FRESH, NB_FRESH, tuple(ours.times), nbytes, cpu=tuple(ours.cpu)),
        Row(
            GROUP_FRESH,
            NP_FRESH,
            tuple(numpy.times),
            nbytes,
            ratio=min(numpy.times) / min(ours.times),
            target=FRESH_TARGET,
            cpu=tuple(numpy.cpu),
        ),
        Row(GROUP_FRESH, NB_FRESH_SUM, tuple(with_sum), nbytes),
        Row(
            GROUP_FRESH,
            NP_FRESH_SUM,
            tuple(numpy_sum),
            nbytes,
            ratio=min(numpy_sum) / min(with_sum),
        ),
        resident(NB_RESIDENT, ours, RESIDENT_TARGET),
        resident(NP_RESIDENT, numpy, None),
    ]


def _resident() -> int:
    """This process's resident memory in bytes (file pages it maps included)."""
    try:
        with open(_STATUS) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # no /proc: the peak is the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(who: str, root: str, key: str, npy: str) -> None:
    import numpy as np

    from nbcache.cache.core import Cache
    from nbcache.entry.signing import Signer
    from nbcache.store.local import LocalStore

    from .common import BENCH_SECRET

    cache = Cache(LocalStore(root), signer=Signer(BENCH_SECRET.encode()))
    before = _resident()
    start, start_cpu = time.perf_counter(), time.process_time()
    if who == NB:
        hit = cache.lookup(key)
        if hit is None or hit.source != "store":
            raise RuntimeError("Cache.lookup missed the entry: the benchmark is broken")
        array = hit.value["vars"]["a"]
    else:
        array = np.load(npy)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    grown = _resident() - before
    start = time.perf_counter()
    total = float(array.sum())
    summed = time.perf_counter() - start
    if array.ndim != 1 or not np.isfinite(total):
        raise RuntimeError(f"{who} did not give the array back: the benchmark is broken")
    print(json.dumps({"seconds": seconds, "cpu": cpu, "grown": grown, "summed": summed}))


if __name__ == "__main__":
    _child(*sys.argv[1:5])
