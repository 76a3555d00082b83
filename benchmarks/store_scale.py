"""A store with many entries: what a small write, a hit, a listing and an eviction cost
as the store grows, against diskcache at the same sizes.

One store grows through the sizes of ``--entries`` (default 100, 10,000, 100,000):
it is filled to the first size, measured, filled on to the next, and so on.  The
fill is a ``Cache.put`` per entry through ``max_size=None`` (so no put lists the
store) and ``fsync=False``, then one ``os.sync()``; it is timed and reported on
its own rows.  Entries are real ones, signed and with their stats, as a session
writes them: entry files cannot be copied or linked into place, because each is
signed together with its key.

At each size, taking turns:

- a put of a ~1 KB value through a ``Cache`` with a 10 GB ``max_size`` (the
  default ``NBCACHE_MAX_SIZE``), so the put checks the store's size but evicts
  nothing; without and with fsync; the entry is removed after each run, untimed;
- a lookup of a stored entry on a fresh ``Cache`` (nothing in memory);
- ``Cache.ledger.records()`` on a fresh ``Cache``: what ``python -m nbcache list`` does;
- a put that takes the store just over ``max_size``, so exactly one entry is
  evicted (checked after each run, untimed);
- diskcache's ``set``, ``get`` and ``iterkeys`` on a diskcache holding as many
  entries of the same value.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbcache import Cache, LocalStore
from nbcache.cache.core import Ask

from .common import BENCH_SECRET, Contender, Group, Row, Settings, Target, environ, measure

__all__ = ["DEFAULT_ENTRIES", "ENTRIES", "GROUP", "names", "run"]

DEFAULT_ENTRIES = (100, 10_000, 100_000)
ENTRIES: tuple[int, ...] = DEFAULT_ENTRIES  # --entries sets it
LIMIT = 10 * 10**9  # the default NBCACHE_MAX_SIZE: every put checks it, none evicts

# Row names; names() gives the whole list for a choice of sizes.
FILL = "fill: Cache.put with max_size=None, no fsync, then os.sync()"
FILL_DC = "fill: diskcache set, then os.sync()"
PUT = "nbcache put 1 KB, no fsync"
PUT_FSYNC = "nbcache put 1 KB, fsync (default)"
SET_DC = "diskcache set 1 KB"
HIT = "nbcache lookup, fresh Cache (store hit)"
GET_DC = "diskcache get"
LIST = "nbcache Cache.records() (python -m nbcache list)"
LIST_DC = "diskcache list(iterkeys())"
EVICT = "nbcache put that evicts one entry, no fsync"

EMPTY_ROWS = (PUT, PUT_FSYNC, SET_DC)
SIZE_ROWS = (FILL, FILL_DC, PUT, PUT_FSYNC, SET_DC, HIT, GET_DC, LIST, LIST_DC, EVICT)

WRITE_TARGET = Target("<=", 1.5, "≤ 1.50×")
LIST_TARGET = Target("<=", 1.0, "≤ 1 s")
EVICT_TARGET = Target("<=", 0.010, "≤ 10 ms")

EMPTY = "empty store"


def group_label(entries: int) -> str:
    return f"{entries:,} entries"


def names(entries: Sequence[int] = DEFAULT_ENTRIES) -> list[tuple[str, str]]:
    """(group, name) of every row, in order, for these sizes."""
    rows = [(EMPTY, name) for name in EMPTY_ROWS]
    for n in sorted(set(entries)):
        rows += [(group_label(n), name) for name in SIZE_ROWS]
    return rows


def _key(kind: str, i: int) -> str:
    """A 32-hex-digit key like nbcache's own, spread over the store's shards."""
    return hashlib.blake2b(f"{kind}-{i}".encode(), digest_size=16).hexdigest()


def _value(i: int) -> dict[str, Any]:
    """About 1 KB pickled: an id and 110 floats."""
    return {"id": i, "values": [float(j) + i for j in range(110)]}


class _Stores:
    """The nbcache store and the diskcache that grow together through the sizes."""

    def __init__(self, folder: Path) -> None:
        import diskcache

        self.root = folder / "nbcache-store"
        self.filler = Cache(LocalStore(self.root, fsync=False), max_size=None, memory_items=0)
        self.dc = diskcache.Cache(str(folder / "diskcache"), size_limit=2**40)
        self.filled = 0  # fill keys written so far (some were evicted since)
        self.entry_size = 0

    def count(self) -> int:
        store = self.filler.store
        assert store is not None
        return sum(1 for _ in store.entries())

    def total(self) -> int:
        store = self.filler.store
        assert store is not None
        return sum(stat.size for stat in store.entries())

    def fill_nbcache(self, n: int) -> tuple[float, int]:
        """Put entries until the store holds ``n``; (seconds, entries added)."""
        missing = n - (self.count() if self.filled else 0)
        start = time.perf_counter()
        for i in range(self.filled, self.filled + missing):
            self.entry_size = self.filler.put(_key("fill", i), _value(i), ask=Ask(remember=False))
        os.sync()
        seconds = time.perf_counter() - start
        self.filled += missing
        return seconds, missing

    def fill_diskcache(self, n: int) -> tuple[float, int]:
        missing = n - len(self.dc)
        start = time.perf_counter()
        for i in range(len(self.dc), len(self.dc) + missing):
            self.dc.set(_key("fill", i), _value(i))
        os.sync()
        return time.perf_counter() - start, missing


def _write_contenders(stores: _Stores, label: str) -> list[Contender]:
    """A put of a new key on each side, removed again after the run."""
    root = stores.root
    put = Cache(LocalStore(root, fsync=False), max_size=LIMIT)
    put_fsync = Cache(LocalStore(root), max_size=LIMIT)

    def cleanup(cache: Cache, kind: str) -> Any:
        def after(i: int, size: Any) -> None:
            assert size > 0, f"{kind}: nothing stored"
            cache.remove(_key(f"{label}-{kind}", i))

        return after

    def dc_after(i: int, _: Any) -> None:
        assert stores.dc.delete(_key(f"{label}-dc", i))

    return [
        Contender(PUT, lambda i: put.put(_key(f"{label}-put", i), _value(i)), cleanup(put, "put")),
        Contender(
            PUT_FSYNC,
            lambda i: put_fsync.put(_key(f"{label}-fsync", i), _value(i)),
            cleanup(put_fsync, "fsync"),
        ),
        Contender(SET_DC, lambda i: stores.dc.set(_key(f"{label}-dc", i), _value(i)), dc_after),
    ]


def _read_contenders(stores: _Stores, n: int, repeat: int) -> list[Contender]:
    root = stores.root
    # The newest fill keys: evictions take the least recently used first.
    keys = [_key("fill", stores.filled - 1 - i % n) for i in range(repeat)]
    fresh = [Cache(LocalStore(root)) for _ in range(repeat)]  # made outside the timing

    def hit_after(i: int, hit: Any) -> None:
        assert hit is not None and hit.source == "store", hit

    def get_after(i: int, value: Any) -> None:
        assert value is not None

    def listed_after(i: int, listed: Any) -> None:
        assert len(listed) == n, (len(listed), n)

    return [
        Contender(HIT, lambda i: fresh[i].lookup(keys[i]), hit_after),
        Contender(GET_DC, lambda i: stores.dc.get(keys[i]), get_after),
        Contender(LIST, lambda i: Cache(LocalStore(root)).ledger.records(), listed_after),
        Contender(LIST_DC, lambda i: list(stores.dc.iterkeys()), listed_after),
    ]


def _evict_contender(stores: _Stores, n: int, label: str) -> Contender:
    """A put that takes the store over max_size by a quarter of an entry: one entry goes."""
    cache = Cache(LocalStore(stores.root, fsync=False))

    def limit() -> None:
        cache.ledger.max_size = stores.total() + stores.entry_size - stores.entry_size // 4

    def after(i: int, size: Any) -> None:
        assert size > 0
        count = stores.count()
        assert count == n, f"the evicting put left {count} entries, not {n}"
        limit()

    limit()
    return Contender(EVICT, lambda i: cache.put(_key(f"{label}-evict", i), _value(i)), after)


def _rows(label: str, names: Sequence[str], timings: Any, empty: Any, last: bool) -> list[Row]:
    rows = []
    for name in names:
        times = tuple(timings[name].times)
        best = min(times)
        ratio = None
        share = None
        target = None
        versus = ""
        unit = "%"
        if name in (PUT, PUT_FSYNC) and empty is not None:
            ratio = best / empty[name].best
            target = WRITE_TARGET if name == PUT and last else None
            versus = "the empty-store put"
        elif name == SET_DC and empty is not None:
            ratio = best / timings[PUT].best
            versus = "nbcache's speed / this"
        elif name == GET_DC:
            ratio = best / timings[HIT].best
            versus = "nbcache's speed / this"
        elif name == LIST_DC:
            ratio = best / timings[LIST].best
            versus = "nbcache's speed / this"
        elif name == LIST:
            share, unit, target = best, "s", (LIST_TARGET if last else None)
        elif name == EVICT:
            share, unit, target = best, "s", (EVICT_TARGET if last else None)
        rows.append(
            Row(
                label,
                name,
                times,
                ratio=ratio,
                share=share,
                unit=unit,
                target=target,
                versus=versus,
            )
        )
    return rows


def _fill_row(label: str, name: str, seconds: float, added: int) -> Row:
    return Row(
        label,
        name,
        (seconds,),
        share=seconds / added if added else None,
        unit="s",
        versus=f"per entry, {added:,} added" if added else "nothing to add",
    )


def run(settings: Settings, entries: Sequence[int] | None = None) -> list[Row]:
    sizes = sorted(set(entries if entries is not None else ENTRIES))
    folder = settings.directory / "store-scale"
    folder.mkdir(parents=True, exist_ok=True)
    with environ(NBCACHE_SECRET=BENCH_SECRET):
        try:
            return _measure(settings, folder, sizes)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _measure(settings: Settings, folder: Path, sizes: Sequence[int]) -> list[Row]:
    stores = _Stores(folder)
    try:
        settings.say("store_scale: empty store")
        empty = measure(
            settings, _write_contenders(stores, "empty"), prefault_bytes=0, label="store_scale: "
        )
        rows = _rows(EMPTY, EMPTY_ROWS, empty, None, False)
        for n in sizes:
            label = group_label(n)
            settings.say(f"store_scale: filling the nbcache store to {label}")
            fill = stores.fill_nbcache(n)
            settings.say(f"store_scale: filling diskcache to {label}")
            fill_dc = stores.fill_diskcache(n)
            contenders = [
                *_write_contenders(stores, f"n{n}"),
                *_read_contenders(stores, n, settings.repeat),
                _evict_contender(stores, n, f"n{n}"),
            ]
            timings = measure(
                settings, contenders, prefault_bytes=0, label=f"store_scale {label}: "
            )
            rows += [
                _fill_row(label, FILL, *fill),
                _fill_row(label, FILL_DC, *fill_dc),
                *_rows(label, SIZE_ROWS[2:], timings, empty, n == sizes[-1]),
            ]
        return rows
    finally:
        stores.dc.close()


GROUP = Group(
    "store_scale",
    "a store with many entries",
    lambda settings: run(settings),
    notes=(
        "One store grows through the sizes of --entries. The fill rows time how it was filled: "
        "a Cache.put per entry with max_size=None (so no put lists the store) and fsync=False, "
        "then one os.sync(); diskcache's fill is a set per entry, then os.sync(). Entry files "
        "cannot be copied into place, since each is signed with its key.",
        "The value is a dict of an int and 110 floats, about 1 KB pickled. The puts go through a "
        "Cache with max_size 10 GB (the default NBCACHE_MAX_SIZE), so each checks the store's "
        "size and evicts nothing; each writes a new key, removed after the run, untimed. "
        "diskcache (SQLite in WAL mode, synchronous=NORMAL) does not fsync a set, so compare it "
        "with the no-fsync put.",
        "The lookup runs on a fresh Cache each run, so the entry is read from its file: MAC, "
        "checksums, unpickle. diskcache's get runs on its open Cache, which holds no values in "
        "memory either.",
        "Cache.records() on a fresh Cache is what `python -m nbcache list` does before it prints.",
        "The evicting put goes through a Cache whose max_size is the store's size plus three "
        "quarters of an entry, so exactly one entry goes (checked after each run, untimed). "
        "diskcache culls inside set; it has no like-for-like row.",
        "Targets apply at the largest size: a put within 1.5× of the same put on an "
        "empty store, the listing under 1 s, the evicting put under 10 ms.",
    ),
)
