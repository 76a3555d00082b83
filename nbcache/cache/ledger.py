"""The ledger: uses, sizes and stats of stored entries, and eviction by value per byte.

A hit costs no file write: uses are counted in memory and flushed to the
store's stats before listings and eviction, and when the process exits.
Stats are a heuristic: a damaged or forged record changes at most eviction
order or a listing, never what a lookup returns.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook is registered first, runs last
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import xxhash

from ..entry.format import EntryInfo, read_info
from ..entry.signing import Signer
from ..errors import CacheError, ForeignEntryError, StoreError
from ..store.base import Store

__all__ = ["EntryRecord", "Ledger", "fresh_stats", "latest_key"]


@dataclass
class EntryRecord:
    """One stored entry as listings and eviction see it."""

    key: str
    size: int
    created: float
    last_used: float
    uses: int
    compute_seconds: float
    pinned: bool = False
    label: str = ""
    identity: str = ""  # the function or cell that made it
    first_line: str = ""  # of a cell's code

    @property
    def score(self) -> float:
        """Seconds saved per byte kept: low scores are evicted first."""
        return self.compute_seconds * (self.uses + 1) / max(self.size, 1)


class Ledger:
    """Stats of the entries in ``store``: uses, listings, eviction, pins, last keys.

    Args:
        store: the store whose entries it keeps account of.
        signer: gives the signer that checks entry headers when stats are rebuilt.
        remove: removes an entry everywhere (memory and store).
        discard: removes a damaged entry with a warning.
        max_size: bytes the store may hold; None for no limit.
    """

    def __init__(
        self,
        store: Store,
        *,
        signer: Callable[[], Signer],
        remove: Callable[[str], None],
        discard: Callable[[str, BaseException], None],
        max_size: int | None = None,
    ) -> None:
        self.store = store
        self.max_size = max_size
        self._signer = signer
        self._remove = remove
        self._discard = discard
        self._lock = threading.Lock()
        self._pending_uses: dict[str, tuple[int, float, EntryInfo]] = {}
        self._listed: tuple[float, int] | None = None  # (when, bytes) of the last listing
        _LIVE.add(self)

    def added(self, key: str, info: EntryInfo, size: int) -> None:
        """Account for an entry just written under ``key``, then evict to fit the limit."""
        self._write_stats(key, fresh_stats(info, size))
        self.evict(protect=(key,), added=size)

    def forget(self, key: str) -> None:
        """Drop uses not yet flushed for ``key`` (it is being removed)."""
        with self._lock:
            self._pending_uses.pop(key, None)

    def forget_all(self) -> None:
        with self._lock:
            self._pending_uses.clear()

    def _write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        try:
            self.store.write_stats(key, stats)
        except StoreError:
            pass  # stats only steer eviction; a read-only store has no eviction to steer

    def count_use(self, key: str, info: EntryInfo) -> None:
        """Count a hit in memory; :meth:`flush_uses` writes the counts to the store later,
        so a hit costs no file write."""
        with self._lock:
            uses, _, _ = self._pending_uses.get(key, (0, 0.0, info))
            self._pending_uses[key] = (uses + 1, time.time(), info)

    def flush_uses(self) -> None:
        """Write the uses counted since the last flush to the store's stats.

        Called before every listing and eviction, and when the process exits.
        """
        with self._lock:
            pending, self._pending_uses = self._pending_uses, {}
        for key, (uses, last, info) in pending.items():
            if not self.store.has_entry(key):
                continue
            stats = self.store.read_stats(key) or fresh_stats(info, 0)
            stats["uses"] = int(stats.get("uses", 0)) + uses
            stats["last_used"] = max(float(stats.get("last_used", 0.0)), last)
            self._write_stats(key, stats)

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        """Record the key summary of ``identity``'s newest entry (for "why did it miss")."""
        self._write_stats(latest_key(identity), {"identity": identity, "summary": summary})

    def latest(self, identity: str) -> dict[str, Any] | None:
        """The key summary noted last for ``identity``, in this process or any other."""
        record = self.store.read_stats(latest_key(identity)) or {}
        if record.get("identity") == identity and isinstance(record.get("summary"), dict):
            return dict(record["summary"])
        return None

    def records(self) -> list[EntryRecord]:
        """Every stored entry with its stats, rebuilt from the signed header when missing."""
        self.flush_uses()
        out = []
        for stat in self.store.entries():
            stats = self.store.read_stats(stat.key) or self._rebuild_stats(stat.key)
            if stats is None:
                continue
            out.append(
                EntryRecord(
                    key=stat.key,
                    size=stat.size,
                    created=float(stats.get("created", stat.mtime)),
                    last_used=float(stats.get("last_used", stat.mtime)),
                    uses=int(stats.get("uses", 0)),
                    compute_seconds=float(stats.get("compute_seconds", 0.0)),
                    pinned=bool(stats.get("pinned", False)),
                    label=str(stats.get("label", "")),
                    identity=str(stats.get("identity", "")),
                    first_line=str(stats.get("first_line", "")),
                )
            )
        return out

    def _rebuild_stats(self, key: str) -> dict[str, Any] | None:
        try:
            with self.store.open_entry(key) as f:
                info = read_info(f, self._signer())
        except (KeyError, ForeignEntryError):
            return None
        except (CacheError, OSError) as exc:
            self._discard(key, exc)
            return None
        stats = fresh_stats(info, 0)
        stats["uses"] = 0
        self._write_stats(key, stats)
        return stats

    def evict(self, protect: Iterable[str] = (), added: int = 0) -> list[str]:
        """Remove the least valuable entries until the store fits ``max_size``.

        ``added`` is what the caller just wrote.  A store that is slow to list (a
        bucket) sets ``list_interval``: between listings the size is estimated from the
        last listing plus what this process wrote, and listed again only when that
        estimate is over the limit or the interval has passed.
        """
        if self.max_size is None:
            return []
        interval = float(getattr(self.store, "list_interval", 0.0))
        now = time.monotonic()
        if interval and self._listed is not None and now - self._listed[0] < interval:
            estimate = self._listed[1] + added
            self._listed = (self._listed[0], estimate)
            if estimate <= self.max_size:
                return []
        # Sizes come from one listing; stats are read only when over.
        sizes = {stat.key: stat.size for stat in self.store.entries()}
        total = sum(sizes.values())
        if total > self.max_size:
            # A slow-to-list store is pruned 10 % below its limit, so the next writes
            # fit without another listing.
            target = int(self.max_size * 0.9) if interval else self.max_size
            removed = self.prune(max_size=target, protect=protect)
            total -= sum(sizes.get(key, 0) for key in removed)
        else:
            removed = []
        self._listed = (now, total)
        return removed

    def prune(
        self,
        *,
        max_size: int | None = None,
        older_than: float | None = None,
        protect: Iterable[str] = (),
    ) -> list[str]:
        """Remove unpinned entries unused for ``older_than`` seconds, then the lowest
        value per byte until ``max_size`` is met; return the removed keys."""
        records = self.records()
        keep = set(protect)
        now = time.time()
        removed = []
        if older_than is not None:
            for rec in records:
                if not rec.pinned and rec.key not in keep and now - rec.last_used > older_than:
                    removed.append(rec.key)
        total = sum(rec.size for rec in records if rec.key not in removed)
        if max_size is not None and total > max_size:
            candidates = [r for r in records if not r.pinned and r.key not in keep]
            candidates = [r for r in candidates if r.key not in removed]
            for rec in sorted(candidates, key=_eviction_order):
                if total <= max_size:
                    break
                removed.append(rec.key)
                total -= rec.size
        for key in removed:
            self._remove(key)
        return removed

    def pin(self, key: str, pinned: bool = True) -> None:
        """Keep ``key`` out of eviction and pruning (or let it go again).

        Raises:
            StoreError: no such stored entry.
        """
        if not self.store.has_entry(key):
            raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")
        stats = self.store.read_stats(key) or self._rebuild_stats(key) or {}
        stats["pinned"] = pinned
        self.store.write_stats(key, stats)


def latest_key(identity_name: str) -> str:
    """The key under which the store keeps a function's or cell's latest key summary."""
    return xxhash.xxh3_128_hexdigest(f"latest:{identity_name}".encode())


_LIVE: weakref.WeakSet[Ledger] = weakref.WeakSet()


def _flush_at_exit() -> None:
    for ledger in list(_LIVE):
        try:
            ledger.flush_uses()
        except CacheError:
            pass  # uses are a heuristic for eviction; never fail an exiting process


def _register_exit_flush() -> None:
    """Flush before thread pools shut down, not after: a remote store's client (s3fs,
    aiohttp) needs an executor for every request, and at ``atexit`` time it is gone."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_flush_at_exit)
            return
        except RuntimeError:
            pass  # already shutting down
    atexit.register(_flush_at_exit)


_register_exit_flush()


def _eviction_order(record: EntryRecord) -> tuple[float, float]:
    """Lowest value per byte first; scores within 0.1% count as equal, then LRU decides
    (entries of one cell differ by a few header bytes, which is no reason to prefer one)."""
    return float(f"{record.score:.3g}"), record.last_used


def fresh_stats(info: EntryInfo, size: int) -> dict[str, Any]:
    return {
        "created": info.created,
        "last_used": info.created,
        "uses": 0,
        "size": size,
        "compute_seconds": info.compute_seconds,
        "label": str(info.meta.get("label", "")),
        "identity": str(info.meta.get("identity", "")),
        "first_line": str(info.meta.get("first_line", "")),
        "pinned": bool(info.meta.get("pinned", False)),
    }
