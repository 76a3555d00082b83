"""The file-system steps a folder store takes with care: folders checked for planted
links, files opened without following a link or blocking on a FIFO, new names made
durable, temporaries their writers abandoned, and OS errors explained in words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import StoreError
from .leases.file import HOST, pid_alive

__all__ = [
    "DIRECTORY",
    "NOFOLLOW",
    "NotRegular",
    "abandoned",
    "explain",
    "fsync_dir",
    "open_regular",
    "planted",
    "real_dir",
    "remove_quietly",
    "write_marker",
]

# A temporary file this old is abandoned even if its writer looks alive
# (another host, or a recycled pid).
_ABANDONED_AFTER = 24 * 3600.0
# key.host.pid.random.tmp: the only names the sweep ever removes.
_TEMPORARY = re.compile(
    r"^[0-9a-f]{16,128}\.(?P<host>[^/]+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.tmp$"
)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def explain(exc: OSError, action: str, where: Path) -> StoreError:
    """What failed, in words, and what the user can do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "the disk is full or a size limit was hit; free space or set NBCACHE_MAX_SIZE lower"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "the folder is read-only for you; point NBCACHE_DIR at a writable folder"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file stands where the cache expects a folder; point NBCACHE_DIR elsewhere"
    else:
        hint = "check the folder, or point NBCACHE_DIR elsewhere"
    return StoreError(f"cannot {action} {where}: {exc.strerror or exc}; {hint}")


def planted(path: Path, what: str) -> StoreError:
    """Something nbcache did not make stands where it keeps a folder."""
    return StoreError(
        f"{path} is not a folder nbcache made ({what}): nbcache never follows it out of the "
        "store. Remove it (nbcache recreates the folder) or point NBCACHE_DIR elsewhere."
    )


class NotRegular(Exception):
    """A path that is there but is no regular file (a FIFO, a device, a folder)."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, without following a link and
    without blocking (a FIFO would block ``open()`` for ever)."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | _NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(_kind(mode))
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb", buffering=0)


def real_dir(path: Path, *, create: bool) -> None:
    """Check ``path`` is a folder and not a link (made if ``create`` and missing).

    Raises:
        StoreError: a link or a file stands there.
        OSError: it cannot be made.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if not create:
            return
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise planted(path, "a symbolic link")
    if not stat.S_ISDIR(mode):
        raise planted(path, f"a {_kind(mode) if not stat.S_ISREG(mode) else 'file'}")


def write_marker(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless something is there (a planted link included)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    except FileExistsError:
        return
    with open(fd, "w") as f:
        f.write(text)


def remove_quietly(path: Path) -> None:
    """Clean up after a write; on a read-only folder there is nothing to clean."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    """Make a new name durable: it lives in the directory's own blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def abandoned(name: str, folder: int, now: float) -> bool:
    match = _TEMPORARY.match(name)
    if match is None:
        return False  # not a name nbcache gives its temporaries: never ours to remove
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    old = now - info.st_mtime > _ABANDONED_AFTER
    return old or (match["host"] == HOST and not pid_alive(int(match["pid"])))
