"""Writing an entry's bytes at the speed of a plain ``np.save``.

Two things close the gap with a bare ``write()`` of an array:

* The file gets its blocks up front (``fallocate``), as ``np.save`` does, so the
  file system maps 1 GB of extents once instead of growing the file write by write.
* The XXH3 checksum of a large buffer is computed on a second thread while the
  same chunk is copied into the page cache: xxhash releases the GIL, so on two
  cores a write costs about the copy alone.  Every byte is still hashed before the
  write returns, and the header that pins the checksum is written after it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

__all__ = ["PREALLOCATE_MIN", "WRITE_CHUNK", "hashed_write", "preallocate", "write_all"]

# Measured on 1 GB here: 4 MB writes ran steadily where 1 MB writes swung from
# 0.26 s to 2 s (smaller page-cache folios).
WRITE_CHUNK = 4 << 20
# Hashed on the second thread while the same chunk is written, so both read it from
# RAM once.  Measured on 1 GB here, best of 7 to 9 under load: 8 MB hand-overs 263-270 ms,
# one hand-over for the whole buffer 275-293 ms, 4 MB 303 ms; np.save 268 ms.
_OVERLAP_CHUNK = 8 << 20
# Below this a second thread costs more than the hash it hides (about 1 ms per 16 MB).
_OVERLAP_MIN = 16 << 20
# Entries smaller than this are written before fallocate would pay for its syscall.
PREALLOCATE_MIN = 1 << 20
# What a file system that cannot preallocate answers; the write then goes ahead as is.
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.ENODEV}
)


def write_all(f: BinaryIO, data: bytes | memoryview) -> None:
    """Write every byte: a raw file may write less than asked (a full disk, a size limit)."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    while view.nbytes:
        written = f.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "no space left: the write was cut short")
        view = view[written:]


def hashed_write(f: BinaryIO, view: memoryview) -> str:
    """Write ``view`` to ``f`` in chunks and return the XXH3-128 of every byte, as hex."""
    digest = xxhash.xxh3_128()
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    if view.nbytes < _OVERLAP_MIN:
        for start in range(0, view.nbytes, WRITE_CHUNK):
            chunk = view[start : start + WRITE_CHUNK]
            digest.update(chunk)
            write_all(f, chunk)
        return str(digest.hexdigest())
    with ThreadPoolExecutor(1, thread_name_prefix="nbcache-xxh3") as hasher:
        for start in range(0, view.nbytes, _OVERLAP_CHUNK):
            chunk = view[start : start + _OVERLAP_CHUNK]
            try:
                hashed: Future[None] | None = hasher.submit(digest.update, chunk)
            except RuntimeError:  # no new thread (interpreter exiting, a thread limit)
                digest.update(chunk)
                hashed = None
            try:
                write_all(f, chunk)
            finally:  # one update at a time, in order, and none left running after a failure
                if hashed is not None:
                    hashed.result()
    return str(digest.hexdigest())


def preallocate(f: BinaryIO, size: int) -> None:
    """Give the regular file behind ``f`` its first ``size`` bytes of blocks.

    A file system that cannot (ZFS, NFSv3, a pipe, an in-memory file) is written as
    before; a full disk or quota raises OSError here, before any byte is copied.
    """
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        _allocate(fd, size)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise


def _allocate(fd: int, size: int) -> None:
    allocate = _fallocate()
    if allocate is not None:
        allocate(fd, size)
    elif sys.platform != "linux" and hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)


_loaded: list[Callable[[int, int], None] | None] = []


def _fallocate() -> Callable[[int, int], None] | None:
    """Linux's own ``fallocate(2)``, through libc, or None.

    Not ``os.posix_fallocate``: where the file system refuses, glibc's version falls
    back to writing a byte into every 4 KB block (half a million syscalls for 1 GB on
    NFS), where this one just says EOPNOTSUPP and the write goes ahead.
    """
    if not _loaded:
        _loaded.append(_load_fallocate() if sys.platform == "linux" else None)
    return _loaded[0]


def _load_fallocate() -> Callable[[int, int], None] | None:
    import ctypes  # only for a large write on Linux; costs a few ms to import

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call: Any = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    call.restype = ctypes.c_int

    def allocate(fd: int, size: int) -> None:
        while call(fd, 0, 0, size) != 0:
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))

    return allocate
