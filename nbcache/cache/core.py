"""The cache: live values in memory in front of a signed, shared store.

This is the one place that turns store faults into warnings: a damaged entry
is a miss, a full or read-only store leaves caching in memory, an unpicklable
value stays in memory only.  Nothing here raises into the user's code except
the user's own exception from ``compute``.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook is registered first, runs last
import functools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ..entry.format import EntryInfo, read_entry, read_info, write_entry
from ..entry.pickling import Pickled, dump_parts
from ..entry.signing import Signer, load_secret
from ..errors import CacheError, ForeignEntryError, StoreError, ValuePicklingError, warn
from ..keys.calls import latest_key
from ..store.base import Lease, Store
from ..units import format_size

__all__ = ["Cache", "EntryRecord", "Hit", "Outcome"]

T = TypeVar("T")
_POLL_START = 0.02
_POLL_MAX = 0.5


@dataclass(frozen=True)
class Hit(Generic[T]):
    """A value found in the cache, where, and what its entry says."""

    value: T
    info: EntryInfo
    source: Literal["memory", "store"]
    load_seconds: float


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What :meth:`Cache.get_or_compute` did: ``hit`` is None when it computed."""

    value: T
    hit: Hit[T] | None
    compute_seconds: float = 0.0
    stored: int = 0  # the entry's size in the store; 0 when kept in memory only


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


class Cache:
    """Memory LRU of live values in front of a :class:`~nbcache.store.Store`.

    Args:
        store: where entries persist; None keeps everything in memory.
        signer: signs and checks entries; by default the user's secret.
        max_size: bytes the store may hold; None for no limit.
        memory_items: how many live values the memory layer keeps.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        signer: Signer | None = None,
        max_size: int | None = None,
        memory_items: int = 128,
    ) -> None:
        self.store = store
        self.max_size = max_size
        self.memory_items = memory_items
        self._signer = signer
        self._memory: OrderedDict[str, tuple[Any, EntryInfo]] = OrderedDict()
        self._pending_uses: dict[str, tuple[int, float, EntryInfo]] = {}
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._latest: dict[str, dict[str, Any]] = {}
        self._listed: tuple[float, int] | None = None  # (when, bytes) of the last listing
        _LIVE.add(self)

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(load_secret())
        return self._signer

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            warn(message, stacklevel=3)

    # -- reading -------------------------------------------------------------

    def lookup(
        self,
        key: str,
        *,
        max_age: float | None = None,
        name: str = "value",
        remember: bool = True,
        validate: Callable[[EntryInfo], bool] | None = None,
    ) -> Hit[Any] | None:
        """The value cached under ``key``, or None (a damaged entry is removed, with a warning).

        ``remember=False`` leaves a value loaded from the store out of the memory
        layer, for callers that keep live values themselves.  ``validate`` sees
        the entry's signed metadata before anything is loaded; False is a miss
        (a file the value was computed from changed, say).
        """
        start = time.perf_counter()
        with self._lock:
            found = self._memory.get(key)
            fresh = found is not None and not _too_old(found[1], max_age)
            if found is not None and fresh and (validate is None or validate(found[1])):
                self._memory.move_to_end(key)
                self._count_use(key, found[1])
                return Hit(found[0], found[1], "memory", time.perf_counter() - start)
        loaded = self._load(key, name, validate)
        if loaded is None or _too_old(loaded[0], max_age):
            return None
        info, value = loaded
        if remember:
            self._remember(key, value, info)
        with self._lock:
            self._count_use(key, info)
        return Hit(value, info, "store", time.perf_counter() - start)

    def _load(
        self, key: str, name: str, validate: Callable[[EntryInfo], bool] | None = None
    ) -> tuple[EntryInfo, Any] | None:
        if self.store is None:
            return None
        try:
            f = self.store.open_entry(key)
        except KeyError:
            return None
        except StoreError as exc:
            self._warn_once("read", f"nbcache: cannot read the store, computing instead: {exc}")
            return None
        try:
            with f:
                if validate is not None and not validate(read_info(f, self.signer)):
                    return None
                return read_entry(f, key, self.signer, name=name)
        except ForeignEntryError as exc:
            warn(f"nbcache: ignored the cached entry {key[:12]}: {exc}", stacklevel=3)
            return None
        except (CacheError, OSError) as exc:
            self._discard(key, exc)
            return None

    def _discard(self, key: str, exc: BaseException) -> None:
        warn(f"nbcache: ignored and removed the cached entry {key[:12]}: {exc}", stacklevel=4)
        try:
            self.store.remove_entry(key) if self.store else None
        except StoreError:
            pass  # a read-only store keeps it; it is refused again next time

    def _remember(self, key: str, value: Any, info: EntryInfo) -> None:
        with self._lock:
            self._memory[key] = (value, info)
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    # -- writing -------------------------------------------------------------

    def put(
        self,
        key: str,
        value: Any,
        meta: Mapping[str, Any] | None = None,
        *,
        persist: bool = True,
        name: str = "value",
        remember: bool = True,
        pickled: Pickled | None = None,
    ) -> int:
        """Cache ``value`` under ``key``; the entry's size in the store, 0 if kept in memory only.

        ``pickled`` is ``value`` already pickled by :func:`~nbcache.entry.pickling.dump_parts`,
        for callers that checked it themselves.

        ``meta`` (JSON-serialisable) is signed into the entry: ``compute_seconds``,
        ``label`` and ``pinned`` are understood here, the rest is kept as is.
        """
        meta = dict(meta or {})
        info = EntryInfo(key, time.time(), 0, meta, "", False)
        keep = self._remember if remember else _forget
        if not persist or self.store is None:
            keep(key, value, info)
            return 0
        try:
            pickled = pickled or dump_parts(value, name)
        except ValuePicklingError as exc:
            warn(f"nbcache: kept in memory only, not stored: {exc}", stacklevel=3)
            keep(key, value, info)
            return 0
        if self.max_size is not None and pickled.nbytes > self.max_size:
            warn(
                f"nbcache: {name} ({format_size(pickled.nbytes)}) is larger than the whole cache "
                f"limit ({format_size(self.max_size)}): kept in memory only. Raise "
                "NBCACHE_MAX_SIZE to store it.",
                stacklevel=3,
            )
            keep(key, value, info)
            return 0
        try:
            with self.store.write_entry(key) as f:
                size = write_entry(f, key, pickled, meta, self.signer)
        except StoreError as exc:
            self._warn_once("write", f"nbcache: caching goes on in memory only: {exc}")
            keep(key, value, info)
            return 0
        self._warned.discard("write")
        info = EntryInfo(key, time.time(), pickled.nbytes, meta, "", pickled.by_value)
        keep(key, value, info)
        self._write_stats(key, _fresh_stats(info, size))
        self.evict(protect=(key,), added=size)
        return size

    def _write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        if self.store is None:
            return
        try:
            self.store.write_stats(key, stats)
        except StoreError:
            pass  # stats only steer eviction; a read-only store has no eviction to steer

    def _count_use(self, key: str, info: EntryInfo) -> None:
        """Count a hit in memory; :meth:`flush_uses` writes the counts to the store later,
        so a hit costs no file write."""
        uses, _, _ = self._pending_uses.get(key, (0, 0.0, info))
        self._pending_uses[key] = (uses + 1, time.time(), info)

    def flush_uses(self) -> None:
        """Write the uses counted since the last flush to the store's stats.

        Called before every listing and eviction, and when the process exits.
        """
        with self._lock:
            pending, self._pending_uses = self._pending_uses, {}
        if self.store is None:
            return
        for key, (uses, last, info) in pending.items():
            if not self.store.has_entry(key):
                continue
            stats = self.store.read_stats(key) or _fresh_stats(info, 0)
            stats["uses"] = int(stats.get("uses", 0)) + uses
            stats["last_used"] = max(float(stats.get("last_used", 0.0)), last)
            self._write_stats(key, stats)

    # -- computing once ------------------------------------------------------

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        meta: Mapping[str, Any] | None = None,
        *,
        persist: bool = True,
        force: bool = False,
        max_age: float | None = None,
        name: str = "value",
        remember: bool = True,
    ) -> Outcome[T]:
        """The cached value of ``key``, or ``compute()`` run once among all processes.

        While one process computes a key, others asking for it wait for its
        entry; if the computing process dies its lease goes stale and a waiter
        takes over.  ``compute``'s own exception propagates; nothing is stored.
        """
        if not force:
            hit = self.lookup(key, max_age=max_age, name=name, remember=remember)
            if hit is not None:
                return Outcome(hit.value, hit)
        with self.claim(
            key, enabled=persist, force=force, max_age=max_age, name=name, remember=remember
        ) as hit:
            if hit is not None:
                return Outcome(hit.value, hit)
            start = time.perf_counter()
            value = compute()
            seconds = time.perf_counter() - start
            meta = {**(meta or {}), "compute_seconds": seconds}
            stored = self.put(key, value, meta, persist=persist, name=name, remember=remember)
            return Outcome(value, None, seconds, stored)

    @contextmanager
    def claim(
        self,
        key: str,
        *,
        enabled: bool = True,
        force: bool = False,
        max_age: float | None = None,
        name: str = "value",
        remember: bool = True,
        validate: Callable[[EntryInfo], bool] | None = None,
    ) -> Iterator[Hit[Any] | None]:
        """Hold ``key``'s lease for the block (yielding None: compute it), or yield the
        entry another process made while we waited for the lease.

        Without a store, or with ``enabled=False``, it yields None at once.
        """
        lease = self._lease(key) if enabled else None
        if lease is None:
            yield None
            return
        try:
            yield self._wait_for_turn(lease, key, max_age, name, force, remember, validate)
        finally:
            lease.release()

    def _lease(self, key: str) -> Lease | None:
        if self.store is None:
            return None
        try:
            return self.store.lease(key)
        except StoreError:
            return None

    def try_claim(self, key: str) -> Lease | bool:
        """Take ``key``'s lease without waiting, for work that runs elsewhere.

        Returns the lease, now held (release it once the entry is stored); True when
        there is no lease to take (no store, or the store cannot lease: compute
        anyway); False when another process holds it (wait for its entry instead).
        """
        lease = self._lease(key)
        if lease is None:
            return True
        try:
            return lease if lease.acquire() else False
        except StoreError as exc:
            self._warn_once("lease", f"nbcache: computing without a lease: {exc}")
            return True

    def _wait_for_turn(
        self,
        lease: Lease,
        key: str,
        max_age: float | None,
        name: str,
        force: bool,
        remember: bool,
        validate: Callable[[EntryInfo], bool] | None = None,
    ) -> Hit[Any] | None:
        """Hold ``lease`` (returning None), or return the entry its holder made meanwhile."""
        delay = _POLL_START
        look = functools.partial(
            self.lookup, key, max_age=max_age, name=name, remember=remember, validate=validate
        )
        while True:
            try:
                if lease.acquire():
                    if force:
                        return None
                    hit = look()
                    if hit is not None:
                        lease.release()  # its holder finished between our miss and our claim
                    return hit
            except StoreError as exc:
                self._warn_once("lease", f"nbcache: computing without a lease: {exc}")
                return None
            if self.store is not None and self.store.has_entry(key):
                hit = look()
                if hit is not None:
                    return hit
            time.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    # -- what each function or cell computed last ---------------------------

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        """Remember the key summary of ``identity``'s newest entry (for "why did it miss")."""
        self._latest[identity] = dict(summary)
        self._write_stats(latest_key(identity), {"identity": identity, "summary": summary})

    def latest(self, identity: str) -> dict[str, Any] | None:
        """The key summary noted last for ``identity``, in this process or any other."""
        found = self._latest.get(identity)
        if found is None and self.store is not None:
            record = self.store.read_stats(latest_key(identity)) or {}
            if record.get("identity") == identity and isinstance(record.get("summary"), dict):
                found = record["summary"]
        return found

    # -- housekeeping --------------------------------------------------------

    def records(self) -> list[EntryRecord]:
        """Every stored entry with its stats, rebuilt from the signed header when missing."""
        if self.store is None:
            return []
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
        assert self.store is not None
        try:
            with self.store.open_entry(key) as f:
                info = read_info(f, self.signer)
        except (KeyError, ForeignEntryError):
            return None
        except (CacheError, OSError) as exc:
            self._discard(key, exc)
            return None
        stats = _fresh_stats(info, 0)
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
        if self.max_size is None or self.store is None:
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
            self.remove(key)
        return removed

    def forget(self, key: str) -> None:
        """Drop ``key``'s live value from memory only (its stored entry stays)."""
        with self._lock:
            self._memory.pop(key, None)

    def remove(self, key: str) -> None:
        """Forget ``key`` in memory and in the store."""
        with self._lock:
            self._memory.pop(key, None)
            self._pending_uses.pop(key, None)
        if self.store is not None:
            self.store.remove_entry(key)

    def clear(self) -> int:
        """Remove every entry (pinned ones too); return how many stored entries went."""
        with self._lock:
            self._memory.clear()
            self._pending_uses.clear()
        keys = [stat.key for stat in self.store.entries()] if self.store else []
        for key in keys:
            self.remove(key)
        return len(keys)

    def pin(self, key: str, pinned: bool = True) -> None:
        """Keep ``key`` out of eviction and pruning (or let it go again).

        Raises:
            StoreError: no such stored entry.
        """
        if self.store is None or not self.store.has_entry(key):
            raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")
        stats = self.store.read_stats(key) or self._rebuild_stats(key) or {}
        stats["pinned"] = pinned
        self.store.write_stats(key, stats)


_LIVE: weakref.WeakSet[Cache] = weakref.WeakSet()


def _flush_at_exit() -> None:
    for cache in list(_LIVE):
        try:
            cache.flush_uses()
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


def _forget(key: str, value: Any, info: EntryInfo) -> None:
    """The memory layer's stand-in when the caller keeps live values itself."""


def _too_old(info: EntryInfo, max_age: float | None) -> bool:
    return max_age is not None and time.time() - info.created > max_age


def _fresh_stats(info: EntryInfo, size: int) -> dict[str, Any]:
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
