"""A local folder in front of a shared remote store, so a result crosses the network once
per machine.

The remote store is the truth: listings, stats, leases and removals go there,
and a local copy is used only while its key is still in the remote store (one
cheap existence check), so ``%nbcache clear`` on one machine clears every
machine.  Local copies are written whole (a temporary file and a rename) and
verified like any entry when read; the folder is kept under a size limit by
dropping the copies read least recently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from ..errors import StoreError
from .base import EntryStat, Lease, Store
from .local import LocalStore

__all__ = ["TieredStore"]


class TieredStore(Store):
    """``remote`` with a read-through copy of its entries in the folder ``local``."""

    def __init__(self, local: LocalStore, remote: Store, max_size: int | None = None) -> None:
        self.local = local
        self.remote = remote
        self.max_size = max_size
        self.location = remote.location
        self.list_interval = remote.list_interval

    def __repr__(self) -> str:
        return f"TieredStore({self.remote!r}, local copies in {self.local.location!r})"

    # -- entries -------------------------------------------------------------

    def open_entry(self, key: str) -> BinaryIO:
        unreachable: StoreError | None = None
        try:
            if not self._in_remote(key):
                self._drop_local(key)  # removed from the shared store: gone everywhere
                raise KeyError(key)
        except StoreError as exc:
            unreachable = exc  # a local copy is still this key's value
        try:
            f = self.local.open_entry(key)
        except KeyError:
            if unreachable is not None:
                raise unreachable from None
        else:
            _touch(self.local, key)
            return f
        try:
            self._fetch(key)
        except StoreError:
            return self.remote.open_entry(key)  # no room here: read it from the remote
        return self.local.open_entry(key)

    def _in_remote(self, key: str) -> bool:
        return self.remote.probe(key)

    def _fetch(self, key: str) -> None:
        with self.local.write_entry(key) as target:
            self.remote.download(key, target)
        self.trim(protect=key)

    def has_entry(self, key: str) -> bool:
        return self.remote.has_entry(key)

    @contextmanager
    def write_entry(self, key: str, *, replace: bool = False) -> Iterator[BinaryIO]:
        with self.local.write_entry(key, replace=replace) as f:
            yield f
        try:
            self.remote.upload(key, str(self.local.entry_path(key)), replace=replace)
        except BaseException:
            self._drop_local(key)
            raise
        self.trim(protect=key)

    def remove_entry(self, key: str) -> None:
        self.remote.remove_entry(key)
        self._drop_local(key)

    def _drop_local(self, key: str) -> None:
        try:
            self.local.remove_entry(key)
        except StoreError:
            pass  # a read-only local folder keeps its copy; the remote check still guards it

    def entries(self) -> Iterator[EntryStat]:
        return self.remote.entries()

    def check(self) -> None:
        self.remote.check()

    def probe(self, key: str) -> bool:
        return self.remote.probe(key)

    def entries_with_stats(self) -> Iterator[tuple[EntryStat, dict[str, Any] | None]]:
        return self.remote.entries_with_stats()

    def total_size(self) -> int:
        return self.remote.total_size()

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        return self.remote.eviction_order(protect)

    def reindex(self) -> int:
        self.local.reindex()
        return self.remote.reindex()

    def trim(self, protect: str = "") -> list[str]:
        """Drop the local copies read least recently until the folder fits ``max_size``.

        The total comes from the folder's index, and so does the order: copies carry no
        stats, so they all rank alike and the least recently read goes first.
        """
        if self.max_size is None:
            return []
        total = self.local.total_size()
        dropped: list[str] = []
        if total <= self.max_size:
            return dropped
        for stat in self.local.eviction_order(protect=[protect]):
            if total <= self.max_size:
                break
            self._drop_local(stat.key)
            total -= stat.size
            dropped.append(stat.key)
        return dropped

    # -- stats and leases: the remote's --------------------------------------

    def read_stats(self, key: str) -> dict[str, Any] | None:
        return self.remote.read_stats(key)

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        self.remote.write_stats(key, stats)

    def lease(self, key: str) -> Lease:
        return self.remote.lease(key)


def _touch(local: LocalStore, key: str) -> None:
    """Mark a copy as just read, for :meth:`TieredStore.trim`."""
    local.touch(key)
