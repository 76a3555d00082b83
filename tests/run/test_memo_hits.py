"""What a @memoize hit does, bounded by work rather than time: no source read, one read
of the entry, the fingerprint's checks compiled, and still never stale."""

from __future__ import annotations

import importlib.metadata
import inspect
import io
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

from nbcache import memoize
from nbcache.cache.core import Cache
from nbcache.cache.reading import WHOLE_READ
from nbcache.entry.signing import Signer
from nbcache.keys import guards, modules, versions
from nbcache.store import LocalStore, paths
from tests.notebook_sim import run_cell

_SECRET = b"nbcache-test-secret-of-32-bytes-0k"
# More calls than a fingerprint's checks run from their list before they are compiled.
_MANY = 40


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("inspect's source reader was asked on the hit path")


@pytest.fixture
def no_getsource(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("getsource", "getsourcelines", "findsource"):
        monkeypatch.setattr(inspect, name, _refuse)
    yield


class CountingStore(LocalStore):
    """A LocalStore that counts entry opens and the reads of the files it opened."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opens = 0
        self.reads = 0

    def open_entry(self, key: str) -> BinaryIO:
        f = super().open_entry(key)
        self.opens += 1
        return _Counted(f, self)  # type: ignore[return-value]


class _Counted(io.RawIOBase):
    """The entry file, each read of it counted."""

    def __init__(self, f: Any, store: CountingStore) -> None:
        super().__init__()
        self._f = f
        self._store = store

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._store.reads += 1
        return self._f.read(size)  # type: ignore[no-any-return]

    def readinto(self, buffer: Any) -> int:
        self._store.reads += 1
        return self._f.readinto(buffer)  # type: ignore[no-any-return]

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)  # type: ignore[no-any-return]

    def tell(self) -> int:
        return self._f.tell()  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return self._f.fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._f.close()
        super().close()


def _define(ns: dict[str, Any]) -> None:
    run_cell(
        """
        SCALE = 2

        def helper(x):
            return x * SCALE

        @memoize(cache=cache)
        def work(n):
            return {"rows": np.arange(helper(n), dtype=np.float64), "label": "features"}
        """,
        ns,
    )


def _session(store: Any) -> dict[str, Any]:
    """A fresh notebook's globals with ``work`` defined, memoized on ``store``."""
    ns: dict[str, Any] = {
        "memoize": memoize,
        "np": np,
        "cache": Cache(store, signer=Signer(_SECRET)),
    }
    _define(ns)
    return ns


def test_a_first_hit_reads_no_source_and_the_entry_once(tmp_path: Path, no_getsource: None) -> None:
    """As in a fresh kernel: a new process's cache finds the stored result, its entry file
    opened once and read with one read, and inspect's source reader never asked."""
    first = _session(LocalStore(tmp_path))
    stored = first["work"](500)
    store = CountingStore(tmp_path)
    second = _session(store)
    value = second["work"](500)
    assert np.array_equal(value["rows"], stored["rows"])
    assert second["work"].cache_info().store_hits == 1
    assert (store.opens, store.reads) == (1, 1)
    value["rows"][0] = 7.0  # loaded from the one read's memory, and writable
    for _ in range(_MANY):
        assert second["work"](500)["label"] == "features"
    assert store.opens == 1


# What the process opens while a list is active: an audit hook cannot be removed, so one
# hook serves every test and records only when asked.
_OPENED: list[list[str]] = []


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED:
        _OPENED[-1].append(str(args[0]))


sys.addaudithook(_on_audit)


def test_a_small_first_hit_opens_the_entry_file_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small entry is read whole, never mapped: its first hit in a fresh process opens
    its entry file and no other file (not the mount table that tells whether the store's
    folder may be mapped)."""
    first = _session(LocalStore(tmp_path))
    first["work"](500)
    monkeypatch.setattr(paths, "_mappable", {})  # as in a fresh process
    store = LocalStore(tmp_path)
    second = _session(store)
    second["work"].cache.signer  # the secret is read when the cache is opened  # noqa: B018
    _OPENED.append([])
    try:
        second["work"](500)
    finally:
        opened = _OPENED.pop()
    assert second["work"].cache_info().store_hits == 1
    assert [Path(p).parent.parent.name for p in opened if not p.isdigit()] == ["entries"]


def test_a_first_hit_decodes_no_json_walks_no_header_asks_no_package_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work of a small first hit, beyond the value itself: the header goes to json's
    scanner alone (no json.loads), is weighed for the memory layer by its length (its
    metadata never walked), and numpy's version comes from the module, never from the
    installed packages' metadata."""
    first = _session(LocalStore(tmp_path))
    first["work"](500)
    second = _session(LocalStore(tmp_path))
    calls: Counter[str] = Counter()

    def counting(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    counting(json, "loads")
    counting(importlib.metadata, "version")
    counting(importlib.metadata, "packages_distributions")
    counting(sys, "getsizeof")
    monkeypatch.setattr(versions, "_VERSIONS", {})  # as in a fresh process
    monkeypatch.setattr(modules, "_LOCAL", {})
    assert second["work"](500)["label"] == "features"
    assert second["work"].cache_info().store_hits == 1
    # The value (a dict, its two keys, a str, the array's view of its buffer), the tuple
    # the memory layer keeps, the header and the stored size: the header's dozens of parts
    # (the call's summary) not.
    assert calls == {"getsizeof": 8}


def test_a_large_entry_still_streams(tmp_path: Path) -> None:
    """An entry larger than one read's bound is read in parts, checked as it arrives."""
    signer = Signer(_SECRET)

    def total(n: int) -> np.ndarray:
        return np.ones(n)

    memoize(cache=Cache(LocalStore(tmp_path), signer=signer))(total)(WHOLE_READ // 8 + 1)
    store = CountingStore(tmp_path)
    again = memoize(cache=Cache(store, signer=signer))(total)
    assert again(WHOLE_READ // 8 + 1).sum() == WHOLE_READ // 8 + 1
    assert store.opens == 1 and store.reads > 1


def _warm(fn: Any, *args: Any) -> Any:
    """Call until the fingerprint's checks are compiled; the last result."""
    for _ in range(_MANY):
        result = fn(*args)
    assert not isinstance(fn._fp.valid, type(fn._fp.still_valid)), "checks not compiled"
    return result


@pytest.mark.parametrize(
    "change",
    [
        "def helper(x):\n    return x * SCALE + 1\n",  # the helper redefined
        "helper.__code__ = (lambda x: x * SCALE + 1).__code__\n",  # edited in place
        "helper.__defaults__ = (1,)\n",
        "SCALE = 3\n",  # a global it reads, rebound
        "work.__wrapped__.__code__ = (lambda n: {'rows': n, 'label': 'other'}).__code__\n",
    ],
)
def test_compiled_checks_are_never_stale(cache: Cache, change: str) -> None:
    """Once the checks are compiled, a changed helper, global or function misses on the
    very next call, as from the list."""
    ns: dict[str, Any] = {"memoize": memoize, "np": np, "cache": cache}
    _define(ns)
    _warm(ns["work"], 3)
    hits = ns["work"].cache_info().hits
    run_cell(change, ns)
    ns["work"](3)
    assert ns["work"].cache_info()[:2] == (hits, 2)


def test_a_global_deleted_or_defined_after_compiling_misses(cache: Cache) -> None:
    """A global deleted since is a miss (its absence counts), and so is one defined where
    the function saw none."""
    ns: dict[str, Any] = {"memoize": memoize, "cache": cache}
    run_cell(
        """
        LIMIT = 10

        @memoize(cache=cache)
        def capped(x):
            try:
                extra = BONUS
            except NameError:
                extra = 0
            return min(x, LIMIT) + extra
        """,
        ns,
    )
    assert _warm(ns["capped"], 50) == 10
    ns["BONUS"] = 5
    assert ns["capped"](50) == 15
    assert _warm(ns["capped"], 50) == 15
    del ns["LIMIT"]
    with pytest.raises(NameError):
        ns["capped"](50)


def test_a_data_global_mutated_in_place_misses(cache: Cache) -> None:
    """A list the function reads, appended to after the checks are compiled: a miss."""
    ns: dict[str, Any] = {"memoize": memoize, "cache": cache}
    run_cell(
        """
        WEIGHTS = [1, 2]

        @memoize(cache=cache)
        def weighted(x):
            return x * sum(WEIGHTS)
        """,
        ns,
    )
    assert _warm(ns["weighted"], 2) == 6
    ns["WEIGHTS"].append(3)
    assert ns["weighted"](2) == 12


def test_compiled_checks_are_the_list_checks(cache: Cache) -> None:
    """The compiled function and the list agree, holding and failing."""
    namespace = {"a": 1}
    built = guards.Guards()
    built.bound(namespace, "a", 1)
    built.unbound(namespace, "b")
    built.call(lambda: True)
    compiled = built.compiled()
    assert compiled() and all(check() for check in built.checks)
    namespace["b"] = 2
    assert not compiled() and not all(check() for check in built.checks)
    del namespace["b"]
    namespace["a"] = 2
    assert not compiled() and not all(check() for check in built.checks)
    assert guards.Guards().compiled()()


def test_plain_scalars_key_by_type_without_types(cache: Cache) -> None:
    """f(1), f(True) and f(1.0) stay three entries, f(-0.0) and f(0.0) two, though ints
    and strings key by their values alone on the hit path."""

    @memoize(cache=cache)
    def echo(x: Any, y: Any = "s") -> str:
        return f"{type(x).__name__}:{x!r}:{y}"

    for value in (1, True, 1.0, 0.0, -0.0, None, b"1", "1"):
        for _ in range(3):
            assert echo(value) == f"{type(value).__name__}:{value!r}:s"
    assert echo.cache_info()[:2] == (16, 8)
    assert echo(1, y="t") == "int:1:t" and echo(1, "t") == "int:1:t"
    assert echo.submit(1).result() == "int:1:s"
    assert echo.cache_info()[:2] == (18, 9)


def test_positional_binding_keys_as_inspect_does(cache: Cache) -> None:
    """Positional arguments bound without inspect give the key keywords give."""

    @memoize(cache=cache)
    def scaled(a: int, b: int = 2, /, c: int = 3) -> int:
        return a * b * c

    assert scaled(1) == 6
    assert scaled(1, 2, c=3) == 6
    assert scaled(1, 2, 3) == 6
    assert scaled.cache_info()[:2] == (2, 1)
    with pytest.raises(TypeError):
        scaled()
    with pytest.raises(TypeError):
        scaled(1, 2, 3, 4)


def test_a_miss_describes_its_arguments_before_the_function_changes_them(cache: Cache) -> None:
    """A hit makes no summary of its call; a miss makes it before the body runs, so why()
    and listings show the arguments as they were passed."""

    @memoize(cache=cache)
    def grow(items: list[int]) -> int:
        items.append(0)
        return len(items)

    assert grow([1, 2]) == 3
    assert grow([1, 2, 3]) == 4
    assert grow.why() == ["argument `items` changed (len 2 -> len 3)"]
    [record] = [r for r in cache.ledger.records() if r.key == grow._last.key]  # type: ignore[union-attr]
    assert record.first_line == "grow([1, 2, 3])"


def test_a_function_redefined_in_a_cell_misses(cache: Cache) -> None:
    """The defining cell run again with another body: the new function's first call is a
    miss, and the old body's result is not what it gets."""
    ns: dict[str, Any] = {"memoize": memoize, "np": np, "cache": cache}
    _define(ns)
    assert len(_warm(ns["work"], 3)["rows"]) == 6
    run_cell(
        """
        @memoize(cache=cache)
        def work(n):
            return {"rows": np.arange(helper(n) + 1, dtype=np.float64), "label": "features"}
        """,
        ns,
    )
    assert len(ns["work"](3)["rows"]) == 7
    assert ns["work"].cache_info()[:2] == (0, 1)
