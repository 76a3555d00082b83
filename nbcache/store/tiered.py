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

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from ..errors import StoreError
from .base import EntryStat, Lease, Store
from .local import LocalStore

__all__ = ["TieredStore"]

_COPY_CHUNK = 8 << 20


class TieredStore:
    """``remote`` with a read-through copy of its entries in the folder ``local``."""

    def __init__(self, local: LocalStore, remote: Store, max_size: int | None = None) -> None:
        self.local = local
        self.remote = remote
        self.max_size = max_size
        self.location = remote.location
        self.list_interval = float(getattr(remote, "list_interval", 0.0))

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
        probe = getattr(self.remote, "probe", None)
        return bool(probe(key)) if probe is not None else self.remote.has_entry(key)

    def _fetch(self, key: str) -> None:
        with self.local.write_entry(key) as target:
            download = getattr(self.remote, "download", None)
            if download is not None:
                download(key, target)
            else:
                with self.remote.open_entry(key) as source:
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
        self.trim(protect=key)

    def has_entry(self, key: str) -> bool:
        return self.remote.has_entry(key)

    @contextmanager
    def write_entry(self, key: str) -> Iterator[BinaryIO]:
        with self.local.write_entry(key) as f:
            yield f
        try:
            upload = getattr(self.remote, "upload", None)
            if upload is not None:
                upload(key, str(self.local.entry_path(key)))
            else:
                with self.local.open_entry(key) as source, self.remote.write_entry(key) as dst:
                    shutil.copyfileobj(source, dst, _COPY_CHUNK)
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

    def trim(self, protect: str = "") -> list[str]:
        """Drop the local copies read least recently until the folder fits ``max_size``."""
        if self.max_size is None:
            return []
        copies = sorted(self.local.entries(), key=lambda stat: stat.mtime)
        total = sum(stat.size for stat in copies)
        dropped = []
        for stat in copies:
            if total <= self.max_size:
                break
            if stat.key != protect:
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
    try:
        os.utime(local.entry_path(key))
    except OSError:
        pass
