"""@memoize: functools-compatible, content-keyed, never stale, shared through the store."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from nbcache import CacheWarning, configure, memoize
from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from tests.notebook_sim import run_cell


class Probe:
    """Counts calls without being part of any key: its digest ignores its count."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (Probe, ())


@pytest.fixture
def probe() -> Probe:
    return Probe()


def _other_process_view(cache: Cache) -> Cache:
    assert isinstance(cache.store, LocalStore)
    return Cache(LocalStore(cache.store.root), signer=Signer(b"nbcache-test-secret-of-32-bytes-0k"))


def test_miss_then_hit_with_cache_info(cache: Cache, probe: Probe) -> None:
    """cache_info follows functools after each call; the body runs once per key."""

    @memoize(cache=cache)
    def square(x: int) -> int:
        probe.calls.append(x)
        return x * x

    assert square.cache_info()[:4] == (0, 0, 128, 0)
    assert square(3) == 9
    assert square.cache_info()[:4] == (0, 1, 128, 1)
    assert square(3) == 9
    assert square.cache_info()[:4] == (1, 1, 128, 1)
    assert square(4) == 16
    assert square.cache_info()[:4] == (1, 2, 128, 2)
    assert probe.calls == [3, 4]
    hits, misses, maxsize, currsize, *_ = square.cache_info()
    assert (hits, misses, maxsize, currsize) == (1, 2, 128, 2)


def test_positional_and_keyword_share_one_entry(cache: Cache, probe: Probe) -> None:
    """f(1), f(x=1) and f(1, y=2) (the default) are one key and one stored entry."""

    @memoize(cache=cache)
    def f(x: int, y: int = 2) -> int:
        probe.calls.append((x, y))
        return x + y

    assert f(1) == f(x=1) == f(1, y=2) == f(1, 2) == 3
    assert probe.calls == [(1, 2)]
    assert len(cache.ledger.records()) == 1


def test_stored_hit_in_a_fresh_cache(cache: Cache, probe: Probe) -> None:
    """Another process's memoized function finds the stored result and counts a store hit."""

    def make() -> Any:
        @memoize(cache=_other_process_view(cache))
        def fit(n: int) -> np.ndarray:
            probe.calls.append(n)
            return np.arange(n)

        return fit

    first, second = make(), make()
    assert np.array_equal(first(5), np.arange(5))
    assert np.array_equal(second(5), np.arange(5))
    assert probe.calls == [5]
    info = second.cache_info()
    assert (info.hits, info.misses, info.store_hits) == (1, 0, 1)
    assert info.time_saved >= 0


SURVIVES = """
import sys, time
from nbcache import memoize

@memoize
def slow(n):
    print("computing", flush=True)
    return [i * i for i in range(n)]

assert slow(1000)[-1] == 999 ** 2
info = slow.cache_info()
print("store_hits", info.store_hits, "misses", info.misses)
"""


def test_result_survives_a_new_process(tmp_path: Path) -> None:
    """A result computed in one process is restored, not recomputed, in the next."""
    script = tmp_path / "job.py"
    script.write_text(SURVIVES)
    runs = [
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=tmp_path
        ).stdout.splitlines()
        for _ in range(2)
    ]
    assert runs[0] == ["computing", "store_hits 0 misses 1"]
    assert runs[1] == ["store_hits 1 misses 0"]


def test_threads_racing_compute_once(cache: Cache, probe: Probe) -> None:
    """Two threads missing one key: one computes, the other waits and gets its value."""

    @memoize(cache=cache)
    def work(x: int) -> int:
        probe.calls.append(threading.current_thread().name)
        probe.started.set()
        probe.release.wait(10)
        return x + 1

    results: dict[str, int] = {}
    first = threading.Thread(target=lambda: results.update(a=work(1)), name="a")
    first.start()
    assert probe.started.wait(10)
    (pending,) = cache._inflight._running.values()  # the one stampede guard, in the cache
    second = threading.Thread(target=lambda: results.update(b=work(1)), name="b")
    second.start()
    deadline = time.monotonic() + 10
    while not pending._condition._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
        second.join(0.001)
    assert pending._condition._waiters, "the second thread never waited for the first"  # type: ignore[attr-defined]
    probe.release.set()
    first.join(10)
    second.join(10)
    assert results == {"a": 2, "b": 2}
    assert probe.calls == ["a"]


def test_edited_helper_is_noticed_on_the_next_call(cache: Cache) -> None:
    """Redefining a helper in a later cell makes the very next call a miss, and why says so."""
    ns: dict[str, Any] = {"memoize": memoize, "cache": cache}
    run_cell(
        """
        def clean(x):
            return x + 1

        @memoize(cache=cache)
        def features(x):
            return clean(x) * 10
        """,
        ns,
    )
    assert ns["features"](1) == 20
    assert ns["features"](1) == 20
    run_cell("def clean(x):\n    return x + 2\n", ns)
    assert ns["features"](1) == 30
    assert ns["features"].why() == ["helper `clean()` changed"]
    assert ns["features"].cache_info()[:2] == (1, 2)


def test_why_names_a_changed_argument(cache: Cache) -> None:
    """why() names the argument that changed, with shapes for arrays."""

    @memoize(cache=cache)
    def total(df: np.ndarray, scale: int = 1) -> float:
        return float(df.sum() * scale)

    assert total.why() == ["total() has not computed anything yet"]
    total(np.ones((1000, 4)))
    total(np.ones((1200, 4)))
    assert total.why() == ["argument `df` changed (shape 1000x4 -> 1200x4)"]
    total(np.ones((1200, 4)), scale=2)
    assert total.why() == ["argument `scale` changed (1 -> 2)"]


def test_why_compares_with_the_entry_of_an_earlier_process(cache: Cache) -> None:
    """The first miss in a new process is explained against the latest stored entry."""

    def make() -> Any:
        @memoize(cache=_other_process_view(cache))
        def f(x: int) -> int:
            return x

        return f

    make()(1)
    later = make()
    later(2)
    assert later.why() == ["argument `x` changed (1 -> 2)"]


def test_mutated_global_is_a_miss(cache: Cache) -> None:
    """A global array the function reads, mutated in place, makes the next call a miss."""
    ns: dict[str, Any] = {"memoize": memoize, "cache": cache, "np": np}
    run_cell(
        """
        W = np.ones(3)

        @memoize(cache=cache)
        def score(x):
            return float((W * x).sum())
        """,
        ns,
    )
    assert ns["score"](1) == 3.0
    ns["W"][0] = 10.0
    assert ns["score"](1) == 12.0


def test_unhashable_arguments_warn_once_and_call_through(cache: Cache, probe: Probe) -> None:
    """An argument that cannot be hashed runs the call uncached, with one warning per function."""

    @memoize(cache=cache)
    def use(lock: Any, n: int) -> int:
        probe.calls.append(n)
        return n

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert use(threading.Lock(), 1) == 1
        assert use(threading.Lock(), 1) == 1
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1
    assert "`lock` (_thread.lock)" in messages[0] and "ignore=('lock',)" in messages[0]
    assert probe.calls == [1, 1]


def test_ignore_leaves_an_argument_out(cache: Cache, probe: Probe) -> None:
    """ignore= names arguments that do not change the result."""

    @memoize(cache=cache, ignore=("verbose",))
    def fit(x: int, verbose: bool = False) -> int:
        probe.calls.append(x)
        return x

    fit(1, verbose=True)
    fit(1, verbose=False)
    assert probe.calls == [1]
    with pytest.raises(ValueError, match="no parameter"):
        memoize(ignore=("nope",))(lambda x: x)


def test_unpicklable_result_is_kept_in_memory(cache: Cache, probe: Probe) -> None:
    """A result that will not pickle is returned, kept in memory, and named in a warning."""

    @memoize(cache=cache)
    def connect(name: str) -> Any:
        probe.calls.append(name)
        return {"name": name, "lock": threading.Lock()}

    with pytest.warns(CacheWarning, match=r"memory only.*\['lock'\] \(_thread.lock\)"):
        first = connect("db")
    assert connect("db") is first
    assert cache.ledger.records() == []
    assert probe.calls == ["db"]


def test_typed(cache: Cache, probe: Probe) -> None:
    """typed=True (the default) keeps 1, 1.0 and True apart; typed=False joins them."""

    @memoize(cache=cache)
    def typed(x: Any) -> str:
        probe.calls.append(x)
        return type(x).__name__

    @memoize(cache=cache, typed=False)
    def untyped(x: Any) -> str:
        probe.calls.append(x)
        return type(x).__name__

    assert [typed(1), typed(1.0), typed(True)] == ["int", "float", "bool"]
    assert [untyped(1), untyped(1.0), untyped(True)] == ["int", "int", "int"]
    assert len(probe.calls) == 4


def test_negative_zero_is_not_zero(cache: Cache) -> None:
    """f(0.0) and f(-0.0) are separate entries: they can give different results."""

    @memoize(cache=cache)
    def sign(x: float) -> float:
        return float(np.copysign(1.0, x))

    assert (sign(0.0), sign(-0.0), sign(0.0)) == (1.0, -1.0, 1.0)


def test_store_false_and_max_age(cache: Cache, probe: Probe) -> None:
    """store=False writes nothing; max_age makes older entries a miss."""

    @memoize(cache=cache, store=False)
    def local(x: int) -> int:
        return x

    local(1)
    assert cache.ledger.records() == []

    @memoize(cache=cache, max_age=0)
    def fresh(x: int) -> int:
        probe.calls.append(x)
        return x

    fresh(1)
    fresh(1)
    assert probe.calls == [1, 1]

    @memoize(cache=cache, max_age="7d")
    def week(x: int) -> int:
        probe.calls.append(x)
        return x

    week(2)
    week(2)
    assert probe.calls == [1, 1, 2]
    assert week.cache_parameters()["max_age"] == 7 * 86400


def test_cache_clear(cache: Cache, probe: Probe) -> None:
    """cache_clear() empties memory and counters; stored entries stay unless store=True."""

    @memoize(cache=cache)
    def f(x: int) -> int:
        probe.calls.append(x)
        return x

    f(1)
    f.cache_clear()
    assert f.cache_info()[:4] == (0, 0, 128, 0)
    f(1)
    assert probe.calls == [1]  # from the store
    assert f.cache_info().store_hits == 1
    f.cache_clear(store=True)
    assert cache.ledger.records() == []
    f(1)
    assert probe.calls == [1, 1]


def test_wrapper_looks_like_the_function(cache: Cache) -> None:
    """__wrapped__, __name__, __doc__ and cache_parameters are there."""

    def original(x: int) -> int:
        """Doc."""
        return x

    wrapped = memoize(maxsize=None, cache=cache)(original)
    assert wrapped.__wrapped__ is original
    assert (wrapped.__name__, wrapped.__doc__) == ("original", "Doc.")
    assert wrapped.cache_parameters() == {
        "maxsize": None,
        "typed": True,
        "store": True,
        "ignore": (),
        "max_age": None,
    }


def test_methods_key_on_instance_state(cache: Cache) -> None:
    """On a method, the instance's state is part of the key."""

    class Model:
        def __init__(self, w: float) -> None:
            self.w = w

        @memoize(cache=cache, store=False)
        def predict(self, x: float) -> float:
            return self.w * x

    assert Model(2.0).predict(3.0) == 6.0
    assert Model(3.0).predict(3.0) == 9.0
    assert Model(2.0).predict(3.0) == 6.0
    assert Model.predict.cache_info()[:2] == (1, 2)


def test_async_functions(cache: Cache, probe: Probe) -> None:
    """async def functions are memoized on their awaited result."""

    @memoize(cache=cache)
    async def fetch(x: int) -> int:
        probe.calls.append(x)
        await asyncio.sleep(0)
        return x * 2

    assert asyncio.run(fetch(2)) == 4
    assert asyncio.run(fetch(2)) == 4
    assert probe.calls == [2]

    async def together() -> list[int]:
        return list(await asyncio.gather(fetch(3), fetch(3), fetch(3)))

    assert asyncio.run(together()) == [6, 6, 6]
    assert probe.calls == [2, 3]


def test_submit(cache: Cache, probe: Probe) -> None:
    """submit() runs a miss on a thread pool and returns a finished future on a hit."""

    @memoize(cache=cache)
    def f(x: int) -> int:
        probe.calls.append(x)
        return x + 1

    future = f.submit(1)
    assert future.result(10) == 2
    again = f.submit(1)
    assert again.done() and again.result() == 2
    assert probe.calls == [1]
    other = _other_process_view(cache)

    @memoize(cache=other)
    def f2(x: int) -> int:
        return x + 1

    f2.__wrapped__.__qualname__ = f.__wrapped__.__qualname__
    assert f2.submit(5).result(10) == 6


def test_submit_elsewhere_keeps_the_result_here(cache: Cache) -> None:
    """On a process pool only the function runs there (one that calls itself too, memoized
    in the worker's memory); its result is stored here. A pickled copy keeps to memory."""

    @memoize(cache=cache)
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    configure("process")
    try:
        assert fib.submit(50).result(60) == 12586269025
        assert fib.cache_info()[:2] == (0, 1)
        assert fib.submit(50).done()  # kept here: a hit, without the pool
    finally:
        configure()
    copy = cloudpickle.loads(cloudpickle.dumps(fib))
    assert copy.cache_parameters()["store"] is False and copy(10) == 55


class _Elsewhere(Executor):
    """An executor that is not the thread pool (so submit runs "elsewhere"), counting."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(2)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.pool.submit(fn, *args, **kwargs)


def test_submit_elsewhere_waits_for_another_process_that_computes_it(
    cache: Cache, store: LocalStore, signer: Signer
) -> None:
    """Another kernel holds the call's lease: submit sends nothing to the workers and
    finishes with that kernel's entry; a free lease is held while the workers compute."""

    @memoize(cache=cache)
    def slow(x: int) -> int:
        return x * 10

    elsewhere = _Elsewhere()
    configure(elsewhere)
    try:
        assert slow.submit(1).result(10) == 10  # free lease: computed on the executor
        assert elsewhere.submitted == 1
        [key] = [stat.key for stat in store.entries()]
        lease = store.lease(key)
        assert lease.acquire()  # released once the entry was stored
        slow.cache_clear(store=True)  # and now "another kernel" computes the same call

        future = slow.submit(1)
        time.sleep(0.3)
        assert not future.done() and elsewhere.submitted == 1
        Cache(store, signer=signer).put(key, 99)  # its result lands...
        lease.release()  # ...and it lets go of the key
        assert future.result(10) == 99  # the other kernel's value: nothing ran here
        assert elsewhere.submitted == 1
    finally:
        configure()
        elsewhere.pool.shutdown()


def test_cache_info_is_a_named_tuple_led_by_functools_fields(cache: Cache) -> None:
    """cache_info() is a named tuple whose first four fields are functools' own."""

    @memoize(cache=cache)
    def double(x: int) -> int:
        return 2 * x

    double(1)
    double(1)
    info = double.cache_info()
    assert info._fields[:4] == functools.lru_cache()(abs).cache_info()._fields
    assert info._asdict()["hits"] == 1 and info._replace(hits=5).hits == 5


def test_first_hit_of_a_decorated_cell_function_reads_no_source_through_inspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A @memoize function defined in a cell is fingerprinted from its compiled code and
    the lines of the cell that declare it: neither inspect's tokenizing reader, which
    costs a fresh kernel milliseconds, nor a parse of the source is asked on the hit
    path, and the key is the one the first kernel made."""
    import ast
    import inspect

    from nbcache.cache.default import set_default_cache
    from nbcache.keys import source

    from ..shells import close_shell, new_shell

    cell = (
        "@memoize(\n"
        "    maxsize=4,\n"
        ")\n"
        "def work(n):\n"
        "    # the body's own comment\n"
        "    return list(range(n))\n"
    )
    signer = Signer(b"nbcache-test-secret-of-32-bytes-0k")
    shell = new_shell(tmp_path)
    try:
        set_default_cache(Cache(LocalStore(tmp_path / "store"), signer=signer))
        shell.run_cell("from nbcache import memoize", store_history=True)
        assert shell.run_cell(cell + "work(3)\n", store_history=True).success  # stored
        expected = source.source_digest(shell.user_ns["work"].__wrapped__)
        assert expected.startswith("code:")
        # As after a restart: the cell runs again, nothing fingerprinted or in memory.
        set_default_cache(Cache(LocalStore(tmp_path / "store"), signer=signer))
        assert shell.run_cell(cell, store_history=True).success
        memoized = shell.user_ns["work"]
        asked: list[str] = []

        def counting(name: str) -> Any:
            original = getattr(inspect, name)

            def counted(*args: Any, **kwargs: Any) -> Any:
                asked.append(name)
                return original(*args, **kwargs)

            return counted

        for name in ("getsource", "getsourcelines", "findsource"):
            monkeypatch.setattr(inspect, name, counting(name))
        for name in ("parse", "dump"):
            original = getattr(ast, name)
            monkeypatch.setattr(
                ast, name, lambda *a, _o=original, _n=name, **k: (asked.append(_n), _o(*a, **k))[1]
            )
        assert memoized(3) == [0, 1, 2]
        assert memoized.cache_info().store_hits == 1
        assert asked == []
        assert source.source_digest(memoized.__wrapped__) == expected
    finally:
        set_default_cache(None)
        close_shell(shell)


HIT_THRESHOLD = 3


def _hit_helper(x: int) -> int:
    return x * HIT_THRESHOLD


def test_an_in_memory_hit_with_a_helper_and_a_global_makes_few_python_calls() -> None:
    """The hit path of f(1, 2), f using a module helper and an int global, re-checks both
    (a dictionary lookup each) in at most eight Python-level calls: the checks of the
    global names are one call each, values the code holds itself (defaults) are not
    re-checked at all, and the scalar shortcut is built in C."""

    @memoize(cache=Cache(None))
    def with_helper(a: int, b: int, scale: int = 1) -> int:
        return _hit_helper(a) * scale + b

    assert with_helper(1, 2) == 5
    events: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            events.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        result = with_helper(1, 2)
    finally:
        sys.setprofile(None)
    assert result == 5
    assert with_helper.cache_info().hits == 1
    assert len(events) <= 8, events
    # Still never stale: the global rebound is noticed on the next call.
    global HIT_THRESHOLD
    HIT_THRESHOLD = 4
    try:
        assert with_helper(1, 2) == 6
    finally:
        HIT_THRESHOLD = 3


class _Unhashable(type):
    """A metaclass with __eq__ and no __hash__: its classes cannot be dict keys."""

    def __eq__(cls, other: object) -> bool:
        return cls is other

    __hash__ = None  # type: ignore[assignment]


class _Odd(metaclass=_Unhashable):
    pass


def test_an_argument_whose_class_is_unhashable_never_raises_from_memoize() -> None:
    """The scalar shortcut asks the arguments' types; a type that cannot be hashed is
    simply not a scalar, and the call goes on (uncached if its key cannot be made)."""

    @memoize(cache=Cache(None))
    def name_of(x: Any, y: Any = None) -> str:
        return type(x).__name__

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert name_of(_Odd()) == "_Odd"
        assert name_of(_Odd(), y=_Odd()) == "_Odd"
        assert name_of(1, y=_Odd()) == "int"


def test_a_large_stored_result_is_freed_when_the_caller_lets_go(cache: Cache, probe: Probe) -> None:
    """The function's memory layer is never the only holder of a large result it stored:
    ``del`` frees it, and the next call loads it from the store instead of computing."""
    import gc
    import weakref

    @memoize(cache=cache)
    def big(n: int) -> Any:
        probe.calls.append(n)
        return np.full(3 * 2**20, n, dtype=np.float64)  # 24 MiB, over the large-value size

    result = big(7)
    alive = weakref.ref(result)
    del result
    gc.collect()
    assert alive() is None
    again = big(7)
    assert probe.calls == [7] and float(again[0]) == 7.0 and again.nbytes == 3 * 2**20 * 8
    assert big.cache_info().store_hits == 1


def test_a_large_result_kept_in_memory_only_stays_held(cache: Cache, probe: Probe) -> None:
    """Without a store, memory is the only place the result lives: it is kept."""
    import gc
    import weakref

    @memoize(cache=cache, store=False)
    def big(n: int) -> Any:
        probe.calls.append(n)
        return np.full(3 * 2**20, n, dtype=np.float64)

    alive = weakref.ref(big(7))
    gc.collect()
    assert alive() is not None
    big(7)
    assert probe.calls == [7]
