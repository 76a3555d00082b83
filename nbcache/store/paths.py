"""The file-system steps a folder store takes with care: folders checked for planted
links, files opened without following a link or blocking on a FIFO, new names made
durable, temporaries their writers abandoned, file systems whose files may be mapped,
and OS errors explained in words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..entry.buffers import EntryFile
from ..errors import StoreError
from .leases.file import HOST, pid_alive

__all__ = [
    "DIRECTORY",
    "NOFOLLOW",
    "NotRegular",
    "abandoned",
    "explain",
    "fsync_dir",
    "maps_safely",
    "only_ours",
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


def open_regular(
    path: str | os.PathLike[str], *, mappable: Callable[[int], bool] | None = None
) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, without following a link and
    without blocking (a FIFO would block ``open()`` for ever).

    ``mappable``, asked with the file's size: True when the caller never rewrites the
    file in place and its buffers are worth mapping, so it comes back as an
    :class:`~nbcache.entry.buffers.EntryFile`, whose buffers are mapped when read, if no
    one else can write it either (:func:`only_ours`).
    """
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | _NONBLOCK)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(_kind(mode))
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    if mappable is not None and only_ours(info) and mappable(info.st_size):
        return EntryFile(fd, "rb")
    return open(fd, "rb", buffering=0)


def only_ours(info: os.stat_result) -> bool:
    """Whether no other user can write (so cut short) the file ``info`` describes: ours,
    with no write permission for the group or others (an ACL granting one shows in the
    group bits). A file cut short under a map faults when read (SIGBUS) and kills the
    process; a file in a shared store that others can write is read into memory instead.
    """
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


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


# File systems whose files a process may map while others unlink or replace them: the
# kernel keeps an unlinked inode's pages while they are mapped.  Not NFS, SMB, FUSE or
# a cluster file system: another host can remove the file from under the map (a read
# then faults), and their page caches are not always kept coherent.
_MAPPABLE_TYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "f2fs", "jfs", "nilfs2", "reiserfs"}
    | {"tmpfs", "ramfs", "overlay", "zfs"}
)
_MOUNTINFO = "/proc/self/mountinfo"
_mappable: dict[str, bool] = {}


def maps_safely(folder: Path) -> bool:
    """Whether files in ``folder`` may stay mapped while other processes remove them:
    only on Linux, on a local file system it names (anything else, or a mount table
    that cannot be read, is no)."""
    if sys.platform != "linux":
        return False  # Windows cannot remove a mapped file at all; macOS is not checked
    key = str(folder)
    if key not in _mappable:  # asked on every read: the mount table is read once per folder
        _mappable[key] = _file_system_type(os.path.realpath(folder)) in _MAPPABLE_TYPES
    return _mappable[key]


def _file_system_type(path: str) -> str | None:
    """The type of the file system mounted deepest above ``path``, from the mount table."""
    try:
        table = _read_all(_MOUNTINFO).decode("utf-8", "replace")
    except OSError:
        return None
    best, found = -1, None
    for line in table.splitlines():
        fields, _, rest = line.partition(" - ")
        parts, kind = fields.split(), rest.split()
        if len(parts) < 5 or not kind:
            continue
        point = _unescape(parts[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the last of equal mounts is the one on top
            best, found = len(point), kind[0]
    return found


def _read_all(path: str) -> bytes:
    """A file's bytes by plain reads: a text file object's first use costs a fresh
    process more than the mount table's few KB do."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _unescape(field: str) -> str:
    """The mount table writes a space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:  # nearly every mount point: no pattern compiled for it
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
