"""A store on any fsspec file system: S3 and other object stores, ``memory://``, ...

The layout is the local one (``v1/entries/ab/<key>``, ``v1/stats/<key>.json``,
``v1/leases/<key>``) under the URL's path, so a team can read it with any tool.

Entries are immutable objects written whole: the writer spools the entry on
its own machine and uploads it in one PUT (or one multipart upload, which
becomes visible only when completed), so an exception or a kill never leaves
a truncated object and a key is visible only once its entry is complete.  An
entry is never overwritten: a second writer of the same key finds it there
and keeps the first one.  Nothing here trusts a cached listing: fsspec's
listings cache is off and every read asks the server.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import mmap
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, BinaryIO

from ..entry.buffers import MappedReader, allocate
from ..entry.format import bounded_json
from ..errors import StoreError
from .base import EntryStat, Store, check_key, is_key
from .leases.file import DEFAULT_TTL, pid_alive
from .leases.object import ObjectLease, read_body, remote_errors, speaks_s3

__all__ = ["FsspecStore", "open_fsspec"]

_LAYOUT = "v1"
# Protocols whose single upload is all-or-nothing.  Anything else is written to
# tmp/ first and moved into place.
_WHOLE_OBJECT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "oss"}
# Entries up to this size are spooled in memory, bigger ones in a temporary file.
_SPOOL_IN_MEMORY = 64 << 20
# Ranged GETs of this size download a big entry concurrently: s3fs's block size.
# Smaller parts measured slower against a local server that reads the whole object
# for each range (200 MB: 1.18 s in 16 MB parts, 0.61 s in 50 MB parts).
_PART = 50 << 20
_MAX_STATS = 64 << 10


def open_fsspec(url: str, **options: Any) -> tuple[Any, str]:
    """The fsspec file system and root path of ``url``, with listings never cached.

    Raises:
        StoreError: fsspec (or the protocol's package) is missing, or the URL is wrong.
    """
    try:
        import fsspec
    except ImportError as exc:
        raise StoreError(
            f"cannot open the store {url!r}: fsspec is not installed. "
            'Install it with `pip install "nbcache[s3]"` (or fsspec and the package of '
            "your storage), or set NBCACHE_DIR to a local folder."
        ) from exc
    options = {"use_listings_cache": False, "skip_instance_cache": True, **options}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise StoreError(
            f'cannot open the store {url!r}: {exc}. For s3:// URLs, `pip install "nbcache[s3]"`.'
        ) from exc
    except (ValueError, TypeError) as exc:
        raise StoreError(
            f"cannot open the store {url!r}: {exc}. Check the URL (e.g. s3://bucket/prefix), "
            "or set NBCACHE_DIR to a folder."
        ) from exc
    return fs, str(root).rstrip("/")


_SPOOL = "nbcache-upload-"
_swept = False


def sweep_spools(folder: str | None = None) -> int:
    """Remove upload spools whose writer died (a killed kernel cannot clean up after
    itself); return how many went."""
    folder = folder or tempfile.gettempdir()
    removed = 0
    try:
        names = [name for name in os.listdir(folder) if name.startswith(_SPOOL)]
    except OSError:
        return 0
    for name in names:
        pid = name[len(_SPOOL) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                continue
    return removed


def _sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        sweep_spools()


class _Spool(io.RawIOBase):
    """Where an entry is written before its upload: memory first, a temporary file past
    ``_SPOOL_IN_MEMORY``."""

    def __init__(self) -> None:
        super().__init__()
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: Any = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._memory is not None:
            if self._memory.tell() + memoryview(data).nbytes <= _SPOOL_IN_MEMORY:
                return self._memory.write(data)
            _sweep_once()
            self._file = tempfile.NamedTemporaryFile(prefix=f"{_SPOOL}{os.getpid()}-", delete=False)  # noqa: SIM115 - closed by discard()
            self._file.write(self._memory.getbuffer())
            self._memory = None
        return int(self._file.write(data))

    def tell(self) -> int:
        return self._memory.tell() if self._memory is not None else int(self._file.tell())

    @property
    def path(self) -> str | None:
        """The temporary file holding the bytes, or None while they fit in memory."""
        return None if self._file is None else str(self._file.name)

    def value(self) -> bytes:
        assert self._memory is not None
        return self._memory.getvalue()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            try:
                os.unlink(self._file.name)
            except OSError:
                pass
            self._file = None
        self._memory = None


class FsspecStore(Store):
    """Entries as immutable objects on an fsspec file system, shared by every machine that
    can reach it."""

    # Listing a bucket costs a request per 1000 keys: the cache checks its size after
    # a write at most this often (seconds), estimating in between.
    list_interval = 60.0

    def __init__(self, url: str, *, fs: Any = None, ttl: float = DEFAULT_TTL, **options: Any):
        if fs is None:
            fs, root = open_fsspec(url, **options)
        else:
            root = url.split("://", 1)[-1].rstrip("/")
        self.fs = fs
        self.location = url
        self.ttl = ttl
        self._root = root
        self._base = f"{root}/{_LAYOUT}"
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._whole = protocol in _WHOLE_OBJECT
        self._s3 = speaks_s3(fs)
        self._errors = remote_errors()

    def __repr__(self) -> str:
        return f"FsspecStore({self.location!r})"

    def check(self) -> None:
        """Raise StoreError unless the bucket (or top folder) of the URL exists."""
        top = self._root.split("/", 1)[0] if self._whole and self._root else self._root
        try:
            found = not top or self.fs.exists(top)
        except self._errors as exc:
            raise self._fail(exc, "reach") from exc
        if not found:
            raise StoreError(
                f"cannot use the store {self.location}: {top!r} does not exist. Create it "
                "(for S3: `aws s3 mb s3://BUCKET`) or check the URL."
            )

    # -- paths ---------------------------------------------------------------

    def _entry_path(self, key: str) -> str:
        return f"{self._base}/entries/{key[:2]}/{check_key(key)}"

    def _stats_path(self, key: str) -> str:
        return f"{self._base}/stats/{check_key(key)}.json"

    def _fail(self, exc: BaseException, action: str) -> StoreError:
        return StoreError(
            f"cannot {action} {self.location}: {exc or type(exc).__name__}; check the URL, "
            "your credentials and the network, or point NBCACHE_DIR elsewhere"
        )

    # -- entries -------------------------------------------------------------

    def open_entry(self, key: str) -> BinaryIO:
        """The whole entry, downloaded into memory, all of it from one version of the object.

        On S3 a big entry comes in concurrent ranged GETs pinned to the ETag of the
        first, straight into page-aligned memory that its arrays then use as is.
        """
        path = self._entry_path(key)
        try:
            if self._s3:
                from fsspec.asyn import sync

                data = sync(self.fs.loop, self._s3_download, path)
                # Only writable memory is used in place: arrays must come back writable.
                if isinstance(data, mmap.mmap):
                    return MappedReader(data)  # type: ignore[return-value]
                return io.BytesIO(data)
            return io.BytesIO(self.fs.cat_file(path))
        except FileNotFoundError:
            raise KeyError(key) from None
        except self._errors as exc:
            raise self._fail(exc, f"read {key[:12]} from") from exc

    async def _s3_download(self, path: str) -> Any:
        bucket, name, _ = self.fs.split_path(path)
        first = await self.fs._call_s3(
            "get_object", Bucket=bucket, Key=name, Range=f"bytes=0-{_PART - 1}"
        )
        head = await read_body(first["Body"])
        total = int(str(first.get("ContentRange", "/0")).rsplit("/", 1)[1] or 0)
        if total <= len(head):
            return head
        memory = allocate(total)
        view = memoryview(memory)
        view[: len(head)] = head
        limit = asyncio.Semaphore(max(1, int(getattr(self.fs, "max_concurrency", 8) or 8)))

        async def part(start: int) -> None:
            end = min(start + _PART, total) - 1
            async with limit:
                reply = await self.fs._call_s3(
                    "get_object",
                    Bucket=bucket,
                    Key=name,
                    Range=f"bytes={start}-{end}",
                    IfMatch=first["ETag"],  # one version, even if the key is rewritten
                )
                data = await read_body(reply["Body"])
            if len(data) != end - start + 1:
                raise OSError(errno.EIO, f"short read of {path}: the object changed")
            view[start : end + 1] = data

        await asyncio.gather(*(part(start) for start in range(len(head), total, _PART)))
        return memory

    def download(self, key: str, target: BinaryIO) -> None:
        """Copy the entry into ``target`` in chunks, without holding it all in memory.

        Raises:
            KeyError: there is no such entry.
            StoreError: the store cannot be read.
        """
        path = self._entry_path(key)
        try:
            with self.fs.open(path, "rb", block_size=8 << 20, cache_type="none") as f:
                while chunk := f.read(8 << 20):
                    target.write(chunk)
        except FileNotFoundError:
            raise KeyError(key) from None
        except self._errors as exc:
            raise self._fail(exc, f"read {key[:12]} from") from exc

    def has_entry(self, key: str) -> bool:
        try:
            return self.probe(key)
        except StoreError:
            return False

    def probe(self, key: str) -> bool:
        """Whether the entry of ``key`` exists, asking the server.

        Raises:
            StoreError: the server cannot be asked (unlike :meth:`has_entry`, which says no).
        """
        try:
            return bool(self.fs.exists(self._entry_path(key)))
        except self._errors as exc:
            raise self._fail(exc, f"look for {key[:12]} in") from exc

    @contextmanager
    def write_entry(self, key: str, *, replace: bool = False) -> Iterator[BinaryIO]:
        path = self._entry_path(key)
        spool = _Spool()
        try:
            yield spool  # type: ignore[misc]
            spool.flush()
            self._put(path, spool.path if spool.path is not None else spool.value(), replace)
        finally:
            spool.discard()

    def upload(self, key: str, source: str, *, replace: bool = False) -> None:
        """Store the complete entry file ``source`` (a local path) under ``key``.

        Raises:
            StoreError: the store cannot be written.
        """
        self._put(self._entry_path(key), source, replace)

    def _put(self, path: str, source: str | bytes, replace: bool = False) -> None:
        mode = "overwrite" if replace else "create"
        try:
            if not replace and self.fs.exists(path):
                return  # entries never change: the one there is as good as ours
            target = path if self._whole else f"{self._base}/tmp/{os.path.basename(path)}"
            if isinstance(source, str):
                self.fs.put_file(source, target, mode=mode)
            else:
                self.fs.pipe_file(target, source, mode=mode)
            if target != path:
                self.fs.mv(target, path)
        except FileExistsError:
            return  # another writer finished the same key first
        except self._errors as exc:
            raise self._fail(exc, "write to") from exc

    def remove_entry(self, key: str) -> None:
        for path in (self._entry_path(key), self._stats_path(key)):
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                continue
            except self._errors as exc:
                raise self._fail(exc, f"remove {key[:12]} from") from exc

    def entries(self) -> Iterator[EntryStat]:
        top = f"{self._base}/entries"
        try:
            self.fs.invalidate_cache(top)
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return
        except self._errors as exc:
            raise self._fail(exc, "list") from exc
        for path, info in found.items():
            name = path.rsplit("/", 1)[-1]
            if info.get("type", "file") == "file" and is_key(name):
                yield EntryStat(name, int(info.get("size") or 0), _mtime(info))

    # -- stats ---------------------------------------------------------------

    def read_stats(self, key: str) -> dict[str, Any] | None:
        unreadable: tuple[type[BaseException], ...] = (*self._errors, ValueError)
        try:
            data = bounded_json(self.fs.cat_file(self._stats_path(key)), max_size=_MAX_STATS)
        except FileNotFoundError:
            return None
        except unreadable:
            return None  # stats are a heuristic: missing or torn ones are rebuilt
        return data if isinstance(data, dict) else None

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        body = json.dumps(dict(stats), sort_keys=True).encode()
        try:
            self.fs.pipe_file(self._stats_path(key), body)
        except self._errors as exc:
            raise self._fail(exc, "write stats to") from exc

    # -- leases --------------------------------------------------------------

    def lease(self, key: str, ttl: float | None = None) -> ObjectLease:
        return ObjectLease(self.fs, f"{self._base}/leases/{check_key(key)}", ttl or self.ttl)


def _mtime(info: Mapping[str, Any]) -> float:
    for name in ("LastModified", "mtime", "created", "last_modified", "updated"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0
