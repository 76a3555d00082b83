"""The cache: live values in memory in front of a signed, shared store.

This is the one place that turns store faults into warnings: a damaged entry
is a miss, a full or read-only store leaves caching in memory, an unpicklable
value stays in memory only.  Nothing here raises into the user's code except
the user's own exception from ``compute``.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - its exit hook is registered first, runs last
import functools
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ..entry.format import EntryInfo, read_entry, read_info, write_entry
from ..entry.pickling import Pickled, dump_parts
from ..entry.signing import Signer, load_secret
from ..errors import CacheError, ForeignEntryError, StoreError, ValuePicklingError, warn
from ..store.base import Lease, Store
from ..units import format_size
from .ledger import EntryRecord, Ledger
from .lru import LRU

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
    size: int = 0  # what the entry takes in the store, as listings show it; 0: memory only


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What :meth:`Cache.get_or_compute` did: ``hit`` is None when it computed."""

    value: T
    hit: Hit[T] | None
    compute_seconds: float = 0.0
    stored: int = 0  # the entry's size in the store; 0 when kept in memory only


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
        self._signer = signer
        self._memory: LRU[str, tuple[Any, EntryInfo, int]] = LRU(memory_items)
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._latest: dict[str, dict[str, Any]] = {}  # without a store, "why" still works
        self.ledger = (
            Ledger(
                store,
                signer=lambda: self.signer,
                remove=self.remove,
                discard=self._discard,
                max_size=max_size,
            )
            if store is not None
            else None
        )

    @property
    def max_size(self) -> int | None:
        """Bytes the store may hold; None for no limit."""
        return self.ledger.max_size if self.ledger is not None else None

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        if self.ledger is not None:
            self.ledger.max_size = value

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
                value, info, size = found
                self._count_use(key, info)
                return Hit(value, info, "memory", time.perf_counter() - start, size)
        loaded = self._load(key, name, validate)
        if loaded is None or _too_old(loaded[0], max_age):
            return None
        info, value, size = loaded
        if remember:
            self._remember(key, value, info, size)
        with self._lock:
            self._count_use(key, info)
        return Hit(value, info, "store", time.perf_counter() - start, size)

    def _load(
        self, key: str, name: str, validate: Callable[[EntryInfo], bool] | None = None
    ) -> tuple[EntryInfo, Any, int] | None:
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
                size = f.seek(0, io.SEEK_END)  # what listings show: the whole file
                f.seek(0)
                if validate is not None and not validate(read_info(f, self.signer)):
                    return None
                return (*read_entry(f, key, self.signer, name=name), size)
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

    def _remember(self, key: str, value: Any, info: EntryInfo, size: int = 0) -> None:
        with self._lock:
            self._memory.put(key, (value, info, size))

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
        keep(key, value, info, size)
        if self.ledger is not None:
            self.ledger.added(key, info, size)
        return size

    def _count_use(self, key: str, info: EntryInfo) -> None:
        if self.ledger is not None:
            self.ledger.count_use(key, info)

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

    # -- what each function or cell computed last, and housekeeping ----------

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        """Remember the key summary of ``identity``'s newest entry (for "why did it miss")."""
        self._latest[identity] = dict(summary)
        if self.ledger is not None:
            self.ledger.note_latest(identity, summary)

    def latest(self, identity: str) -> dict[str, Any] | None:
        """The key summary noted last for ``identity``, in this process or any other."""
        found = self._latest.get(identity)
        if found is None and self.ledger is not None:
            found = self.ledger.latest(identity)
        return found

    def records(self) -> list[EntryRecord]:
        """Every stored entry with its stats (see :meth:`Ledger.records`)."""
        return self.ledger.records() if self.ledger is not None else []

    def flush_uses(self) -> None:
        if self.ledger is not None:
            self.ledger.flush_uses()

    def evict(self, protect: Iterable[str] = (), added: int = 0) -> list[str]:
        """Remove the least valuable entries until the store fits ``max_size``."""
        return self.ledger.evict(protect, added) if self.ledger is not None else []

    def prune(
        self,
        *,
        max_size: int | None = None,
        older_than: float | None = None,
        protect: Iterable[str] = (),
    ) -> list[str]:
        """Remove unpinned entries unused for ``older_than`` seconds, then the least valuable
        until ``max_size`` is met; return the removed keys."""
        if self.ledger is None:
            return []
        return self.ledger.prune(max_size=max_size, older_than=older_than, protect=protect)

    def pin(self, key: str, pinned: bool = True) -> None:
        """Keep ``key`` out of eviction and pruning (or let it go again).

        Raises:
            StoreError: no such stored entry.
        """
        if self.ledger is None:
            raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")
        self.ledger.pin(key, pinned)

    def forget(self, key: str) -> None:
        """Drop ``key``'s live value from memory only (its stored entry stays)."""
        with self._lock:
            self._memory.pop(key)

    def remove(self, key: str) -> None:
        """Forget ``key`` in memory and in the store."""
        with self._lock:
            self._memory.pop(key)
        if self.ledger is not None:
            self.ledger.forget(key)
        if self.store is not None:
            self.store.remove_entry(key)

    def clear(self) -> int:
        """Remove every entry (pinned ones too); return how many stored entries went."""
        with self._lock:
            self._memory.clear()
        if self.ledger is not None:
            self.ledger.forget_all()
        keys = [stat.key for stat in self.store.entries()] if self.store else []
        for key in keys:
            self.remove(key)
        return len(keys)


def _forget(key: str, value: Any, info: EntryInfo, size: int = 0) -> None:
    """The memory layer's stand-in when the caller keeps live values itself."""


def _too_old(info: EntryInfo, max_age: float | None) -> bool:
    return max_age is not None and time.time() - info.created > max_age
