"""The ledger: uses, sizes and stats of stored entries, and eviction by value per byte.

A hit costs no file write: uses are counted in memory and flushed to the
store's stats before listings and eviction, and when the process exits.
Stats are a heuristic: a damaged or forged record changes at most eviction
order or a listing, never what a lookup returns.  They are unsigned (a hit would
otherwise cost a MAC and a write) and validated instead: every field is checked
where it is read, and a record that does not parse is as good as none.

Nothing here walks the store on a write: the total size, the cheapest entry to
evict and a listing come from the store's index (:meth:`Store.total_size`,
:meth:`Store.eviction_order`, :meth:`Store.entries_with_stats`); a store without
one (a bucket) lists, at most every ``list_interval`` seconds.
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
from ..errors import CacheError, ForeignEntryError, StoreError, warn
from ..store.base import EntryStat, Store, stat_number

__all__ = ["EntryRecord", "Ledger", "NoLedger", "fresh_stats", "latest_key"]


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
        self._max_size: int | None = None
        self._enforced = False  # the store evicts as it publishes (see Store.keep_within)
        self.max_size = max_size
        self._signer = signer
        self._remove = remove
        self._discard = discard
        self._lock = threading.Lock()
        self._pending_uses: dict[str, tuple[int, float, EntryInfo]] = {}
        self._listed: tuple[float, int] | None = None  # (when, bytes) of the last listing
        self._warned = False
        _LIVE.add(self)

    @property
    def max_size(self) -> int | None:
        return self._max_size

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        self._max_size = value
        self._enforced = self.store.keep_within(value)

    def publishing(self, key: str, info: EntryInfo, size: int) -> None:
        """Account for an entry written under ``key`` and about to be published, for a store
        that evicts as it publishes: its stats go first, so its row ranks as what it is
        from its first moment, and uses counted here are flushed when eviction is near, so
        it ranks by them."""
        if not self._enforced:
            return
        if self._pending_uses and self.max_size is not None:
            try:
                near = self.store.total_size() + size > self.max_size
            except StoreError:
                near = False
            if near:
                self.flush_uses()
        self._write_stats(key, fresh_stats(info, size))

    def unpublished(self, key: str) -> None:
        """The write that :meth:`publishing` accounted for failed: drop its stats, unless an
        entry is there after all (another writer's)."""
        if not self._enforced or self.store.has_entry(key):
            return
        try:
            self.store.remove_entry(key)
        except StoreError:
            pass  # a folder that refused the entry may refuse this too: stats are a heuristic

    def added(self, key: str, info: EntryInfo, size: int) -> None:
        """Account for an entry just written under ``key``, then evict to fit the limit
        (a store that evicts as it publishes did both already: :meth:`publishing`).

        The entry is stored whatever happens here: eviction that fails (a store gone
        read-only, a planted file) is one warning, never an error in the caller.
        """
        if self._enforced:
            return
        self._write_stats(key, fresh_stats(info, size))
        try:
            self.evict(protect=(key,), added=size)
        except CacheError as exc:
            if not self._warned:
                self._warned = True
                warn(f"nbcache: the entry is stored, but the store could not evict: {exc}", 4)

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
            stats = self.store.read_stats(key) or fresh_stats(info, info.nbytes)
            stats["uses"] = int(max(0.0, stat_number(stats, "uses"))) + uses
            stats["last_used"] = max(stat_number(stats, "last_used"), last)
            self._write_stats(key, stats)

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        """Record the key summary of ``identity``'s newest entry (for "why did it miss")."""
        self._write_stats(latest_key(identity), {"identity": identity, "summary": summary})

    def latest(self, identity: str) -> dict[str, Any] | None:
        """The key summary noted last for ``identity``, in this process or any other."""
        try:
            record = self.store.read_stats(latest_key(identity)) or {}
        except StoreError:
            return None
        summary = record.get("summary")
        if record.get("identity") == identity and isinstance(summary, dict):
            return dict(summary) if _summary_shape(summary) else None
        return None

    def records(self) -> list[EntryRecord]:
        """Every stored entry with its stats, rebuilt from the signed header when missing."""
        self.flush_uses()
        out = []
        for stat, stats in self.store.entries_with_stats():
            stats = stats or self._rebuild_stats(stat.key)
            if stats is not None:
                out.append(_record(stat, stats))
        return out

    def _rebuild_stats(self, key: str) -> dict[str, Any] | None:
        try:
            signer = self._signer()
        except CacheError:
            return None  # no secret, no check: the entry is not to blame, and stays
        try:
            with self.store.open_entry(key) as f:
                info = read_info(f, signer)
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

        ``added`` is what the caller just wrote.  The total comes from the store's
        index; a store that is slow to list (a bucket) sets ``list_interval``:
        between listings the size is estimated from the last listing plus what this
        process wrote, and listed again only when that estimate is over the limit or
        the interval has passed.
        """
        if self.max_size is None:
            return []
        if self._enforced:
            self.flush_uses()  # ranks as of now, not as of the last flush
            evicted = self.store.evict_to(self.max_size, protect)
            for key in evicted:
                self.forget(key)
            return evicted
        interval = self.store.list_interval
        now = time.monotonic()
        if interval and self._listed is not None and now - self._listed[0] < interval:
            estimate = self._listed[1] + added
            self._listed = (self._listed[0], estimate)
            if estimate <= self.max_size:
                return []
        total = self.store.total_size()
        removed: list[str] = []
        if total > self.max_size:
            # A slow-to-list store is pruned 10 % below its limit, so the next writes
            # fit without another listing.
            target = int(self.max_size * 0.9) if interval else self.max_size
            self.flush_uses()  # ranks as of now, not as of the last flush
            for stat in self.store.eviction_order(protect):
                if total <= target:
                    break
                self._remove(stat.key)
                removed.append(stat.key)
                total -= stat.size
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

    def pin(self, key: str) -> None:
        """Keep ``key`` out of eviction and pruning.

        Raises:
            StoreError: no such stored entry.
        """
        self._set_pinned(key, True)

    def unpin(self, key: str) -> None:
        """Let eviction and pruning take ``key`` again (see :meth:`pin`)."""
        self._set_pinned(key, False)

    def _set_pinned(self, key: str, pinned: bool) -> None:
        if not self.store.has_entry(key):
            raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")
        stats = self.store.read_stats(key) or self._rebuild_stats(key) or {}
        stats["pinned"] = pinned
        self.store.write_stats(key, stats)


class NoLedger:
    """The ledger of a cache without a store: nothing stored, so nothing to count, list,
    evict or pin. Its methods are :class:`Ledger`'s, so a cache calls them either way."""

    @property
    def max_size(self) -> int | None:
        return None  # a limit on a store there is not: nothing is ever over it

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        pass

    def publishing(self, key: str, info: EntryInfo, size: int) -> None:
        pass

    def unpublished(self, key: str) -> None:
        pass

    def added(self, key: str, info: EntryInfo, size: int) -> None:
        pass

    def forget(self, key: str) -> None:
        pass

    def forget_all(self) -> None:
        pass

    def count_use(self, key: str, info: EntryInfo) -> None:
        pass

    def flush_uses(self) -> None:
        pass

    def note_latest(self, identity: str, summary: Mapping[str, Any]) -> None:
        pass  # the cache remembers it in memory

    def latest(self, identity: str) -> dict[str, Any] | None:
        return None

    def records(self) -> list[EntryRecord]:
        return []

    def evict(self, protect: Iterable[str] = (), added: int = 0) -> list[str]:
        return []

    def prune(
        self,
        *,
        max_size: int | None = None,
        older_than: float | None = None,
        protect: Iterable[str] = (),
    ) -> list[str]:
        return []

    def pin(self, key: str) -> None:
        """Raises:
        StoreError: always; without a store there is no stored entry to pin."""
        raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")

    def unpin(self, key: str) -> None:
        """Raises:
        StoreError: always, as :meth:`pin` does."""
        raise StoreError(f"no stored entry {key[:12]} to pin: run the cell or call first")


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
    """The store's order (:func:`~nbcache.store.base.eviction_rank`), for pruning a listing."""
    return float(f"{record.score:.3g}"), record.last_used


def _text(stats: Mapping[str, Any], name: str) -> str:
    value = stats.get(name, "")
    return value[:500] if value.__class__ is str else ""


def _record(stat: EntryStat, stats: Mapping[str, Any]) -> EntryRecord:
    """A listing's row from an entry and its (unsigned, so checked) stats."""
    uses = stat_number(stats, "uses")
    return EntryRecord(
        key=stat.key,
        size=stat.size,
        created=stat_number(stats, "created", stat.mtime),
        last_used=stat_number(stats, "last_used", stat.mtime),
        uses=int(uses) if 0 < uses < 2**62 else 0,
        compute_seconds=max(0.0, stat_number(stats, "compute_seconds")),
        pinned=stats.get("pinned") in (True, 1),  # JSON true, or the index's 1
        label=_text(stats, "label"),
        identity=_text(stats, "identity"),
        first_line=_text(stats, "first_line"),
    )


def _summary_shape(summary: Any) -> bool:
    """Whether an (unsigned) key summary has the shape "why did it miss" compares:
    a forged one then changes at most a sentence, never raises."""
    if not isinstance(summary, dict):
        return False
    deps, args = summary.get("deps", {}), summary.get("args", {})
    return (
        isinstance(deps, dict)
        and all(isinstance(dep, list) and len(dep) == 2 for dep in deps.values())
        and all(isinstance(kind, str) for kind, _ in deps.values())
        and isinstance(args, dict)
        and all(isinstance(arg, dict) for arg in args.values())
        and all(
            isinstance(arg.get("shape", []), list) and isinstance(arg.get("type", ""), str)
            for arg in args.values()
        )
    )


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
