"""``python -m nbcache demo``: a result computed in one process, restored in a second."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import time

from ..cache.core import Ask
from ..cache.default import default_cache
from ..settings import store_location
from ..units import format_duration, format_size

__all__ = ["run_demo", "run_demo_child"]

LIMIT = 20_000_000


def primes_below(limit: int) -> list[int]:
    """A deliberately plain sieve: a few seconds of pure-Python work to cache."""
    flags = [True] * limit
    flags[0:2] = [False, False]
    for n in range(2, int(limit**0.5) + 1):
        if flags[n]:
            for multiple in range(n * n, limit, n):
                flags[multiple] = False
    return [n for n, is_prime in enumerate(flags) if is_prime]


def _demo_key(limit: int) -> str:
    code = inspect.getsource(primes_below)
    return hashlib.sha256(f"demo|{code}|{limit}".encode()).hexdigest()


def run_demo_child(limit: int = LIMIT) -> int:
    """Compute (or restore) the primes and print one line saying which, and how long."""
    cache = default_cache()
    start = time.perf_counter()
    outcome = cache.get_or_compute(
        _demo_key(limit),
        lambda: primes_below(limit),
        {"label": f"demo: primes below {limit:,}"},
        ask=Ask(name="primes"),
    )
    elapsed = time.perf_counter() - start
    primes = outcome.value
    if outcome.hit is None:
        verb = f"computed in {format_duration(elapsed)}"
    else:
        verb = (
            f"restored in {format_duration(elapsed)} "
            f"(computed in {format_duration(outcome.hit.info.compute_seconds)} earlier)"
        )
    print(f"  {len(primes):,} primes below {limit:,}, largest {primes[-1]:,}: {verb}")
    return 0


def run_demo(limit: int = LIMIT) -> int:
    """Run the demo child twice in fresh interpreters and report both timings."""
    print(f"nbcache demo: store {store_location()!r}")
    default_cache().remove(_demo_key(limit))
    for run in ("first process (cold)", "second process (restart)"):
        print(f"{run}:")
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-m", "nbcache", "demo", "--child", "--limit", str(limit)]
        )
        if code:
            return code
        print(f"  whole process: {format_duration(time.perf_counter() - start)}")
    sizes = [r.size for r in default_cache().ledger.records() if r.key == _demo_key(limit)]
    if sizes:
        print(f"the entry is {format_size(sizes[0])}, signed with your secret")
    return 0
