"""The default store: a folder on a local or network file system.

Layout under the root (``.nbcache/`` in the working directory by default)::

    .gitignore, CACHEDIR.TAG     so the cache is never committed or backed up
    v1/entries/ab/<key>          immutable entry files (see nbcache.entry.format)
    v1/stats/<key>.json          uses, last use, pin: small, mutable, unsigned
    v1/index.sqlite              sizes, ranks and stats of every entry (store.index)
    v1/leases/<key>              who computes a key right now
    v1/tmp/                      writes in progress; linked into entries/ whole

Every write goes to ``tmp/`` (same file system), is fsynced, then hard-linked
to its final name, which fails if another writer published the key first (so
an entry is never replaced, not even by a kernel with another secret); a
reader sees the whole entry or none.  Temporary files of writers that died are
removed the next time a process of this host writes.

No entry file is ever written again once it has its name: a forced rewrite links a
new file over the name, eviction unlinks it.  That is what lets a restored value's
arrays stay mapped from the file (see nbcache.entry.buffers.EntryFile) after its
entry is replaced, evicted or cleared, on the local file systems where the kernel
keeps an unlinked mapped file readable (``maps_safely``).

The folder may hold what nbcache did not put there (a cloned repository, a
shared drive, a ``.DS_Store``): files are opened without following links and
only when they are regular files, so a planted FIFO never blocks and a planted
link never leads out of the folder; names that are not nbcache's are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .. import settings
from ..entry.buffers import WHOLE_READ
from ..entry.format import bounded_json
from ..errors import StoreError, warn
from .base import EntryStat, Store, check_key, is_key
from .index import Index, IndexUnavailable
from .keeper import Keeper, writer_name
from .leases.file import DEFAULT_TTL, HOST, FileLease
from .paths import (
    DIRECTORY,
    NOFOLLOW,
    NotRegular,
    abandoned,
    explain,
    fsync_dir,
    maps_safely,
    open_regular,
    real_dir,
    remove_quietly,
    write_marker,
)

__all__ = ["LocalStore"]

_LAYOUT = "v1"
_SUBDIRS = ("entries", "stats", "leases", "tmp")
_GITIGNORE = "# nbcache's cache: never commit it (results are signed with a personal secret)\n*\n"
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a cache made by nbcache; backup tools may skip it.\n"
)
_MAX_STATS = 64 << 10
_Row = TypeVar("_Row")  # what a listing yields: an entry, or an entry with its stats


class LocalStore(Store):
    """Entries in a folder; safe for many processes (and hosts sharing the folder)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.location = str(self.root)
        self.fsync = fsync
        self._base = self.root / _LAYOUT
        self._entries = str(self._base / "entries")
        self._ready = False
        self.index = Index(self._base / "index.sqlite", self._scan)
        self.keeper = Keeper(
            self.index, self._base / "entries", self._unlink_entry, self._read_stats_file
        )
        self._limit: int | None = None
        self._warned_evict = False

    def __repr__(self) -> str:
        return f"LocalStore({self.location!r})"

    # -- paths ---------------------------------------------------------------

    def entry_path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (it may not exist)."""
        return self._base / "entries" / key[:2] / check_key(key)

    def _stats_path(self, key: str) -> Path:
        return self._base / "stats" / f"{check_key(key)}.json"

    def _tmp_path(self, key: str) -> Path:
        return self._base / "tmp" / f"{key}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"

    def check(self) -> None:
        """Raise StoreError if the root is not a folder, or a part of the layout was planted."""
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            return  # made on the first write
        except OSError as exc:
            raise explain(exc, "use the cache folder", self.root) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(
                f"NBCACHE_DIR names {self.root}, which is a file, not a folder: point "
                "NBCACHE_DIR at a folder (it is created if missing)."
            )
        for path in (self._base, *(self._base / sub for sub in _SUBDIRS)):
            real_dir(path, create=False)

    def _ensure(self) -> None:
        if self._ready:
            return
        self.check()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            real_dir(self._base, create=True)
            for sub in _SUBDIRS:
                real_dir(self._base / sub, create=True)
            for name, text in ((".gitignore", _GITIGNORE), ("CACHEDIR.TAG", _CACHEDIR_TAG)):
                write_marker(self.root / name, text)
        except OSError as exc:
            raise explain(exc, "create the cache folder", self.root) from exc
        self._ready = True
        self.sweep()

    def _shard(self, key: str, *, create: bool) -> Path:
        shard = self._base / "entries" / check_key(key)[:2]
        try:
            real_dir(shard, create=create)
        except OSError as exc:
            raise explain(exc, "write to", shard) from exc
        return shard

    # -- entries -------------------------------------------------------------

    def open_entry(self, key: str) -> BinaryIO:
        # entry_path's name as a plain string: a Path built and opened costs a first
        # hit more than the open itself.
        name = os.path.join(self._entries, key[:2], check_key(key))
        try:
            return open_regular(name, mappable=self._mappable)
        except FileNotFoundError:
            raise KeyError(key) from None
        except NotRegular as exc:
            self._remove_planted(Path(name), f"a {exc}")
            raise KeyError(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._remove_planted(Path(name), "a symbolic link")
                raise KeyError(key) from None
            raise explain(exc, "read", Path(name)) from exc

    def _mappable(self, size: int) -> bool:
        # An entry read whole never maps: its hit need not read the mount table.
        return size > WHOLE_READ and settings.map_entries() and maps_safely(self._base)

    def _remove_planted(self, path: Path, what: str) -> None:
        """Something nbcache never writes stands at an entry's name: it is no entry (a miss),
        and it goes, so the entry can be stored (unlinking never follows a link)."""
        try:
            os.unlink(path)
            done = "removed it"
        except OSError:
            done = "could not remove it"
        warn(
            f"nbcache: {path.name[:12]} in {self.root} was {what}, not an entry file (planted "
            f"there?): ignored it and {done}; the value is recomputed",
            stacklevel=4,
        )

    def has_entry(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.entry_path(key)).st_mode)
        except OSError:
            return False

    @contextmanager
    def write_entry(self, key: str, *, replace: bool = False) -> Iterator[BinaryIO]:
        final = self.entry_path(key)
        self._ensure()
        tmp = self._tmp_path(key)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
        except OSError as exc:
            raise explain(exc, "write to", self.root) from exc
        try:
            with open(fd, "wb", buffering=0) as f:
                yield f
                if self.fsync:
                    os.fsync(f.fileno())
                size = f.tell()
            self._publish(key, tmp, final, size, replace)
        except BaseException as exc:
            if isinstance(exc, OSError):
                raise explain(exc, "write to", self.root) from exc
            raise
        finally:
            remove_quietly(tmp)

    def _publish(self, key: str, tmp: Path, final: Path, size: int, replace: bool) -> None:
        """Give the finished ``tmp`` its final name unless an entry has it already.

        Its row is reserved first, in the transaction that evicts to make room for it (so
        the folder holds its limit at every moment, and no other writer can evict a row
        whose file is not linked yet), then settled from the file once linked.  A writer
        killed in between leaves a reservation that the next process to look settles from
        the file, never a file the index misses.
        """
        self._shard(key, create=True)
        reserved = self._index_quietly(lambda: self._reserve(key, size, replace))
        before = self.keeper.shard_mtime(key)  # after our own evictions moved it
        try:
            self._link(tmp, final, replace)
        finally:
            if reserved:
                self._index_quietly(lambda: self._settle(key, before))
        if not reserved and self._limit is not None:
            with contextlib.suppress(StoreError):  # no index: evict by the files, as a bucket does
                Store.evict_to(self, self._limit, (key,))

    def _reserve(self, key: str, size: int, replace: bool) -> None:
        with self.index.exclusive():
            self.index.reserve(key, size, time.time(), writer_name(), replace=replace)
            if self._limit is not None:
                try:
                    self.keeper.fit(self._limit, protect=self.held((key,)), added=size)
                except StoreError as exc:  # a file that cannot be removed: keep writing
                    if not self._warned_evict:
                        self._warned_evict = True
                        warn(f"nbcache: the entry is stored, but could not evict: {exc}", 6)

    def _settle(self, key: str, before: int | None) -> None:
        with self.index.exclusive():
            self.keeper.settle(key, ours=True)
            self.keeper.mark(key, before)

    def _link(self, tmp: Path, final: Path, replace: bool) -> None:
        try:
            if replace:
                os.replace(tmp, final)  # a link planted at final is replaced, not followed
            else:
                os.link(tmp, final)  # create-if-absent, atomic: the first writer's entry stays
        except FileExistsError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # A file system without hard links: a rename that checks first, which two
            # writers racing within microseconds can both pass (the last one's stays).
            if self.has_entry(final.name):
                return
            os.rename(tmp, final)
        if self.fsync:
            fsync_dir(final.parent)

    def _index_quietly(self, action: Any) -> bool:
        """Run an index update; the files stay the truth when the index cannot be written."""
        try:
            action()
        except IndexUnavailable:
            return False
        return True

    def touch(self, key: str) -> None:
        """Mark the entry as just used (its file's mtime and its index row), for a tier that
        keeps the copies read most recently; never an error."""
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(self.entry_path(key), (now, now), follow_symlinks=False)
        self._index_quietly(lambda: self.index.touch(key, now))

    def remove_entry(self, key: str) -> None:
        if not self._exists():
            return  # no layout of ours (or a planted link in its place): nothing to remove
        check_key(key)
        try:
            with self.index.exclusive():
                self.keeper.remove(key)  # the files and the row in one step
        except IndexUnavailable:
            self._unlink_entry(key)

    def _unlink_entry(self, key: str) -> None:
        for path in (self.entry_path(key), self._stats_path(key)):
            try:
                path.unlink(missing_ok=True)  # unlink never follows a link
            except OSError as exc:
                if not os.path.lexists(path):
                    continue  # a read-only folder says so even of a name that is not there
                raise explain(exc, "remove", path) from exc

    def entries(self) -> Iterator[EntryStat]:
        return self._listed(self.index.entries, self._walk)

    def _exists(self) -> bool:
        """Whether there is a folder to look in (reading never creates one), made of real
        folders: through a planted link, nothing is read, listed or removed."""
        try:
            layout = (self._base, self._base / "entries")
            return all(stat.S_ISDIR(os.lstat(path).st_mode) for path in layout)
        except OSError:
            return False

    def _walk(self) -> Iterator[EntryStat]:
        """Every entry file found on disk: regular files with a key's name, in real shards."""
        top = self._base / "entries"
        try:
            shards = [s for s in os.scandir(top) if s.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise explain(exc, "list", top) from exc
        for shard in shards:
            try:
                files = list(os.scandir(shard.path))
            except OSError:
                continue
            for item in files:
                if not is_key(item.name) or item.name[:2] != shard.name:
                    continue  # .DS_Store, notes.txt: not ours
                try:
                    if not item.is_file(follow_symlinks=False):
                        continue
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we listed
                yield EntryStat(item.name, st.st_size, st.st_mtime)

    def _scan(self) -> Iterator[tuple[EntryStat, Mapping[str, Any] | None]]:
        for found in self._walk():
            yield found, self._read_stats_file(found.key)

    # -- the index -------------------------------------------------------------

    def entries_with_stats(self) -> Iterator[tuple[EntryStat, dict[str, Any] | None]]:
        return self._listed(self.index.entries_with_stats, super().entries_with_stats)

    def _listed(
        self, rows: Callable[[], Iterable[_Row]], files: Callable[[], Iterator[_Row]]
    ) -> Iterator[_Row]:
        """The index's ``rows``, listed under its lock once the keeper has looked at what
        other writers left; ``files`` (found on disk) when there is no index to read."""
        if not self._exists():
            return iter(())
        try:
            with self.index.exclusive():
                self.keeper.look(listing=True)
                return iter(rows())
        except IndexUnavailable:
            return files()

    def total_size(self) -> int:
        if not self._exists():
            return 0
        try:
            return self.index.total_size()
        except IndexUnavailable:
            return super().total_size()

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        if not self._exists():
            return iter(())
        protect = list(self.held(protect))
        by_files = super().eviction_order
        return _chain_checked(self.index.eviction_order(protect), lambda: by_files(protect))

    def keep_within(self, max_size: int | None) -> bool:
        """Evict as each entry is published, in the step that reserves its row: the folder
        holds ``max_size`` at every moment, whoever writes."""
        self._limit = max_size
        return True

    def evict_to(self, max_size: int, protect: Iterable[str] = ()) -> list[str]:
        """Evict until the folder fits ``max_size`` in one step against every other writer,
        checking each row's claims against its file first."""
        if not self._exists():
            return []
        try:
            with self.index.exclusive():
                return self.keeper.fit(max_size, self.held(protect))
        except IndexUnavailable:
            return super().evict_to(max_size, protect)

    def reindex(self) -> int:
        """Rebuild the index from the entry files and their stats; return how many entries."""
        if not self._exists():
            return 0
        try:
            return self.index.rebuild()
        except IndexUnavailable as exc:
            raise StoreError(
                f"cannot rebuild the index of {self.root}: {exc}; check that the folder is "
                "writable and no other process holds it for long"
            ) from exc

    # -- stats ---------------------------------------------------------------

    def read_stats(self, key: str) -> dict[str, Any] | None:
        check_key(key)
        if not self._exists():
            return None
        try:
            found = self.index.read_stats(key)
        except IndexUnavailable:
            found = None
        return found if found is not None else self._read_stats_file(key)

    def _read_stats_file(self, key: str) -> dict[str, Any] | None:
        try:
            with open_regular(self._stats_path(key)) as f:
                data = bounded_json(f.read(_MAX_STATS + 1), max_size=_MAX_STATS)
        except (OSError, ValueError, NotRegular):
            return None  # stats are a heuristic: missing, planted or torn ones are rebuilt
        return data if isinstance(data, dict) else None

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        self._ensure()
        final = self._stats_path(key)
        tmp = self._tmp_path(key)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
            with open(fd, "w") as f:
                f.write(json.dumps(dict(stats), sort_keys=True))
            os.replace(tmp, final)  # a link planted at final is replaced, never followed
        except OSError as exc:
            remove_quietly(tmp)
            raise explain(exc, "write to", final) from exc
        self._index_quietly(lambda: self.index.write_stats(key, stats))

    # -- leases and housekeeping --------------------------------------------

    def lease(self, key: str, ttl: float = DEFAULT_TTL) -> FileLease:
        return FileLease(self._base / "leases" / check_key(key), ttl)

    def sweep(self) -> int:
        """Remove temporary files whose writer died; return how many went.

        Only regular files named as nbcache names its temporaries, in the store's own
        ``tmp`` folder (opened without following links), are ever removed.
        """
        try:
            base = os.open(self._base, os.O_RDONLY | DIRECTORY | NOFOLLOW)
        except OSError:
            return 0
        try:
            tmp = os.open("tmp", os.O_RDONLY | DIRECTORY | NOFOLLOW, dir_fd=base)
        except OSError:
            return 0
        finally:
            os.close(base)
        removed = 0
        now = time.time()
        try:
            with os.scandir(tmp) as items:
                names = [item.name for item in items]
            for name in names:
                if abandoned(name, tmp, now):
                    try:
                        os.unlink(name, dir_fd=tmp)
                        removed += 1
                    except OSError:
                        continue
        finally:
            os.close(tmp)
        return removed


def _chain_checked(
    rows: Iterator[EntryStat], fallback: Callable[[], Iterator[EntryStat]]
) -> Iterator[EntryStat]:
    """The index's eviction order, or the files' when the index cannot be read; an index
    that fails half-way ends the order early, so eviction frees less this time rather
    than raising into a write."""
    started = False
    try:
        for row in rows:
            started = True
            yield row
    except IndexUnavailable:
        if not started:
            yield from fallback()
