"""The cache: live values in memory in front of a signed, shared store.

This (with :mod:`nbcache.cache.reading`) is the one place that turns store faults
into warnings: a damaged entry is a miss, a full or read-only store leaves caching in
memory, an unpicklable value stays in memory only.  Nothing here raises into the
user's code except the user's own exception from ``compute``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from .. import settings
from ..entry.format import EntryInfo, write_entry
from ..entry.pickling import Pickled, dump_parts
from ..entry.signing import Signer, load_secret
from ..errors import StoreError, ValuePicklingError, warn
from ..store.base import Lease, Store
from ..units import format_size
from .ledger import EntryRecord, Ledger, NoLedger
from .lru import LRU, MemoryUse
from .once import Inflight
from .reading import EntryReader, WarnOnce
from .terms import PLAIN, Ask, Hit, InMemory, Meta, Outcome, Start

__all__ = [
    "Ask",
    "Cache",
    "EntryRecord",
    "Hit",
    "InMemory",
    "MemoryUse",
    "Outcome",
    "Start",
    "Turn",
]

T = TypeVar("T")
_POLL_START = 0.02
_POLL_MAX = 0.5


class Turn:
    """A key this caller computes now: :meth:`finish` stores the value, :meth:`abandon`
    gives the key up (the computation failed); either ends the claim."""

    def __init__(self, cache: Cache, key: str, ask: Ask, lease: Lease | None, start: Start) -> None:
        self.key = key
        self._cache = cache
        self._ask = ask
        self._lease = lease
        self._open = True
        # a forced run: its entry replaces the one stored
        self._store = cache.overwrite if start is Start.FORCE else cache.put

    def finish(self, value: T, seconds: float, meta: Meta = None) -> Outcome[T]:
        """Store ``value``, computed in ``seconds``, then release the claim."""

        def signed() -> dict[str, Any]:
            out = dict(meta(value) if callable(meta) else meta or {})
            out.setdefault("compute_seconds", seconds)
            return out

        try:
            stored = self._store(self.key, value, signed, ask=self._ask)
        except Exception as exc:  # noqa: BLE001 - the value is the caller's; only storing fails
            warn(f"nbcache: computed but not stored ({type(exc).__name__}: {exc})", stacklevel=3)
            stored = 0
        finally:
            self.abandon()
        return Outcome(value, None, seconds, stored)

    def abandon(self) -> None:
        """Release the claim without storing anything (again: nothing happens)."""
        if not self._open:
            return
        self._open = False
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                lease.release()
        finally:
            self._cache.done(self.key)


class Cache:
    """Memory LRU of live values in front of a :class:`~nbcache.store.Store`.

    Uses, listings, eviction and pins are the ledger's (:attr:`ledger`, a
    :class:`~nbcache.cache.ledger.Ledger`; without a store, one that keeps nothing).

    Args:
        store: where entries persist; None keeps everything in memory.
        signer: signs and checks entries; by default the user's secret.
        max_size: bytes the store may hold; None for no limit.
        memory_items: how many live values the memory layer keeps.
        memory_bytes: how many bytes the memory layer alone keeps alive; None for no
            bound; by default ``NBCACHE_MEMORY_SIZE`` (see :func:`nbcache.settings.memory_size`).
        large: a part of a value this large is held in memory only while the user's
            names hold it too (see :mod:`nbcache.cache.lru`); None: every value is held.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        signer: Signer | None = None,
        max_size: int | None = None,
        memory_items: int = 128,
        memory_bytes: int | Literal["default"] | None = "default",
        large: int | None = settings.LARGE_VALUE,
    ) -> None:
        self.store = store
        self._signer = signer
        if memory_bytes == "default":
            memory_bytes = settings.memory_size()
        self._memory: LRU[str, InMemory] = LRU(memory_items, max_bytes=memory_bytes, large=large)
        self._lock = threading.RLock()
        self._inflight = Inflight()
        self._warn_once = WarnOnce()
        self._latest: dict[str, dict[str, Any]] = {}  # without a store, "why" still works
        # identity -> why its newest entry did not load here (a class renamed since, say)
        self._unloadable: dict[str, str] = {}
        self._reader: EntryReader | None = None
        self.ledger: Ledger | NoLedger = NoLedger()
        if store is not None:
            self._reader = EntryReader(
                store, lambda: self.signer, self._warn_once, self._unloadable
            )
            self.ledger = Ledger(
                store,
                signer=lambda: self.signer,
                remove=self.remove,
                discard=self._reader.discard,
                max_size=max_size,
            )

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(load_secret())
        return self._signer

    # -- reading -------------------------------------------------------------

    def lookup(self, key: str, ask: Ask = PLAIN) -> Hit[Any] | None:
        """The value cached under ``key``, or None (a damaged entry is removed, with a warning).

        ``ask`` says how (see :class:`Ask`).
        """
        hit = self._find(key, ask)
        if hit is not None and ask.count_uses:
            self.ledger.count_use(key, hit.info)
        return hit

    def _find(self, key: str, ask: Ask) -> Hit[Any] | None:
        start = time.perf_counter()
        memory = self._memory if ask.memory is None else ask.memory
        found = memory.get(key)
        if found is not None:
            value, info, size = found
            usable = not _too_old(info, ask.max_age)
            usable = usable and (ask.validate is None or ask.validate(info))
            if usable and (ask.fresh is None or ask.fresh(value)):
                return Hit(value, info, "memory", time.perf_counter() - start, size)
            if usable:
                memory.pop(key)  # later code mutated it: the store has it as it was made
        loaded = self._reader.load(key, ask.name, ask.validate) if self._reader else None
        if loaded is None or _too_old(loaded[0], ask.max_age):
            return None
        info, value, size = loaded
        if ask.remember:
            memory.put(key, (value, info, size))
        return Hit(value, info, "store", time.perf_counter() - start, size)

    def peek(
        self, key: str, ask: Ask = PLAIN, whole: Callable[[EntryInfo], bool] | None = None
    ) -> Hit[Any] | None:
        """A lookup that leaves a stored value in the store: the hit's ``value`` is the
        live one from memory, or None with the entry's checked header (``source`` says
        which). A whole-notebook run restores most cells from their headers alone.
        A peek counts no use (a plan; a caller that may look again): a caller that uses
        the hit counts it with the ledger's ``count_use``.

        ``whole`` says from a stored entry's checked header that its value is wanted
        after all: then the hit is a lookup's (its value loaded from the same open file,
        kept in memory as ``ask`` says), not a second open and check of the entry."""
        memory = self._memory if ask.memory is None else ask.memory
        if memory.get(key) is not None:
            return self._find(key, ask)
        start = time.perf_counter()
        loaded = (
            self._reader.load_header(key, ask.validate, whole, ask.name) if self._reader else None
        )
        if loaded is None or _too_old(loaded[0], ask.max_age):
            return None
        info, size, value = loaded
        if not value:
            return Hit(None, info, "store", time.perf_counter() - start, size)
        if ask.remember:
            memory.put(key, (value[0], info, size))
        return Hit(value[0], info, "store", time.perf_counter() - start, size)

    # -- writing -------------------------------------------------------------

    def put(
        self,
        key: str,
        value: Any,
        meta: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        *,
        pickled: Pickled | None = None,
        ask: Ask = PLAIN,
    ) -> int:
        """Cache ``value`` under ``key``; the entry's size in the store, 0 if kept in memory only.

        ``pickled`` is ``value`` already pickled by :func:`~nbcache.entry.pickling.dump_parts`,
        for callers that checked it themselves; ``ask`` (its ``persist``, ``name``,
        ``remember``, ``admit``) says where it goes.  An entry already stored under
        ``key`` stays (:meth:`overwrite` replaces it).

        ``meta`` (JSON-serialisable) is signed into the entry: ``compute_seconds``,
        ``label`` and ``pinned`` are understood here, the rest is kept as is. A
        callable is called once, after ``value`` is pickled.
        """
        return self._put(key, value, meta, pickled, ask, replace=False)

    def overwrite(
        self,
        key: str,
        value: Any,
        meta: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        *,
        pickled: Pickled | None = None,
        ask: Ask = PLAIN,
    ) -> int:
        """:meth:`put`, replacing an entry already stored under ``key`` (a run the user
        forced, a newer checkpoint)."""
        return self._put(key, value, meta, pickled, ask, replace=True)

    def _put(
        self,
        key: str,
        value: Any,
        meta: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None,
        pickled: Pickled | None,
        ask: Ask,
        *,
        replace: bool,
    ) -> int:
        memory = self._memory if ask.memory is None else ask.memory

        def signed() -> dict[str, Any]:
            return dict(meta() if callable(meta) else meta or {})

        def keep(info: EntryInfo, size: int = 0) -> int:
            if ask.remember:
                memory.put(key, (value, info, size))
            return size

        if not ask.persist or self.store is None:
            return keep(EntryInfo(key, time.time(), 0, signed(), "", False))
        try:
            pickled = pickled or dump_parts(value, ask.name)
        except ValuePicklingError as exc:
            why = ask.unpicklable(value, exc) if ask.unpicklable else _unstored(exc)
            warn(why, stacklevel=4)
            return keep(EntryInfo(key, time.time(), 0, signed(), "", False))
        except Exception as exc:  # noqa: BLE001 - a pickler that breaks: keep it in memory
            warn(_unstored(ValuePicklingError(f"{type(exc).__name__}: {exc}")), stacklevel=4)
            return keep(EntryInfo(key, time.time(), 0, signed(), "", False))
        # Taken after pickling: a value that pickling changes (a lazy attribute its
        # __getstate__ fills in) is then described as the code after it sees it.
        info = EntryInfo(key, time.time(), 0, signed(), "", False)
        if self._refuses(ask, value, pickled, info):
            return keep(info)
        try:
            with self.store.write_entry(key, replace=replace) as f:
                size = write_entry(f, key, pickled, info.meta, self.signer)
                info = EntryInfo(key, time.time(), pickled.nbytes, info.meta, "", pickled.by_value)
                self.ledger.publishing(key, info, size)  # accounted as it is published
        except (StoreError, OSError) as exc:
            self.ledger.unpublished(key)
            self._warn_once("write", f"nbcache: caching goes on in memory only: {exc}", 4)
            return keep(info)
        self._warn_once.clear("write")
        keep(info, size)
        self.ledger.added(key, info, size)
        return size

    def _refuses(self, ask: Ask, value: Any, pickled: Pickled, info: EntryInfo) -> bool:
        """Whether a value is kept in memory only: cheaper to compute again than to write
        and read back, or larger than the whole store may hold (one warning)."""
        if ask.admit is not None and not ask.admit(value, pickled.nbytes, info.compute_seconds):
            return True
        limit = self.ledger.max_size
        if limit is not None and pickled.nbytes > limit:
            warn(
                f"nbcache: {ask.name} ({format_size(pickled.nbytes)}) is larger than the whole "
                f"cache limit ({format_size(limit)}): kept in memory only. Raise "
                "NBCACHE_MAX_SIZE to store it.",
                stacklevel=4,
            )
            return True
        return False

    def done(self, key: str) -> None:
        """The claim on ``key`` ended (see :class:`Turn`): wake this process's waiters."""
        self._inflight.leave(key)

    # -- computing once ------------------------------------------------------

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        meta: Meta = None,
        *,
        ask: Ask = PLAIN,
        start: Start = Start.LOOK,
    ) -> Outcome[T]:
        """The cached value of ``key``, or ``compute()`` run once among all threads and
        processes.

        While one caller computes a key, others asking for it wait for its entry;
        if the computing process dies its lease goes stale and a waiter takes
        over.  ``compute``'s own exception propagates; nothing is stored.
        ``meta`` is signed into the entry, or computed from the value (a callable).
        ``start`` says whether to look the key up first (see :class:`Start`).
        """
        __tracebackhide__ = True  # the user's exception from compute shows without our frames
        turn = self.begin(key, ask, start)
        if isinstance(turn, Hit):
            return Outcome(turn.value, turn)
        try:
            began = time.perf_counter()
            value = compute()
            seconds = time.perf_counter() - began
        except BaseException:
            turn.abandon()
            raise
        return turn.finish(value, seconds, meta)

    def begin(self, key: str, ask: Ask, start: Start = Start.LOOK) -> Hit[Any] | Turn:
        """Look ``key`` up, then claim it: the hit, or a :class:`Turn` to fill.

        The claim is once in this process (other threads wait for the caller)
        and once among processes (the store's lease; others poll for the entry).
        """
        claimed = self._begin(key, ask, start, wait=True)
        assert claimed is not None  # it waits for its turn
        return claimed

    def try_begin(self, key: str, ask: Ask, start: Start = Start.LOOK) -> Hit[Any] | Turn | None:
        """:meth:`begin`, or None instead of waiting when someone else computes the key,
        for work that runs elsewhere and must not block a thread."""
        return self._begin(key, ask, start, wait=False)

    def _begin(self, key: str, ask: Ask, start: Start, *, wait: bool) -> Hit[Any] | Turn | None:
        looked = start is not Start.LOOK  # forced, or just looked up and missed
        while True:
            if not looked:
                hit = self.lookup(key, ask)
                if hit is not None:
                    return hit
            running = self._inflight.enter(key)
            if running is None:
                break
            if not wait:
                return None
            # Another thread of this process computed it: look again (a forced run still
            # computes, after the one before it).
            running.result()
            looked = start is Start.FORCE
        try:
            return self._claim(key, ask, start, wait=wait)
        except BaseException:
            self._inflight.leave(key)
            raise

    def _claim(self, key: str, ask: Ask, start: Start, *, wait: bool) -> Hit[Any] | Turn | None:
        """Take the lease of ``key``, which this thread now computes (see :meth:`begin`)."""
        lease = self._lease(key) if ask.persist else None
        if lease is None:
            return Turn(self, key, ask, None, start)
        delay = _POLL_START
        while True:
            try:
                if lease.acquire():
                    if start is Start.FORCE:
                        return Turn(self, key, ask, lease, start)
                    # Its holder may have finished between our miss and our claim.
                    hit = self.lookup(key, ask)
                    if hit is None:
                        return Turn(self, key, ask, lease, start)
                    lease.release()
                    self._inflight.leave(key)
                    return hit
            except StoreError as exc:
                self._warn_once("lease", f"nbcache: computing without a lease: {exc}")
                return Turn(self, key, ask, None, start)
            if not wait:
                self._inflight.leave(key)
                return None
            if self.store is not None and self.store.has_entry(key):
                hit = self.lookup(key, ask)
                if hit is not None:
                    self._inflight.leave(key)
                    return hit
            time.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    def _lease(self, key: str) -> Lease | None:
        if self.store is None:
            return None
        try:
            return self.store.lease(key)
        except StoreError:
            return None

    # -- what each function or cell computed last, and housekeeping ----------

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        """Remember the key summary of ``identity``'s newest entry (for "why did it miss")."""
        self._latest[identity] = dict(summary)
        self._unloadable.pop(identity, None)
        if self._reader is not None and isinstance(summary.get("key"), str):
            self._reader.foreign.pop(summary["key"], None)  # stored over it since
        self.ledger.note_latest(identity, summary)

    def latest(self, identity: str) -> dict[str, Any] | None:
        """The key summary noted last for ``identity``, in this process or any other."""
        found = self._latest.get(identity)
        if found is None:
            found = self.ledger.latest(identity)
        if found is None:
            return None
        unloadable = self._unloadable.get(identity)
        key = found.get("key")
        if unloadable is None and self._reader is not None and isinstance(key, str):
            unloadable = self._reader.foreign.get(key)
        if unloadable is not None:
            return {**found, "unloadable": unloadable}  # why the same key missed
        return found

    def memory_use(self) -> MemoryUse:
        """What the memory layer holds now (for ``%nbcache info``)."""
        return self._memory.use()

    def forget(self, key: str) -> None:
        """Drop ``key``'s live value from memory only (its stored entry stays)."""
        with self._lock:
            self._memory.pop(key)

    def remove(self, key: str) -> None:
        """Forget ``key`` in memory and in the store."""
        with self._lock:
            self._memory.pop(key)
        self.ledger.forget(key)
        if self.store is not None:
            self.store.remove_entry(key)

    def clear(self) -> int:
        """Remove every entry (pinned ones too); return how many stored entries went."""
        with self._lock:
            self._memory.clear()
        self.ledger.forget_all()
        keys = [stat.key for stat in self.store.entries()] if self.store else []
        for key in keys:
            self.remove(key)
        return len(keys)


def _unstored(exc: ValuePicklingError) -> str:
    return f"nbcache: kept in memory only, not stored: {exc}"


def _too_old(info: EntryInfo, max_age: float | None) -> bool:
    return max_age is not None and time.time() - info.created > max_age
