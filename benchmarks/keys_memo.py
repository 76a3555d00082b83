"""Keys and ``@memoize``: hashing big data, and what a hit costs, against the peers.

- hashing: a float64 array of ``--size`` bytes and a DataFrame (10M rows of 4
  numeric columns, or fewer at a small ``--size``, plus a 1M-row string
  column) through ``nbcache.keys.hashing.digest``, ``joblib.hash`` and a raw
  ``xxh3_128`` over the same buffers;
- memoize: the in-memory hit of a small-argument function against
  ``functools.lru_cache`` and ``cachetools``; the same with a notebook helper
  and a global constant, whose redefinition must be noticed on the next call
  (the cost of never being stale); the first hit in a fresh kernel (IPython,
  the function's source in a cell) against joblib.Memory, diskcache and
  cachier, with the opens counted apart; a hit with a large array argument
  against joblib.Memory.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import xxhash

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.keys.hashing import digest
from nbcache.run.memo import memoize
from nbcache.store.local import LocalStore

from .common import Contender, Group, Row, Settings, Target, at_least, measure

__all__ = ["HASHING", "MEMOIZE", "NAMES"]

_SECRET = "nbcache-benchmark-secret-not-for-real-use"

# Row names, also what the smoke test expects to find.
H_ARRAY = "nbcache digest(array)"
H_ARRAY_RAW = "raw xxh3_128(array buffer)"
H_ARRAY_JOBLIB = "joblib.hash(array)"
H_FRAME = "nbcache digest(DataFrame)"
H_FRAME_RAW = "raw xxh3_128(column buffers)"
H_FRAME_JOBLIB = "joblib.hash(DataFrame)"
M_HIT = "nbcache @memoize hit, f(1, 2)"
M_LRU = "functools.lru_cache hit"
M_CACHETOOLS = "cachetools.cached hit"
M_HIT_HELPER = "nbcache hit, f uses a helper and a global"
M_FRESH = "nbcache @memoize first hit, fresh kernel, cache opened before"
M_FRESH_JOBLIB = "joblib.Memory first hit, fresh kernel, Memory made before"
M_FRESH_DISKCACHE = "diskcache memoize get, fresh kernel, Cache opened before"
M_FRESH_CACHIER = "cachier first hit, fresh kernel"
M_FRESH_OPEN = "nbcache @memoize first hit, fresh kernel, open counted"
M_FRESH_DISKCACHE_OPEN = "diskcache memoize get, fresh kernel, open counted"
M_BIG = "nbcache hit, large array argument"
M_BIG_JOBLIB = "joblib.Memory hit, large array argument"

_RESULTS = ("8 KB result", "8 MB result")
NAMES = (
    H_ARRAY,
    H_ARRAY_RAW,
    H_ARRAY_JOBLIB,
    H_FRAME,
    H_FRAME_RAW,
    H_FRAME_JOBLIB,
    M_HIT,
    M_LRU,
    M_CACHETOOLS,
    M_HIT_HELPER,
    *(
        f"{name}, {what}"
        for what in _RESULTS
        for name in (
            M_FRESH,
            M_FRESH_DISKCACHE,
            M_FRESH_JOBLIB,
            M_FRESH_CACHIER,
            M_FRESH_OPEN,
            M_FRESH_DISKCACHE_OPEN,
        )
    ),
    M_BIG,
    M_BIG_JOBLIB,
)

CALLS = 200_000  # per timed run of an in-memory hit; the smoke test lowers it


# -- hashing ---------------------------------------------------------------------


def _frame(rows: int, strings: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    numbers = pd.DataFrame({f"x{i}": rng.random(rows) for i in range(4)})
    text = pd.DataFrame({"s": [f"customer-{i:07d}" for i in range(strings)]})
    return numbers, text


def _raw_frame(numbers: pd.DataFrame, text: pd.DataFrame) -> str:
    h = xxhash.xxh3_128()
    for column in numbers.columns:
        h.update(np.ascontiguousarray(numbers[column].to_numpy()))
    arrow = text["s"].array.__arrow_array__().combine_chunks()
    for buffer in arrow.buffers():
        if buffer is not None:
            h.update(buffer)
    return str(h.hexdigest())


def run_hashing(settings: Settings) -> list[Row]:
    array = np.random.default_rng(1).random(settings.size // 8)
    rows = min(10_000_000, max(1000, settings.size // 32))
    numbers, text = _frame(rows, min(1_000_000, rows))
    frame_bytes = rows * 4 * 8 + len(text) * 16
    view = memoryview(array).cast("B")
    timings = measure(
        settings,
        [
            Contender(H_ARRAY, lambda i: digest(array)),
            Contender(H_ARRAY_RAW, lambda i: xxhash.xxh3_128(view).hexdigest()),
            Contender(H_ARRAY_JOBLIB, lambda i: joblib.hash(array)),
            Contender(H_FRAME, lambda i: (digest(numbers), digest(text))),
            Contender(H_FRAME_RAW, lambda i: _raw_frame(numbers, text)),
            Contender(H_FRAME_JOBLIB, lambda i: (joblib.hash(numbers), joblib.hash(text))),
        ],
        prefault_bytes=0,
        label="hashing: ",
    )

    def row(name: str, nbytes: int, versus: str = "", target: Any = None, ours: str = "") -> Row:
        times = tuple(timings[name].times)
        ratio = None
        if versus:
            ratio = timings[versus].best / timings[ours].best
        return Row(
            "hashing",
            name,
            times,
            nbytes,
            ratio=ratio,
            target=target,
            versus=f"vs {versus}" if versus else "",
        )

    return [
        row(H_ARRAY, array.nbytes),
        row(H_ARRAY_RAW, array.nbytes, H_ARRAY_RAW, at_least(0.8), H_ARRAY),
        row(H_ARRAY_JOBLIB, array.nbytes, H_ARRAY_JOBLIB, at_least(15.0), H_ARRAY),
        row(H_FRAME, frame_bytes),
        row(H_FRAME_RAW, frame_bytes, H_FRAME_RAW, None, H_FRAME),
        row(H_FRAME_JOBLIB, frame_bytes, H_FRAME_JOBLIB, at_least(15.0), H_FRAME),
    ]


# -- memoize: in-memory hits -------------------------------------------------------


def _per_call(fn: Any, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``fn(1, 2)``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(1, 2)
    return (time.perf_counter() - start) / calls, (time.process_time() - start_cpu) / calls


THRESHOLD = 3


def _helper(x: int) -> int:
    return x * THRESHOLD


# The targets the README's performance table states.
HIT_TARGET = Target("<=", 3.0, "≤ 3× cachetools' time")
HELPER_TARGET = Target("<=", 1e-6, "≤ 1 µs")
FIRST_HIT_TARGET = Target("<=", 0.3e-3, "< 0.3 ms")


def _memory_hits(settings: Settings, cache: Cache) -> list[Row]:
    import cachetools

    @memoize(cache=cache)
    def plain(a: int, b: int) -> int:
        return a + b

    @memoize(cache=cache)
    def with_helper(a: int, b: int) -> int:
        return _helper(a) + b

    @functools.lru_cache(maxsize=128)
    def lru(a: int, b: int) -> int:
        return a + b

    @cachetools.cached(cachetools.LRUCache(maxsize=128))
    def ct(a: int, b: int) -> int:
        return a + b

    for fn in (plain, with_helper, lru, ct):
        fn(1, 2)  # the miss, untimed
    names = (M_HIT, M_LRU, M_CACHETOOLS, M_HIT_HELPER)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(settings.repeat):
        contenders = ((M_HIT, plain), (M_LRU, lru), (M_CACHETOOLS, ct), (M_HIT_HELPER, with_helper))
        for name, fn in contenders:
            settings.say(f"memoize: {name}")
            wall, used = _per_call(fn, CALLS)
            seconds[name].append(wall)
            cpu[name].append(used)
    lru_best = min(seconds[M_LRU])
    cachetools_best = min(seconds[M_CACHETOOLS])

    def row(name: str, **fields: Any) -> Row:
        defaults: dict[str, Any] = {
            "share": min(seconds[name]),
            "unit": "s",
            "versus": f"per call ({min(seconds[name]) / lru_best:.0f}× lru_cache)",
        }
        return Row(
            "memoize", name, tuple(seconds[name]), cpu=tuple(cpu[name]), **{**defaults, **fields}
        )

    return [
        row(
            M_HIT,
            share=min(seconds[M_HIT]) / cachetools_best,
            unit="×",
            target=HIT_TARGET,
            versus=f"cachetools' time ({min(seconds[M_HIT]) / lru_best:.0f}× lru_cache)",
        ),
        row(M_LRU),
        row(M_CACHETOOLS),
        row(M_HIT_HELPER, target=HELPER_TARGET),
    ]


# -- memoize: a stored hit in a fresh kernel ---------------------------------------

# Each contender runs in a new IPython shell in a new process, the function defined in a
# cell (so its source is there, as in a notebook), then one timed cell opens the tool's
# cache and calls the function once: the open and the call are timed apart, wall and CPU.
_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    kind, folder, n, secret = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ["NBCACHE_DIR"] = folder
    os.environ["NBCACHE_SECRET"] = secret
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    body = (
        "def work(n):\\n"
        "    return {'rows': np.arange(n, dtype=np.float64), 'label': 'features'}\\n"
    )
    define = {
        "nbcache": "from nbcache import memoize\\n@memoize\\n" + body,
        "joblib": "import joblib\\n" + body,
        "diskcache": "import diskcache\\n" + body,
        "cachier": "import datetime, cachier\\n" + body,
    }[kind]
    opening = {
        "nbcache": "from nbcache.cache.default import default_cache; default_cache()",
        "joblib": "memory = joblib.Memory(FOLDER, verbose=0); cached = memory.cache(work)",
        "diskcache": "disk = diskcache.Cache(FOLDER); cached = disk.memoize()(work)",
        "cachier": (
            "cached = cachier.cachier(cache_dir=FOLDER, "
            "stale_after=datetime.timedelta(days=1))(work)"
        ),
    }[kind].replace("FOLDER", repr(folder))
    call = "work" if kind == "nbcache" else "cached"
    # One statement: IPython runs each top-level statement of a cell on its own, and
    # its work between them would count on both sides.
    timed = (
        "def _timed():\\n"
        "    t0, c0 = time.perf_counter(), time.process_time()\\n"
        f"    {opening}\\n"
        "    t1, c1 = time.perf_counter(), time.process_time()\\n"
        f"    value = {call}({n})\\n"
        "    t2, c2 = time.perf_counter(), time.process_time()\\n"
        "    return t0, c0, t1, c1, t2, c2, value\\n"
        "_t0, _c0, _t1, _c1, _t2, _c2, _value = _timed()\\n"
    )
    for cell in ("import time\\nimport numpy as np\\n", define, timed):
        result = shell.run_cell(cell, store_history=True)
        if not result.success:
            raise SystemExit(f"the cell failed: {result.error_in_exec or result.error_before_exec}")
    ns = shell.user_ns
    print(json.dumps({
        "open": ns["_t1"] - ns["_t0"], "open_cpu": ns["_c1"] - ns["_c0"],
        "call": ns["_t2"] - ns["_t1"], "call_cpu": ns["_c2"] - ns["_c1"],
        "n": len(ns["_value"]["rows"]),
    }))
    """
)

_KINDS = {
    M_FRESH: "nbcache",
    M_FRESH_JOBLIB: "joblib",
    M_FRESH_DISKCACHE: "diskcache",
    M_FRESH_CACHIER: "cachier",
}
_OPEN_COUNTED = {M_FRESH_OPEN: "nbcache", M_FRESH_DISKCACHE_OPEN: "diskcache"}


def _fresh_kernel(kind: str, folder: Path, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(folder), str(n), _SECRET],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} child failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == n, result
    return result


def _stored_hits(settings: Settings, n: int, what: str, first: bool) -> list[Row]:
    folders = {kind: settings.directory / f"fresh-{kind}-{n}" for kind in _KINDS.values()}
    for kind in _KINDS.values():
        settings.say(f"memoize: first call, {kind}, {what}")
        _fresh_kernel(kind, folders[kind], n)  # the miss that stores, untimed
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in _KINDS.values()}
    for _ in range(settings.repeat):
        for kind in _KINDS.values():
            settings.say(f"memoize: stored hit, fresh kernel, {kind}, {what}")
            runs[kind].append(_fresh_kernel(kind, folders[kind], n))

    def times(kind: str, with_open: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
        wall = tuple(r["call"] + (r["open"] if with_open else 0.0) for r in runs[kind])
        cpu = tuple(r["call_cpu"] + (r["open_cpu"] if with_open else 0.0) for r in runs[kind])
        return wall, cpu

    ours, ours_cpu = times("nbcache", False)
    rows = [
        Row(
            "memoize",
            f"{M_FRESH}, {what}",
            ours,
            cpu=ours_cpu,
            share=min(ours),
            unit="s",
            target=FIRST_HIT_TARGET if first else None,
        )
    ]
    targets = {
        M_FRESH_DISKCACHE: at_least(1.0) if first else None,
        M_FRESH_JOBLIB: at_least(5.0) if first else at_least(1.2),
        M_FRESH_CACHIER: None,
    }
    for name, target in targets.items():
        wall, cpu = times(_KINDS[name], False)
        rows.append(
            Row(
                "memoize",
                f"{name}, {what}",
                wall,
                cpu=cpu,
                ratio=min(wall) / min(ours),
                target=target,
                versus="nbcache's speed / this",
            )
        )
    ours_open, ours_open_cpu = times("nbcache", True)
    theirs_open, theirs_open_cpu = times("diskcache", True)
    rows += [
        Row("memoize", f"{M_FRESH_OPEN}, {what}", ours_open, cpu=ours_open_cpu),
        Row(
            "memoize",
            f"{M_FRESH_DISKCACHE_OPEN}, {what}",
            theirs_open,
            cpu=theirs_open_cpu,
            ratio=min(theirs_open) / min(ours_open),
            versus="nbcache's speed / this",
        ),
    ]
    return rows


# -- memoize: a large array argument ----------------------------------------------


def _big_argument(settings: Settings, cache: Cache) -> list[Row]:
    array = np.random.default_rng(2).random(max(1, settings.size // 16))  # 500 MB at 1 GB

    def total(a: np.ndarray) -> float:
        return float(a.sum())

    ours = memoize(cache=cache)(total)
    theirs = joblib.Memory(str(settings.directory / "joblib-big"), verbose=0).cache(total)
    ours(array)
    theirs(array)
    timings = measure(
        settings,
        [Contender(M_BIG, lambda i: ours(array)), Contender(M_BIG_JOBLIB, lambda i: theirs(array))],
        prefault_bytes=0,
        label="memoize: ",
    )
    best = timings[M_BIG].best
    return [
        Row("memoize", M_BIG, tuple(timings[M_BIG].times), array.nbytes),
        Row(
            "memoize",
            M_BIG_JOBLIB,
            tuple(timings[M_BIG_JOBLIB].times),
            array.nbytes,
            ratio=timings[M_BIG_JOBLIB].best / best,
            target=at_least(10.0),
            versus="nbcache's speed / this",
        ),
    ]


def run_memoize(settings: Settings) -> list[Row]:
    cache = Cache(LocalStore(settings.directory / "nbcache-memo"), signer=Signer(_SECRET.encode()))
    return [
        *_memory_hits(settings, cache),
        *_stored_hits(settings, 1_000, _RESULTS[0], first=True),
        *_stored_hits(settings, 1_000_000, _RESULTS[1], first=False),
        *_big_argument(settings, cache),
    ]


HASHING = Group(
    "hashing",
    "content digests of big data",
    run_hashing,
    notes=(
        "nbcache hashes array and column buffers with XXH3-128 directly; joblib.hash pickles "
        "the value through md5. Raw xxh3 is the floor: the same buffers, no type tags.",
        "The DataFrame rows hash its 4 numeric columns and, separately, a frame of one "
        "Arrow-backed string column; the raw row hashes the same buffers.",
    ),
    memory_factor=1.5,
)

MEMOIZE = Group(
    "memoize",
    "what a hit costs",
    run_memoize,
    notes=(
        "In-memory hits are the mean of 200,000 calls f(1, 2). The nbcache rows re-check, on "
        "every call, that the function's code and everything it uses are unchanged (the helper "
        "row: a notebook helper and an int global), so a redefinition is noticed on the very "
        "next call; functools and cachetools never look.",
        "Fresh-kernel rows: each tool in a new process and a new IPython shell, the function "
        "defined in a cell (its source there, as in a notebook), its result (a dict holding "
        "1,000 or 1,000,000 float64s) stored by an earlier process. One timed statement opens "
        "the tool's cache (nbcache's default cache, diskcache.Cache, joblib.Memory) and calls "
        "once; the open and the call are timed apart. 'Cache opened before' rows count the call "
        "alone on both sides, 'open counted' rows the open and the call on both sides. CPU is "
        "the child's process time.",
        "The large-argument rows call f(a) with an array of half --size (500 MB at 1 GB) "
        "that an earlier call already cached: both tools must hash the argument on every "
        "call (nbcache with XXH3, joblib with md5).",
    ),
    disk_factor=0.6,
    memory_factor=1.0,
)
