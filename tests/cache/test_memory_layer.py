"""The memory layer keeps what it alone holds within a byte bound, and no large value
alive that the user let go of."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from nbcache.cache.core import Cache
from nbcache.cache.lru import LRU, weigh
from nbcache.entry.format import EntryInfo
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore

np = pytest.importorskip("numpy")

_MB = 10**6
_KEY = "ab" * 16


def test_weigh_counts_buffers_parts_and_stops_at_its_bound() -> None:
    array = np.zeros(10**6)
    assert weigh(array) >= array.nbytes
    assert weigh({"vars": {"a": array, "b": [array, array]}}) < 2 * array.nbytes  # once
    assert weigh(["x" * 1000] * 3) >= 1000
    many = [float(i) for i in range(10**6)]
    exact = sys.getsizeof(many) + sum(sys.getsizeof(x) for x in many)
    assert weigh(many, limit=100) >= exact  # work bounded; what it did not see still counts


def test_a_header_read_from_an_entry_weighs_by_its_length_unwalked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry's header from the store counts as eight bytes per byte of its text, its
    metadata never walked; one made in memory (no text) is walked as before."""
    meta = {"summary": {f"arg{i}": {"repr": str(i), "type": "int"} for i in range(500)}}
    read = EntryInfo(_KEY, 0.0, 0, meta, "", False, header_size=1000)
    made = EntryInfo(_KEY, 0.0, 0, meta, "", False)
    sizes = []
    monkeypatch.setattr(sys, "getsizeof", lambda obj, default=0: sizes.append(obj) or 1)
    assert weigh((None, read, 0)) == 4 + 8 * 1000
    assert len(sizes) == 4  # the tuple, None, the header and the size: not one more
    sizes.clear()
    assert weigh(made) == len(sizes) > 1500  # every part of it


def test_a_byte_bound_drops_the_least_recently_used() -> None:
    lru: LRU[str, bytes] = LRU(100, max_bytes=3 * _MB + 1000)
    for key in "abc":
        lru.put(key, bytes(_MB))
    assert lru.get("a") is not None  # now the most recently used
    lru.put("d", bytes(_MB))
    assert sorted(lru) == ["a", "c", "d"]
    assert lru.use().kept_bytes <= 3 * _MB + 1000
    lru.put("e", bytes(4 * _MB))  # larger than the bound on its own: not kept
    assert lru.get("e") is None and len(lru) == 3


def test_a_large_value_lives_only_while_the_user_holds_it() -> None:
    lru: LRU[str, tuple[dict[str, Any], int]] = LRU(10, max_bytes=100 * _MB, large=5 * _MB)
    big = np.ones(10 * _MB // 8)
    small = [1, 2, 3]
    lru.put("k", ({"vars": {"big": big, "small": small}}, 7))
    found = lru.get("k")
    assert found is not None and found[0]["vars"]["big"] is big and found[1] == 7
    use = lru.use()
    assert use.kept_bytes < _MB and use.weak_values == 1 and use.weak_bytes >= big.nbytes
    gone = weakref.ref(big)
    del big, found
    gc.collect()
    assert gone() is None  # the layer did not keep it alive
    assert lru.get("k") is None and len(lru) == 0


def test_a_small_view_of_a_large_array_does_not_keep_the_array_alive() -> None:
    lru: LRU[str, object] = LRU(10, max_bytes=100 * _MB, large=5 * _MB)
    big = np.ones(10 * _MB // 8)
    lru.put("k", {"vars": {"head": big[:10]}})
    assert lru.use().kept_bytes < _MB  # held weakly: the view costs the whole base
    gone = weakref.ref(big)
    del big
    gc.collect()
    assert gone() is None and lru.get("k") is None


def test_a_large_value_without_weak_references_is_not_kept() -> None:
    """A big list of numbers cannot be held weakly: keeping it would keep it alive."""
    lru: LRU[str, object] = LRU(10, max_bytes=100 * _MB, large=_MB)
    lru.put("numbers", {"vars": {"xs": list(range(10**5))}})
    assert lru.get("numbers") is None
    floats = [float(i) for i in range(10**6)]  # 32 MB, more parts than a put looks at
    wide: LRU[str, object] = LRU(10, max_bytes=100 * _MB, large=16 * _MB)
    wide.put("floats", {"vars": {"xs": floats}})
    assert wide.get("floats") is None
    lru.put("few", {"vars": {"xs": list(range(10))}})
    assert lru.get("few") is not None


def test_the_cache_frees_a_large_restored_value_after_del(tmp_path: Path, signer: Signer) -> None:
    """Through the cache: a value loaded from the store stays in memory while the user
    holds it (a hit from memory), and is freed when the user lets go."""
    store = LocalStore(tmp_path)
    Cache(store, signer=signer).put(_KEY, {"a": np.ones(_MB)})
    fresh = Cache(store, signer=signer, memory_bytes=100 * _MB, large=_MB)
    hit = fresh.lookup(_KEY)
    assert hit is not None and hit.source == "store"
    value = hit.value["a"]
    again = fresh.lookup(_KEY)
    assert again is not None and again.source == "memory" and again.value["a"] is value
    gone = weakref.ref(value)
    del hit, again, value
    gc.collect()
    assert gone() is None
    assert fresh.memory_use().values == 0
    assert fresh.lookup(_KEY) is not None  # back from the store
