"""The bytes-level store protocol every backend implements.

A store knows nothing of pickles, signatures or eviction policy: it keeps
immutable entry files by key, a small mutable stats record per key, and a
lease per key.  :class:`nbcache.cache.core.Cache` builds everything else on top.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable

from ..errors import StoreError

__all__ = ["EntryStat", "Lease", "Store", "check_key"]

_KEY = re.compile(r"^[0-9a-f]{16,128}$")


def check_key(key: str) -> str:
    """``key`` if it is a lowercase hex digest; anything else could escape the folder.

    Raises:
        StoreError: not 16 to 128 lowercase hex digits.
    """
    if not isinstance(key, str) or _KEY.match(key) is None:
        raise StoreError(f"{key!r} is not a cache key: keys are 16 to 128 lowercase hex digits")
    return key


@dataclass(frozen=True)
class EntryStat:
    """One stored entry as a listing sees it, without opening it."""

    key: str
    size: int
    mtime: float


@runtime_checkable
class Lease(Protocol):
    """A claim on one key: its holder computes, everybody else waits for the entry."""

    def acquire(self) -> bool:
        """Take the lease without blocking (taking over a dead holder's); True if ours."""

    def release(self) -> None:
        """Give the lease up; a no-op if it is not ours any more."""

    def holder(self) -> Mapping[str, Any] | None:
        """Who holds it now (pid, host, heartbeat), or None if nobody does."""


@runtime_checkable
class Store(Protocol):
    """Immutable entries by key, a mutable stats record per key, and leases."""

    location: str

    def open_entry(self, key: str) -> BinaryIO:
        """A seekable binary reader of the entry. Raises KeyError when absent, StoreError."""

    def write_entry(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A writer whose bytes become the entry all at once when the block exits cleanly.

        On an exception nothing becomes visible and nothing is left behind.
        Raises StoreError for a read-only or full store.
        """

    def has_entry(self, key: str) -> bool:
        """Whether a complete entry is stored under ``key``."""

    def remove_entry(self, key: str) -> None:
        """Remove the entry and its stats; a no-op when absent."""

    def entries(self) -> Iterator[EntryStat]:
        """Every complete entry, in no particular order."""

    def read_stats(self, key: str) -> dict[str, Any] | None:
        """The stats record of ``key`` (uses, last use, pin, ...), or None."""

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        """Replace the stats record of ``key`` (last writer wins)."""

    def lease(self, key: str) -> Lease:
        """The lease object for ``key`` (not yet acquired)."""
