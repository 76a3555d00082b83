"""The default store: a folder on a local or network file system.

Layout under the root (``.nbcache/`` in the working directory by default)::

    .gitignore, CACHEDIR.TAG     so the cache is never committed or backed up
    v1/entries/ab/<key>          immutable entry files (see nbcache.entry.format)
    v1/stats/<key>.json          uses, last use, pin: small, mutable, unsigned
    v1/leases/<key>              who computes a key right now
    v1/tmp/                      writes in progress; renamed into entries/ whole

Every write goes to ``tmp/`` (same file system), is fsynced, then renamed over
its final name, so a reader sees the whole entry or none.  Temporary files of
writers that died are removed the next time a process of this host writes.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import StoreError
from .base import EntryStat, check_key
from .leases.file import DEFAULT_TTL, HOST, FileLease, pid_alive

__all__ = ["LocalStore"]

_LAYOUT = "v1"
_GITIGNORE = "# nbcache's cache: never commit it (results are signed with a personal secret)\n*\n"
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a cache made by nbcache; backup tools may skip it.\n"
)
# A temporary file this old is abandoned even if its writer looks alive
# (another host, or a recycled pid).
_ABANDONED_AFTER = 24 * 3600.0


def _explain(exc: OSError, action: str, where: Path) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "the disk is full or a size limit was hit; free space or set NBCACHE_MAX_SIZE lower"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "the folder is read-only for you; point NBCACHE_DIR at a writable folder"
    else:
        hint = "check the folder, or point NBCACHE_DIR elsewhere"
    return StoreError(f"cannot {action} {where}: {exc.strerror or exc}; {hint}")


class LocalStore:
    """Entries in a folder; safe for many processes (and hosts sharing the folder)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.location = str(self.root)
        self.fsync = fsync
        self._base = self.root / _LAYOUT
        self._ready = False

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

    def _ensure(self) -> None:
        if self._ready:
            return
        try:
            for sub in ("entries", "stats", "leases", "tmp"):
                (self._base / sub).mkdir(parents=True, exist_ok=True)
            for name, text in ((".gitignore", _GITIGNORE), ("CACHEDIR.TAG", _CACHEDIR_TAG)):
                marker = self.root / name
                if not marker.exists():
                    marker.write_text(text)
        except OSError as exc:
            raise _explain(exc, "create the cache folder", self.root) from exc
        self._ready = True
        self.sweep()

    # -- entries -------------------------------------------------------------

    def open_entry(self, key: str) -> BinaryIO:
        path = self.entry_path(key)
        try:
            return open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise _explain(exc, "read", path) from exc

    def has_entry(self, key: str) -> bool:
        return self.entry_path(key).is_file()

    @contextmanager
    def write_entry(self, key: str) -> Iterator[BinaryIO]:
        final = self.entry_path(key)
        self._ensure()
        tmp = self._tmp_path(key)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _explain(exc, "write to", self.root) from exc
        try:
            with open(fd, "wb", buffering=0) as f:
                yield f
                if self.fsync:
                    os.fsync(f.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            if self.fsync:
                _fsync_dir(final.parent)
        except BaseException as exc:
            _remove_quietly(tmp)
            if isinstance(exc, OSError):
                raise _explain(exc, "write to", self.root) from exc
            raise

    def remove_entry(self, key: str) -> None:
        for path in (self.entry_path(key), self._stats_path(key)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise _explain(exc, "remove", path) from exc

    def entries(self) -> Iterator[EntryStat]:
        top = self._base / "entries"
        try:
            shards = list(os.scandir(top))
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                files = list(os.scandir(shard.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for item in files:
                try:
                    st = item.stat()
                except FileNotFoundError:
                    continue  # removed while we listed
                yield EntryStat(item.name, st.st_size, st.st_mtime)

    # -- stats ---------------------------------------------------------------

    def read_stats(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._stats_path(key).read_bytes())
        except (OSError, ValueError):
            return None  # stats are a heuristic: missing or torn ones are rebuilt
        return data if isinstance(data, dict) else None

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        self._ensure()
        final = self._stats_path(key)
        tmp = self._tmp_path(key)
        try:
            tmp.write_text(json.dumps(dict(stats), sort_keys=True))
            os.replace(tmp, final)
        except OSError as exc:
            _remove_quietly(tmp)
            raise _explain(exc, "write to", final) from exc

    # -- leases and housekeeping --------------------------------------------

    def lease(self, key: str, ttl: float = DEFAULT_TTL) -> FileLease:
        return FileLease(self._base / "leases" / check_key(key), ttl)

    def sweep(self) -> int:
        """Remove temporary files whose writer died; return how many went."""
        removed = 0
        try:
            items = list(os.scandir(self._base / "tmp"))
        except FileNotFoundError:
            return 0
        now = time.time()
        for item in items:
            if _abandoned(item.name, item, now):
                try:
                    os.unlink(item.path)
                    removed += 1
                except OSError:
                    continue
        return removed


def _remove_quietly(path: Path) -> None:
    """Clean up after a failed write; on a read-only folder there is nothing to clean."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: the new name lives in the directory's own blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _abandoned(name: str, item: os.DirEntry[str], now: float) -> bool:
    try:
        # key.host.pid.random.tmp, where only the host may contain dots
        host, pid, _random, _suffix = name.split(".", 1)[1].rsplit(".", 3)
        old = now - item.stat().st_mtime > _ABANDONED_AFTER
    except (ValueError, IndexError, FileNotFoundError):
        return False
    return old or (host == HOST and not pid_alive(int(pid)))
