"""Keys and ``@memoize``: hashing big data, and what a hit costs, against the peers.

- hashing: a float64 array of ``--size`` bytes and a DataFrame (10M rows of 4
  numeric columns, or fewer at a small ``--size``, plus a 1M-row string
  column) through ``nbcache.keys.hashing.digest``, ``joblib.hash`` and a raw
  ``xxh3_128`` over the same buffers;
- memoize: the in-memory hit of a small-argument function against
  ``functools.lru_cache`` and ``cachetools``; the same with a notebook helper
  and a global constant, whose redefinition must be noticed on the next call
  (the cost of never being stale); a stored hit in a fresh process against
  joblib.Memory, diskcache and cachier; a hit with a large array argument
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
M_FRESH = "nbcache stored hit, fresh process"
M_FRESH_JOBLIB = "joblib.Memory stored hit, fresh process"
M_FRESH_DISKCACHE = "diskcache memoize hit, fresh process"
M_FRESH_CACHIER = "cachier hit, fresh process"
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
        for name in (M_FRESH, M_FRESH_JOBLIB, M_FRESH_DISKCACHE, M_FRESH_CACHIER)
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


def _per_call(fn: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(1, 2)
    return (time.perf_counter() - start) / calls


THRESHOLD = 3


def _helper(x: int) -> int:
    return x * THRESHOLD


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
    seconds: dict[str, list[float]] = {M_HIT: [], M_LRU: [], M_CACHETOOLS: [], M_HIT_HELPER: []}
    for _ in range(settings.repeat):
        contenders = ((M_HIT, plain), (M_LRU, lru), (M_CACHETOOLS, ct), (M_HIT_HELPER, with_helper))
        for name, fn in contenders:
            settings.say(f"memoize: {name}")
            seconds[name].append(_per_call(fn, CALLS))
    target = Target("<=", 2e-6, "≤ 2 µs")
    lru = min(seconds[M_LRU])

    def row(name: str, check: bool) -> Row:
        return Row(
            "memoize",
            name,
            tuple(seconds[name]),
            share=min(seconds[name]),
            unit="s",
            target=target if check else None,
            versus=f"per call ({min(seconds[name]) / lru:.0f}× lru_cache)",
        )

    return [
        row(M_HIT, True),
        row(M_LRU, False),
        row(M_CACHETOOLS, False),
        row(M_HIT_HELPER, False),
    ]


# -- memoize: a stored hit in a fresh process --------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    kind, folder = sys.argv[1], sys.argv[2]
    import numpy as np

    def work(n):
        return {"rows": np.arange(n, dtype=np.float64), "label": "features"}

    if kind == "nbcache":
        from nbcache import Cache, LocalStore, memoize
        from nbcache.entry.signing import Signer
        cached = memoize(cache=Cache(LocalStore(folder), signer=Signer(SECRET)))(work)
    elif kind == "joblib":
        import joblib
        cached = joblib.Memory(folder, verbose=0).cache(work)
    elif kind == "diskcache":
        import diskcache
        cached = diskcache.Cache(folder).memoize()(work)
    else:
        import datetime, cachier
        cached = cachier.cachier(cache_dir=folder, stale_after=datetime.timedelta(days=1))(work)
    start = time.perf_counter()
    value = cached(N)
    print(json.dumps({"seconds": time.perf_counter() - start, "n": len(value["rows"])}))
    """
)


def _fresh_process(kind: str, folder: Path, n: int) -> float:
    code = _CHILD.replace("SECRET", repr(_SECRET.encode())).replace("N)", f"{n})")
    done = subprocess.run(
        [sys.executable, "-c", code, kind, str(folder)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == n, result
    return float(result["seconds"])


def _stored_hits(settings: Settings, n: int, what: str, check: bool) -> list[Row]:
    kinds = {
        M_FRESH: "nbcache",
        M_FRESH_JOBLIB: "joblib",
        M_FRESH_DISKCACHE: "diskcache",
        M_FRESH_CACHIER: "cachier",
    }
    folders = {name: settings.directory / f"fresh-{kind}-{n}" for name, kind in kinds.items()}
    for name, kind in kinds.items():
        settings.say(f"memoize: first call, {kind}, {what}")
        _fresh_process(kind, folders[name], n)  # the miss that stores, untimed
    seconds: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(settings.repeat):
        for name, kind in kinds.items():
            settings.say(f"memoize: {name}, {what}")
            seconds[name].append(_fresh_process(kind, folders[name], n))
    ours = min(seconds[M_FRESH])
    rows = [Row("memoize", f"{M_FRESH}, {what}", tuple(seconds[M_FRESH]))]
    for name in (M_FRESH_JOBLIB, M_FRESH_DISKCACHE, M_FRESH_CACHIER):
        target = at_least(5.0) if check and name == M_FRESH_JOBLIB else None
        rows.append(
            Row(
                "memoize",
                f"{name}, {what}",
                tuple(seconds[name]),
                ratio=min(seconds[name]) / ours,
                target=target,
                versus="nbcache's speed / this",
            )
        )
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
        *_stored_hits(settings, 1_000, _RESULTS[0], check=True),
        *_stored_hits(settings, 1_000_000, _RESULTS[1], check=False),
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
        "Fresh-process rows time one call (inside the child, after imports) whose result, "
        "a float64 array of 1,000 or 1,000,000 values in a dict, was stored by an earlier "
        "process: what a restarted kernel pays for its first hit.",
        "The large-argument rows call f(a) with an array of half --size (500 MB at 1 GB) "
        "that an earlier call already cached: both tools must hash the argument on every "
        "call (nbcache with XXH3, joblib with md5).",
    ),
    disk_factor=0.6,
    memory_factor=1.0,
)
