"""Keeping a folder's index equal to its entry files, and the folder within its size limit.

Every method runs inside :meth:`Index.exclusive`: the index's write lock is the
folder's lock for whatever changes which entries exist, so what one process
counts, publishes or evicts is one step from every other process's point of
view.

The index can still be wrong about the folder in three ways, and each is
repaired where it would otherwise cost something:

- **Files it does not know** (copied in from another store, written by an
  nbcache that could not open the index) and **rows whose file is gone**
  (deleted by hand): each shard folder's mtime is kept beside the rows, so one
  ``lstat`` per shard finds the shards changed behind the index's back, and only
  those are listed again.  Listings, ``clear``, ``prune`` and eviction do it.
- **Reservations of writers that died** between reserving and publishing:
  settled from the file (there: counted; not there: dropped).
- **Rows that claim what their file does not** (a forged row, a copied index):
  before eviction removes an entry, the rows that could account for the
  overshoot are checked against their files, and so is every victim.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .base import EntryStat, is_key
from .index import Index
from .leases.file import HOST, pid_alive

__all__ = ["Keeper", "writer_name"]

# A reservation covers a link and one small transaction; one this old lost its writer
# (killed, or on another host that cannot be asked).
_STALE_RESERVATION = 60.0
# Under its limit a folder is still compared with the index this often, so files that
# appeared behind its back count against the limit soon (one lstat per shard).
_LOOK_EVERY = 1.0
_SHARD_NAMES = frozenset(f"{n:02x}" for n in range(256))
# Rows checked against their files before one eviction, largest claims first: enough for
# any forged row that matters, bounded for a limit lowered under a store of 100,000 entries.
_MAX_CHECKED = 1024


def writer_name() -> str:
    """Who reserves a row: host and pid, so a dead writer's reservation can be told."""
    return f"{HOST}:{os.getpid()}"


class Keeper:
    """The index of the folder ``entries`` (shards of entry files), kept honest.

    Args:
        index: the folder's index.
        entries: the folder of shards.
        unlink: removes an entry's files (entry and stats).
        read_stats: the stats file of a key, for entries adopted from the folder.
    """

    def __init__(
        self,
        index: Index,
        entries: Path,
        unlink: Callable[[str], None],
        read_stats: Callable[[str], Mapping[str, Any] | None],
    ) -> None:
        self.index = index
        self.entries = entries
        self._unlink = unlink
        self._read_stats = read_stats
        self._looked = 0.0  # monotonic time of this process's last comparison

    # -- files -----------------------------------------------------------------

    def found(self, key: str) -> EntryStat | None:
        """The entry file of ``key`` as the folder has it now, or None (absent, or no
        regular file: a link or FIFO is no entry)."""
        try:
            st = os.lstat(self.entries / key[:2] / key)
        except OSError:
            return None
        return EntryStat(key, st.st_size, st.st_mtime) if stat.S_ISREG(st.st_mode) else None

    def shard_mtime(self, key: str) -> int | None:
        """The mtime (ns) of the shard folder of ``key``, None if there is none."""
        try:
            return os.lstat(self.entries / key[:2]).st_mtime_ns
        except OSError:
            return None

    def mark(self, key: str, before: int | None) -> None:
        """Record the shard of ``key`` as in step with the index after a change of ours, if
        it was in step before it (``before``: its mtime then): only changes made behind
        the index's back leave a shard to be listed again."""
        now = self.shard_mtime(key)
        if before is not None and now is not None and now != before:
            self.index.mark_if(key[:2], before, now)

    def settle(self, key: str, *, ours: bool = False) -> None:
        """Make the row of ``key`` what its file is (published or gone); ``ours``: reserved
        by this process."""
        self.index.settle(key, self.found(key), ours=ours)

    def remove(self, key: str) -> None:
        """Remove an entry's files and its row in one step."""
        before = self.shard_mtime(key)
        self._unlink(key)
        self.index.remove(key)
        self.mark(key, before)

    # -- the folder against the index -------------------------------------------

    def look(self, *, due_only: bool = False, listing: bool = False) -> None:
        """Adopt files the index does not know, drop rows whose file is gone, correct sizes,
        in the shards whose folder changed since the index last agreed with it; settle
        reservations whose writer died.  ``due_only``: unless this process did it less than
        a second ago.  ``listing``: every row is about to be read anyway, so also drop rows
        of shards that have no folder and sum the total again."""
        now = time.monotonic()
        if due_only and now - self._looked < _LOOK_EVERY:
            return
        self._looked = now
        marks = self.index.marks()
        try:
            with os.scandir(self.entries) as items:
                shards = [item for item in items if item.name in _SHARD_NAMES]
        except OSError:
            shards = []
        seen = set()
        for shard in shards:
            try:
                st = shard.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue  # a planted link or file: nothing of ours is in it
            seen.add(shard.name)
            if marks.get(shard.name) != st.st_mtime_ns:
                # The mtime read before listing: a change made while we list shows next time.
                self._relist(shard.name)
                self.index.mark(shard.name, st.st_mtime_ns)
        for gone in marks.keys() - seen:
            self.index.drop_shard(gone)  # its folder went: none of its rows has a file
        self._settle_stale()
        if listing:
            self.index.drop_outside(seen)
            self.index.recount()  # the running total is a row anybody can write too

    def _relist(self, shard: str) -> None:
        files: dict[str, EntryStat] = {}
        try:
            with os.scandir(self.entries / shard) as items:
                for item in items:
                    if not is_key(item.name) or item.name[:2] != shard:
                        continue  # not an entry's name: never ours
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        files[item.name] = EntryStat(item.name, st.st_size, st.st_mtime)
        except OSError:
            return
        rows = self.index.rows_in(shard)
        for key, (size, pending) in rows.items():
            if pending:
                continue  # its writer settles it (or _settle_stale, if it died)
            if key not in files:
                self.index.remove(key)
            elif files[key].size != size:
                self.index.resize(key, files[key].size)
        for key in files.keys() - rows.keys():
            self.index.adopt(files[key], self._read_stats(key))

    def _settle_stale(self) -> None:
        now = time.time()
        for key, writer, when, _size in self.index.pending():
            if _stale(writer, when, now):
                self.settle(key)

    # -- the limit ---------------------------------------------------------------

    def fit(self, limit: int, protect: Iterable[str] = (), added: int = 0) -> list[str]:
        """Evict until the rows (reservations included) fit ``limit``; return the keys
        removed.  ``added`` is what the caller has just reserved: an overshoot larger than
        that is not explained by this write, so the total and the largest claims are
        checked first."""
        keep = set(protect)
        for key, _size, _pending in self.index.claims_below(0):
            self.settle(key)  # no file is smaller than nothing: it would hide real bytes
        self.look(due_only=self.index.total_size() <= limit)
        total = self.index.total_size()
        if total <= limit:
            return []
        if total - limit > added:
            self._check_claims(limit, keep)
        removed: list[str] = []
        for row in self.index.eviction_order(keep):
            if self.index.total_size() <= limit:
                break
            found = self.found(row.key)
            if found is None:
                self.index.remove(row.key)  # a row without its file frees what it claimed
                continue
            if found.size != row.size:
                self.index.resize(row.key, found.size)
                if self.index.total_size() <= limit:
                    break
            self.remove(row.key)
            removed.append(row.key)
        return removed

    def _check_claims(self, limit: int, keep: set[str]) -> None:
        """Check the running total, and every row claiming more than the overshoot (or
        more than the whole limit, which no entry of a cache under it can be), against the
        files: one forged row must not cost every other entry its life."""
        checked: set[str] = set()
        total = self.index.recount()
        while total > limit and len(checked) < _MAX_CHECKED:
            rows = [
                row
                for row in self.index.claims_over(min(total - limit, limit))
                if row[0] not in checked
            ]
            if not rows:
                return
            for key, size, pending in rows:
                checked.add(key)
                if key in keep:
                    continue  # this write's own: the size of the file just written
                if pending and 0 <= size <= limit:
                    continue  # a live writer's reservation, of a size a cache could write
                self.settle(key)
            total = self.index.total_size()


def _stale(writer: str, when: float, now: float) -> bool:
    """Whether a reservation's writer is gone: dead on this host, or silent too long."""
    host, _, pid = writer.rpartition(":")
    if not host or abs(now - when) > _STALE_RESERVATION:
        return True
    return host == HOST and not (pid.isdigit() and pid_alive(int(pid)))
