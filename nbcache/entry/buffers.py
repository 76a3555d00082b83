"""Memory for the bytes of entries being read: page-aligned maps, and a reader over one.

A store that already holds an entry's bytes in memory (a download) hands them
over as a :class:`MappedReader`; :func:`nbcache.entry.format.read_entry` then verifies
array buffers in place and loads them without another copy.  A store whose entry
files are never rewritten in place (a local folder) hands over an :class:`EntryFile`,
whose array buffers are mapped copy-on-write instead of read.
"""

from __future__ import annotations

import io
import mmap
from typing import Any

__all__ = [
    "WHOLE_READ",
    "EntryFile",
    "MappedReader",
    "allocate",
    "map_private",
    "release_pages",
]

# An entry this small is read with one read, then checked and loaded from memory (its
# arrays are slices of that memory, which is writable): a first hit's few reads of a
# small entry cost more than the bytes. A larger one streams, each buffer hashed as it
# arrives, so it is never read whole before it is checked; a store may map it instead.
WHOLE_READ = 1 << 20


def allocate(length: int) -> mmap.mmap:
    """Page-aligned, untouched memory that outlives any file (unlike a file mapping).

    Private, not shared: a shared anonymous map is shmem, which the kernel fills
    at half the speed.  Huge pages cut the page faults of a 1 GB read by 512x.
    """
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    buffer = mmap.mmap(-1, length, flags=flags) if flags else mmap.mmap(-1, length)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return buffer


class MappedReader(io.RawIOBase):
    """A seekable reader over bytes already in memory; :attr:`mapped` is all of them.

    Closing the reader drops its reference only: arrays loaded from slices of
    :attr:`mapped` keep the memory alive as long as they live.
    """

    def __init__(self, memory: Any) -> None:
        super().__init__()
        self.mapped = memoryview(memory).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self.mapped)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        start = min(self._position, len(self.mapped))
        n = min(len(out), len(self.mapped) - start)
        out[:n] = self.mapped[start : start + n]
        self._position = start + n
        return n


class EntryFile(io.FileIO):
    """An entry file its store never rewrites in place, on a file system that keeps a
    mapped file readable after it is unlinked or replaced.

    Such a store writes every entry to a new file that takes the entry's name whole, so
    a private map of the file outlives the entry being replaced, evicted or removed:
    the kernel keeps the unlinked inode's pages for as long as they are mapped.  A file
    cut short under a live map would fault (SIGBUS) when read; no store writes so, and
    a folder store opens a file as one only when no other user can write it.
    """


def map_private(f: EntryFile) -> mmap.mmap | None:
    """All of ``f`` mapped copy-on-write: reads share the page cache, a write copies the
    page it touches and never reaches the file. None where it cannot be mapped."""
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):  # no mmap on this file system, no address space left
        return None


def release_pages(mapping: mmap.mmap, offset: int, length: int) -> None:
    """Unmap the pages of ``mapping`` that verifying its buffer read, until used again.

    Unwritten pages of a private file map are the page cache's own: dropping them from
    this process costs nothing, and the next read maps them back without a copy.  So a
    restored value counts in the process's resident memory only once it is used.
    """
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:
        return
    start = offset - offset % mmap.PAGESIZE
    try:
        mapping.madvise(advice, start, min(offset + length, len(mapping)) - start)
    except (OSError, ValueError):  # only an accounting nicety
        return
