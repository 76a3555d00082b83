"""The cache core: memory in front of the store, degrading instead of failing, eviction."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nbcache import CacheWarning
from nbcache.cache.core import Ask, Cache, Hit, Start, Turn
from nbcache.cache.ledger import Ledger, NoLedger
from nbcache.entry.signing import Signer
from nbcache.errors import StoreError
from nbcache.store import LocalStore
from tests.conftest import key_of


def _fresh(cache: Cache) -> Cache:
    """A new process's view of the same store: nothing in memory."""
    assert isinstance(cache.store, LocalStore)
    return Cache(LocalStore(cache.store.root), signer=Signer(b"nbcache-test-secret-of-32-bytes-0k"))


def test_memory_then_store(cache: Cache) -> None:
    """A value is served from memory, and from the store in a fresh cache."""
    value = {"a": np.arange(10**6), "b": "text"}
    assert cache.put(key_of(1), value, {"label": "x", "compute_seconds": 1.0})
    hit = cache.lookup(key_of(1))
    assert hit is not None and hit.source == "memory" and hit.value is value
    other = _fresh(cache).lookup(key_of(1))
    assert other is not None and other.source == "store"
    assert np.array_equal(other.value["a"], value["a"]) and other.value["b"] == "text"
    assert other.info.meta["label"] == "x"


def test_miss(cache: Cache) -> None:
    """An unknown key is a miss in memory and store alike."""
    assert cache.lookup(key_of(9)) is None


def test_max_age(cache: Cache) -> None:
    """An entry older than max_age counts as a miss but stays stored."""
    cache.put(key_of(1), 1)
    assert cache.lookup(key_of(1), Ask(max_age=3600)) is not None
    assert cache.lookup(key_of(1), Ask(max_age=0)) is None
    assert _fresh(cache).lookup(key_of(1), Ask(max_age=0)) is None
    assert _fresh(cache).lookup(key_of(1)) is not None


def test_persist_false_keeps_memory_only(cache: Cache) -> None:
    """persist=False (--no-store) never writes to the store."""
    assert not cache.put(key_of(1), [1, 2], ask=Ask(persist=False))
    assert cache.lookup(key_of(1)) is not None
    assert _fresh(cache).lookup(key_of(1)) is None


def test_unpicklable_value_stays_in_memory_with_a_warning(cache: Cache) -> None:
    """A value that will not pickle is kept in memory only and named in one warning."""
    value = {"ok": 1, "lock": threading.Lock()}
    with pytest.warns(CacheWarning, match=r"memory only.*result\['lock'\] \(_thread.lock\)"):
        assert not cache.put(key_of(1), value, ask=Ask(name="result"))
    hit = cache.lookup(key_of(1))
    assert hit is not None and hit.value is value
    assert _fresh(cache).lookup(key_of(1)) is None
    assert list(cache.store.entries()) == []  # type: ignore[union-attr]


def test_value_bigger_than_the_limit(store: LocalStore, signer: Signer) -> None:
    """A value larger than the whole size limit is not stored, and the warning says why."""
    cache = Cache(store, signer=signer, max_size=1000)
    with pytest.warns(CacheWarning, match="NBCACHE_MAX_SIZE"):
        assert not cache.put(key_of(1), np.zeros(10_000))
    assert cache.lookup(key_of(1)) is not None


def test_get_or_compute_computes_once(cache: Cache) -> None:
    """A second call is a hit; the compute function runs once."""
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    first = cache.get_or_compute(key_of(1), compute)
    second = _fresh(cache).get_or_compute(key_of(1), compute)
    assert (first.value, first.hit) == (42, None) and first.stored > 0
    assert second.value == 42 and second.hit is not None and second.hit.source == "store"
    assert len(calls) == 1
    assert second.hit.info.compute_seconds == pytest.approx(first.compute_seconds)


def test_force_recomputes(cache: Cache) -> None:
    """force=True computes and overwrites even when an entry exists."""
    cache.get_or_compute(key_of(1), lambda: 1)
    assert cache.get_or_compute(key_of(1), lambda: 2, start=Start.FORCE).value == 2
    hit = _fresh(cache).lookup(key_of(1))
    assert hit is not None and hit.value == 2


def test_exception_stores_nothing_and_frees_the_key(cache: Cache) -> None:
    """compute's exception reaches the caller unchanged; nothing is stored; no lease is left."""
    error = ValueError("user bug")

    def fail() -> int:
        raise error

    with pytest.raises(ValueError) as info:
        cache.get_or_compute(key_of(1), fail)
    assert info.value is error
    assert cache.lookup(key_of(1)) is None
    assert cache.get_or_compute(key_of(1), lambda: 5).value == 5
    assert list((cache.store.root / "v1" / "leases").iterdir()) == []  # type: ignore[union-attr]


def test_threads_wait_for_the_one_computing(cache: Cache) -> None:
    """Two threads missing one key: one computes, the other gets its result."""
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    results: dict[str, int] = {}

    def compute() -> int:
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return 7

    def run(name: str) -> None:
        results[name] = _fresh(cache).get_or_compute(key_of(1), compute).value

    first = threading.Thread(target=run, args=("a",), name="a")
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=("b",), name="b")
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert results == {"a": 7, "b": 7}
    assert calls == ["a"]


def _stored(cache: Cache, n: int, nbytes: int, seconds: float, uses: int = 0) -> str:
    key = key_of(n)
    cache.put(key, np.zeros(nbytes, dtype=np.uint8), {"compute_seconds": seconds})
    store = cache.store
    assert store is not None
    stats = store.read_stats(key)
    assert stats is not None
    stats.update(uses=uses, last_used=1000.0 + n)
    store.write_stats(key, stats)
    return key


def test_eviction_keeps_what_saves_most_per_byte(store: LocalStore, signer: Signer) -> None:
    """Eviction removes the lowest compute-seconds x (uses+1) / bytes first."""
    cache = Cache(store, signer=signer)
    cheap = _stored(cache, 1, 400_000, seconds=1.0)  # 2.5e-6 s/B
    used = _stored(cache, 2, 400_000, seconds=1.0, uses=3)  # 1e-5
    slow = _stored(cache, 3, 400_000, seconds=10.0)  # 2.5e-5
    small = _stored(cache, 4, 100_000, seconds=1.0)  # 1e-5, but older than `used`
    sizes = {r.key: r.size for r in cache.ledger.records()}
    limit = sizes[slow] + sizes[used] + 1000
    cache.ledger.max_size = limit
    evicted = cache.ledger.evict()
    assert evicted == [cheap, small]
    assert {r.key for r in cache.ledger.records()} == {used, slow}


def test_lru_breaks_ties(store: LocalStore, signer: Signer) -> None:
    """Among entries of equal value the least recently used goes first."""
    cache = Cache(store, signer=signer)
    keys = [_stored(cache, n, 200_000, seconds=1.0) for n in (3, 1, 2)]
    cache.ledger.max_size = sum(r.size for r in cache.ledger.records()) - 1
    assert cache.ledger.evict() == [keys[1]]  # last_used 1001, the oldest


def test_pinned_entries_stay(store: LocalStore, signer: Signer) -> None:
    """A pinned entry is never evicted or pruned, however low its value."""
    cache = Cache(store, signer=signer)
    low = _stored(cache, 1, 300_000, seconds=0.001)
    high = _stored(cache, 2, 300_000, seconds=100.0)
    cache.ledger.pin(low)
    cache.ledger.max_size = 400_000
    assert cache.ledger.evict() == [high]
    assert cache.ledger.prune(older_than=0) == []
    assert [r.key for r in cache.ledger.records()] == [low]


def test_eviction_on_write_spares_the_new_entry(store: LocalStore, signer: Signer) -> None:
    """Writing past the limit evicts older entries, never the one just written."""
    cache = Cache(store, signer=signer, max_size=700_000)
    old = _stored(cache, 1, 300_000, seconds=50.0)
    _stored(cache, 2, 300_000, seconds=40.0)
    new = key_of(3)
    cache.put(new, np.zeros(300_000, dtype=np.uint8), {"compute_seconds": 0.001})
    assert {r.key for r in cache.ledger.records()} == {old, new}


def test_prune_older_than(cache: Cache) -> None:
    """prune(older_than=...) removes entries unused for that long."""
    old = _stored(cache, 1, 10, seconds=1.0)
    recent = key_of(2)
    cache.put(recent, 1)
    assert cache.ledger.prune(older_than=3600) == [old]
    assert [r.key for r in cache.ledger.records()] == [recent]


def test_uses_are_counted(cache: Cache) -> None:
    """Hits from memory and from the store count as uses, written at the next flush."""
    cache.put(key_of(1), "v")
    cache.lookup(key_of(1))
    cache.lookup(key_of(1))
    other = _fresh(cache)
    other.lookup(key_of(1))
    stats = cache.store.read_stats(key_of(1))  # type: ignore[union-attr]
    assert stats is not None and stats["uses"] == 0  # counted in memory: a hit writes no file
    other.ledger.flush_uses()  # what the other process does when it exits
    (record,) = cache.ledger.records()
    assert record.uses == 3
    assert record.last_used <= time.time()


def test_records_rebuilt_from_signed_header(cache: Cache) -> None:
    """Lost stats are rebuilt from the entry's signed header."""
    cache.put(key_of(1), "v", {"compute_seconds": 3.0, "label": "fit"})
    assert cache.store is not None
    (cache.store.root / "v1" / "stats" / f"{key_of(1)}.json").unlink()  # type: ignore[attr-defined]
    (record,) = _fresh(cache).ledger.records()
    assert (record.compute_seconds, record.label, record.uses) == (3.0, "fit", 0)


def test_clear_and_remove(cache: Cache, tmp_path: Path) -> None:
    """clear() empties memory and store; remove() forgets one key."""
    for n in range(3):
        cache.put(key_of(n), n)
    cache.remove(key_of(0))
    assert cache.lookup(key_of(0)) is None
    assert cache.clear() == 2
    assert cache.lookup(key_of(1)) is None and cache.ledger.records() == []


def test_memory_layer_is_bounded(store: LocalStore, signer: Signer) -> None:
    """The memory layer keeps the newest memory_items values."""
    cache = Cache(None, signer=signer, memory_items=2)
    for n in range(3):
        cache.put(key_of(n), n)
    assert cache.lookup(key_of(0)) is None
    assert cache.lookup(key_of(2)) is not None


def test_a_cache_without_a_store_has_a_ledger_that_keeps_nothing() -> None:
    """Every ledger method a cache calls exists on the ledger of a storeless cache too."""
    public = {name for name in dir(Ledger) if not name.startswith("_")}
    assert public <= set(dir(NoLedger))
    cache = Cache(None, max_size=10)
    assert cache.put(key_of(1), 1) == 0 and cache.lookup(key_of(1)) is not None
    assert cache.ledger.max_size is None and cache.ledger.records() == []
    assert cache.ledger.prune(older_than=0) == [] and cache.ledger.evict() == []
    with pytest.raises(StoreError, match="no stored entry"):
        cache.ledger.pin(key_of(1))


def test_try_begin_gives_way_to_a_caller_computing_the_key(cache: Cache) -> None:
    """begin claims the key; try_begin then returns None instead of waiting, and the hit
    once the value is stored. Start.FORCE claims it even though it is stored."""
    turn = cache.begin(key_of(1), Ask())
    assert isinstance(turn, Turn)
    assert cache.try_begin(key_of(1), Ask()) is None
    turn.finish(1, 0.0)
    hit = cache.try_begin(key_of(1), Ask())
    assert isinstance(hit, Hit) and hit.value == 1
    forced = cache.begin(key_of(1), Ask(), Start.FORCE)
    assert isinstance(forced, Turn)
    forced.finish(2, 0.0)
    assert _fresh(cache).lookup(key_of(1)).value == 2  # type: ignore[union-attr]
