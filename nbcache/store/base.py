"""The bytes-level store protocol every backend implements, every capability declared.

A store knows nothing of pickles, signatures or eviction policy: it keeps
immutable entry files by key, a small mutable stats record per key, and a
lease per key.  :class:`nbcache.cache.core.Cache` builds everything else on top.

:class:`Store` is an abstract base class: a backend implements the eight
abstract operations, and inherits a working default for every other one
(found by listing, which is what an object store does anyway); a backend that
keeps an index (:class:`~nbcache.store.local.LocalStore`) overrides them to
answer without a listing.  Callers never probe a store with ``getattr``.
"""

from __future__ import annotations

import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable

from ..errors import StoreError

__all__ = ["EntryStat", "Lease", "Store", "check_key", "eviction_rank", "is_key", "stat_number"]

_KEY = re.compile(r"^[0-9a-f]{16,128}$")
_COPY_CHUNK = 8 << 20
# Keys this process still needs whole (a lazy run's stand-ins load from them): no
# eviction by this process removes them while it lives. Keys are content digests, so one
# set serves every store.
_HELD: set[str] = set()


def is_key(name: object) -> bool:
    """Whether ``name`` has the form of a cache key (files of other names are not ours)."""
    return isinstance(name, str) and _KEY.match(name) is not None


def check_key(key: str) -> str:
    """``key`` if it is a lowercase hex digest; anything else could escape the folder.

    Raises:
        StoreError: not 16 to 128 lowercase hex digits.
    """
    if not is_key(key):
        raise StoreError(f"{key!r} is not a cache key: keys are 16 to 128 lowercase hex digits")
    return key


def stat_number(stats: Mapping[str, Any] | None, name: str, default: float = 0.0) -> float:
    """``stats[name]`` as a finite number, else ``default``.

    Stats records are unsigned: anybody who can write the store can write one, so
    every field is checked where it is read, never trusted to be what it claims.
    (Exact type tests, not ``isinstance``: a listing makes 400,000 of these calls.)
    """
    value = stats.get(name, default) if stats.__class__ is dict else default
    if value.__class__ is float or value.__class__ is int:
        return float(value) if value - value == 0 else default  # inf - inf is nan
    if isinstance(stats, Mapping) and stats.__class__ is not dict:
        return stat_number(dict(stats), name, default)
    return default


def eviction_rank(stats: Mapping[str, Any] | None) -> float:
    """What an entry saves per byte it takes: compute seconds x (uses + 1) / size, to three
    significant figures, so entries of one cell (a few header bytes apart) rank equal and
    the least recently used of them goes first.  Low ranks are evicted first."""
    uses = max(0.0, stat_number(stats, "uses"))
    seconds = max(0.0, stat_number(stats, "compute_seconds"))
    score = seconds * (uses + 1) / max(stat_number(stats, "size"), 1.0)
    return float(f"{score:.3g}")


@dataclass(frozen=True)
class EntryStat:
    """One stored entry as a listing sees it, without opening it."""

    key: str
    size: int
    mtime: float


@runtime_checkable
class Lease(Protocol):
    """A claim on one key: its holder computes, everybody else waits for the entry."""

    def acquire(self) -> bool:
        """Take the lease without blocking (taking over a dead holder's); True if ours."""

    def release(self) -> None:
        """Give the lease up; a no-op if it is not ours any more."""

    def holder(self) -> Mapping[str, Any] | None:
        """Who holds it now (pid, host, heartbeat), or None if nobody does."""


class Store(ABC):
    """Immutable entries by key, a mutable stats record per key, and leases.

    The eight abstract methods are the backend's; the rest have defaults built
    on them.  Every method raises :class:`~nbcache.errors.StoreError` (never a raw
    ``OSError``) for a store it cannot use, and skips anything in the store it did
    not write.
    """

    location: str
    #: Seconds between two listings the cache may make to enforce the size limit;
    #: 0 when :meth:`total_size` is cheap (an index), more for a bucket that is slow to list.
    list_interval: float = 0.0

    # -- the backend's -------------------------------------------------------

    @abstractmethod
    def open_entry(self, key: str) -> BinaryIO:
        """A seekable binary reader of the entry. Raises KeyError when absent, StoreError."""

    @abstractmethod
    def write_entry(self, key: str, *, replace: bool = False) -> AbstractContextManager[BinaryIO]:
        """A writer whose bytes become the entry all at once when the block exits cleanly.

        Create-if-absent: an entry another writer already published under ``key`` is
        kept and ours dropped (entries are immutable; the one there is as good as ours,
        and one written with another secret is not ours to replace).  ``replace=True``
        (a forced recomputation, asked for by the user) replaces it.  On an exception
        nothing becomes visible and nothing is left behind.  Raises StoreError for a
        read-only or full store.
        """

    @abstractmethod
    def has_entry(self, key: str) -> bool:
        """Whether a complete entry is stored under ``key`` (False when it cannot tell)."""

    @abstractmethod
    def remove_entry(self, key: str) -> None:
        """Remove the entry and its stats; a no-op when absent."""

    @abstractmethod
    def entries(self) -> Iterator[EntryStat]:
        """Every complete entry, in no particular order; files nbcache did not write are
        skipped."""

    @abstractmethod
    def read_stats(self, key: str) -> dict[str, Any] | None:
        """The stats record of ``key`` (uses, last use, pin, ...), or None.

        Unsigned: the caller checks every field it reads (:func:`stat_number`).
        """

    @abstractmethod
    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        """Replace the stats record of ``key`` (last writer wins).

        Its ``uses``, ``compute_seconds``, ``size``, ``last_used`` and ``pinned`` order
        :meth:`eviction_order` (see :func:`eviction_rank`).
        """

    @abstractmethod
    def lease(self, key: str) -> Lease:
        """The lease object for ``key`` (not yet acquired)."""

    # -- defaults ------------------------------------------------------------

    def check(self) -> None:
        """Raise StoreError if the store cannot be reached or used at all."""
        return  # a store that can always be reached has nothing to check

    def probe(self, key: str) -> bool:
        """Whether the entry of ``key`` exists.

        Raises:
            StoreError: the store cannot be asked (unlike :meth:`has_entry`, which says no).
        """
        return self.has_entry(key)

    def download(self, key: str, target: BinaryIO) -> None:
        """Copy the entry into ``target`` in chunks. Raises KeyError when absent, StoreError."""
        with self.open_entry(key) as source:
            shutil.copyfileobj(source, target, _COPY_CHUNK)

    def upload(self, key: str, source: str, *, replace: bool = False) -> None:
        """Store the complete entry file ``source`` (a local path) under ``key``, as
        :meth:`write_entry` would.

        Raises:
            StoreError: the store cannot be written, or ``source`` read.
        """
        try:
            with open(source, "rb") as src, self.write_entry(key, replace=replace) as dst:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)
        except OSError as exc:
            raise StoreError(f"cannot copy {source} into {self.location}: {exc}") from exc

    def entries_with_stats(self) -> Iterator[tuple[EntryStat, dict[str, Any] | None]]:
        """Every entry with its stats record (None when it has none): what a listing shows."""
        for stat in self.entries():
            yield stat, self.read_stats(stat.key)

    def total_size(self) -> int:
        """Bytes the entries take, summed over a listing unless the store keeps an index."""
        return sum(stat.size for stat in self.entries())

    def hold(self, key: str) -> None:
        """Keep ``key`` from eviction by this process while it lives: a value restored as a
        stand-in loads from its entry when a later cell needs it, which eviction by the
        cells stored meanwhile must not take away."""
        _HELD.add(key)

    @staticmethod
    def held(protect: Iterable[str] = ()) -> set[str]:
        """``protect`` and the keys this process holds (see :meth:`hold`)."""
        return {*protect, *_HELD}

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        """Unpinned entries, lowest :func:`eviction_rank` first, least recently used among
        equals (none this process holds)."""
        keep = self.held(protect)
        ranked = []
        for stat, stats in self.entries_with_stats():
            if stat.key in keep or (isinstance(stats, Mapping) and stats.get("pinned") is True):
                continue
            rank = eviction_rank(stats)
            ranked.append((rank, stat_number(stats, "last_used", stat.mtime), stat))
        ranked.sort(key=lambda row: (row[0], row[1]))
        return iter([row[2] for row in ranked])

    def keep_within(self, max_size: int | None) -> bool:
        """Hold the entries to ``max_size`` bytes (None: no limit) by evicting as each entry
        is published, in the same step; return whether this store does.

        A store that cannot (no lock around its listing: a bucket) returns False, and the
        cache evicts after each write instead.
        """
        return False

    def evict_to(self, max_size: int, protect: Iterable[str] = ()) -> list[str]:
        """Remove unpinned entries in :meth:`eviction_order` until the store holds at most
        ``max_size`` bytes; return the removed keys."""
        total = self.total_size()
        removed: list[str] = []
        for stat in self.eviction_order(protect) if total > max_size else ():
            if total <= max_size:
                break
            self.remove_entry(stat.key)
            removed.append(stat.key)
            total -= stat.size
        return removed

    def reindex(self) -> int:
        """Rebuild the index from the entries themselves; return how many it holds.

        A store without an index has nothing to rebuild: it counts its entries.
        """
        return sum(1 for _ in self.entries())
